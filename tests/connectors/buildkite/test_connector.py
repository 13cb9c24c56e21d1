"""The Buildkite connector end to end: stand-in Buildkite → sei-poller once → stand-in SEI.

Exact payloads for a passed build started by a person, a webhook build, a scheduled one, a
canceled one, a blocked one, a retried job, a soft failure, a trigger step; then the cost of
an idle poll, the rate limit, deep paging and the default URL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.buildkite.standin import FakeBuildkite, iso, now_ms
from poller.config import load
from poller.payload import iso_time
from poller.standins.sei import FakeSei
from tests.conftest import wait_until, write_config
from tests.connectors.buildkite.env import DAY, HOUR, MINUTE, SECOND, Env, bk_params

T0 = now_ms() - 2 * DAY
SHA = "bf46f7db3aa051ea3cab5ec8ad293c86d56cddeb"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeBuildkite() as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _stage(job: dict, result: str, start: int, ms: int, **more: object) -> dict:
    return {
        "id": job["id"],
        "displayName": job["name"],
        "displayDescription": job["name"],
        "result": result,
        "state": "FINISHED",
        "durationInMillis": ms,
        "startTime": iso_time(start),
        "steps": [],
        **more,
    }


def _build_requests(env: Env) -> list:
    return [r for r in env.bk.requests if "/builds" in r.path]


# -- exact payloads ----------------------------------------------------------------------------


def test_passed_build_started_by_a_person(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("shop-api", "Shop API", repository="git@github.com:acme/shop-api.git")
    s = T0 + 5 * SECOND
    upload = bk.job(":pipeline:", started=s, finished=s + 3 * SECOND)
    wait = bk.job("", type="waiter")
    unit = bk.job("Unit", started=s + 4 * SECOND, finished=s + 64 * SECOND, group_key="tests")
    lint = bk.job("Lint", started=s + 4 * SECOND, finished=s + 34 * SECOND, group_key="tests")
    pack = bk.job(
        ":package: Package",
        started=s + 70 * SECOND,
        finished=s + 90 * SECOND,
        step_key="package",
        artifact_paths="dist/*",
    )
    b = bk.add_build(
        "shop-api",
        number=12,
        created=T0,
        started=s,
        finished=s + 95 * SECOND,
        creator=("Alice Doe", "alice@example.com"),
        env={"TARGET": "staging", "DEPLOY_TOKEN": "s3cret"},
        meta_data={"buildkite:git:commit": "commit bf46f7d", "release": "2024.7"},
        jobs=[upload, wait, unit, lint, pack],
        pull_request={"id": "42", "base": "main", "repository": "acme/shop-api"},
    )
    bk.add_artifact("shop-api", 12, pack["id"], "dist/shop-api.tar.gz", 2048)
    assert env.once() == 0
    art = bk.artifacts[("shop-api", 12)][0]
    assert env.runs()[("acme/shop-api", 12)] == {
        **env.common("shop-api", 12),
        "pipeline": "Shop API",
        "start_time": s,
        "duration": 95 * SECOND,
        "result": "SUCCESS",
        "user_id": "alice@example.com",
        "trigger_chain": [{"id": "alice@example.com", "type": "UserIdCause"}],
        "job_run_params": [
            {"type": "StringParameterValue", "name": "TARGET", "value": "staging"},
            {"type": "StringParameterValue", "name": "release", "value": "2024.7"},
            *bk_params(b, bk_pull_request="42", bk_pull_request_base="main"),
        ],
        "scm_commit_ids": [SHA],
        "repo_url": "git@github.com:acme/shop-api.git",
        "branch_name": "main",
        "job_run": {
            "stages": [
                _stage(upload, "SUCCESS", s, 3 * SECOND),
                {
                    "id": "tests",
                    "displayName": "tests",
                    "displayDescription": "tests",
                    "result": "SUCCESS",
                    "state": "FINISHED",
                    "durationInMillis": 60 * SECOND,
                    "startTime": iso_time(s + 4 * SECOND),
                    "steps": [
                        {
                            k: v
                            for k, v in _stage(j, "SUCCESS", s + 4 * SECOND, ms).items()
                            if k != "steps"
                        }
                        for j, ms in ((unit, 60 * SECOND), (lint, 30 * SECOND))
                    ],
                },
                _stage(pack, "SUCCESS", s + 70 * SECOND, 20 * SECOND),
            ]
        },
        "artifacts": [
            {
                "input": False,
                "output": True,
                "type": "file",
                "location": art["download_url"],
                "name": "shop-api.tar.gz",
                "qualifier": "12",
            }
        ],
    }
    # Every listing was bounded by time, and every request carried the token.
    listings = [r for r in env.bk.requests if r.path.endswith("/builds")]
    assert listings and all(
        "finished_from" in r.query or "created_from" in r.query for r in listings
    )
    assert all(r.status == 200 for r in env.bk.requests)


def test_webhook_and_scheduled_builds(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("app", "App", repository="https://github.com/acme/app")
    j1 = bk.job("Build", started=T0 + SECOND, finished=T0 + 11 * SECOND)
    hook = bk.add_build(
        "app",
        created=T0,
        started=T0 + SECOND,
        finished=T0 + 11 * SECOND,
        source="webhook",
        creator=None,
        jobs=[j1],
        branch="feature/x",
    )
    j2 = bk.job("Nightly", started=T0 + HOUR, finished=T0 + HOUR + 5 * SECOND)
    nightly = bk.add_build(
        "app",
        created=T0 + HOUR,
        started=T0 + HOUR,
        finished=T0 + HOUR + 5 * SECOND,
        source="schedule",
        creator=None,
        jobs=[j2],
    )
    assert env.once() == 0
    runs = env.runs()
    assert runs[("acme/app", 1)] == {
        **env.common("app", 1),
        "pipeline": "App",
        "start_time": T0 + SECOND,
        "duration": 10 * SECOND,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": bk_params(hook),
        "scm_commit_ids": [SHA],
        "repo_url": "https://github.com/acme/app.git",
        "branch_name": "feature/x",
        "job_run": {"stages": [_stage(j1, "SUCCESS", T0 + SECOND, 10 * SECOND)]},
    }
    assert runs[("acme/app", 2)]["user_id"] == "TimerTrigger"
    assert runs[("acme/app", 2)]["trigger_chain"] == [
        {"id": "unknown", "type": "TimerTriggerCause"}
    ]
    assert runs[("acme/app", 2)]["job_run_params"] == bk_params(nightly)


def test_canceled_soft_failed_skipped_and_running_builds(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("app")
    ok = bk.job("Build", started=T0 + SECOND, finished=T0 + 9 * SECOND)
    cut = bk.job("Deploy", state="canceled", started=T0 + 9 * SECOND, finished=T0 + 20 * SECOND)
    bk.add_build(
        "app",
        state="canceled",
        created=T0,
        started=T0 + SECOND,
        finished=T0 + 20 * SECOND,
        jobs=[ok, cut],
    )
    soft = bk.job(
        "Flaky", state="failed", soft_failed=True, started=T0 + HOUR, finished=T0 + HOUR + SECOND
    )
    bk.add_build(
        "app", created=T0 + HOUR, started=T0 + HOUR, finished=T0 + HOUR + SECOND, jobs=[soft]
    )
    bk.add_build("app", state="skipped", created=T0 + 2 * HOUR, finished=T0 + 2 * HOUR)
    bk.add_build("app", state="running", created=now_ms() - MINUTE, started=now_ms() - MINUTE)
    assert env.once() == 0
    runs = env.runs()
    assert runs[("acme/app", 1)]["result"] == "ABORTED"
    assert runs[("acme/app", 1)]["job_run"]["stages"] == [
        _stage(ok, "SUCCESS", T0 + SECOND, 8 * SECOND),
        _stage(cut, "ABORTED", T0 + 9 * SECOND, 11 * SECOND),
    ]
    assert runs[("acme/app", 2)]["result"] == "UNSTABLE"
    assert runs[("acme/app", 2)]["job_run"]["stages"][0]["result"] == "UNSTABLE"
    assert runs[("acme/app", 3)]["result"] == "NOT_BUILT"
    assert runs[("acme/app", 3)]["start_time"] == T0 + 2 * HOUR  # never started: created_at
    assert runs[("acme/app", 3)]["duration"] == 0
    assert env.sent() == [1, 2, 3]  # the running build waits
    now = now_ms()
    bk.update("app", 4, state="failed", finished=now)
    assert env.once() == 0
    assert env.runs()[("acme/app", 4)]["result"] == "FAILURE"


def test_blocked_build_waits_until_unblocked(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("deploy")
    now = now_ms()
    build = bk.job("Build", started=now - 10 * MINUTE, finished=now - 9 * MINUTE)
    gate = bk.job("Release?", type="manual", state="blocked")
    bk.add_build(
        "deploy",
        created=now - 10 * MINUTE,
        started=now - 10 * MINUTE,
        finished=now - 9 * MINUTE,
        blocked=True,
        jobs=[build, gate],
    )
    assert env.once() == 0
    assert env.sent() == []
    assert env.once() == 0
    assert env.sent() == []  # still blocked: nothing sent, however often we ask
    # A person unblocks it; the rest runs and the build finishes again.
    later = now_ms()
    gate["state"] = "unblocked"
    ship = bk.job("Ship", started=later - 2 * SECOND, finished=later)
    bk.builds["deploy"][1]["jobs"].append(ship)
    bk.update("deploy", 1, blocked=False, finished=later)
    assert env.once() == 0
    run = env.runs()[("acme/deploy", 1)]
    assert run["result"] == "SUCCESS"
    assert run["duration"] == later - (now - 10 * MINUTE)
    assert [s["displayName"] for s in run["job_run"]["stages"]] == ["Build", "Release?", "Ship"]
    assert "bk_blocked" not in {p["name"] for p in run["job_run_params"]}


def test_blocked_build_sent_after_max_pending_age(env: Env) -> None:
    env.write(max_pending_age="3s")
    bk = env.bk
    bk.add_pipeline("deploy")
    now = now_ms()
    build = bk.job("Build", started=now - 2 * SECOND, finished=now - SECOND)
    gate = bk.job("Release?", type="manual", state="blocked")
    bk.add_build(
        "deploy",
        created=now - 2 * SECOND,
        started=now - 2 * SECOND,
        finished=now - SECOND,
        blocked=True,
        jobs=[build, gate],
    )
    assert env.once() == 0
    assert env.sent() == []
    assert env.cursor()["blocked"] == {"deploy#1": now - SECOND}
    time.sleep(3.5)  # the Date header has whole seconds
    assert env.once() == 0  # another process: the cursor remembered the blocked build
    run = env.runs()[("acme/deploy", 1)]
    assert run["result"] == "SUCCESS"
    assert {"type": "StringParameterValue", "name": "bk_blocked", "value": "true"} in run[
        "job_run_params"
    ]
    assert [s["result"] for s in run["job_run"]["stages"]] == ["SUCCESS", "NOT_BUILT"]
    assert env.cursor()["blocked"] == {}


def test_retried_job_latest_attempt_and_change_after_send(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    bk = env.bk
    bk.add_pipeline("app")
    now = now_ms()
    test = bk.job("Test", state="failed", started=now - 5 * MINUTE, finished=now - 4 * MINUTE)
    bk.add_build(
        "app",
        state="failed",
        created=now - 5 * MINUTE,
        started=now - 5 * MINUTE,
        finished=now - 4 * MINUTE,
        jobs=[test],
    )
    assert env.once() == 0
    first = env.runs()[("acme/app", 1)]
    assert first["result"] == "FAILURE"
    # The failed job is retried and passes: the build finishes again, as passed.
    new = bk.retry_job(
        "app", 1, test["id"], state="passed", started=now - MINUTE, finished=now - 30 * SECOND
    )
    bk.update("app", 1, state="passed", finished=now - 30 * SECOND)
    bk.reset_requests()
    assert env.once() == 0
    assert env.runs()[("acme/app", 1)] == first  # SEI keeps the first write: not sent again
    assert len(bk.requests) == 1  # the org-wide query held the whole build
    assert "finished again after it was sent" in capsys.readouterr().err
    # A fresh build with a retried job reports the latest attempt only.
    t2 = bk.job("Test", state="failed", started=now - 3 * MINUTE, finished=now - 2 * MINUTE)
    bk.add_build(
        "app",
        created=now - 3 * MINUTE,
        started=now - 3 * MINUTE,
        finished=now - 20 * SECOND,
        jobs=[t2],
    )
    t2b = bk.retry_job(
        "app", 2, t2["id"], state="passed", started=now - MINUTE, finished=now - 20 * SECOND
    )
    assert env.once() == 0
    stages = env.runs()[("acme/app", 2)]["job_run"]["stages"]
    assert [(s["id"], s["result"]) for s in stages] == [(t2b["id"], "SUCCESS")]
    assert new["retry_source"] == {"job_id": test["id"], "retry_type": "manual"}


def test_trigger_step_followed_to_its_parent(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("app")
    bk.add_pipeline("deploy")
    now = now_ms()
    child_job = bk.job(
        "Deploy",
        started=now - 3 * MINUTE,
        finished=now - 2 * MINUTE,
        env={
            "BUILDKITE_TRIGGERED_FROM_BUILD_PIPELINE_SLUG": "app",
            "BUILDKITE_TRIGGERED_FROM_BUILD_NUMBER": "7",
            "BUILDKITE_TRIGGERED_FROM_BUILD_ID": "x",
        },
    )
    child = bk.add_build(
        "deploy",
        number=3,
        created=now - 3 * MINUTE,
        started=now - 3 * MINUTE,
        finished=now - 2 * MINUTE,
        source="trigger_job",
        creator=None,
        jobs=[child_job],
    )
    trig = bk.job(
        "Deploy to production",
        type="trigger",
        started=now - 3 * MINUTE,
        finished=now - 2 * MINUTE,
        triggered_build={"id": child["id"], "number": 3, "url": child["url"]},
    )
    bk.add_build(
        "app",
        number=7,
        created=now - 4 * MINUTE,
        started=now - 4 * MINUTE,
        finished=now - 2 * MINUTE,
        creator=("Bob", "bob@example.com"),
        jobs=[trig],
    )
    assert env.once() == 0
    run = env.runs()[("acme/deploy", 3)]
    assert run["user_id"] == "bob@example.com"
    assert run["trigger_chain"] == [
        {"id": "acme/app", "type": "UpstreamCause", "job_run_number": 7}
    ]
    assert env.runs()[("acme/app", 7)]["job_run"]["stages"][0]["result"] == "SUCCESS"


def test_rebuild_is_a_new_build(env: Env) -> None:
    bk = env.bk
    bk.add_pipeline("app")
    bk.add_build("app", state="failed", created=T0, started=T0, finished=T0 + MINUTE)
    b2 = bk.add_build(
        "app",
        created=T0 + HOUR,
        started=T0 + HOUR,
        finished=T0 + HOUR + MINUTE,
        source="api",
        rebuilt_from=1,
    )
    assert env.once() == 0
    assert env.sent() == [1, 2]
    assert env.runs()[("acme/app", 2)]["job_run_params"] == bk_params(b2, bk_rebuilt_from="1")


# -- cost, limits, paging ------------------------------------------------------------------------


def test_idle_poll_costs_one_request_for_the_organisation(env: Env) -> None:
    bk = env.bk
    for i in range(20):
        bk.add_pipeline(f"p{i:02d}")
        bk.add_build(f"p{i:02d}", created=T0, started=T0, finished=T0 + MINUTE)
    assert env.once() == 0
    assert len(env.sent()) == 20
    bk.reset_requests()
    assert env.once() == 0
    assert [(r.path, sorted(r.query)) for r in bk.requests] == [
        ("/v2/organizations/acme/builds", ["finished_from", "include_retried_jobs", "per_page"])
    ]
    # Something finishes in one pipeline: still the one query, which held the build.
    now = now_ms()
    bk.add_build("p07", created=now - MINUTE, started=now - MINUTE, finished=now)
    bk.reset_requests()
    assert env.once() == 0
    assert len(bk.requests) == 1
    assert env.sent("acme/p07") == [1, 2]


def test_rate_limit_slows_down_before_the_limit_and_honours_429(tmp_path: Path) -> None:
    with FakeBuildkite(limit=30, window=2.0) as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        for i in range(40):
            bk.add_pipeline(f"p{i:02d}")
            bk.add_build(f"p{i:02d}", created=T0, started=T0, finished=T0 + MINUTE)
        assert e.once() == 0
        assert len(e.sent()) == 40
        assert bk.throttled == 0  # ~43 requests against 30 per 2 s: paced, never refused
        # Another client used up the window: the 429 is waited out, then answered.
        now = now_ms()
        bk.add_build("p01", created=now - MINUTE, started=now - MINUTE, finished=now)
        while bk.take()[0]:
            pass
        assert e.once() == 0
        assert bk.throttled >= 2
        assert e.sent("acme/p01") == [1, 2]


def test_deep_paging_answers_400_and_the_window_is_halved(tmp_path: Path) -> None:
    with FakeBuildkite(max_page=1) as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        bk.add_pipeline("busy")
        for i in range(250):
            t = T0 + i * MINUTE
            bk.add_build("busy", created=t, started=t, finished=t + SECOND)
        assert e.once() == 0
        assert e.sent() == list(range(1, 251))
        assert any(r.status == 400 for r in bk.requests)


def test_a_wrong_token_fails_the_poll_and_says_so(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.bk.add_pipeline("app")
    env.bk.add_build("app", created=T0, started=T0, finished=T0 + SECOND)
    env.write(token="wrong")
    assert env.once() == 1
    assert env.sent() == []
    assert env.bk.requests and all(r.status == 401 for r in env.bk.requests)
    assert "Buildkite refused the token (HTTP 401)" in capsys.readouterr().err


def test_url_defaults_to_the_public_api(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        sei_url="http://127.0.0.1:9/",
        servers=[
            {
                "name": "bk",
                "type": "buildkite",
                "organization": "acme",
                "token": "t",
                "instance_guid": "7c2e9a41-3b5d-4e8f-9a6c-1d2b3c4e5f60",
                "instance_name": "Buildkite-1",
            }
        ],
    )
    spec = load(cfg).servers[0].spec
    assert spec.url == "https://api.buildkite.com/v2/"
    assert spec.settings.max_pending_age == 7 * 86400


def test_check_names_missing_scopes_and_polling_works_without_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeBuildkite(scopes=("read_builds", "read_pipelines")) as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        bk.add_pipeline("app")
        pack = bk.job("Package", started=T0, finished=T0 + SECOND, artifact_paths="dist/*")
        bk.add_build("app", created=T0, started=T0, finished=T0 + SECOND, jobs=[pack])
        bk.add_artifact("app", 1, pack["id"], "dist/app.tgz", 10)
        assert e.run("check") == 0
        out = capsys.readouterr().out
        assert "scopes read_builds,read_pipelines (missing read_artifacts: no artifacts;" in out
        assert e.once() == 0
        run = e.runs()[("acme/app", 1)]
        assert "artifacts" not in run and run["result"] == "SUCCESS"
        assert any(r.status == 403 and r.path.endswith("/artifacts") for r in bk.requests)


def test_backfill_since_bounded_by_time_and_resumed(env: Env) -> None:
    bk = env.bk
    now = now_ms()
    bk.add_pipeline("old", created=now - 100 * DAY)
    bk.add_pipeline("b", created=now - 100 * DAY)
    for days in (45, 20, 1):
        t = now - days * DAY
        bk.add_build("old", created=t, started=t, finished=t + MINUTE)
    t = now - 40 * DAY
    bk.add_build("b", created=t, started=t, finished=t + MINUTE)
    assert env.once() == 0  # backfill_since = 30d
    assert env.sent("acme/old") == [2, 3]
    assert env.sent("acme/b") == []
    bk.faults.fail(r"/pipelines/b/builds$", status=401, times=1)
    env.run("backfill", "--since", "60d")
    assert env.sent("acme/old") == [1, 2, 3]
    assert env.sent("acme/b") == []  # its scan failed: the next backfill resumes it
    bk.reset_requests()
    assert env.run("backfill", "--since", "60d") == 0
    assert env.sent("acme/b") == [1]
    assert not [r for r in bk.requests if "/pipelines/old/" in r.path]  # already covered
    windows = [r for r in bk.requests if r.path.endswith("/pipelines/b/builds")]
    assert len(windows) == 1  # one page holds the range: no more windows than needed
    assert windows[0].query["created_from"] < iso(now - 59 * DAY)


def test_daemon_sends_each_build_as_it_finishes_and_idles_on_one_request(env: Env) -> None:
    env.write(poll_interval=1)
    bk = env.bk
    for k in range(5):
        bk.add_pipeline(f"p{k}")
        for _ in range(4):
            bk.add_build(f"p{k}", created=T0, started=T0, finished=T0 + SECOND)
    with env.daemon():
        assert wait_until(lambda: len(env.sei.keys()) == 20), "backfill never arrived"
        now = now_ms()
        bk.add_build("p3", state="running", created=now, started=now)
        time.sleep(1.5)
        bk.update("p3", 5, state="failed", finished=now_ms())
        assert wait_until(lambda: len(env.sei.keys()) == 21), "the new build never arrived"
        bk.reset_requests()
        time.sleep(2.5)  # two idle polls or more
        polls = [r.path for r in bk.requests]
        assert polls and set(polls) == {"/v2/organizations/acme/builds"}
    assert env.runs()[("acme/p3", 5)]["result"] == "FAILURE"
    assert len(env.sei.keys()) == len(set(env.sei.keys())) == 21


def _drop_chain(env: Env) -> None:
    cursor = env.cursor()
    assert cursor is not None
    del cursor["chain"]
    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("UPDATE server_cursors SET cursor = ?", [json.dumps(cursor)])


def test_an_idle_pipeline_stays_inside_the_chain_of_org_wide_queries(env: Env) -> None:
    """Idle for several polls, a pipeline is still covered by the unbroken chain of
    org-wide answers: a build finishing in it costs no request of its own."""
    bk = env.bk
    for slug in ("a", "b"):
        bk.add_pipeline(slug)
        bk.add_build(slug, created=T0, started=T0, finished=T0 + MINUTE)
    assert env.once() == 0
    for _ in range(2):
        time.sleep(1.1)  # the server's clock (its Date header) has whole seconds
        now = now_ms()
        bk.add_build("b", created=now - MINUTE, started=now - MINUTE, finished=now)
        assert env.once() == 0
    now = now_ms()
    bk.add_build("a", created=now - MINUTE, started=now - MINUTE, finished=now)
    bk.reset_requests()
    assert env.once() == 0
    assert env.sent("acme/a") == [1, 2]
    assert [r.path for r in bk.requests] == ["/v2/organizations/acme/builds"]


def test_pipeline_behind_the_window_reads_its_own_cursor_and_a_failed_scan_recovers(
    env: Env,
) -> None:
    bk = env.bk
    for slug in ("a", "b"):
        bk.add_pipeline(slug)
        bk.add_build(slug, created=T0, started=T0, finished=T0 + MINUTE)
    assert env.once() == 0
    time.sleep(1.1)  # the server's clock (its Date header) has whole seconds
    now = now_ms()
    bk.add_build("b", created=now - MINUTE, started=now - MINUTE, finished=now)
    assert env.once() == 0  # b scanned (from the org-wide answer), a not
    # A cursor from 0.1.0 knows no chain of org-wide queries: a falls behind its window.
    _drop_chain(env)
    bk.reset_requests()
    time.sleep(1.1)
    now = now_ms()
    bk.add_build("a", created=now - MINUTE, started=now - MINUTE, finished=now)
    bk.faults.fail(r"/pipelines/a/builds$", status=401, times=1)
    assert env.once() != 0
    assert env.sent("acme/a") == [1]
    assert [r.path for r in bk.requests] == [
        "/v2/organizations/acme/builds",
        "/v2/organizations/acme/pipelines/a/builds",  # behind: its own cursor, refused
    ]
    bk.reset_requests()
    assert env.once() == 0  # the org-wide query saw build 2 already; the failed job is read
    assert env.sent("acme/a") == [1, 2]
    assert [(r.path, r.status) for r in bk.requests] == [
        ("/v2/organizations/acme/builds", 200),
        ("/v2/organizations/acme/pipelines/a/builds", 200),
    ]
    assert bk.requests[1].query["finished_from"] < iso(now - 4 * MINUTE)


# -- recorded answers ----------------------------------------------------------------------------

MSG = (
    "Merge pull request #2 from buildkite/add-next-steps-annotation\n\n"
    "Add a next step in an annotation"
)


def _recorded_stage(job_id: str, name: str, result: str, start: int, ms: int) -> dict:
    return _stage({"id": job_id, "name": name}, result, start, ms)


def test_recorded_org_builds_travel_as_recorded(tmp_path: Path) -> None:
    with FakeBuildkite(org="dean-test") as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write(backfill_since="all")
        for p in bk.recorded("buildkiterb/test_pipeline_list.extracted.json"):
            bk.add_recorded_pipeline(p)
        for b in bk.recorded("buildkiterb/test_build_list_org.extracted.json"):
            bk.add_recorded_build(b)
        assert e.once() == 0
        assert sorted(e.runs()) == [
            ("dean-test/starter", 1),
            ("dean-test/starter", 2),
            ("dean-test/starter-buildkite-pipeline", 1),
        ]
        start = 1692560291659
        assert e.runs()[("dean-test/starter", 2)] == {
            **e.common("starter", 2),
            "pipeline": "Starter",
            "start_time": start,
            "duration": 7356,
            "result": "SUCCESS",
            "user_id": "dean@deanpcmad.com",
            "trigger_chain": [{"id": "dean@deanpcmad.com", "type": "UserIdCause"}],
            "job_run_params": [
                {"type": "StringParameterValue", "name": "bk_result", "value": "passed"},
                {"type": "StringParameterValue", "name": "bk_source", "value": "ui"},
                {"type": "StringParameterValue", "name": "bk_message", "value": MSG},
                {
                    "type": "StringParameterValue",
                    "name": "bk_build_id",
                    "value": "018a1474-63cd-41f8-9b87-a66a72fe7034",
                },
            ],
            "scm_commit_ids": [SHA],
            "repo_url": "https://github.com/deanpcmad/starter.git",
            "branch_name": "main",
            "job_run": {
                "stages": [
                    _recorded_stage(
                        "018a1474-63d7-41e2-8559-c61e0db71c13", ":pipeline:", "SUCCESS", start, 2568
                    ),
                    _recorded_stage(
                        "018a1474-7c46-41e0-b1ce-27983dd02e2c",
                        ":construction_worker: Build",
                        "SUCCESS",
                        1692560294875,
                        908,
                    ),
                    _recorded_stage(
                        "018a1474-7c4a-4209-bd1c-d418ea65f9ab",
                        ":white_check_mark: Test",
                        "SUCCESS",
                        1692560296386,
                        872,
                    ),
                    _recorded_stage(
                        "018a1474-7c4e-42d3-81a1-6fe88c185213",
                        ":rocket: Deploy",
                        "SUCCESS",
                        1692560297837,
                        1113,
                    ),
                ]
            },
        }
        # No job declares artifact_paths: no artifact request was made.
        assert not [r for r in bk.requests if r.path.endswith("/artifacts")]


def test_recorded_failed_build_with_a_waiter(tmp_path: Path) -> None:
    with FakeBuildkite(org="orgSlug") as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write(backfill_since="all")
        bk.add_recorded_build(bk.recorded("sourcelab/getBuild.json"))
        assert e.once() == 0
        run = e.runs()[("orgSlug/pipeline-slug", 22)]
        assert run["result"] == "FAILURE"
        assert run["start_time"] == 1673256412321 and run["duration"] == 28036
        assert run["user_id"] == "first.last@email.com"
        assert "scm_commit_ids" not in run  # "commit-hash" (anonymised) is no SHA
        assert run["repo_url"] == "git@github.com:orgSlug/project.git"
        assert run["job_run"]["stages"] == [
            _recorded_stage("job-id", "Compile & Verify", "SUCCESS", 1673256412321, 8505),
            _recorded_stage("job-id-2", "Run tests", "SUCCESS", 1673256423147, 13504),
            _recorded_stage("job-id-4", "Annotate", "FAILURE", 1673256438031, 2241),
        ]  # the waiter is left out
        # "Run tests" declares artifact_paths: one request, an empty list, no artifacts sent.
        arts = [r for r in bk.requests if r.path.endswith("/artifacts")]
        assert [r.status for r in arts] == [200] and "artifacts" not in run


def test_trigger_child_without_read_job_env_and_include_globs(tmp_path: Path) -> None:
    scopes = ("read_builds", "read_pipelines", "read_artifacts")
    with FakeBuildkite(scopes=scopes) as bk, FakeSei() as sei:
        e = Env(bk, sei, tmp_path, tmp_path / "config.toml")
        e.write(include=["acme/deploy*"], exclude=["acme/deploy-sandbox"])
        for slug in ("app", "deploy", "deploy-sandbox"):
            bk.add_pipeline(slug)
        j = bk.job("Deploy", started=T0, finished=T0 + SECOND)
        bk.add_build(
            "deploy",
            created=T0,
            started=T0,
            finished=T0 + SECOND,
            source="trigger_job",
            creator=None,
            jobs=[j],
        )
        for slug in ("app", "deploy-sandbox"):
            bk.add_build(slug, created=T0, started=T0, finished=T0 + SECOND)
        assert e.once() == 0
        assert sorted(e.runs()) == [("acme/deploy", 1)]  # globs over <org>/<slug>
        run = e.runs()[("acme/deploy", 1)]
        assert run["user_id"] == "SYSTEM"
        assert run["trigger_chain"] == [{"id": "unknown", "type": "Buildkite:trigger_job"}]
        env_asks = [r for r in bk.requests if r.path.endswith("/env")]
        assert [r.status for r in env_asks] == [403]


def test_changed_after_send_reaches_its_metric(env: Env) -> None:
    """The core hands the connector its hook to sei_poller_changed_after_send_total."""
    from poller import wiring
    from poller.metrics import Metrics

    metrics = Metrics()
    server = wiring.config(str(env.config)).servers[0]
    connector = wiring.connector(server, metrics)
    try:
        connector.services.on_changed_after_send()
        connector.services.on_changed_after_send()
    finally:
        connector.close()
    sample = metrics.registry.get_sample_value(
        "sei_poller_changed_after_send_total", {"server": "bk-main"}
    )
    assert sample == 2
