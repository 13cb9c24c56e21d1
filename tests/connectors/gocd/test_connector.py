"""The GoCD connector end to end with `granularity = "pipeline"`: stand-in GoCD → sei-poller
once → stand-in SEI.

Exact payloads for every shape the issue names (a material change with two Git materials, a
forced run, a manual gate held then sent, a failed stage re-run to passed, a cancelled
stage, an upstream pipeline, a timer), then what GoCD does to a poller: instances that
finish out of order, a job rescheduled when its agent is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.gocd.standin import (
    FakeGoCD,
    Revision,
    StageConfig,
    changes,
    commit,
    dependency,
    forced,
    git,
    now_ms,
    timer,
)
from poller.payload import iso_time
from poller.standins.sei import FakeSei
from tests.connectors.gocd.env import DAY, HOUR, MINUTE, SECOND, Env, params

T0 = (now_ms() - 2 * DAY) // SECOND * SECOND
APP = git("https://ci-bot:s3cret@github.com/acme/app", "main")  # credentials in the URL
LIB = git("git@github.com:acme/lib.git", "release/2.x")
ALICE = "alice <alice@example.com>"
RERUN_LOG = "a stage ran again after its pipeline instance was sent"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeGoCD() as gocd, FakeSei() as sei:
        e = Env(gocd, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def node(id: str, name: str, result: str, start: int | None, duration: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": id,
        "displayName": name,
        "displayDescription": name,
        "result": result,
        "state": "FINISHED",
        "durationInMillis": duration,
    }
    if start:
        out["startTime"] = iso_time(start)
    return out


def stage(
    prefix: str, result: str, start: int, duration: int, jobs: list[tuple[str, str]]
) -> dict[str, Any]:
    """A stage that ran, its jobs building from `start` for `duration` (as `run_stage`)."""
    name = prefix.split("/")[2]
    return {
        **node(prefix, name, result, start, duration),
        "steps": [node(f"{prefix}/{j}", j, r, start, duration) for j, r in jobs],
    }


def skipped(prefix: str) -> dict[str, Any]:
    name = prefix.rsplit("/", 1)[1]
    return {
        "id": prefix,
        "displayName": name,
        "displayDescription": name,
        "result": "NOT_BUILT",
        "state": "SKIPPED",
        "durationInMillis": 0,
        "steps": [],
    }


def scm_trigger() -> list[dict[str, str]]:
    return [{"id": "SCMTrigger", "type": "SCMTriggerCause"}]


# -- exact payloads ----------------------------------------------------------------------------


def test_material_change_with_two_git_materials(env: Env) -> None:
    g = env.gocd
    g.add_pipeline(
        "shop",
        "team",
        [StageConfig("build", jobs=("compile", "unit")), StageConfig("test")],
        [APP, LIB],
        label="1.2.${COUNT}",  # the label is a template: not the counter
    )
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    cause = changes(
        (APP, [commit(a, ALICE, T0 - MINUTE), commit(b, "bob <bob@example.com>", T0 - HOUR)]),
        (LIB, [commit(c, "carol <carol@example.com>", T0 - DAY)], False),
    )
    g.run("shop", cause, at=T0, results={"test": "Failed"})
    assert env.once() == 0
    assert env.runs()[("shop", 1)] == {
        **env.common("shop", 1, "team/shop"),
        "pipeline": "shop",
        "start_time": T0 + 5 * SECOND,  # the first job building
        "duration": 125 * SECOND,  # to the last job completed
        "result": "FAILURE",
        "user_id": "SCMTrigger",
        "trigger_chain": scm_trigger(),
        "job_run_params": params(
            label="1.2.1",
            counter=1,
            natural_order=1.0,
            result="Failed",
            trigger=f"modified by {ALICE}",
        ),
        "scm_commit_ids": [a, b, c],  # every Git material's revisions
        "repo_url": "https://github.com/acme/app.git",  # the material that changed, no credentials
        "branch_name": "main",
        "web_url": f"{g.url}pipelines/value_stream_map/shop/1",
        "job_run": {
            "stages": [
                stage(
                    "shop/1/build/1",
                    "SUCCESS",
                    T0 + 5 * SECOND,
                    60 * SECOND,
                    [("compile", "SUCCESS"), ("unit", "SUCCESS")],
                ),
                stage(
                    "shop/1/test/1", "FAILURE", T0 + 70 * SECOND, 60 * SECOND, [("test", "FAILURE")]
                ),
            ]
        },
    }
    assert "s3cret" not in json.dumps(env.sei.received)


def test_forced_by_a_user(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("helm-images", "helm", ["build"], [APP])
    mod = commit("d" * 40, ALICE, T0 - DAY)
    g.run("helm-images", forced("admin", [Revision(APP, (mod,), False)], "Admin Istrator"), at=T0)
    assert env.once() == 0
    assert env.runs()[("helm-images", 1)] == {
        **env.common("helm-images", 1, "helm/helm-images"),
        "pipeline": "helm-images",
        "start_time": T0 + 5 * SECOND,
        "duration": 60 * SECOND,
        "result": "SUCCESS",
        "user_id": "admin",  # the approver: the login, not the display name
        "trigger_chain": [{"id": "admin", "type": "UserIdCause"}],
        "job_run_params": params(
            label="1",
            counter=1,
            natural_order=1.0,
            result="Passed",
            trigger="Forced by Admin Istrator",
        ),
        "scm_commit_ids": ["d" * 40],
        "repo_url": "https://github.com/acme/app.git",  # no material changed: the first Git one
        "branch_name": "main",
        "web_url": f"{g.url}pipelines/value_stream_map/helm-images/1",
        "job_run": {
            "stages": [
                stage(
                    "helm-images/1/build/1",
                    "SUCCESS",
                    T0 + 5 * SECOND,
                    60 * SECOND,
                    [("build", "SUCCESS")],
                )
            ]
        },
    }


def test_manual_gate_is_held_then_sent_after_max_pending_age(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.add_pipeline("deploy", "cd", ["build", StageConfig("prod", manual=True)], [APP])
    at = now_ms() // SECOND * SECOND - 3 * HOUR
    mod = commit("e" * 40, ALICE, at - MINUTE)
    g.run("deploy", changes((APP, [mod])), at=at)  # build passed; prod waits for a person
    env.write(max_pending_age="1d")
    assert env.once() == 0
    assert env.sent("deploy") == []  # held: the gate may still be passed
    assert list(env.cursor()["held"]) == ["deploy#1"]  # remembered across runs
    # A day is too long for this team: an hour. Nothing changed on GoCD, so the dashboard
    # answers 304; the deadline alone sends the instance, with the gated stage NOT_BUILT.
    env.write(max_pending_age="1h")
    g.reset_requests()
    assert env.once() == 0
    assert (g.requests[0].path, g.requests[0].status) == ("/go/api/dashboard", 304)
    assert env.runs()[("deploy", 1)] == {
        **env.common("deploy", 1, "cd/deploy"),
        "pipeline": "deploy",
        "start_time": at + 5 * SECOND,
        "duration": 60 * SECOND,
        "result": "SUCCESS",  # from the stages that ran
        "user_id": "SCMTrigger",
        "trigger_chain": scm_trigger(),
        "job_run_params": params(
            label="1",
            counter=1,
            natural_order=1.0,
            result="Passed",
            trigger=f"modified by {ALICE}",
            waiting="prod",
        ),
        "scm_commit_ids": ["e" * 40],
        "repo_url": "https://github.com/acme/app.git",
        "branch_name": "main",
        "web_url": f"{g.url}pipelines/value_stream_map/deploy/1",
        "job_run": {
            "stages": [
                stage(
                    "deploy/1/build/1",
                    "SUCCESS",
                    at + 5 * SECOND,
                    60 * SECOND,
                    [("build", "SUCCESS")],
                ),
                skipped("deploy/1/prod"),
            ]
        },
    }
    assert env.cursor()["held"] == {}
    # Someone passes the gate after all: SEI keeps what it has; counted and logged, once.
    capsys.readouterr()
    g.approve("deploy", 1, "prod", "bob", at=now_ms() - MINUTE)
    g.run_stage("deploy", 1, "prod", at=now_ms() - MINUTE, seconds=10)
    assert env.once() == 0
    assert env.once() == 0
    assert capsys.readouterr().err.count(RERUN_LOG) == 1
    assert len(env.sei.received) == 1


def test_gate_passed_in_time_sends_the_whole_instance(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("deploy", "cd", ["build", StageConfig("prod", manual=True)], [APP])
    at = now_ms() // SECOND * SECOND - HOUR
    g.run("deploy", changes((APP, [commit("f" * 40, ALICE, at)])), at=at)
    assert env.once() == 0 and env.sent() == []
    g.approve("deploy", 1, "prod", "bob", at=at + 10 * MINUTE)
    g.run_stage("deploy", 1, "prod", "Passed", at=at + 10 * MINUTE, seconds=30)
    assert env.once() == 0
    run = env.runs()[("deploy", 1)]
    assert run["result"] == "SUCCESS"
    assert run["duration"] == 10 * MINUTE + 35 * SECOND - 5 * SECOND
    assert [s["displayName"] for s in run["job_run"]["stages"]] == ["build", "prod"]
    assert all(p["name"] != "gocd_waiting" for p in run["job_run_params"])
    assert env.cursor()["held"] == {}


def test_failed_stage_rerun_to_passed_is_sent_once_and_counted(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.add_pipeline("api", "team", ["build", "test"], [APP])
    g.run("api", changes((APP, [commit("1" * 40, ALICE, T0)])), at=T0, results={"test": "Failed"})
    assert env.once() == 0
    assert env.runs()[("api", 1)]["result"] == "FAILURE"
    rerun_at = now_ms() // SECOND * SECOND - 10 * MINUTE
    assert g.rerun("api", 1, "test", "alice", at=rerun_at) == 2
    g.begin("api", 1, "test", at=rerun_at + 5 * SECOND)
    capsys.readouterr()
    assert env.once() == 0  # seen while it runs: counted now, once
    g.finish("api", 1, "test", "Passed", at=rerun_at + MINUTE)
    assert env.once() == 0
    assert env.once() == 0
    assert capsys.readouterr().err.count(RERUN_LOG) == 1
    # SEI keeps the first write: nothing is sent again
    assert len(env.sei.received) == 1 and env.runs()[("api", 1)]["result"] == "FAILURE"


def test_cancelled_stage(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("svc", "team", ["build", "smoke-test"], [APP])
    g.run(
        "svc",
        changes((APP, [commit("2" * 40, ALICE, T0)])),
        at=T0,
        results={"smoke-test": "Cancelled"},
    )
    assert env.once() == 0
    run = env.runs()[("svc", 1)]
    assert run["result"] == "ABORTED"
    assert run["job_run_params"] == params(
        label="1", counter=1, natural_order=1.0, result="Cancelled", trigger=f"modified by {ALICE}"
    )
    smoke = run["job_run"]["stages"][1]
    # run(): smoke-test scheduled at T0+65s, its job building 5 s later, cancelled at +30 s
    assert smoke == {
        **node("svc/1/smoke-test/1", "smoke-test", "ABORTED", T0 + 70 * SECOND, 25 * SECOND),
        "steps": [
            node(
                "svc/1/smoke-test/1/smoke-test",
                "smoke-test",
                "ABORTED",
                T0 + 70 * SECOND,
                25 * SECOND,
            )
        ],
    }
    assert run["duration"] == 90 * SECOND


def test_upstream_pipeline_followed_to_the_chains_head(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("build", "chain", ["compile"], [APP])
    g.add_pipeline("deploy-dev", "chain", ["deploy"], [git("build", "compile")])
    g.add_pipeline("smoke", "chain", ["test"], [git("deploy-dev", "deploy")], label="${deploy-dev}")
    g.pipelines["build"].counter = 41
    up = g.run("build", forced("alice"), at=T0)
    done = g.instance("build", up).latest("compile")
    assert done is not None
    mid = g.run("deploy-dev", dependency("build", up, "compile", 1, at=done.last_ms), at=T0 + HOUR)
    dev = g.instance("deploy-dev", mid).latest("deploy")
    assert dev is not None
    g.pipelines["smoke"].counter = 264
    g.run("smoke", dependency("deploy-dev", mid, "deploy", 1, at=dev.last_ms), at=T0 + 2 * HOUR)
    env.write(include=["smoke"])  # the chain is read even where it is not polled
    assert env.once() == 0
    assert env.runs()[("smoke", 265)] == {
        **env.common("smoke", 265, "chain/smoke"),
        "pipeline": "smoke",
        "start_time": T0 + 2 * HOUR + 5 * SECOND,
        "duration": 60 * SECOND,
        "result": "SUCCESS",
        "user_id": "alice",  # who started the chain
        "trigger_chain": [{"id": "deploy-dev", "type": "UpstreamCause", "job_run_number": 1}],
        "job_run_params": params(
            label="1",  # its label is its upstream's counter: not its own 265
            counter=265,
            natural_order=265.0,
            result="Passed",
            trigger="triggered by deploy-dev/1/deploy/1",
        ),
        "web_url": f"{g.url}pipelines/value_stream_map/smoke/265",
        "job_run": {
            "stages": [
                stage(
                    "smoke/265/test/1",
                    "SUCCESS",
                    T0 + 2 * HOUR + 5 * SECOND,
                    60 * SECOND,
                    [("test", "SUCCESS")],
                )
            ]
        },
    }
    assert sorted(env.runs()) == [("smoke", 265)]


def test_timer_triggered(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("nightly", "ops", ["build"], [APP])
    mod = commit("3" * 40, ALICE, T0 - DAY)
    g.run("nightly", timer([Revision(APP, (mod,), False)]), at=T0)
    assert env.once() == 0
    run = env.runs()[("nightly", 1)]
    assert run["user_id"] == "TimerTrigger"
    assert run["trigger_chain"] == [{"id": "timer", "type": "TimerTriggerCause"}]
    assert run["job_run_params"] == params(
        label="1", counter=1, natural_order=1.0, result="Passed", trigger="Forced by timer"
    )
    assert run["scm_commit_ids"] == ["3" * 40]


# -- what GoCD does to a poller ------------------------------------------------------------------


def test_instances_finishing_out_of_order(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "team", ["build"], [APP])
    now = now_ms() // SECOND * SECOND
    slow = g.trigger("app", forced("alice"), at=now - 20 * MINUTE)
    g.begin("app", slow, "build", at=now - 19 * MINUTE)
    fast = g.run("app", forced("bob"), at=now - 10 * MINUTE)
    assert env.once() == 0
    assert env.sent("app") == [fast]  # the one still building holds no one back
    assert env.job_cursor("app")["floor"] == slow  # and is read again
    g.finish("app", slow, "build", "Failed", at=now - MINUTE)
    assert env.once() == 0
    assert env.sent("app") == [slow, fast]
    assert env.runs()[("app", slow)]["result"] == "FAILURE"
    assert env.once() == 0 and len(env.sei.received) == 2


def test_a_job_rescheduled_after_its_agent_was_lost_is_not_a_result(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "team", [StageConfig("build", jobs=("compile", "lint"))], [APP])
    c = g.trigger("app", forced("alice"), at=T0)
    g.begin("app", c, "build", at=T0 + 5 * SECOND)
    g.lose_agent("app", c, "build", "compile", at=T0 + 30 * SECOND)  # compile runs again
    assert env.once() == 0
    assert env.sent() == []  # the stage is still building
    g.begin("app", c, "build", at=T0 + 40 * SECOND)
    g.finish("app", c, "build", "Passed", at=T0 + 100 * SECOND)
    assert env.once() == 0
    run = env.runs()[("app", c)]
    assert run["result"] == "SUCCESS"
    steps = run["job_run"]["stages"][0]["steps"]
    # one step per job, the replacement's times for compile
    assert [(s["displayName"], s["startTime"], s["durationInMillis"]) for s in steps] == [
        ("lint", iso_time(T0 + 5 * SECOND), 95 * SECOND),
        ("compile", iso_time(T0 + 40 * SECOND), 60 * SECOND),
    ]
    assert run["start_time"] == T0 + 5 * SECOND and run["duration"] == 95 * SECOND


def test_stages_false_reads_the_first_and_last_stage_only(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("long", "team", ["a", "b", "c", "d"], [APP])
    g.run("long", forced("alice"), at=T0)
    env.write(stages=False)
    assert env.once() == 0
    run = env.runs()[("long", 1)]
    assert "job_run" not in run
    assert run["start_time"] == T0 + 5 * SECOND and run["duration"] == 4 * 65 * SECOND - 5 * SECOND
    details = [r.path for r in g.requests if r.path.count("/") == 7]  # /go/api/stages/p/1/s/1
    assert details == ["/go/api/stages/long/1/a/1", "/go/api/stages/long/1/d/1"]
