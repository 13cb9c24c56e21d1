"""The GoCD connector with `granularity = "stage"`: one SEI job per `<pipeline>/<stage>`,
`build_number` = pipeline counter * 1000 + stage counter. Exact payloads for the shapes the
issue names; a re-run is a run of its own; the stages in front of a gate go at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.gocd.standin import (
    FakeGoCD,
    StageConfig,
    changes,
    commit,
    dependency,
    forced,
    git,
    now_ms,
    timer,
)
from poller.standins.sei import FakeSei
from tests.connectors.gocd.env import DAY, HOUR, MINUTE, SECOND, Env, params
from tests.connectors.gocd.test_connector import ALICE, APP, LIB, RERUN_LOG, stage

T0 = (now_ms() - 2 * DAY) // SECOND * SECOND


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeGoCD() as gocd, FakeSei() as sei:
        e = Env(gocd, sei, tmp_path, tmp_path / "config.toml")
        e.write(granularity="stage")
        yield e


def stage_run(
    env: Env, pipeline: str, name: str, number: int, group: str, **fields: Any
) -> dict[str, Any]:
    job = f"{pipeline}/{name}"
    counter, sc = divmod(number, 1000)
    return {
        **env.common(job, number, f"{group}/{job}"),
        "pipeline": pipeline,
        "web_url": f"{env.gocd.url}pipelines/{pipeline}/{counter}/{name}/{sc}",
        **fields,
    }


def test_material_change_with_two_git_materials(env: Env) -> None:
    g = env.gocd
    g.add_pipeline(
        "shop",
        "team",
        [StageConfig("build", jobs=("compile", "unit")), StageConfig("test")],
        [APP, LIB],
        label="1.2.${COUNT}",
    )
    a, c = "a" * 40, "c" * 40
    cause = changes(
        (APP, [commit(a, ALICE, T0 - MINUTE)]), (LIB, [commit(c, ALICE, T0 - DAY)], False)
    )
    g.run("shop", cause, at=T0, results={"test": "Failed"})
    assert env.once() == 0
    scm = {
        "scm_commit_ids": [a, c],
        "repo_url": "https://github.com/acme/app.git",
        "branch_name": "main",
    }
    assert env.runs()[("shop/build", 1001)] == stage_run(
        env,
        "shop",
        "build",
        1001,
        "team",
        start_time=T0 + 5 * SECOND,
        duration=60 * SECOND,
        result="SUCCESS",
        user_id="SCMTrigger",
        trigger_chain=[{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        job_run_params=params(
            label="1.2.1",
            counter=1,
            stage_counter=1,
            result="Passed",
            approved_by="changes",
            trigger=f"modified by {ALICE}",
        ),
        job_run={
            "stages": [
                stage(
                    "shop/1/build/1",
                    "SUCCESS",
                    T0 + 5 * SECOND,
                    60 * SECOND,
                    [("compile", "SUCCESS"), ("unit", "SUCCESS")],
                )
            ]
        },
        **scm,
    )
    test = env.runs()[("shop/test", 1001)]
    assert test["result"] == "FAILURE"
    assert test["start_time"] == T0 + 70 * SECOND and test["duration"] == 60 * SECOND
    assert sorted(env.runs()) == [("shop/build", 1001), ("shop/test", 1001)]


def test_forced_and_timer_runs(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("helm", "ops", ["build"], [APP])
    g.run("helm", forced("admin"), at=T0)
    g.run("helm", timer(), at=T0 + HOUR)
    assert env.once() == 0
    first, second = env.runs()[("helm/build", 1001)], env.runs()[("helm/build", 2001)]
    assert (first["user_id"], first["trigger_chain"]) == (
        "admin",
        [{"id": "admin", "type": "UserIdCause"}],
    )
    assert (second["user_id"], second["trigger_chain"]) == (
        "TimerTrigger",
        [{"id": "timer", "type": "TimerTriggerCause"}],
    )


def test_stages_before_a_gate_go_at_once_the_gated_one_when_it_runs(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("deploy", "cd", ["build", StageConfig("prod", manual=True)], [APP])
    at = now_ms() // SECOND * SECOND - HOUR
    g.run("deploy", changes((APP, [commit("e" * 40, ALICE, at)])), at=at)
    assert env.once() == 0
    assert sorted(env.runs()) == [("deploy/build", 1001)]  # not held: it finished
    g.approve("deploy", 1, "prod", "bob", at=at + 30 * MINUTE)
    g.run_stage("deploy", 1, "prod", at=at + 30 * MINUTE, seconds=20)
    assert env.once() == 0
    assert env.runs()[("deploy/prod", 1001)] == stage_run(
        env,
        "deploy",
        "prod",
        1001,
        "cd",
        start_time=at + 30 * MINUTE + 5 * SECOND,
        duration=20 * SECOND,
        result="SUCCESS",
        user_id="bob",  # who approved it
        trigger_chain=[{"id": "bob", "type": "UserIdCause"}],
        job_run_params=params(
            label="1",
            counter=1,
            stage_counter=1,
            result="Passed",
            approved_by="bob",
            trigger=f"modified by {ALICE}",
        ),
        scm_commit_ids=["e" * 40],
        repo_url="https://github.com/acme/app.git",
        branch_name="main",
        job_run={
            "stages": [
                stage(
                    "deploy/1/prod/1",
                    "SUCCESS",
                    at + 30 * MINUTE + 5 * SECOND,
                    20 * SECOND,
                    [("prod", "SUCCESS")],
                )
            ]
        },
    )


def test_failed_stage_rerun_to_passed_is_a_run_of_its_own(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.add_pipeline("api", "team", ["build", "test"], [APP])
    g.run("api", forced("carol"), at=T0, results={"test": "Failed"})
    assert env.once() == 0
    rerun_at = now_ms() // SECOND * SECOND - 10 * MINUTE
    g.rerun("api", 1, "test", "alice", at=rerun_at)
    g.begin("api", 1, "test", at=rerun_at + 5 * SECOND)
    assert env.once() == 0
    assert env.sent("api/test") == [1001]  # the re-run is still running
    g.finish("api", 1, "test", "Passed", at=rerun_at + MINUTE)
    capsys.readouterr()
    assert env.once() == 0
    assert env.sent("api/test") == [1001, 1002]
    assert env.runs()[("api/test", 1001)]["result"] == "FAILURE"
    assert env.runs()[("api/test", 1002)] == stage_run(
        env,
        "api",
        "test",
        1002,
        "team",
        start_time=rerun_at + 5 * SECOND,
        duration=55 * SECOND,
        result="SUCCESS",
        user_id="alice",  # who ran it again
        trigger_chain=[{"id": "alice", "type": "UserIdCause"}],
        job_run_params=params(
            label="1",
            counter=1,
            stage_counter=2,
            result="Passed",
            approved_by="alice",
            trigger="Forced by carol",
        ),
        job_run={
            "stages": [
                stage(
                    "api/1/test/2",
                    "SUCCESS",
                    rerun_at + 5 * SECOND,
                    55 * SECOND,
                    [("test", "SUCCESS")],
                )
            ]
        },
    )
    assert RERUN_LOG not in capsys.readouterr().err  # nothing changed after send
    assert env.once() == 0 and len(env.sei.received) == 3


def test_a_run_replaced_before_the_first_poll_is_sent_too(env: Env) -> None:
    """Pipeline history shows only the latest run of each stage; stage history has both."""
    g = env.gocd
    g.add_pipeline("api", "team", ["test"], [APP])
    g.run("api", forced("carol"), at=T0, results={"test": "Failed"})
    g.rerun("api", 1, "test", "alice", at=T0 + HOUR)
    g.run_stage("api", 1, "test", "Passed", at=T0 + HOUR)
    assert env.once() == 0
    assert env.sent("api/test") == [1001, 1002]
    assert env.runs()[("api/test", 1001)]["result"] == "FAILURE"
    assert env.runs()[("api/test", 1002)]["result"] == "SUCCESS"


def test_rerun_of_failed_jobs_names_the_run_it_repeats(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("api", "team", [StageConfig("test", jobs=("unit", "e2e"))], [APP])
    g.run("api", forced("carol"), at=T0, results={"test": "Failed"})
    g.rerun("api", 1, "test", "alice", at=T0 + HOUR, failed_jobs=True)
    g.run_stage("api", 1, "test", "Passed", at=T0 + HOUR)
    assert env.once() == 0
    run = env.runs()[("api/test", 1002)]
    assert {"type": "StringParameterValue", "name": "gocd_rerun_of_counter", "value": "1"} in run[
        "job_run_params"
    ]
    assert [s["displayName"] for s in run["job_run"]["stages"][0]["steps"]] == ["unit", "e2e"]


def test_cancelled_stage_names_who_cancelled_it(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("svc", "team", ["build", "smoke-test"], [APP])
    g.run("svc", forced("alice"), at=T0, results={"smoke-test": "Cancelled"})
    assert env.once() == 0
    run = env.runs()[("svc/smoke-test", 1001)]
    assert run["result"] == "ABORTED"
    assert run["job_run_params"] == params(
        label="1",
        counter=1,
        stage_counter=1,
        result="Cancelled",
        approved_by="changes",
        cancelled_by="admin",
        trigger="Forced by alice",
    )
    assert run["user_id"] == "alice"  # an automatic stage: who started the instance


def test_upstream_stage_run_in_the_chain(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("build", "chain", ["compile"], [APP])
    g.add_pipeline("deploy-dev", "chain", ["deploy"], [git("build", "compile")])
    up = g.run("build", forced("alice"), at=T0)
    done = g.instance("build", up).latest("compile")
    assert done is not None
    g.run("deploy-dev", dependency("build", up, "compile", 1, at=done.last_ms), at=T0 + HOUR)
    assert env.once() == 0
    run = env.runs()[("deploy-dev/deploy", 1001)]
    assert run["user_id"] == "alice"
    assert run["trigger_chain"] == [
        {"id": "build/compile", "type": "UpstreamCause", "job_run_number": 1001}
    ]


def test_a_stage_counter_of_1000_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    g = env.gocd
    g.add_pipeline("flaky", "team", ["test"], [APP])
    g.run("flaky", forced("alice"), at=T0)
    run = g.instance("flaky", 1).latest("test")
    assert run is not None
    run.counter = 1000  # re-run 999 times
    g.run("flaky", forced("alice"), at=T0 + HOUR)
    assert env.once() == 0
    assert env.sent("flaky/test") == [2001]  # the rest moves on
    assert "stage ran 1000 times or more" in capsys.readouterr().err


def test_check_counts_stage_runs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    g = env.gocd
    g.add_pipeline("app", "team", ["build", "test"], [APP])
    for k in range(3):
        g.run("app", forced("alice"), at=T0 + k * HOUR)
    assert env.run("check") == 0
    out = capsys.readouterr().out
    assert "GoCD 23.1.0, 1 pipelines visible as sei-bot, 2 jobs" in out
    assert "6 builds" in out
