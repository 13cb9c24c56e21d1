"""The TeamCity connector end to end: stand-in TeamCity → sei-poller once/backfill → stand-in SEI.

Exact payloads for each shape the issue names, then identity and ordering (ids handed out at
queue time, builds finishing out of id order, gaps), TeamCity's default filter and
lookupLimit, cheap idle polls, renames, faults.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.teamcity.standin import FakeTeamCity, now_ms
from poller.standins.sei import FakeSei
from tests.connectors.teamcity.env import DAY, HOUR, MINUTE, SECOND, Env, tc_params

T0 = (now_ms() - 2 * DAY) // SECOND * SECOND  # TeamCity dates have seconds only
STEPS = [
    {"id": "RUNNER_1", "name": "Compile", "type": "Maven2"},
    {"id": "RUNNER_2", "name": "", "type": "simpleRunner"},  # a step without a name
]


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeTeamCity(context_path="/tc", tz="+0300") as tc, FakeSei() as sei:
        e = Env(tc, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _fresh() -> int:
    """A finish time the next poll's window holds: TeamCity's clock now, in whole seconds."""
    return now_ms() // SECOND * SECOND


# -- exact payloads ----------------------------------------------------------------------------


def test_successful_build_with_user_trigger_and_parameters(env: Env) -> None:
    tc = env.tc
    tc.add_project("Shop", "Shop")
    tc.add_project("Shop_Api", "API", parent="Shop")
    root = tc.add_vcs_root("Shop_Repo", "https://ci-bot:s3cret@github.com/acme/shop")
    tc.add_build_type("Shop_Api_Build", "Build & Test", "Shop_Api", steps=STEPS, vcs_roots=[root])
    tc.add_user("alice", "Alice Doe")
    tc.skip_ids(41)  # other configurations' builds took ids 1..41
    b = tc.add_build(
        "Shop_Api_Build",
        queued=T0,
        started=T0 + 30 * SECOND,
        finished=T0 + 30 * SECOND + 95 * SECOND,
        number="2024.7 rc1",  # a build number format with text and spaces
        triggered={"type": "user", "user": "alice"},
        branch="refs/heads/main",
        default_branch=True,
        revisions=[(root, "a" * 40, "refs/heads/main")],
        changes=[
            {"version": "a" * 40, "username": "alice", "root": root},
            {"version": "b" * 40, "username": "bob", "root": root},
        ],
        properties=[
            {"name": "env.TARGET", "value": "staging"},
            {"name": "MAVEN_GOALS", "value": "surefire:test", "inherited": True},
            {"name": "deploy.key", "type": "password display='hidden'"},
            {"name": "secure:vault", "value": "credentialsJSON:1234"},
        ],
        statistics={
            "buildStageDuration:buildStepRUNNER_1": 60_000,
            "buildStageDuration:buildStepRUNNER_2": 1_500,
            "buildStageDuration:sourcesUpdate": 3_000,
        },
        artifacts=[{"name": "api.jar"}, {"name": "reports/junit.xml"}],
    )
    assert b == 42
    assert env.once() == 0
    job = "Shop/Shop_Api/Shop_Api_Build"
    assert env.runs()[(job, 42)] == {
        **env.common(job, 42, "Shop_Api_Build"),
        "pipeline": "Build & Test",
        "start_time": T0 + 30 * SECOND,
        "duration": 95 * SECOND,
        "result": "SUCCESS",
        "user_id": "alice",
        "trigger_chain": [{"id": "alice", "type": "UserIdCause"}],
        "job_run_params": [
            {"type": "StringParameterValue", "name": "env.TARGET", "value": "staging"},
            {"type": "StringParameterValue", "name": "MAVEN_GOALS", "value": "surefire:test"},
            *tc_params("2024.7 rc1", "SUCCESS", "Success", "user"),
        ],
        "scm_commit_ids": ["a" * 40, "b" * 40],
        "repo_url": "https://github.com/acme/shop.git",
        "branch_name": "main",
        "job_run": {
            "stages": [
                {
                    "id": "42.RUNNER_1",
                    "displayName": "Compile",
                    "displayDescription": "Compile",
                    "result": "SUCCESS",
                    "state": "FINISHED",
                    "durationInMillis": 60_000,
                    "steps": [],
                },
                {
                    "id": "42.RUNNER_2",
                    "displayName": "simpleRunner",
                    "displayDescription": "simpleRunner",
                    "result": "SUCCESS",
                    "state": "FINISHED",
                    "durationInMillis": 1_500,
                    "steps": [],
                },
            ]
        },
        "artifacts": [
            {
                "input": False,
                "output": True,
                "type": "file",
                "location": f"{env.tc.url}repository/download/Shop_Api_Build/42:id/{name}",
                "name": name.rsplit("/", 1)[-1],
                "qualifier": "42",
            }
            for name in ("api.jar", "reports/junit.xml")
        ],
    }
    # No secret was ever asked for, and every listing said what it means.
    listings = [r.query["locator"] for r in env.tc.requests if r.path.endswith("/builds")]
    assert listings and all("defaultFilter:false" in loc for loc in listings)
    assert all("lookupLimit:" in loc for loc in listings)
    assert not [r for r in env.tc.requests if "resulting-properties" in r.path]


def test_vcs_triggered_build_with_two_vcs_roots(env: Env) -> None:
    tc = env.tc
    app = tc.add_vcs_root("App", "https://github.com/acme/app", branch="refs/heads/main")
    lib = tc.add_vcs_root("Lib", "git@github.com:acme/lib.git", branch="refs/heads/release/2.x")
    tc.add_build_type("App_Ci", "CI", "App", vcs_roots=[app, lib])
    b = tc.add_build(
        "App_Ci",
        "FAILURE",
        queued=T0,
        started=T0 + SECOND,
        finished=T0 + 11 * SECOND,
        status_text="Tests failed: 1, passed: 152, muted: 19",
        triggered={"type": "vcs", "details": "jetbrains.git"},
        branch="release/2.x",
        default_branch=True,
        revisions=[(app, "c" * 40, "refs/heads/main"), (lib, "d" * 40, "refs/heads/release/2.x")],
        changes=[{"version": "d" * 40, "username": "carol", "root": lib}],
    )
    assert env.once() == 0
    assert env.runs()[("App/App_Ci", b)] == {
        **env.common("App/App_Ci", b, "App_Ci"),
        "pipeline": "CI",
        "start_time": T0 + SECOND,
        "duration": 10 * SECOND,
        "result": "FAILURE",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": tc_params(
            "1", "FAILURE", "Tests failed: 1, passed: 152, muted: 19", "vcs"
        ),
        "scm_commit_ids": ["c" * 40, "d" * 40],
        # the root the build's branch comes from, not merely the first one
        "repo_url": "git@github.com:acme/lib.git",
        "branch_name": "release/2.x",
    }


def test_canceled_build_is_sent_only_once_it_stopped(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Svc_Build", "Build", "Svc")
    tc.add_user("dave")
    assert env.once() == 0
    running = tc.queue_build("Svc_Build", triggered={"type": "user", "user": "dave"})
    tc.start_build(running, at=_fresh() - 20 * SECOND)
    tc.cancel_build(running, user="dave", text="wrong branch")
    queued = tc.queue_build("Svc_Build", at=_fresh() - 5 * SECOND)
    tc.cancel_build(queued, at=_fresh())
    assert env.once() == 0
    # Canceled while running: still `running`, status UNKNOWN, until the agent stops it.
    assert env.sent("Svc/Svc_Build") == [queued]
    # canceled in the queue: it "started" as it left the queue (TeamCity has a start date
    # for every finished build)
    assert env.runs()[("Svc/Svc_Build", queued)]["start_time"] == tc.builds[queued].finish_ms
    assert env.runs()[("Svc/Svc_Build", queued)]["duration"] == 0
    stop = _fresh()
    tc.finish_build(running, at=stop)
    assert env.once() == 0
    b = tc.builds[running]
    assert env.runs()[("Svc/Svc_Build", running)] == {
        **env.common("Svc/Svc_Build", running, "Svc_Build"),
        "pipeline": "Build",
        "start_time": b.start_ms,
        "duration": stop - b.start_ms,
        "result": "ABORTED",
        "user_id": "dave",
        "trigger_chain": [{"id": "dave", "type": "UserIdCause"}],
        "job_run_params": tc_params("1", "UNKNOWN", "Canceled (Step 1/1)", "user"),
    }


def test_failed_to_start_builds(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Ops_Deploy", "Deploy", "Ops", type="deployment")
    dep = tc.queue_build("Ops_Deploy", at=T0, triggered={"type": "schedule", "details": "nightly"})
    tc.finish_build(
        dep, at=T0 + 2 * SECOND, failed_to_start=True, status_text="Snapshot dependency failed"
    )
    agent = tc.queue_build("Ops_Deploy", at=T0 + HOUR, triggered={"type": "schedule"})
    tc.finish_build(
        agent,
        "FAILURE",
        at=T0 + HOUR + SECOND,
        failed_to_start=True,
        status_text="Failed to start build: no compatible agents",
    )
    env.write(cd_jobs=["Ops/*_Deploy"])
    assert env.once() == 0
    common = {
        "pipeline": "Deploy",
        "user_id": "TimerTrigger",
        "trigger_chain": [{"id": "unknown", "type": "TimerTriggerCause"}],
        "ci": False,
        "cd": True,
        "duration": 0,
    }
    assert env.runs()[("Ops/Ops_Deploy", dep)] == {
        **env.common("Ops/Ops_Deploy", dep, "Ops_Deploy"),
        **common,
        "start_time": T0 + 2 * SECOND,  # it never ran: when it left the queue
        "result": "NOT_BUILT",
        "job_run_params": tc_params("1", "SUCCESS", "Snapshot dependency failed", "schedule"),
    }
    assert env.runs()[("Ops/Ops_Deploy", agent)]["result"] == "FAILURE"


def test_personal_builds_are_skipped_unless_asked_for(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("P_Build", "Build", "P")
    tc.add_user("erin")
    normal = tc.add_build("P_Build", queued=T0, finished=T0 + SECOND)
    personal = tc.add_build(
        "P_Build",
        queued=T0 + HOUR,
        finished=T0 + HOUR + SECOND,
        personal=True,
        owner="erin",
        triggered={"type": "idePlugin", "details": "IntelliJ IDEA", "user": "erin"},
    )
    assert env.once() == 0
    assert env.sent() == [normal]
    # the default filter hides it too: without `personal:any` it is never even listed
    listings = [r.query["locator"] for r in tc.requests if r.path.endswith("/builds")]
    assert all("personal:false" in loc for loc in listings)

    env.write(personal=True, name="tc-personal")  # a new state: everything again
    (env.dir / "state.db").unlink()
    assert env.once() == 0
    assert env.runs()[("P/P_Build", personal)] == {
        **env.common("P/P_Build", personal, "P_Build"),
        "pipeline": "Build",
        "start_time": T0 + HOUR,
        "duration": SECOND,
        "result": "SUCCESS",
        "user_id": "erin",
        "trigger_chain": [{"id": "erin", "type": "idePlugin"}],
        "job_run_params": tc_params("2", "SUCCESS", "Success", "idePlugin", tc_personal="true"),
    }


def test_non_default_branch_build(env: Env) -> None:
    tc = env.tc
    root = tc.add_vcs_root("W_Repo", "https://gitlab.example.com/web/site.git")
    tc.add_build_type("W_Site", "Site", "W", vcs_roots=[root])
    b = tc.add_build(
        "W_Site",
        queued=T0,
        started=T0,
        finished=T0 + 3 * SECOND,
        triggered={"type": "vcs", "details": "jetbrains.git"},
        branch="feature/login",
        default_branch=False,
        revisions=[(root, "e" * 40, "refs/heads/feature/login")],
    )
    assert env.once() == 0
    assert env.runs()[("W/W_Site", b)] == {
        **env.common("W/W_Site", b, "W_Site"),
        "pipeline": "Site",
        "start_time": T0,
        "duration": 3 * SECOND,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": tc_params("1", "SUCCESS", "Success", "vcs"),
        "scm_commit_ids": ["e" * 40],
        "repo_url": "https://gitlab.example.com/web/site.git",
        "branch_name": "feature/login",
    }


def test_snapshot_dependency_chain_is_followed_to_its_head(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Rel_RunAll", "--> Run :: All", "Rel", type="composite")
    tc.add_build_type("Rel_Compile", "Compile", "Rel")
    tc.add_build_type("Rel_Deploy", "Deploy", "Rel")
    tc.add_build_type("Rel_Smoke", "Smoke", "Rel")
    tc.add_user("frank")
    head = tc.queue_build(
        "Rel_RunAll", at=T0, triggered={"type": "user", "user": "frank"}, composite=True
    )
    compile_ = tc.queue_build(
        "Rel_Compile",
        at=T0,
        triggered={"type": "snapshotDependency", "build": head, "user": "frank"},
    )
    tc.start_build(compile_, at=T0 + SECOND)
    tc.finish_build(compile_, at=T0 + 61 * SECOND)
    tc.start_build(head, at=T0 + 61 * SECOND)
    tc.finish_build(head, at=T0 + 62 * SECOND)
    # finish-build triggers: head → deploy → smoke (three levels: one is fetched)
    deploy = tc.add_build(
        "Rel_Deploy",
        queued=T0 + 70 * SECOND,
        finished=T0 + 80 * SECOND,
        triggered={"type": "buildType", "build": head},
    )
    smoke = tc.add_build(
        "Rel_Smoke",
        "FAILURE",
        queued=T0 + 90 * SECOND,
        finished=T0 + 95 * SECOND,
        triggered={"type": "buildType", "build": deploy},
    )
    assert env.once() == 0
    runs = env.runs()
    assert runs[("Rel/Rel_Compile", compile_)] == {
        **env.common("Rel/Rel_Compile", compile_, "Rel_Compile"),
        "pipeline": "Compile",
        "start_time": T0 + SECOND,
        "duration": 60 * SECOND,
        "result": "SUCCESS",
        "user_id": "frank",
        "trigger_chain": [
            {"id": "Rel/Rel_RunAll", "type": "UpstreamCause", "job_run_number": head}
        ],
        "job_run_params": tc_params("1", "SUCCESS", "Success", "snapshotDependency"),
    }
    assert runs[("Rel/Rel_RunAll", head)]["user_id"] == "frank"
    assert runs[("Rel/Rel_Deploy", deploy)]["user_id"] == "frank"
    assert runs[("Rel/Rel_Smoke", smoke)]["user_id"] == "frank"
    assert runs[("Rel/Rel_Smoke", smoke)]["trigger_chain"] == [
        {"id": "Rel/Rel_Deploy", "type": "UpstreamCause", "job_run_number": deploy}
    ]
    # smoke → deploy came with smoke's fields; deploy → head needed one request, once
    singles = [r.path for r in tc.requests if "/builds/id:" in r.path]
    assert singles == [f"/tc/app/rest/builds/id:{head}"]


def test_build_finishing_after_a_newer_id(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("R_Slow", "Slow", "R")
    assert env.once() == 0
    older = tc.queue_build("R_Slow", at=_fresh() - 30 * SECOND)
    newer = tc.queue_build("R_Slow", at=_fresh() - 29 * SECOND)
    tc.start_build(older, at=_fresh() - 20 * SECOND)
    tc.start_build(newer, at=_fresh() - 19 * SECOND)
    tc.finish_build(newer, at=_fresh())
    assert env.once() == 0
    assert env.sent() == [newer]
    assert env.once() == 0  # still running: nothing new
    assert env.sent() == [newer]
    tc.finish_build(older, "FAILURE", at=_fresh())
    assert env.once() == 0
    assert env.sent() == [older, newer]
    b = tc.builds[older]
    assert env.runs()[("R/R_Slow", older)] == {
        **env.common("R/R_Slow", older, "R_Slow"),
        "pipeline": "Slow",
        "start_time": b.start_ms,
        "duration": b.finish_ms - b.start_ms,
        "result": "FAILURE",
        "user_id": "sei-bot",
        "trigger_chain": [{"id": "sei-bot", "type": "UserIdCause"}],
        # the lower id started first, so it got the lower display number
        "job_run_params": tc_params("1", "FAILURE", "Failure", "user"),
    }
    assert env.runs()[("R/R_Slow", newer)]["job_run_params"][0]["value"] == "2"
    assert len(env.sei.keys()) == 2  # each exactly once


def test_renamed_build_configuration(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Team_Api", "API", "Team")
    first = tc.add_build("Team_Api", queued=T0, finished=T0 + SECOND)
    assert env.once() == 0
    assert env.sent("Team/Team_Api") == [first]
    # A new name: the same SEI job, pipeline renamed from the next build on, nothing resent.
    tc.rename_build_type("Team_Api", name="Public API")
    second = tc.add_build("Team_Api", queued=_fresh() - 2 * SECOND, finished=_fresh())
    assert env.once() == 0
    b = tc.builds[second]
    assert env.runs()[("Team/Team_Api", second)] == {
        **env.common("Team/Team_Api", second, "Team_Api"),
        "pipeline": "Public API",
        "start_time": b.start_ms,
        "duration": b.finish_ms - b.start_ms,
        "result": "SUCCESS",
        "user_id": "sei-bot",
        "trigger_chain": [{"id": "sei-bot", "type": "UserIdCause"}],
        "job_run_params": tc_params("2", "SUCCESS", "Success", "user"),
    }
    runs = env.runs()
    assert (
        runs[("Team/Team_Api", first)]["pipeline"],
        runs[("Team/Team_Api", second)]["pipeline"],
    ) == ("API", "Public API")
    # A new id: TeamCity moves the history along, so it is a new job, backfilled from
    # backfill_since; SEI now holds the old builds under both names.
    tc.rename_build_type("Team_Api", new_id="Team_PublicApi")
    assert env.once() == 0
    assert env.sent("Team/Team_PublicApi") == [first, second]
    assert env.sent("Team/Team_Api") == [first, second]
    assert len(env.sei.received) == 4
    renamed = env.runs()[("Team/Team_PublicApi", second)]
    assert renamed == {
        **env.common("Team/Team_PublicApi", second, "Team_PublicApi"),
        "pipeline": "Public API",
        "start_time": b.start_ms,
        "duration": b.finish_ms - b.start_ms,
        "result": "SUCCESS",
        "user_id": "sei-bot",
        "trigger_chain": [{"id": "sei-bot", "type": "UserIdCause"}],
        "job_run_params": tc_params("2", "SUCCESS", "Success", "user"),
    }


def test_internal_id_keeps_the_job_across_renames(env: Env) -> None:
    env.write(job_name="internal_id")
    tc = env.tc
    bt = tc.add_build_type("Team_Api", "API", "Team")
    first = tc.add_build("Team_Api", queued=T0, finished=T0 + SECOND)
    assert env.once() == 0
    tc.rename_build_type("Team_Api", new_id="Team_PublicApi", name="Public API", project="Other")
    second = tc.add_build("Team_PublicApi", queued=_fresh() - SECOND, finished=_fresh())
    assert env.once() == 0
    assert env.sent(bt.internal_id) == [first, second]
    assert set(env.sei.keys()) == {
        (env.sei.keys()[0][0], bt.internal_id, n) for n in (first, second)
    }
    assert env.runs()[(bt.internal_id, second)]["pipeline"] == "Public API"


# -- identity, filters and limits -------------------------------------------------------------


def test_ids_have_gaps_and_interleave_across_configurations(env: Env) -> None:
    tc = env.tc
    for k in range(3):
        tc.add_build_type(f"G_C{k}", f"C{k}", "G")
    ids = {k: [] for k in range(3)}
    for n in range(12):
        k = (n * 7) % 3
        tc.skip_ids(n % 4)
        ids[k].append(
            tc.add_build(f"G_C{k}", queued=T0 + n * MINUTE, finished=T0 + n * MINUTE + SECOND)
        )
    assert env.once() == 0
    for k in range(3):
        assert env.sent(f"G/G_C{k}") == ids[k]
    live = []
    for n in range(6):
        k = n % 3
        tc.skip_ids(3)
        live.append((k, tc.add_build(f"G_C{k}", queued=_fresh() - 2 * SECOND, finished=_fresh())))
    assert env.once() == 0
    for k, b in live:
        ids[k].append(b)
    for k in range(3):
        assert env.sent(f"G/G_C{k}") == sorted(ids[k])
    assert len(env.sei.keys()) == 18


def test_default_filter_never_hides_a_build(env: Env) -> None:
    """Canceled, failed-to-start and non-default-branch builds, which TeamCity's default
    filter hides, all arrive, on first sight and through the server-wide query."""
    tc = env.tc
    tc.add_build_type("F_Build", "Build", "F")

    def kinds(at: int) -> list[int]:
        out = []
        c = tc.queue_build("F_Build", at=at - 3 * SECOND)
        tc.cancel_build(c, at=at)
        out.append(c)
        f = tc.queue_build("F_Build", at=at - 3 * SECOND)
        tc.finish_build(f, "FAILURE", at=at, failed_to_start=True)
        out.append(f)
        out.append(
            tc.add_build(
                "F_Build", queued=at - 3 * SECOND, finished=at, branch="pr/7", default_branch=False
            )
        )
        out.append(tc.add_build("F_Build", queued=at - 3 * SECOND, finished=at))
        return out

    first = kinds(T0)
    assert env.once() == 0
    assert env.sent() == first
    later = kinds(_fresh())
    assert env.once() == 0
    assert env.sent() == first + later
    assert [env.runs()[("F/F_Build", b)]["result"] for b in later] == [
        "ABORTED",
        "FAILURE",
        "SUCCESS",
        "SUCCESS",
    ]


def test_lookup_limit_is_set_so_deep_history_is_read(tmp_path: Path) -> None:
    with FakeTeamCity(default_lookup_limit=40) as tc, FakeSei() as sei:
        env = Env(tc, sei, tmp_path, tmp_path / "config.toml")
        env.write(lookup_limit=5000)
        tc.add_build_type("Deep_Job", "Job", "Deep")
        tc.add_build_type("Deep_Busy", "Busy", "Deep")
        ids = [
            tc.add_build("Deep_Job", queued=T0 + n * SECOND, finished=T0 + n * SECOND)
            for n in range(120)
        ]
        assert env.once() == 0
        assert env.sent("Deep/Deep_Job") == ids
        # A build that started long ago and finishes now, after 60 newer builds elsewhere:
        # beyond the server's default lookupLimit of 40 for the server-wide query.
        slow = tc.queue_build("Deep_Job", at=_fresh() - 10 * MINUTE)
        tc.start_build(slow, at=_fresh() - 10 * MINUTE)
        now = _fresh()
        busy = [
            tc.add_build(
                "Deep_Busy",
                queued=now - 9 * MINUTE,
                started=now - 9 * MINUTE + n * SECOND,
                finished=now - 30 * SECOND + n * 100,
            )
            for n in range(60)
        ]
        tc.finish_build(slow, at=_fresh())
        assert env.once() == 0
        assert slow in env.sent("Deep/Deep_Job")
        assert sorted(busy) == env.sent("Deep/Deep_Busy")


def test_a_build_longer_than_the_horizon_is_found_by_the_sweep(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.teamcity.connector as tcmod

    tc = env.tc
    tc.add_build_type("L_Soak", "Soak", "L")
    assert env.once() == 0
    soak = tc.queue_build("L_Soak", at=_fresh() - 9 * HOUR)
    tc.start_build(soak, at=_fresh() - 9 * HOUR)
    tc.finish_build(soak, at=_fresh())
    assert env.once() == 0
    assert env.sent() == []  # beyond the regular query's start-date bound: not seen yet
    monkeypatch.setattr(tcmod, "SWEEP_EVERY", 0)  # the hourly sweep is due
    assert env.once() == 0
    assert env.sent() == [soak]
    assert env.once() == 0
    assert len(env.sei.received) == 1


def test_a_build_seen_running_for_hours_is_found_when_it_finishes(env: Env) -> None:
    """No sweep needed: a poll saw it running past half the horizon, the next looks it up."""
    tc = env.tc
    tc.add_build_type("L_Soak", "Soak", "L")
    soak = tc.queue_build("L_Soak", at=_fresh() - 9 * HOUR)
    tc.start_build(soak, at=_fresh() - 9 * HOUR)
    assert env.once() == 0
    assert str(soak) in env.cursor()["long"]
    tc.finish_build(soak, at=_fresh())
    tc.reset_requests()
    assert env.once() == 0
    assert env.sent() == [soak]
    assert any(r.path == f"/tc/app/rest/builds/id:{soak}" for r in tc.requests)
    assert env.cursor()["long"] == {}
    assert env.once() == 0
    assert len(env.sei.received) == 1


def _owed(env: Env) -> list[int]:
    with sqlite3.connect(env.dir / "state.db") as db:
        return [r[0] for r in db.execute("SELECT number FROM owed ORDER BY number")]


def test_a_scan_that_fails_owes_what_the_server_cursor_passed(env: Env) -> None:
    """The server cursor moves with the poll; the build it named for a configuration whose
    scan then failed is owed, and read by id at the next poll (issue 26)."""
    tc = env.tc
    tc.add_build_type("O_Job", "Job", "O")
    soak = tc.queue_build("O_Job", at=_fresh() - 9 * HOUR)
    tc.start_build(soak, at=_fresh() - 9 * HOUR)
    assert env.once() == 0  # seen running for hours: the cursor tracks it
    tc.finish_build(soak, at=_fresh())
    tc.faults.fail(r"/app/rest/builds$", 500, query=r"buildType:\(id:O_Job\)")
    assert env.once() == 1
    assert env.sent() == [] and _owed(env) == [soak]
    assert env.cursor()["long"] == {}  # the cursor moved past it: only `owed` remembers it
    tc.faults.clear()
    tc.reset_requests()
    assert env.once() == 0
    assert env.sent() == [soak] and _owed(env) == []
    assert any(r.path == f"/tc/app/rest/builds/id:{soak}" for r in tc.requests)


def test_a_build_parked_by_a_scan_that_failed_is_retried_by_id(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first scan parks a build, then fails; the next completes without reaching it (not
    due) and moves the configuration's cursor past it. Due again, it is read by id."""
    import poller.collect

    tc = env.tc
    tc.add_build_type("P_Head", "Head", "P")
    tc.add_build_type("P_Job", "Job", "P")
    root = tc.add_build("P_Head", queued=T0, finished=T0 + SECOND)
    mid = tc.add_build(
        "P_Head",
        queued=T0 + MINUTE,
        finished=T0 + MINUTE + SECOND,
        triggered={"type": "snapshotDependency", "build": root},
    )
    history = [
        tc.add_build("P_Job", queued=T0 + HOUR + n * SECOND, finished=T0 + HOUR + n * SECOND)
        for n in range(120)
    ]
    chained = tc.add_build(
        "P_Job",
        queued=T0 + 2 * HOUR,
        finished=T0 + 2 * HOUR + SECOND,
        triggered={"type": "snapshotDependency", "build": mid},
    )
    tc.faults.break_path(rf"/app/rest/builds/id:{root}$")  # the chain's head: never answers
    tc.faults.fail(r"/app/rest/builds$", 500, query=r"buildType:\(id:P_Job\).*start:100")
    assert env.once() == 1
    tc.faults.heal(r"/app/rest/builds$")
    assert env.once() == 1  # completes, the parked build not due yet
    assert sorted(env.sent("P/P_Job")) == history
    tc.faults.clear()

    class Later:
        def time(self) -> float:
            return time.time() + 2 * 3600

        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

    monkeypatch.setattr(poller.collect, "time", Later())
    assert env.once() == 0
    assert chained in env.sent("P/P_Job")
    assert env.run("status", "--json") == 0


def test_backfill_after_the_upgrade_sends_what_an_older_release_lost(env: Env) -> None:
    """A state file from a release without the `owed` table: its covered ranges are not
    trusted, so `backfill --since` reads every configuration again (README: upgrading)."""
    tc = env.tc
    tc.add_build_type("U_Job", "Job", "U")
    kept = tc.add_build("U_Job", queued=_fresh() - DAY, finished=_fresh() - DAY + SECOND)
    assert env.once() == 0
    lost = tc.add_build("U_Job", queued=_fresh() - HOUR, finished=_fresh() - HOUR + SECOND)
    assert env.once() == 0
    assert env.sent() == [kept]  # finished an hour before the window: as if lost
    assert env.run("backfill", "--since", "30d") == 0
    assert env.sent() == [kept]  # this release's covered range is trusted: nothing re-read
    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("DROP TABLE owed")  # the file as the older release left it
    assert env.run("backfill", "--since", "30d") == 0
    assert env.sent() == [kept, lost]
    assert len(env.sei.received) == 2


# -- polling cost --------------------------------------------------------------------------------


def test_idle_poll_costs_three_requests_whatever_the_server_holds(env: Env) -> None:
    tc = env.tc
    for k in range(40):
        tc.add_build_type(f"I{k % 4}_C{k}", f"C{k}", f"I{k % 4}", steps=STEPS)
        for n in range(3):
            tc.add_build(f"I{k % 4}_C{k}", queued=T0 + n * HOUR, finished=T0 + n * HOUR + SECOND)
    running = tc.queue_build("I0_C0")
    tc.start_build(running)
    tc.queue_build("I1_C1")  # queued, never started
    assert env.once() == 0
    assert len(env.sent()) == 120
    for _ in range(2):
        tc.reset_requests()
        assert env.once() == 0
        # the tree, what finished since the last poll, what has run for hours
        assert [r.path for r in tc.requests] == [
            "/tc/app/rest/projects",
            *["/tc/app/rest/builds"] * 2,
        ]
        assert "state:running" in tc.requests[2].query["locator"]
    tc.finish_build(running, statistics={"buildStageDuration:buildStepRUNNER_1": 5})
    tc.reset_requests()
    assert env.once() == 0
    # discovery, the two server-wide queries, that one configuration's builds, its step names
    assert [r.path for r in tc.requests] == [
        "/tc/app/rest/projects",
        "/tc/app/rest/builds",
        "/tc/app/rest/builds",
        "/tc/app/rest/builds",
        "/tc/app/rest/buildTypes/id:I0_C0/steps",
    ]
    assert running in env.sent("I0/I0_C0")
    tc.reset_requests()
    assert env.once() == 0  # seen again inside the overlap: still idle
    assert len(tc.requests) == 3


def test_many_builds_are_paged_with_next_href(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Big_Job", "Job", "Big")
    ids = [
        tc.add_build("Big_Job", queued=T0 + n * SECOND, finished=T0 + n * SECOND)
        for n in range(250)
    ]
    assert env.once() == 0
    assert env.sent() == ids
    pages = [r for r in tc.requests if "buildType:(id:Big_Job)" in r.query.get("locator", "")]
    assert len(pages) == 3
    assert "start:100" in pages[1].query["locator"] and "fields" in pages[1].query


def test_backfill_since_and_resume(env: Env) -> None:
    tc = env.tc
    env.write(backfill_since="30d")
    tc.add_build_type("H_Job", "Job", "H")
    old = [
        tc.add_build("H_Job", queued=now_ms() - d * DAY, finished=now_ms() - d * DAY + SECOND)
        for d in (90, 60, 40)
    ]
    recent = [
        tc.add_build("H_Job", queued=now_ms() - d * DAY, finished=now_ms() - d * DAY + SECOND)
        for d in (20, 5)
    ]
    assert env.once() == 0
    assert env.sent() == recent
    assert env.run("backfill", "--since", "50d") == 0
    assert env.sent() == [old[2], *recent]
    tc.reset_requests()
    assert env.run("backfill", "--since", "50d") == 0  # covered already: nothing re-read
    assert not [r for r in tc.requests if "buildType:(id:H_Job)" in r.query.get("locator", "")]
    assert env.run("backfill", "--since", "all") == 0
    assert env.sent() == [*old, *recent]
    assert len(env.sei.keys()) == 5


# -- faults ---------------------------------------------------------------------------------------


def test_server_wide_query_failing_keeps_the_cursor(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("X_Job", "Job", "X")
    assert env.once() == 0
    before = env.cursor()
    b = tc.add_build("X_Job", queued=_fresh() - SECOND, finished=_fresh())
    tc.faults.fail(r"/app/rest/builds$", status=500, times=4)  # past the three retries
    assert env.once() == 1
    assert env.cursor() == before
    assert env.once() == 0
    assert env.sent() == [b]


def test_failed_job_is_scanned_again_though_nothing_new_finished(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Y_Ok", "Ok", "Y")
    tc.add_build_type("Y_Bad", "Bad", "Y")
    assert env.once() == 0
    ok = tc.add_build("Y_Ok", queued=_fresh() - SECOND, finished=_fresh())
    bad = tc.add_build("Y_Bad", queued=_fresh() - SECOND, finished=_fresh())
    tc.faults.fail(r"/app/rest/builds$", status=503, times=4, query=r"buildType:\(id:Y_Bad\)")
    assert env.once() == 1
    assert env.sent() == [ok]
    time.sleep(1.1)  # the next poll's cursor lies past the failed build's finish
    assert env.once() == 0
    assert env.sent() == [ok, bad]


def test_build_whose_step_names_fail_is_parked_then_sent(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("Z_Job", "Job", "Z", steps=STEPS)
    stats = {"buildStageDuration:buildStepRUNNER_1": 7}
    plain = tc.add_build("Z_Job", queued=T0, finished=T0 + SECOND)
    staged = tc.add_build("Z_Job", queued=T0 + HOUR, finished=T0 + HOUR + SECOND, statistics=stats)
    tc.faults.break_path(r"/buildTypes/id:Z_Job/steps")
    assert env.once() == 1  # a build is parked
    assert env.sent() == [plain]
    tc.faults.heal(r"/buildTypes/id:Z_Job/steps")
    import sqlite3

    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("UPDATE problems SET retry_at = 0")  # its retry is due
    assert env.once() == 0
    assert env.sent() == [plain, staged]
    assert env.runs()[("Z/Z_Job", staged)]["job_run"]["stages"][0]["durationInMillis"] == 7


def test_hanging_server_times_out(env: Env) -> None:
    env.tc.add_build_type("H_Job", "Job", "H")
    env.tc.faults.hang(r"/app/rest/projects", 5.0)
    started = time.monotonic()
    assert env.once() == 1
    assert time.monotonic() - started < 15


# -- configuration and check -------------------------------------------------------------------


def test_basic_auth_and_refused_credentials(env: Env) -> None:
    tc = env.tc
    tc.add_build_type("A_Job", "Job", "A")
    b = tc.add_build("A_Job", queued=T0, finished=T0 + SECOND)
    env.write(token=None, username=tc.username, password=tc.password)
    assert env.once() == 0
    assert env.sent() == [b]
    env.write(token="wrong")
    assert env.once() == 1


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"token": None}, "set 'token' (an access token), or 'username' and 'password'"),
        ({"username": "u"}, "set both 'username' and 'password', or neither"),
        ({"username": "u", "password": "p"}, "set either 'token' or 'username' and 'password'"),
        ({"job_name": "name"}, 'expected "path" (project ids / build configuration id) or'),
    ],
)
def test_config_mistakes_are_named(
    env: Env, capsys: pytest.CaptureFixture[str], keys: dict, message: str
) -> None:
    env.write(**keys)
    assert env.once() == 2
    assert message in capsys.readouterr().err


def test_check_says_version_user_and_configurations(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    tc = env.tc
    tc.add_build_type("C_One", "One", "C")
    tc.add_build_type("C_Two", "Two", "C")
    tc.add_build("C_One", queued=T0, finished=T0 + SECOND)
    assert env.run("check") == 0
    out = capsys.readouterr().out
    assert "TeamCity 2023.11.1 (build 147412) as sei-bot, 2 jobs" in out
    assert "1 build (counted exactly, one request per job)" in out


def test_without_the_right_to_read_settings(tmp_path: Path) -> None:
    with FakeTeamCity(settings_permission=False) as tc, FakeSei() as sei:
        env = Env(tc, sei, tmp_path, tmp_path / "config.toml")
        env.write()
        root = tc.add_vcs_root("V_Repo", "https://github.com/acme/v.git", branch="refs/heads/main")
        tc.add_build_type("V_Job", "Job", "V", vcs_roots=[root], steps=STEPS)
        b = tc.add_build(
            "V_Job",
            queued=T0,
            finished=T0 + SECOND,
            revisions=[(root, "f" * 40, "refs/heads/main")],
            statistics={"buildStageDuration:buildStepRUNNER_1": 9},
        )
        assert env.once() == 0  # sent at once, not parked: a refusal does not heal
        run = env.runs()[("V/V_Job", b)]
        # the VCS root instance is named `<url>#<branch>`: that is what is left
        assert run["repo_url"] == "https://github.com/acme/v.git"
        # the step names are settings too: the stage is named by its runner id
        assert [s["displayName"] for s in run["job_run"]["stages"]] == ["RUNNER_1"]


def test_stages_off_asks_for_no_statistics(env: Env) -> None:
    env.write(stages=False)
    env.tc.add_build_type("S_Job", "Job", "S", steps=STEPS)
    b = env.tc.add_build(
        "S_Job",
        queued=T0,
        finished=T0 + SECOND,
        statistics={"buildStageDuration:buildStepRUNNER_1": 5},
    )
    assert env.once() == 0
    assert "job_run" not in env.runs()[("S/S_Job", b)]
    assert not [
        r for r in env.tc.requests if "statistics" in r.query.get("fields", "") or "steps" in r.path
    ]


def test_a_larger_lookup_limit_offered_by_a_newer_server_is_followed() -> None:
    """TeamCity 2022+ answers a query that reached lookupLimit with a `nextHref` asking for
    more, even after a page without builds: the connector follows it to the end."""
    from connectors.teamcity.connector import Settings, TeamCityConnector
    from poller.model import JobCursor, ServerSpec

    with FakeTeamCity(lookup_limit_next_href=True) as tc:
        tc.add_build_type("N_Job", "Job", "N")
        now = _fresh()
        long_one = tc.add_build("N_Job", queued=now - HOUR, started=now - HOUR, finished=now)
        for n in range(15):  # started after it, finished before the window
            at = now - 50 * MINUTE + n * SECOND
            tc.add_build("N_Job", queued=at, started=at, finished=at + SECOND)
        settings = Settings.model_construct(
            token=Settings(token="x").token,
            username=None,
            password=None,
            personal=False,
            job_name="path",
            lookup_limit=10,
        )
        spec = ServerSpec(name="n", type="teamcity", url=tc.url, settings=settings)
        conn = TeamCityConnector(spec)
        conn._http.session.headers["Authorization"] = f"Bearer {tc.token}"
        job = next(j for j in conn.discover() if j.full_name == "N/N_Job")
        conn._remember(long_one, now - HOUR, now)
        changed = type(job)(**{**job.__dict__, "changed": (long_one,)})
        found = [
            b.number
            for b in conn.scan(changed, JobCursor(cursor=str(now)), lambda n: True)
            if hasattr(b, "number")
        ]
        conn.close()
        assert found == [long_one]
        pages = [r.query["locator"] for r in tc.requests if r.path.endswith("/builds")]
        assert [loc.rsplit("lookupLimit:", 1)[-1].split(",")[0] for loc in pages] == ["10", "20"]
