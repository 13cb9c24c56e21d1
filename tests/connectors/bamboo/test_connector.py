"""The Bamboo connector end to end: stand-in Bamboo → sei-poller once/backfill → stand-in SEI.

Exact payloads for each shape issue 19 names (a person with variables, code changes in two
repositories, failed then restarted, stopped, a manual stage not run yet, a plan branch, a
child of another plan, a deployment of a plan result), then what the issue asks of the
listing: a server cap below the page asked for, results finishing out of order, branches
appearing and disappearing, an environment with many results, and what an idle poll costs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import connectors.bamboo.connector as bamboo
from connectors.bamboo.standin import FakeBamboo, now_ms
from poller import wiring
from poller.collect import Collector
from poller.metrics import Metrics
from poller.payload import execution_id, iso_time
from poller.standins.sei import FakeSei
from poller.state import State
from tests.connectors.bamboo.env import DAY, GUID, HOUR, MINUTE, SECOND, Env, own

T0 = (now_ms() - 2 * DAY) // SECOND * SECOND
ONE_STAGE: list[tuple[str, bool, list[str]]] = [("Build", False, ["Compile"])]


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeBamboo(context_path="/bamboo") as fb, FakeSei() as sei:
        e = Env(fb, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _stage(
    key: str, stage_id: int, name: str, jobs: list[tuple[str, str, str, int, int]], **kw: str
) -> dict:
    """A stage as SEI receives it; `jobs` as (job key, name, result, start, duration)."""
    steps = [
        {
            "id": f"{job}-{key.rsplit('-', 1)[1]}",
            "displayName": jname,
            "displayDescription": jname,
            "result": result,
            "state": "SKIPPED" if result == "NOT_BUILT" else "FINISHED",
            "durationInMillis": duration,
            **({"startTime": iso_time(start)} if start else {}),
        }
        for job, jname, result, start, duration in jobs
    ]
    starts = [start for _, _, _, start, _ in jobs if start]
    ends = [start + d for _, _, _, start, d in jobs if start]
    out = {
        "id": f"{key}/{stage_id}",
        "displayName": name,
        "displayDescription": name,
        "result": kw.get("result", "SUCCESS"),
        "state": kw.get("state", "FINISHED"),
        "durationInMillis": (max(ends) - min(starts)) if starts else 0,
        "steps": steps,
    }
    if starts:
        out["startTime"] = iso_time(min(starts))
    return out


def _metrics_poll(env: Env) -> tuple[Metrics, int]:
    """One poll through the core with the metrics on: what `run` does every interval."""
    cfg = wiring.config(str(env.config))
    server = cfg.servers[0]
    metrics = Metrics()
    connector = wiring.connector(server, metrics)
    state = State(cfg.state_path)
    try:
        result = Collector(server, connector, state).poll()
    finally:
        connector.close()
        state.close()
    return metrics, result.enqueued


def _changed_after_send(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "sei_poller_changed_after_send_total", {"server": "bamboo-main"}
    )


# -- exact payloads ----------------------------------------------------------------------------


def test_successful_build_started_by_a_user_with_variables(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("SHOP-API", "API", project_name="Shop", stages=ONE_STAGE, repositories=["shop-api"])
    n = fb.add_result(
        "SHOP-API",
        started=T0,
        completed=T0 + 95 * SECOND + 123,  # milliseconds, not Bamboo's rounded seconds
        trigger="user",
        user="alice",
        revisions={"shop-api": "a" * 40},
        variables={"target": "staging", "deploy.password": "hunter2", "vault_token": "t0k3n"},
        labels=["release", "hotfix"],
        artifacts=[{"name": "api.jar", "size": 52_000, "job": "JOB1"}],
    )
    env.write(repo_urls={"shop-api": "https://ci-bot:s3cret@bitbucket.example.com/scm/shop/api"})
    assert env.once() == 0
    stage_id = fb.result("SHOP-API", n).stages[0].id
    assert env.runs()[("SHOP-API", 1)] == {
        **env.common("SHOP-API", 1),
        "pipeline": "Shop - API",
        "start_time": T0,
        "duration": 95_123,
        "result": "SUCCESS",
        "user_id": "alice",
        "trigger_chain": [{"id": "alice", "type": "UserIdCause"}],
        "job_run_params": [
            {"type": "StringParameterValue", "name": "target", "value": "staging"},
            *own("Successful", "SHOP-API-1", "Manual run by alice", bamboo_labels="release,hotfix"),
        ],
        "scm_commit_ids": ["a" * 40],
        # through repo_urls, credentials stripped, normalised for SEI's parser
        "repo_url": "https://bitbucket.example.com/scm/shop/api.git",
        "branch_name": "main",  # the plan's default branch
        "job_run": {
            "stages": [
                _stage(
                    "SHOP-API-1",
                    stage_id,
                    "Build",
                    [("SHOP-API-JOB1", "Compile", "SUCCESS", T0, 95_123)],
                )
            ]
        },
        "artifacts": [
            {
                "input": False,
                "output": True,
                "type": "file",
                "location": f"{fb.url}browse/SHOP-API-1/artifact/JOB1/api.jar/",
                "name": "api.jar",
                "qualifier": "SHOP-API-1",
            }
        ],
    }
    # No secret anywhere: not in payloads, not in the state file.
    everything = json.dumps(env.sei.received) + (env.dir / "state.db").read_bytes().decode(
        "latin-1"
    )
    for secret in ("hunter2", "t0k3n", "s3cret", fb.token):
        assert secret not in everything
    # The history was read with every detail inside the listing: no request per result.
    assert not [r for r in fb.requests if r.path.endswith("/result/SHOP-API-1.json")]


def test_build_from_code_changes_in_two_repositories(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan(
        "CORE-LIB",
        "Library",
        project_name="Core",
        stages=[("Build", False, ["Compile", "Test"])],
        repositories=["core-lib", "shared-proto"],
        default_branch="develop",
    )
    proto = fb.repository("shared-proto")
    n = fb.add_result(
        "CORE-LIB",
        "Failed",
        started=T0,
        completed=T0 + 60 * SECOND,
        trigger="code",
        revisions={"core-lib": "c" * 40, "shared-proto": "d" * 40},
        changes=[
            {"id": "c" * 40, "author": "carol", "comment": "Fix the parser", "files": ["a.py"]},
            {"id": "e" * 40, "author": "dan", "comment": "Bump"},
        ],
        failed_jobs=["Test"],
    )
    # The second repository is mapped by its id: names may repeat across projects.
    env.write(
        repo_urls={
            "core-lib": "git@bitbucket.example.com:core/lib.git",
            str(proto.id): "https://bitbucket.example.com/scm/core/proto.git",
        }
    )
    assert env.once() == 0
    stage_id = fb.result("CORE-LIB", n).stages[0].id
    assert env.runs()[("CORE-LIB", 1)] == {
        **env.common("CORE-LIB", 1),
        "pipeline": "Core - Library",
        "start_time": T0,
        "duration": 60 * SECOND,
        "result": "FAILURE",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": own("Failed", "CORE-LIB-1", "Code changes detected"),
        # both repositories' revisions, then the changes (each commit once)
        "scm_commit_ids": ["c" * 40, "d" * 40, "e" * 40],
        "repo_url": "git@bitbucket.example.com:core/lib.git",  # the plan's first repository
        "branch_name": "develop",
        "job_run": {
            "stages": [
                _stage(
                    "CORE-LIB-1",
                    stage_id,
                    "Build",
                    [
                        ("CORE-LIB-JOB1", "Compile", "SUCCESS", T0, 60 * SECOND),
                        ("CORE-LIB-JOB2", "Test", "FAILURE", T0, 60 * SECOND),
                    ],
                    result="FAILURE",
                )
            ]
        },
    }


def test_failed_build_restarted_to_success_is_sent_once_and_counted(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    fb = env.bamboo
    fb.add_plan("APP-CI", "CI", project_name="App", stages=ONE_STAGE)
    fb.add_result("APP-CI", "Failed", started=T0, completed=T0 + 10 * SECOND, trigger="code")
    fb.add_result("APP-CI", "Failed", started=T0 + HOUR, completed=T0 + HOUR + 9 * SECOND)
    assert env.once() == 0
    first = {k: dict(v) for k, v in env.runs().items()}
    assert [first[("APP-CI", n)]["result"] for n in (1, 2)] == ["FAILURE", "FAILURE"]
    # #2 is restarted and seen running at a poll, then passes; #1 is restarted and passes
    # between two polls: both finished again under the numbers already sent.
    fb.restart("APP-CI", 2, at=now_ms() - 5 * SECOND)
    metrics, enqueued = _metrics_poll(env)
    assert enqueued == 0 and not _changed_after_send(metrics)
    fb.finish("APP-CI", 2, "Successful", at=now_ms())
    fb.restart("APP-CI", 1, at=now_ms() - 3 * SECOND)
    fb.finish("APP-CI", 1, "Successful", at=now_ms())
    metrics, enqueued = _metrics_poll(env)
    assert enqueued == 0
    assert _changed_after_send(metrics) == 2  # sei_poller_changed_after_send_total
    err = capsys.readouterr().err
    assert err.count("result finished again after it was sent") == 2
    assert env.once() == 0
    assert env.runs() == first  # SEI keeps the first write: nothing sent again
    assert len(env.sei.keys()) == 2
    metrics, _ = _metrics_poll(env)
    assert not _changed_after_send(metrics)  # counted once, not at every poll


def test_stopped_build_is_aborted_and_sent_only_once_stopped(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("OPS-JOB", "Nightly", project_name="Ops", stages=ONE_STAGE)
    assert env.once() == 0
    started = now_ms() - 30 * SECOND
    n = fb.trigger("OPS-JOB", trigger="user", user="erin", at=started)
    assert env.once() == 0
    assert env.sent() == []  # running
    stopped = now_ms()
    fb.stop_result("OPS-JOB", n, at=stopped)
    assert env.once() == 0
    stage_id = fb.result("OPS-JOB", n).stages[0].id
    assert env.runs()[("OPS-JOB", n)] == {
        **env.common("OPS-JOB", n),
        "pipeline": "Ops - Nightly",
        "start_time": started,
        "duration": stopped - started,
        "result": "ABORTED",
        "user_id": "erin",
        "trigger_chain": [{"id": "erin", "type": "UserIdCause"}],
        "job_run_params": own("Unknown", f"OPS-JOB-{n}", "Manual run by erin"),
        "branch_name": "main",
        "job_run": {
            "stages": [
                {
                    "id": f"OPS-JOB-{n}/{stage_id}",
                    "displayName": "Build",
                    "displayDescription": "Build",
                    "result": "ABORTED",
                    "state": "FINISHED",
                    "durationInMillis": stopped - started,
                    "startTime": iso_time(started),
                    "steps": [
                        {
                            "id": f"OPS-JOB-JOB1-{n}",
                            "displayName": "Compile",
                            "displayDescription": "Compile",
                            "result": "ABORTED",
                            "state": "FINISHED",
                            "durationInMillis": stopped - started,
                            "startTime": iso_time(started),
                        }
                    ],
                }
            ]
        },
    }


def test_manual_stage_not_run_is_held_then_sent_after_max_pending_age(env: Env) -> None:
    env.write(max_pending_age="3s")
    fb = env.bamboo
    fb.add_plan(
        "REL-APP",
        "Release",
        project_name="Rel",
        stages=[("Build", False, ["Compile"]), ("Deploy", True, ["Ship"])],
    )
    done = now_ms() - SECOND
    n = fb.add_result("REL-APP", started=done - 20 * SECOND, completed=done, trigger="code")
    assert fb.result("REL-APP", n).continuable
    assert env.once() == 0
    assert env.sent() == []  # finished, but waiting for a person
    assert env.job_cursor("REL-APP")["held"] == {"1": done}
    assert env.once() == 0
    assert env.sent() == []  # still waiting: nothing sent, however often we ask
    time.sleep(max(0.0, (done + 3 * SECOND - now_ms()) / 1000) + 0.1)
    assert env.once() == 0  # another process: the job's cursor remembered it
    stages = fb.result("REL-APP", n).stages
    assert env.runs()[("REL-APP", 1)] == {
        **env.common("REL-APP", 1),
        "pipeline": "Rel - Release",
        "start_time": done - 20 * SECOND,
        "duration": 20 * SECOND,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": own(
            "Successful", "REL-APP-1", "Code changes detected", bamboo_continuable="true"
        ),
        "branch_name": "main",
        "job_run": {
            "stages": [
                _stage(
                    "REL-APP-1",
                    stages[0].id,
                    "Build",
                    [("REL-APP-JOB1", "Compile", "SUCCESS", done - 20 * SECOND, 20 * SECOND)],
                ),
                # the stage nobody ran goes as it stands
                _stage(
                    "REL-APP-1",
                    stages[1].id,
                    "Deploy",
                    [("REL-APP-JOB2", "Ship", "NOT_BUILT", 0, 0)],
                    result="NOT_BUILT",
                    state="SKIPPED",
                ),
            ]
        },
    }
    assert env.job_cursor("REL-APP")["held"] == {}
    # Someone runs the stage after all: the result finishes again, counted, not resent.
    fb.continue_stage("REL-APP", n, user="frank")
    fb.finish("REL-APP", n)
    metrics, enqueued = _metrics_poll(env)
    assert enqueued == 0 and _changed_after_send(metrics) == 1


def test_held_result_is_sent_once_its_manual_stage_ran(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan(
        "REL-WEB",
        "Web",
        project_name="Rel",
        stages=[("Build", False, ["Compile"]), ("Deploy", True, ["Ship"])],
    )
    n = fb.add_result("REL-WEB", started=now_ms() - MINUTE, completed=now_ms(), trigger="code")
    assert env.once() == 0
    assert env.sent() == []
    fb.continue_stage("REL-WEB", n, user="frank")
    assert env.once() == 0
    assert env.sent() == []  # the manual stage runs: still not finished
    fb.finish("REL-WEB", n)
    assert env.once() == 0
    run = env.runs()[("REL-WEB", 1)]
    assert run["result"] == "SUCCESS"
    assert run["user_id"] == "frank"  # the person who ran the stage, as Bamboo now says
    assert [(s["displayName"], s["result"]) for s in run["job_run"]["stages"]] == [
        ("Build", "SUCCESS"),
        ("Deploy", "SUCCESS"),
    ]
    assert "bamboo_continuable" not in {p["name"] for p in run["job_run_params"]}


def test_plan_branch_build_is_a_job_of_its_own(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("SHOP-WEB", "Web", project_name="Shop", stages=ONE_STAGE, repositories=["web"])
    fb.add_result("SHOP-WEB", started=T0, completed=T0 + SECOND, trigger="code")
    branch = fb.add_branch("SHOP-WEB", "feature/login")
    assert branch == "SHOP-WEB1"
    fb.add_result(
        branch,
        started=T0 + HOUR,
        completed=T0 + HOUR + 30 * SECOND,
        trigger="code",
        revisions={"web": "f" * 40},
    )
    env.write(repo_urls={"web": "https://bitbucket.example.com/scm/shop/web.git"})
    assert env.once() == 0
    # Both numbered 1: the branch is a job of its own, or SEI would keep only one of them.
    assert sorted(env.runs()) == [("SHOP-WEB", 1), ("SHOP-WEB/feature-login", 1)]
    stage_id = fb.result(branch, 1).stages[0].id
    assert env.runs()[("SHOP-WEB/feature-login", 1)] == {
        **env.common("SHOP-WEB/feature-login", 1, "SHOP-WEB1-1"),
        "pipeline": "Shop - Web",  # the plan's, shared by its branches
        "start_time": T0 + HOUR,
        "duration": 30 * SECOND,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
        "job_run_params": own(
            "Successful", "SHOP-WEB1-1", "Code changes detected", bamboo_branch_plan="SHOP-WEB1"
        ),
        "scm_commit_ids": ["f" * 40],
        "repo_url": "https://bitbucket.example.com/scm/shop/web.git",
        "branch_name": "feature-login",
        "job_run": {
            "stages": [
                _stage(
                    "SHOP-WEB1-1",
                    stage_id,
                    "Build",
                    [("SHOP-WEB1-JOB1", "Compile", "SUCCESS", T0 + HOUR, 30 * SECOND)],
                )
            ]
        },
    }
    # A branch plan's branch is its own: no default-branch lookup for it.
    assert [r.path for r in fb.requests if "/search/jobs/" in r.path] == [
        "/bamboo/rest/api/latest/search/jobs/SHOP-WEB.json"
    ]


def test_child_build_of_another_plan_follows_the_chain_to_its_head(env: Env) -> None:
    fb = env.bamboo
    for key, name in (("PIPE-BUILD", "Build"), ("PIPE-TEST", "Test"), ("PIPE-PERF", "Perf")):
        fb.add_plan(key, name, project_name="Pipe", stages=ONE_STAGE)
    fb.add_result("PIPE-BUILD", started=T0, completed=T0 + MINUTE, trigger="user", user="grace")
    fb.add_result(
        "PIPE-TEST",
        started=T0 + MINUTE,
        completed=T0 + 2 * MINUTE,
        trigger="child",
        parent="PIPE-BUILD-1",
    )
    n = fb.add_result(
        "PIPE-PERF",
        "Failed",
        started=T0 + 2 * MINUTE,
        completed=T0 + 5 * MINUTE,
        trigger="child",
        parent="PIPE-TEST-1",
    )
    assert env.once() == 0
    stage_id = fb.result("PIPE-PERF", n).stages[0].id
    assert env.runs()[("PIPE-PERF", 1)] == {
        **env.common("PIPE-PERF", 1),
        "pipeline": "Pipe - Perf",
        "start_time": T0 + 2 * MINUTE,
        "duration": 3 * MINUTE,
        "result": "FAILURE",
        "user_id": "grace",  # the chain's head was started by grace
        "trigger_chain": [{"id": "PIPE-TEST", "type": "UpstreamCause", "job_run_number": 1}],
        "job_run_params": own("Failed", "PIPE-PERF-1", "Child of PIPE-TEST-1"),
        "branch_name": "main",
        "job_run": {
            "stages": [
                _stage(
                    "PIPE-PERF-1",
                    stage_id,
                    "Build",
                    [("PIPE-PERF-JOB1", "Compile", "FAILURE", T0 + 2 * MINUTE, 3 * MINUTE)],
                    result="FAILURE",
                )
            ]
        },
    }
    assert env.runs()[("PIPE-TEST", 1)]["user_id"] == "grace"
    # each parent read once, however many children name it
    parents = [r.path for r in fb.requests if r.path.endswith(("BUILD-1.json", "TEST-1.json"))]
    assert sorted(parents) == [
        "/bamboo/rest/api/latest/result/PIPE-BUILD-1.json",
        "/bamboo/rest/api/latest/result/PIPE-TEST-1.json",
    ]


def test_deployment_carries_the_commits_and_repository_of_its_plan_result(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("SHOP-API", "API", project_name="Shop", stages=ONE_STAGE, repositories=["api"])
    built = fb.add_result(
        "SHOP-API",
        started=T0,
        completed=T0 + MINUTE,
        trigger="code",
        revisions={"api": "1" * 40},
        changes=[{"id": "2" * 40, "author": "heidi"}, {"id": "1" * 40, "author": "heidi"}],
        artifacts=[{"name": "api.jar", "job": "JOB1"}],
    )
    shop = fb.add_deployment_project("Shop API", "SHOP-API", ["staging", "production"])
    release = fb.create_version(shop, "release-7", [("SHOP-API", built)], artifact="api.jar")
    staging = shop.environments[0]
    d = fb.add_deployment(
        staging,
        release,
        started=T0 + 2 * MINUTE,
        finished=T0 + 2 * MINUTE + 42_500,
        child_of=f"SHOP-API-{built}",
    )
    manual = fb.add_deployment(
        shop.environments[1], release, "FAILED", started=T0 + HOUR, finished=T0 + HOUR + 5_000,
        user="ivan",
    )  # fmt: skip
    env.write(repo_urls={"api": "https://bitbucket.example.com/scm/shop/api.git"})
    assert env.once() == 0
    job = "deploy/Shop API/staging"
    assert env.runs()[(job, d)] == {
        "pipeline": "Shop API",
        "job_full_name": job,
        "qualified_name": job,
        "instance_name": "Bamboo-1",
        "instance_guid": GUID,
        "instance_url": fb.url,
        "build_number": d,
        "execution_id": execution_id(GUID, job, d),
        "web_url": f"{fb.url}deploy/viewDeploymentResult.action?deploymentResultId={d}",
        "ci": False,
        "cd": True,
        "start_time": T0 + 2 * MINUTE,
        "duration": 42_500,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",  # its plan result's head: a code change
        "trigger_chain": [{"id": "SHOP-API", "type": "UpstreamCause", "job_run_number": 1}],
        "job_run_params": [
            {"type": "StringParameterValue", "name": "bamboo_deployment_state", "value": "SUCCESS"},
            {"type": "StringParameterValue", "name": "bamboo_version", "value": "release-7"},
            {
                "type": "StringParameterValue",
                "name": "bamboo_result_key",
                "value": f"{shop.id}-{staging.id}-{d}",
            },
            {
                "type": "StringParameterValue",
                "name": "bamboo_reason",
                "value": "Child of SHOP-API-1",
            },
        ],
        "scm_commit_ids": ["1" * 40, "2" * 40],
        "repo_url": "https://bitbucket.example.com/scm/shop/api.git",
        "branch_name": "main",
        "artifacts": [
            {
                "input": True,
                "output": False,
                "type": "file",
                "location": "",
                "name": "api.jar",
                "qualifier": "SHOP-API-1",
            }
        ],
    }
    prod = env.runs()[("deploy/Shop API/production", manual)]
    assert prod["result"] == "FAILURE"
    assert prod["user_id"] == "ivan"
    assert prod["trigger_chain"] == [
        {"id": "ivan", "type": "UserIdCause"},
        {"id": "SHOP-API", "type": "UpstreamCause", "job_run_number": 1},
    ]
    # The plan build's output artifact is the deployment's input: SEI links the two.
    (out,) = env.runs()[("SHOP-API", 1)]["artifacts"]
    assert (out["name"], out["qualifier"], out["output"]) == ("api.jar", "SHOP-API-1", True)


# -- paging, ordering, branches ------------------------------------------------------------


def test_history_is_read_whole_under_a_server_cap_below_the_page_asked(tmp_path: Path) -> None:
    with FakeBamboo(max_page=10) as fb, FakeSei() as sei:
        env = Env(fb, sei, tmp_path, tmp_path / "config.toml")
        env.write()
        fb.add_plan("BIG-ONE", "One", stages=ONE_STAGE)
        for k in range(57):
            fb.add_result("BIG-ONE", started=T0 + k * MINUTE, completed=T0 + k * MINUTE + SECOND)
        assert env.once() == 0
        assert env.sent("BIG-ONE") == list(range(1, 58))
        pages = [r for r in fb.requests if r.path.endswith("/result/BIG-ONE.json")]
        assert [r.query["max-result"] for r in pages] == ["100"] + ["10"] * 5
        assert [r.query["start-index"] for r in pages] == [str(k) for k in range(0, 60, 10)]
        assert all("max-results" not in r.query for r in fb.requests)  # the singular spelling


def test_results_finishing_out_of_order(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("SLOW-JOB", "Slow", stages=ONE_STAGE)
    assert env.once() == 0
    older = fb.trigger("SLOW-JOB", at=now_ms() - 30 * SECOND)
    newer = fb.trigger("SLOW-JOB", at=now_ms() - 20 * SECOND)
    fb.finish("SLOW-JOB", newer)
    assert env.once() == 0
    assert env.sent() == [newer]
    assert env.job_cursor("SLOW-JOB")["open"] == [older]
    assert env.once() == 0
    assert env.sent() == [newer]  # still running: nothing new
    fb.finish("SLOW-JOB", older, "Failed")
    assert env.once() == 0
    assert env.sent() == [older, newer]
    assert env.runs()[("SLOW-JOB", older)]["result"] == "FAILURE"
    assert len(env.sei.keys()) == 2  # each exactly once


def test_a_running_result_many_results_down_is_still_watched(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("LONG-RUN", "Long", stages=ONE_STAGE)
    long = fb.trigger("LONG-RUN", at=now_ms() - HOUR)
    assert env.once() == 0
    for _ in range(40):  # 40 results start and finish after it: it is far down the list
        fb.add_result("LONG-RUN", started=now_ms() - MINUTE, completed=now_ms())
    assert env.once() == 0
    assert len(env.sent()) == 40
    fb.finish("LONG-RUN", long)
    fb.reset_requests()
    assert env.once() == 0
    assert long in env.sent()
    listings = [r for r in fb.requests if r.path.endswith("/result/LONG-RUN.json")]
    assert len(listings) == 2  # 25 (the cap) and then the rest down to it


def test_plan_branches_appear_and_disappear(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fb = env.bamboo
    fb.add_plan("SHOP-APP", "App", stages=ONE_STAGE)
    fb.add_result("SHOP-APP", started=T0, completed=T0 + SECOND)
    assert env.once() == 0
    first = fb.add_branch("SHOP-APP", "feature/a")
    fb.add_result(first, started=now_ms() - MINUTE, completed=now_ms())
    assert env.once() == 0
    # Plans and branches are listed again only every 15 minutes: the new branch waits.
    assert ("SHOP-APP/feature-a", 1) not in env.runs()
    monkeypatch.setattr(bamboo, "DISCOVER_EVERY", 0)
    assert env.once() == 0
    assert ("SHOP-APP/feature-a", 1) in env.runs()  # found, and its history backfilled
    second = fb.add_branch("SHOP-APP", "feature/b")
    fb.add_result(second, started=now_ms() - MINUTE, completed=now_ms())
    fb.add_result(first, started=now_ms() - MINUTE, completed=now_ms())
    fb.delete_plan(first)  # its VCS branch was deleted: Bamboo removes the branch plan
    monkeypatch.setattr(bamboo, "DISCOVER_EVERY", 900_000)
    assert env.once() == 0  # the vanished branch is no failure
    assert ("SHOP-APP/feature-a", 2) not in env.runs()  # gone with its branch
    monkeypatch.setattr(bamboo, "DISCOVER_EVERY", 0)
    assert env.once() == 0
    assert ("SHOP-APP/feature-b", 1) in env.runs()
    cursor = env.cursor()
    assert cursor is not None
    assert sorted(row[0] for row in cursor["jobs"]) == ["SHOP-APP", "SHOP-APP/feature-b"]


def test_environment_with_many_results_and_deployments_finishing_out_of_order(
    tmp_path: Path,
) -> None:
    with FakeBamboo(max_page=20) as fb, FakeSei() as sei:
        env = Env(fb, sei, tmp_path, tmp_path / "config.toml")
        env.write()
        fb.add_plan("SVC-API", "API", stages=ONE_STAGE)
        n = fb.add_result("SVC-API", started=T0, completed=T0 + SECOND)
        proj = fb.add_deployment_project("Svc", "SVC-API", ["prod"])
        version = fb.create_version(proj, "v1", [("SVC-API", n)])
        prod = proj.environments[0]
        ids = [
            fb.add_deployment(prod, version, started=T0 + k * MINUTE, finished=T0 + k * MINUTE + 1)
            for k in range(230)
        ]
        assert env.once() == 0
        assert env.sent("deploy/Svc/prod") == ids
        pages = [r for r in fb.requests if "/environment/" in r.path]
        assert len(pages) == 13  # 230 results at 20 an answer, then an empty page
        slow = fb.deploy(prod, version, at=now_ms() - 20 * SECOND)
        fast = fb.deploy(prod, version, at=now_ms() - 10 * SECOND)
        fb.finish_deploy(fast)
        assert env.once() == 0
        assert fast in env.sent() and slow not in env.sent()
        fb.finish_deploy(slow, "FAILED")
        fb.reset_requests()
        assert env.once() == 0
        assert env.runs()[("deploy/Svc/prod", slow)]["result"] == "FAILURE"
        assert len([r for r in fb.requests if "/environment/" in r.path]) == 1


def test_idle_poll_costs_one_request_per_plan_branch_and_environment(env: Env) -> None:
    fb = env.bamboo
    for p in range(6):
        key = f"IDLE-P{p}"
        fb.add_plan(key, f"P{p}", stages=ONE_STAGE)
        for k in range(30):
            fb.add_result(key, started=T0 + k * MINUTE, completed=T0 + k * MINUTE + SECOND)
    branch = fb.add_branch("IDLE-P0", "feature/x")
    fb.add_result(branch, started=T0, completed=T0 + SECOND)
    proj = fb.add_deployment_project("Idle", "IDLE-P0", ["dev", "prod"])
    version = fb.create_version(proj, "v1", [("IDLE-P0", 1)])
    for e in proj.environments:
        fb.add_deployment(e, version, started=T0, finished=T0 + SECOND)
    fb.trigger("IDLE-P1")  # running, and a running one is watched
    assert env.once() == 0
    fb.reset_requests()
    assert env.once() == 0
    paths = sorted(r.path.rsplit("/latest/", 1)[1] for r in fb.requests)
    assert paths == sorted(
        [f"result/IDLE-P{p}.json" for p in range(6)]
        + ["result/IDLE-P01.json"]
        + [f"deploy/environment/{e.id}/results.json" for e in proj.environments]
    )  # 9 jobs, 9 requests; no discovery, no details
    assert all(
        r.query.get("includeAllStates") == "true" for r in fb.requests if "/result/" in r.path
    )
    # A live poll: one new result costs its listing and its details.
    fb.add_result("IDLE-P3", started=now_ms() - MINUTE, completed=now_ms())
    fb.reset_requests()
    assert env.once() == 0
    assert len(fb.requests) == 10
    assert [r.path for r in fb.requests if r.path.endswith("-31.json")] == [
        "/bamboo/rest/api/latest/result/IDLE-P3-31.json"
    ]


# -- config, check, backfill, explain, failures ----------------------------------------------


def test_bad_config_is_one_line_and_exit_2(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(token=None)
    assert env.run("check") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "token" in err[0] and "username" in err[0]
    env.write(max_pending_age="soon")
    assert env.run("check") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_pending_age" in err[0] and "not a duration" in err[0]
    env.write(deployment=True)  # a typo
    assert env.run("check") == 2
    assert "deployments" in capsys.readouterr().err


def test_basic_auth_and_password_file(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fb = env.bamboo
    fb.add_plan("AUTH-P", "P", stages=ONE_STAGE)
    fb.add_result("AUTH-P", started=T0, completed=T0 + SECOND)
    secret = tmp_path / "bamboo.password"
    secret.write_text(fb.password + "\n")
    secret.chmod(0o600)
    env.write(token=None, username=fb.username, password_file=str(secret))
    assert env.once() == 0
    assert env.sent() == [1]
    env.write(token="wrong-token-4711", name="other")
    capsys.readouterr()
    assert env.once() == 1  # refused: the run fails, one line says why
    err = capsys.readouterr().err
    assert "Bamboo refused the credentials (HTTP 401)" in err
    assert "wrong-token-4711" not in err and fb.password not in err


def test_check_reports_version_user_counts_and_unmapped_repositories(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    fb = env.bamboo
    fb.add_plan("CHK-A", "A", stages=ONE_STAGE, repositories=["mapped", "unmapped"])
    fb.add_plan("CHK-B", "B", stages=ONE_STAGE, repositories=["other"])
    fb.add_result("CHK-A", started=T0, completed=T0 + 1, revisions={"mapped": "1", "unmapped": "2"})
    b = fb.add_branch("CHK-B", "fix/x")
    fb.add_result(b, started=T0, completed=T0 + 1, revisions={"other": "3"})
    fb.add_deployment_project("Chk", "CHK-A", ["dev", "qa", "prod"])
    env.write(repo_urls={"mapped": "https://git.example.com/a.git"})
    assert env.run("check") == 0
    out = capsys.readouterr().out
    unmapped, other = fb.repository("unmapped"), fb.repository("other")
    assert (
        "Bamboo 9.2.1 (build 90201): 2 plans, 1 branch plan, 3 deployment environments as sei-bot;"
        f" repositories in recent results that repo_urls does not map: other (id {other.id}),"
        f" unmapped (id {unmapped.id}), 6 jobs (bamboo ← " in out
    )


def test_deployments_not_visible_leave_the_plans_polled(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    fb = env.bamboo
    fb.add_plan("VIS-P", "P", stages=ONE_STAGE)
    fb.add_result("VIS-P", started=T0, completed=T0 + SECOND)
    fb.add_deployment_project("Hidden", "VIS-P", ["prod"])
    fb.faults.fail(r"/deploy/project/all", status=403)
    assert env.once() == 0
    assert env.sent() == [1]
    assert "deployment projects cannot be listed" in capsys.readouterr().err
    assert env.run("check") == 0
    out = capsys.readouterr().out
    assert "0 deployment environments as sei-bot; deployment projects cannot be listed:" in out
    assert "HTTP 403" in out
    env.write(deployments=False, name="plans-only")
    fb.reset_requests()
    assert env.once() == 0
    assert not [r for r in fb.requests if "/deploy/" in r.path]


def test_backfill_since_and_resumable_backfill(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("HIST-P", "P", stages=ONE_STAGE)
    old = now_ms() - 40 * DAY
    for k in range(5):
        fb.add_result("HIST-P", started=old + k * HOUR, completed=old + k * HOUR + SECOND)
    for k in range(3):
        fb.add_result("HIST-P", started=T0 + k * HOUR, completed=T0 + k * HOUR + SECOND)
    env.write(backfill_since="30d")
    assert env.once() == 0
    assert env.sent() == [6, 7, 8]  # the window
    since = time.strftime("%Y-%m-%d", time.gmtime((old - DAY) / 1000))
    assert env.run("backfill", "--since", since) == 0
    assert env.sent() == [1, 2, 3, 4, 5, 6, 7, 8]
    fb.reset_requests()
    assert env.run("backfill", "--since", since) == 0  # covered already: nothing read again
    assert not [
        r
        for r in fb.requests
        if "/result/HIST-P.json" in r.path and "vcsRevisions" in r.query.get("expand", "")
    ]
    assert len(env.sei.keys()) == 8


def test_explain_reads_one_result(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    fb = env.bamboo
    fb.add_plan("EXP-P", "P", stages=ONE_STAGE, repositories=["r"])
    fb.add_result("EXP-P", started=T0, completed=T0 + SECOND, revisions={"r": "a" * 40})
    fb.trigger("EXP-P")
    assert env.run("explain", "bamboo-main", "EXP-P", "1", "--json") == 1  # no repo_url
    answer = json.loads(capsys.readouterr().out)
    assert answer["payload"]["build_number"] == 1
    assert [f["code"] for f in answer["findings"]] == ["no-repo-url"]
    assert env.run("explain", "bamboo-main", "EXP-P", "2") == 1
    assert "running" in capsys.readouterr().out


def test_a_failing_parent_parks_the_child_until_it_answers(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("UP-A", "A", stages=ONE_STAGE)
    fb.add_plan("UP-B", "B", stages=ONE_STAGE)
    fb.add_result("UP-A", started=T0, completed=T0 + SECOND, trigger="user", user="judy")
    fb.add_result(
        "UP-B", started=T0 + MINUTE, completed=T0 + MINUTE + 1, trigger="child", parent="UP-A-1"
    )
    fb.faults.fail(r"/result/UP-A-1\.json$", status=500)
    assert env.once() == 1  # parked: its head cannot be read
    assert ("UP-B", 1) not in env.runs()
    assert ("UP-A", 1) in env.runs()
    fb.faults.clear()
    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("UPDATE problems SET retry_at = 0")
    assert env.once() == 0
    assert env.runs()[("UP-B", 1)]["user_id"] == "judy"


def test_a_failing_listing_is_retried_and_nothing_is_lost(env: Env) -> None:
    fb = env.bamboo
    fb.add_plan("FLAKY-P", "P", stages=ONE_STAGE)
    assert env.once() == 0
    for _ in range(3):
        fb.add_result("FLAKY-P", started=now_ms() - MINUTE, completed=now_ms())
    fb.faults.fail(r"/result/FLAKY-P-2\.json$", status=503)
    assert env.once() == 1
    fb.faults.clear()
    assert env.once() == 0
    assert env.sent() == [1, 2, 3]
    assert len(env.sei.keys()) == 3


def test_a_rule_refines_the_connectors_deployment_flag(env: Env, capsys: Any) -> None:
    """Deployment results are deployments by themselves; a payload rule may say an
    environment is not (`cd = false`) and mark failed production deployments as change
    failures; `explain` shows the connector's flag and the rules."""
    fb = env.bamboo
    fb.add_plan("SHOP-API", "API", project_name="Shop", stages=ONE_STAGE, repositories=["api"])
    built = fb.add_result("SHOP-API", started=T0, completed=T0 + MINUTE, trigger="code")
    shop = fb.add_deployment_project("Shop API", "SHOP-API", ["staging", "production"])
    release = fb.create_version(shop, "release-7", [("SHOP-API", built)])
    staged = fb.add_deployment(shop.environments[0], release, started=T0, finished=T0 + 5_000)
    failed = fb.add_deployment(
        shop.environments[1], release, "FAILED", started=T0 + HOUR, finished=T0 + HOUR + 5_000
    )
    env.write()
    with env.config.open("a") as f:
        f.write(
            '\n[[servers.rules]]\njobs = ["deploy/*/staging"]\ncd = false\n'
            '\n[[servers.rules]]\njobs = ["deploy/*/production"]\ncfr_status = "result"\n'
        )
    assert env.once() == 0
    runs = env.runs()
    staging = runs[("deploy/Shop API/staging", staged)]
    assert (staging["cd"], staging["ci"], "cfr_status" in staging) == (False, True, False)
    production = runs[("deploy/Shop API/production", failed)]
    assert (production["cd"], production["ci"], production["cfr_status"]) == (True, False, True)
    capsys.readouterr()
    env.run("explain", "bamboo-main", "deploy/Shop API/staging", str(staged))
    out = capsys.readouterr().out
    assert "the connector calls it a deployment; the rules below may say otherwise" in out
    assert '  rules[0] ["deploy/*/staging"]: cd = false' in out
