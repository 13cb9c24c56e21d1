"""The Jenkins connector end to end: stand-in Jenkins → sei-poller once → stand-in SEI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, GUID, Env

NOW = int(time.time() * 1000)
T0 = NOW - 2 * DAY
USER = "hudson.model.Cause$UserIdCause"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins(context_path="/jenkins") as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _common(env: Env, job: str, number: int, url_path: str) -> dict:
    return {
        "job_full_name": job,
        "qualified_name": job,
        "instance_name": "Jenkins-1",
        "instance_guid": GUID,
        "instance_url": env.jenkins.url,
        "build_number": number,
        "execution_id": execution_id(GUID, job, number),
        "web_url": f"{env.jenkins.url}{url_path}{number}/",
    }


def test_exact_payloads_for_each_shape(env: Env) -> None:
    j = env.jenkins
    j.add_folder("team")
    j.add_job("team/api", "freestyle")
    j.add_build(
        "team/api",
        1,
        result="UNSTABLE",
        timestamp=T0,
        duration=61_000,
        causes=[{"_class": USER, "userId": "alice", "userName": "Alice"}],
        parameters=[
            {"_class": "hudson.model.StringParameterValue", "name": "REF", "value": "main"},
            {"_class": "hudson.model.BooleanParameterValue", "name": "E2E", "value": True},
            {"_class": "hudson.model.PasswordParameterValue", "name": "TOKEN"},
            {"_class": "hudson.model.FileParameterValue", "name": "notes.md"},
        ],
        git={
            "sha": "a" * 40,
            "branch": "refs/remotes/origin/main",
            "remote": "https://ci-bot:ghp_secret@github.com/acme/api",
        },
        change_ids=["b" * 40, "a" * 40],
        artifacts=["build/libs/api.jar"],
    )
    j.add_job("team/deploy", "pipeline")
    stages = [
        {
            "id": "6",
            "name": "Build",
            "status": "SUCCESS",
            "startTimeMillis": T0 + 1000,
            "durationMillis": 5000,
            "stageFlowNodes": [
                {
                    "id": "7",
                    "name": "Shell Script",
                    "status": "SUCCESS",
                    "parameterDescription": "make",
                    "startTimeMillis": T0 + 1000,
                    "durationMillis": 4000,
                    "parentNodes": ["6"],
                }
            ],
        },
        {
            "id": "9",
            "name": "Deploy",
            "status": "FAILED",
            "startTimeMillis": T0 + 6000,
            "durationMillis": 2000,
            "stageFlowNodes": [
                {
                    "id": "10",
                    "name": "Print Message",
                    "status": "FAILED",
                    "startTimeMillis": T0 + 6000,
                    "durationMillis": 1000,
                    "parentNodes": ["9"],
                }
            ],
        },
        {
            "id": "12",
            "name": "Smoke",
            "status": "NOT_EXECUTED",
            "startTimeMillis": T0 + 8000,
            "durationMillis": 0,
            "stageFlowNodes": [],
        },
    ]
    j.add_build(
        "team/deploy",
        7,
        result="FAILURE",
        timestamp=T0 + 500,
        duration=9000,
        causes=[
            {
                "_class": "hudson.model.Cause$UpstreamCause",
                "upstreamProject": "team/api",
                "upstreamBuild": 1,
                "upstreamUrl": "job/team/job/api/",
            }
        ],
        git=[
            {
                "sha": "c" * 40,
                "branch": "refs/remotes/origin/main",
                "remote": "https://github.com/acme/shared-lib.git",
            },
            {
                "sha": "d" * 40,
                "branch": "refs/remotes/origin/release/2.0",
                "remote": "git@github.com:acme/deploy.git",
            },
        ],
        stages=stages,
    )
    j.add_folder("svc", "multibranch")
    j.add_job("svc/feature%2Fx", "pipeline")
    j.add_build(
        "svc/feature%2Fx",
        3,
        result="SUCCESS",
        timestamp=T0,
        duration=1000,
        causes=[{"_class": "jenkins.branch.BranchEventCause", "shortDescription": "Push event"}],
        git={"sha": "e" * 40, "branch": "feature/x", "remote": "git@github.com:acme/svc.git"},
        stages=[],
    )
    j.add_folder("Ünïcode team")
    j.add_job("Ünïcode team/nightly job", "freestyle")
    j.add_build(
        "Ünïcode team/nightly job",
        2,
        result="ABORTED",
        timestamp=T0,
        duration=5,
        causes=[{"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause"}],
    )

    assert env.once() == 0
    runs = env.runs()
    assert runs[("team/api", 1)] == {
        **_common(env, "team/api", 1, "job/team/job/api/"),
        "pipeline": "api",
        "start_time": T0,
        "duration": 61_000,
        "result": "UNSTABLE",
        "user_id": "alice",
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": "alice", "type": "UserIdCause"}],
        "job_run_params": [
            {"type": "StringParameterValue", "name": "REF", "value": "main"},
            {"type": "BooleanParameterValue", "name": "E2E", "value": True},
        ],
        "scm_commit_ids": ["a" * 40, "b" * 40],
        "repo_url": "https://github.com/acme/api.git",
        "branch_name": "main",
        "artifacts": [
            {
                "input": False,
                "output": True,
                "type": "file",
                "name": "api.jar",
                "qualifier": "1",
                "location": f"{env.jenkins.url}job/team/job/api/1/artifact/build/libs/api.jar",
            }
        ],
    }
    iso = "%Y-%m-%dT%H:%M:%S"
    start = time.strftime(iso, time.gmtime((T0 + 1000) / 1000)) + f".{(T0 + 1000) % 1000:03d}+0000"
    deploy = runs[("team/deploy", 7)]
    assert deploy == {
        **_common(env, "team/deploy", 7, "job/team/job/deploy/"),
        "pipeline": "deploy",
        "start_time": T0 + 500,
        "duration": 9000,
        "result": "FAILURE",
        "user_id": "alice",
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": "team/api", "type": "UpstreamCause", "job_run_number": 1}],
        "scm_commit_ids": ["d" * 40],
        "repo_url": "git@github.com:acme/deploy.git",
        "branch_name": "release/2.0",
        "job_run": deploy["job_run"],
    }
    s1, s2, s3 = deploy["job_run"]["stages"]
    assert s1 == {
        "id": "6",
        "displayName": "Build",
        "displayDescription": "Build",
        "result": "SUCCESS",
        "state": "FINISHED",
        "durationInMillis": 5000,
        "startTime": start,
        "steps": [
            {
                "id": "7",
                "displayName": "Shell Script",
                "displayDescription": "make",
                "result": "SUCCESS",
                "state": "FINISHED",
                "durationInMillis": 4000,
                "startTime": start,
            }
        ],
    }
    assert (s2["result"], s2["state"], s2["steps"][0]["displayDescription"]) == (
        "FAILURE",
        "FINISHED",
        "Print Message",
    )
    assert (s3["result"], s3["state"], s3["durationInMillis"], s3["steps"]) == (
        "NOT_BUILT",
        "SKIPPED",
        0,
        [],
    )
    assert runs[("svc/feature%2Fx", 3)] == {
        **_common(env, "svc/feature%2Fx", 3, "job/svc/job/feature%252Fx/"),
        "pipeline": "svc",
        "start_time": T0,
        "duration": 1000,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": "SCMTrigger", "type": "BranchEventCause"}],
        "scm_commit_ids": ["e" * 40],
        "repo_url": "git@github.com:acme/svc.git",
        "branch_name": "feature/x",
    }
    nightly = runs[("Ünïcode team/nightly job", 2)]
    assert (nightly["pipeline"], nightly["user_id"], nightly["result"]) == (
        "nightly job",
        "TimerTrigger",
        "ABORTED",
    )
    assert nightly["trigger_chain"] == [{"id": "unknown", "type": "TimerTriggerCause"}]
    assert len(runs) == 4
    # The git plugin's buildsByBranchName is never asked for: no `*` in any tree.
    trees = [r.query.get("tree", "") for r in env.jenkins.requests]
    assert any("actions[" in t for t in trees)
    assert not [t for t in trees if "*" in t or "buildsByBranchName" in t]


def test_idle_poll_costs_only_discovery(env: Env) -> None:
    j = env.jenkins
    for folder in ("a", "b", "c"):
        j.add_folder(folder)
        for k in range(5):
            for n in range(1, 4):
                j.add_build(f"{folder}/job{k}", n, timestamp=T0 + n, duration=10)
    j.add_folder("mb", "multibranch")
    j.add_build("mb/main", 1, timestamp=T0, duration=10)
    assert env.once() == 0
    assert len(env.runs()) == 46
    j.reset_requests()
    assert env.once() == 0
    paths = sorted(r.path for r in j.requests)
    # the whole tree (3 folders, a multibranch project, 16 jobs) in one answer, none per job
    assert paths == ["/jenkins/api/json"]
    j.add_build("b/job3", 4, timestamp=T0 + 9, duration=10)
    j.reset_requests()
    assert env.once() == 0
    assert len(j.requests) == 2  # discovery + one ranged page for the one changed job
    assert env.sent("b/job3") == [1, 2, 3, 4]


def test_build_finishing_out_of_order_is_sent_when_it_finishes(env: Env) -> None:
    j = env.jenkins
    j.add_build("race", 9, timestamp=T0, duration=10)
    j.add_build("race", 10, result=None, building=True, timestamp=T0 + 1)
    j.add_build("race", 11, timestamp=T0 + 2, duration=10)
    assert env.once() == 0
    assert env.sent("race") == [9, 11]
    assert env.watermark("race") == 9
    assert env.once() == 0  # still running: looked at again, not sent
    assert env.sent("race") == [9, 11]
    j.finish_build("race", 10, result="FAILURE", duration=500)
    assert env.once() == 0
    assert env.sent("race") == [9, 10, 11]
    assert env.runs()[("race", 10)]["result"] == "FAILURE"
    assert env.watermark("race") == 11
    assert len(env.sei.keys()) == 3  # each exactly once


def test_vanished_build_is_skipped_and_logged(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    j = env.jenkins
    j.add_build("gone", 1, timestamp=T0, duration=10)
    j.add_build("gone", 2, result=None, building=True, timestamp=T0 + 1)
    j.add_build("gone", 3, timestamp=T0 + 2, duration=10)
    assert env.once() == 0
    j.delete_build("gone", 2)
    j.add_build("gone", 4, timestamp=T0 + 3, duration=10)
    capsys.readouterr()
    assert env.once() == 0
    assert env.sent("gone") == [1, 3, 4]
    assert env.watermark("gone") == 4
    assert "vanished" in capsys.readouterr().err


def test_failing_job_keeps_its_watermark_while_others_proceed(env: Env) -> None:
    j = env.jenkins
    j.add_folder("f")
    for job in ("f/ok", "f/broken", "f/slow"):
        j.add_build(job, 1, timestamp=T0, duration=10)
    j.fail(r"/job/broken/api/json", status=500)
    j.delay(r"/job/slow/api/json", 4.0)  # beyond the 2 s timeout
    assert env.once() == 1
    assert env.sent("f/ok") == [1]
    assert env.watermark("f/broken") is None and env.watermark("f/slow") is None
    j.clear_faults()
    assert env.once() == 0
    assert env.sent("f/broken") == [1] and env.sent("f/slow") == [1]


def test_failing_folder_does_not_stop_the_rest(env: Env) -> None:
    j = env.jenkins
    j.add_folder("bad")
    j.add_build("bad/x", 1, timestamp=T0, duration=10)
    j.add_build("good", 1, timestamp=T0, duration=10)
    # The root's tree and then its own items alone: each retried 3 times, each fails.
    j.fail(r"^/jenkins/api/json$", status=503, times=8)
    assert env.once() == 1
    assert env.runs() == {}
    assert env.once() == 0
    assert env.sent("good") == [1] and env.sent("bad/x") == [1]


def test_recreated_job_is_noticed(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    j = env.jenkins
    for n in range(1, 6):
        j.add_build("phoenix", n, timestamp=T0 + n, duration=10)
    assert env.once() == 0
    j.delete_job("phoenix")
    j.add_build("phoenix", 1, result="FAILURE", timestamp=NOW - 1000, duration=10)
    capsys.readouterr()
    assert env.once() == 0
    assert "went backwards" in capsys.readouterr().err
    assert env.watermark("phoenix") == 1
    assert sorted(k[2] for k in env.sei.keys() if k[1] == "phoenix") == [1, 1, 2, 3, 4, 5]


def test_first_sight_backfills_only_the_window(env: Env) -> None:
    env.write(backfill_since="30d")
    j = env.jenkins
    j.add_build("old", 1, timestamp=NOW - 60 * DAY, duration=10)
    j.add_build("old", 2, timestamp=NOW - 40 * DAY, duration=10)
    j.add_build("old", 3, timestamp=NOW - 10 * DAY, duration=10)
    j.add_build("old", 4, timestamp=NOW - 1 * DAY, duration=10)
    assert env.once() == 0
    assert env.sent("old") == [3, 4]
    assert env.watermark("old") == 4
    # a time-bounded first read asks for a small page, not for 100 build records
    pages = [r.query["tree"] for r in j.requests if r.path.endswith("/job/old/api/json")]
    assert len(pages) == 1 and pages[0].endswith("{0,20}")


def test_include_exclude_and_cd_jobs(env: Env) -> None:
    env.write(include=["team/**"], exclude=["team/scratch*"], cd_jobs=["team/deploy*"])
    j = env.jenkins
    for job in ("team/api", "team/deploy-prod", "team/scratch-1", "other"):
        j.add_build(job, 1, timestamp=T0, duration=10)
    assert env.once() == 0
    runs = env.runs()
    assert set(runs) == {("team/api", 1), ("team/deploy-prod", 1)}
    assert (runs[("team/deploy-prod", 1)]["cd"], runs[("team/deploy-prod", 1)]["ci"]) == (
        True,
        False,
    )


def test_many_builds_are_paged_past_the_hundred_builds_holds(env: Env) -> None:
    j = env.jenkins
    for n in range(1, 251):
        j.add_build("long", n, timestamp=T0 + n, duration=10)
    assert env.once() == 0
    assert env.sent("long") == list(range(1, 251))
    queries = [r.query.get("tree", "") for r in j.requests if "/job/long/api/json" in r.path]
    assert len(queries) == 3
    assert any("allBuilds" in q for q in queries)


def test_stages_off_makes_no_wfapi_request(env: Env) -> None:
    env.write(stages=False)
    env.jenkins.add_job("p", "pipeline")
    env.jenkins.add_build("p", 1, timestamp=T0, duration=10)
    assert env.once() == 0
    assert "job_run" not in env.runs()[("p", 1)]
    assert env.jenkins.count("wfapi") == 0


def test_bad_credentials_fail_the_server_not_the_run(env: Env) -> None:
    env.write(token="wrong-token")
    env.jenkins.add_build("x", 1, timestamp=T0, duration=10)
    assert env.once() == 1
    assert env.runs() == {}


def test_the_tree_is_read_in_batches_sized_by_what_they_weigh(env: Env) -> None:
    """Five top-level items first; then as many as fit `jobs_per_request` jobs by what
    those five weighed; folders deeper than one answer reaches are read from there."""
    for k in range(30):
        for n in range(4):  # 30 folders of 4 jobs: 24 folders per 100-job answer
            env.jenkins.add_build(f"f{k:02d}/job{n}", 1, timestamp=T0, duration=10)
    env.jenkins.add_build("deep/a/b/c/job", 1, timestamp=T0, duration=10)  # 4 levels down
    env.write(jobs_per_request=100)
    assert env.once() == 0
    assert len(env.runs()) == 121
    trees = [r.query["tree"] for r in env.jenkins.requests if r.path.endswith("/api/json")]
    ranges = [t[t.rindex("{") :] for t in trees if t.startswith("jobs[")]
    # deep (1 job) and f00-f03 (16 jobs) weigh 17: 100 jobs is 29 more items, all the rest
    assert ranges == ["{0,5}", "{5,34}", "{0,5}"]  # the last: deep/a/b, read from there
    deep = [
        r.path for r in env.jenkins.requests if "/job/deep/" in r.path and "/job/c/" not in r.path
    ]
    assert deep == ["/jenkins/job/deep/job/a/job/b/api/json"]  # the frontier, from there


def test_idle_poll_with_running_builds(env: Env) -> None:
    j = env.jenkins
    j.add_build("newest-running", 1, timestamp=T0, duration=10)
    j.add_build("newest-running", 2, result=None, building=True, timestamp=T0 + 1)
    j.add_build("newest-running", 3, result=None, building=True, timestamp=T0 + 2)
    j.add_build("out-of-order", 1, result=None, building=True, timestamp=T0)
    j.add_build("out-of-order", 2, timestamp=T0 + 1, duration=10)
    assert env.once() == 0
    j.reset_requests()
    assert env.once() == 0
    # discovery (root) + one page for the job whose running build sits below a finished one
    assert sorted(r.path for r in j.requests) == [
        "/jenkins/api/json",
        "/jenkins/job/out-of-order/api/json",
    ]
    j.finish_build("newest-running", 2, result="FAILURE", duration=5)
    j.finish_build("out-of-order", 1, result="SUCCESS", duration=5)
    assert env.once() == 0
    assert env.sent("newest-running") == [1, 2]
    assert env.sent("out-of-order") == [1, 2]
    j.finish_build("newest-running", 3, duration=5)
    assert env.once() == 0
    assert env.sent("newest-running") == [1, 2, 3]
