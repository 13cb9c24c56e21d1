"""sei-poller against a real Buildbot 4.3 master with two workers, delivering to FakeSei.

The master requires a login (deny-by-default Authz), so every request goes through the
connector's session cookie. Builds succeed, fail, warn, raise, get stopped, get retried
(worker killed mid-build) and finish out of order; `once` runs twice around the late build,
then the `run` daemon picks up new builds and stops on SIGTERM. Every payload SEI receives is
compared whole; the only values taken from the run are Buildbot's own ids and timestamps,
read back from its API.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.buildbot import standin as harness
from poller import cli
from poller.payload import execution_id, iso_time
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.buildbot.conftest import real_master

pytestmark = pytest.mark.buildbot

GUID = "3f9d3c2e-1a4b-4c8e-9b0f-5d6e7f8a9b0c"
AUTH = ("ci", "s3cret-login")
REPO = "https://example.invalid/repo.git"
SHA = {n: str(n) * 40 for n in range(1, 5)}
FORCED = {
    "user_id": "ci",
    "triggers": [{"id": "ci", "type": "ForceScheduler"}],
    "params": [{"type": "ForceSchedulerParameter", "name": "gate", "value": "open"}],
}
PREP = ("worker_preparation", "SUCCESS", "FINISHED")


@pytest.fixture(scope="module")
def buildbot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Buildbot]:
    with real_master(tmp_path_factory.mktemp("buildbot"), auth=AUTH) as bb:
        yield bb


@pytest.fixture(scope="module")
def sei() -> Iterator[FakeSei]:
    with FakeSei() as fake:
        yield fake


def _config(path: Path, bb: harness.Buildbot, sei: FakeSei, password: str = AUTH[1]) -> Path:
    server = {
        "name": "bb",
        "type": "buildbot",
        "url": bb.url,
        "instance_guid": GUID,
        "instance_name": "Buildbot-test",
        "username": AUTH[0],
        "password": password,
        "poll_interval": "1s",
    }
    return write_config(
        path / "config.toml", sei_url=sei.url, servers=[server], state=str(path / "state.db")
    )


def _expected(
    bb: harness.Buildbot,
    builder: str,
    number: int,
    result: str,
    stages: list[tuple[str, str, str]],
    *,
    user_id: str,
    triggers: list[dict[str, Any]],
    params: list[dict[str, Any]] | None = None,
    commits: list[str] | None = None,
    branch: str | None = "main",
    repo: str | None = REPO,
) -> dict[str, Any]:
    """The payload SEI must get; ids and times are read back from Buildbot's API."""
    bid = bb.builder_ids()[builder]
    build = bb.get(f"builders/{bid}/builds", number=number)["builds"][0]
    steps = bb.get(f"builds/{build['buildid']}/steps")["steps"]
    assert [s["name"] for s in steps] == [name for name, _, _ in stages]
    payload: dict[str, Any] = {
        "pipeline": builder,
        "job_full_name": builder,
        "qualified_name": builder,
        "instance_name": "Buildbot-test",
        "instance_guid": GUID,
        "instance_url": bb.url,
        "build_number": number,
        "start_time": build["started_at"] * 1000,
        "duration": (build["complete_at"] - build["started_at"]) * 1000,
        "result": result,
        "user_id": user_id,
        "ci": True,
        "cd": False,
        "execution_id": execution_id(GUID, builder, number),
        "trigger_chain": triggers,
    }
    if params:
        payload["job_run_params"] = params
    if commits:
        payload["scm_commit_ids"] = commits
    if repo:
        payload["repo_url"] = repo
    if branch:
        payload["branch_name"] = branch
    payload["job_run"] = {
        "stages": [
            {
                "id": str(s["stepid"]),
                "displayName": name,
                "displayDescription": name,
                "result": res,
                "state": state,
                "durationInMillis": (s["complete_at"] - s["started_at"]) * 1000,
                "startTime": iso_time(s["started_at"] * 1000),
                "steps": [],
            }
            for s, (name, res, state) in zip(steps, stages, strict=True)
        ]
    }
    payload["web_url"] = f"{bb.url}#/builders/{bid}/builds/{number}"
    return payload


def _received(sei: FakeSei) -> dict[tuple[str, int], dict[str, Any]]:
    keys = [(p["job_full_name"], p["build_number"]) for p in sei.received]
    assert len(keys) == len(set(keys)), f"sent twice: {sorted(keys)}"
    return {(p["job_full_name"], p["build_number"]): p for p in sei.received}


def _assert_sane_times(payloads: list[dict[str, Any]], since: float) -> None:
    """Relationships that do not depend on reading Buildbot's answers back."""
    for p in payloads:
        assert since * 1000 - 2000 <= p["start_time"] <= time.time() * 1000
        assert p["duration"] >= 0 and p["duration"] % 1000 == 0
        for stage in p["job_run"]["stages"]:
            assert stage["durationInMillis"] >= 0


def test_buildbot_end_to_end(buildbot: harness.Buildbot, sei: FakeSei, tmp_path: Path) -> None:
    bb = buildbot
    began = time.time()
    src = {"repository": REPO, "project": "demo"}

    # -- history: every result code, a change, a stopped build ------------------------------
    forced = [
        bb.force("ok", revision=SHA[1], **src),
        bb.force("fail", revision=SHA[2], **src),
        bb.force("multi", revision=SHA[3], branch="release/1.x", **src),
        bb.force("exception", **src),
    ]
    doomed = bb.force("slow", gate="never")
    doomed_id = bb.running_build(doomed)["buildid"]
    bb.at_gate("never")
    bb.stop_build(doomed_id, "stopped by test")
    for brid in [*forced, doomed]:
        bb.finished(brid)
    bb.post_change(
        revision=SHA[4],
        branch="feature/x",
        repository=REPO,
        project="demo",
        author="Alice <alice@example.invalid>",
        comments="Fix the thing",
    )
    bb.build("ok", 2)

    # -- slow #2 keeps running on w1 while slow #3 finishes on w2 ------------------------------
    late = bb.force("slow", gate="late")
    bb.running_build(late)
    bb.finished(bb.force("slow"))

    # -- flaky #1: its worker dies mid-build (RETRY); the request re-runs as #2 on w1 ----------
    flaky = bb.force("flaky")
    bb.running_build(flaky)
    harness.wait(lambda: (bb.scratch / "flaky-ran").exists(), 30, "flaky to start sleeping")
    bb.stop_worker("w2")
    assert [(b["number"], b["results"]) for b in bb.finished(flaky)] == [(1, 5), (2, 0)]

    # -- once: everything finished is sent, slow #2 is not, flaky #1 never ---------------------
    config = _config(tmp_path, bb, sei)
    assert cli.main(["-c", str(config), "once"]) == 0
    got = _received(sei)
    assert sorted(got) == [
        ("exception", 1),
        ("fail", 1),
        ("flaky", 2),
        ("multi", 1),
        ("ok", 1),
        ("ok", 2),
        ("slow", 1),
        ("slow", 3),
    ]
    expected = {
        ("ok", 1): _expected(
            bb,
            "ok",
            1,
            "SUCCESS",
            [PREP, ("hello", "SUCCESS", "FINISHED")],
            commits=[SHA[1]],
            **FORCED,
        ),
        ("ok", 2): _expected(
            bb,
            "ok",
            2,
            "SUCCESS",
            [PREP, ("hello", "SUCCESS", "FINISHED")],
            user_id="SCMTrigger",
            commits=[SHA[4]],
            branch="feature/x",
            triggers=[{"id": "SCMTrigger", "type": "Change"}],
        ),
        ("fail", 1): _expected(
            bb,
            "fail",
            1,
            "FAILURE",
            [PREP, ("compile", "FAILURE", "FINISHED")],
            commits=[SHA[2]],
            **FORCED,
        ),
        ("multi", 1): _expected(
            bb,
            "multi",
            1,
            "UNSTABLE",
            [
                PREP,
                ("get-version", "SUCCESS", "FINISHED"),
                ("build", "SUCCESS", "FINISHED"),
                ("lint", "FAILURE", "FINISHED"),
                ("deploy", "NOT_BUILT", "SKIPPED"),
                ("test", "SUCCESS", "FINISHED"),
            ],
            commits=[SHA[3]],
            branch="release/1.x",
            **FORCED,
        ),
        ("exception", 1): _expected(
            bb, "exception", 1, "FAILURE", [PREP, ("boom", "FAILURE", "FINISHED")], **FORCED
        ),
        ("slow", 1): _expected(
            bb,
            "slow",
            1,
            "ABORTED",
            [PREP, ("wait", "ABORTED", "FINISHED")],
            repo=None,
            **{
                **FORCED,
                "params": [{"type": "ForceSchedulerParameter", "name": "gate", "value": "never"}],
            },
        ),
        ("slow", 3): _expected(
            bb, "slow", 3, "SUCCESS", [PREP, ("wait", "SUCCESS", "FINISHED")], repo=None, **FORCED
        ),
        ("flaky", 2): _expected(
            bb,
            "flaky",
            2,
            "SUCCESS",
            [PREP, ("maybe-sleep", "SUCCESS", "FINISHED")],
            repo=None,
            **FORCED,
        ),
    }
    for key, want in expected.items():
        assert got[key] == want, key
    _assert_sane_times(list(got.values()), began)

    # -- the late build finishes: the next `once` sends it, and nothing twice -----------------
    bb.open_gate("late")
    bb.finished(late)
    assert cli.main(["-c", str(config), "once"]) == 0
    got = _received(sei)
    assert len(got) == 9
    assert got[("slow", 2)] == _expected(
        bb,
        "slow",
        2,
        "SUCCESS",
        [PREP, ("wait", "SUCCESS", "FINISHED")],
        repo=None,
        **{
            **FORCED,
            "params": [{"type": "ForceSchedulerParameter", "name": "gate", "value": "late"}],
        },
    )

    # -- the daemon: new builds are sent within a poll; SIGTERM stops it cleanly --------------
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "poller", "-c", str(config), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        new = [bb.force("ok", revision=SHA[1], **src), bb.force("fail", revision=SHA[2], **src)]
        for brid in new:
            bb.finished(brid)
        assert sei.wait_for(11, timeout=30), (tmp_path / "daemon.log").read_text()[-3000:]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
    got = _received(sei)
    assert len(got) == 11
    assert got[("ok", 3)] == _expected(
        bb, "ok", 3, "SUCCESS", [PREP, ("hello", "SUCCESS", "FINISHED")], commits=[SHA[1]], **FORCED
    )
    assert got[("fail", 2)] == _expected(
        bb,
        "fail",
        2,
        "FAILURE",
        [PREP, ("compile", "FAILURE", "FINISHED")],
        commits=[SHA[2]],
        **FORCED,
    )


def test_check_reports_version_and_login(
    buildbot: harness.Buildbot, sei: FakeSei, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, buildbot, sei)
    assert cli.main(["-c", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert "Buildbot 4.3.0 as ci, 6 jobs (buildbot ← sei-poller" in out


def test_check_fails_on_a_wrong_password(
    buildbot: harness.Buildbot, sei: FakeSei, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, buildbot, sei, password="wrong-password")
    assert cli.main(["-c", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "login refused: check username and password" in out
    assert "wrong-password" not in out
