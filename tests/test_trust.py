"""The five ways production broke trust, each reproduced against the stand-ins.

A partial scan keeps what it found; a broken build is parked, not blocking; a broken folder
hides only itself; two processes on one state file never post a build twice; a state file
that is not a database is the operator's to fix (exit 2, one line), not an internal error.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, Env

NOW = int(time.time() * 1000)
T0 = NOW - DAY
PIPELINE = "org.jenkinsci.plugins.workflow.job.WorkflowJob"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _pipeline(env: Env, name: str, builds: range) -> None:
    env.jenkins.add_job(name, "pipeline")
    for n in builds:
        env.jenkins.add_build(name, n, timestamp=T0 + n * 1000, duration=10)


def _status_json(env: Env, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert env.run("status", "--json") == 0
    return json.loads(capsys.readouterr().out)


def _problems(env: Env) -> list[tuple]:
    with sqlite3.connect(env.dir / "state.db") as db:
        return db.execute("SELECT kind, job, number FROM problems ORDER BY 1, 2, 3").fetchall()


def _age_problems(env: Env, seconds: float) -> None:
    """Time passes for the parked builds: due for a retry, broken for `seconds` longer."""
    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("UPDATE problems SET retry_at = 0, first_at = first_at - ?", [seconds])


# -- a flaky Jenkins converges -----------------------------------------------------------


def test_a_jenkins_answering_a_quarter_of_its_gets_with_500_converges(env: Env) -> None:
    """A controller under load behind a proxy: 25 % of GETs answer 500, seeded."""
    _pipeline(env, "team/pipe", range(1, 31))  # 30 builds: 30 wfapi calls in one scan
    for job in ("team/a", "b"):
        for n in range(1, 8):
            env.jenkins.add_build(job, n, timestamp=T0 + n, duration=10)
    env.jenkins.flaky(0.25, seed=20261201)
    runs = 0
    while len(env.runs()) < 44 and runs < 8:
        env.once()
        runs += 1
    assert len(env.runs()) == 44, f"{len(env.runs())} of 44 builds after {runs} runs"
    assert runs <= 3, f"took {runs} runs to converge"
    keys = env.sei.keys()
    assert len(keys) == len(set(keys)), "a flaky Jenkins made us post a build twice"
    faulted = sum(r.fault == "flaky" for r in env.jenkins.requests)
    assert faulted >= 8, f"only {faulted} faults injected: the test proves little"


# -- a scan that fails half-way keeps what it found ---------------------------------------


def test_a_scan_that_fails_on_its_second_page_keeps_the_first(env: Env) -> None:
    _pipeline(env, "p", range(1, 151))  # two pages: builds{0,100}, then allBuilds{100,200}
    env.jenkins.fail(r"^/job/p/api/json$", 500, query=r"allBuilds")  # only the second page
    assert env.once() == 1
    assert env.sent("p") == list(range(51, 151)), "the first page was lost"
    assert env.watermark("p") is None  # the scan did not complete: the watermark waits
    wfapi_before = env.jenkins.count(r"/wfapi/describe")
    env.jenkins.clear_faults()
    assert env.once() == 0
    assert env.sent("p") == list(range(1, 151))
    assert env.jenkins.count(r"/wfapi/describe") - wfapi_before == 50  # only the new ones
    keys = env.sei.keys()
    assert len(keys) == len(set(keys)) == 150


# -- a broken build is parked; a broken folder hides only itself --------------------------


def test_a_build_whose_stages_always_fail_is_parked_and_the_job_moves_on(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _pipeline(env, "p", range(1, 6))
    # Corrupt flow-node storage: the build's describe fails, and so does the job's run list
    # (it renders every recent run), so neither way to its stages works.
    env.jenkins.fail(r"^/job/p/(3/wfapi/describe|wfapi/runs)$", 500)
    assert env.once() == 1  # something is not delivered: say so
    assert env.sent("p") == [1, 2, 4, 5]
    assert env.watermark("p") == 2  # waits below the parked build, like a running one
    status = _status_json(env, capsys)
    [parked] = status["parked_builds"]
    assert (parked["job"], parked["number"], parked["attempts"]) == ("p", 3, 1)
    assert parked["url"].endswith("/job/p/3/wfapi/describe") and "500" in parked["error"]
    capsys.readouterr()
    assert env.run("status") == 0
    table = capsys.readouterr().out
    assert "parked build jenkins-main p#3" in table and "/job/p/3/wfapi/describe" in table

    # New builds keep flowing; the parked one is not retried before it is due.
    env.jenkins.add_build("p", 6, timestamp=T0 + 6000, duration=10)
    before = env.jenkins.count(r"^/job/p/3/wfapi")
    assert env.once() == 1
    assert env.sent("p") == [1, 2, 4, 5, 6]
    assert env.jenkins.count(r"^/job/p/3/wfapi") == before

    # Due again, still broken: another attempt, still parked.
    _age_problems(env, 60)
    assert env.once() == 1
    assert env.jenkins.count(r"^/job/p/3/wfapi") > before
    assert _status_json(env, capsys)["parked_builds"][0]["attempts"] == 2

    # Past give_up_after (6 h by default): sent without stages, with a warning.
    _age_problems(env, 6 * 3600)
    capsys.readouterr()
    assert env.once() == 0
    assert "still broken after give_up_after" in capsys.readouterr().err
    run = env.runs()[("p", 3)]
    assert "job_run" not in run and run["result"] == "SUCCESS"
    assert env.watermark("p") == 6 and _problems(env) == []


def test_a_parked_build_that_heals_is_sent_whole(env: Env) -> None:
    _pipeline(env, "p", range(1, 4))
    env.jenkins.fail(r"^/job/p/(2/wfapi/describe|wfapi/runs)$", 500)
    assert env.once() == 1
    env.jenkins.clear_faults()
    _age_problems(env, 60)
    assert env.once() == 0
    assert env.runs()[("p", 2)]["job_run"]["stages"], "healed build sent without its stages"
    assert env.watermark("p") == 3 and _problems(env) == []


def test_give_up_after_never_leaves_it_to_the_operator(env: Env) -> None:
    env.write(give_up_after="never")
    _pipeline(env, "p", range(1, 3))
    env.jenkins.fail(r"^/job/p/(1/wfapi/describe|wfapi/runs)$", 500)
    assert env.once() == 1
    _age_problems(env, 30 * DAY / 1000)
    assert env.once() == 1
    assert env.sent("p") == [2] and _problems(env) == [("build", "p", 1)]


def test_a_parked_build_deleted_on_the_server_stops_holding_the_job(env: Env) -> None:
    _pipeline(env, "p", range(1, 4))
    env.jenkins.fail(r"^/job/p/(2/wfapi/describe|wfapi/runs)$", 500)
    assert env.once() == 1
    env.jenkins.delete_build("p", 2)
    env.jenkins.add_build("p", 4, timestamp=T0 + 4000, duration=10)
    assert env.once() == 0
    assert env.sent("p") == [1, 3, 4]
    assert env.watermark("p") == 4 and _problems(env) == []


def test_a_folder_that_always_fails_hides_only_itself(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    j = env.jenkins
    j.add_folder("bad")
    j.add_folder("good")
    j.add_build("bad/x", 1, timestamp=T0, duration=10)
    j.add_build("good/y", 1, timestamp=T0, duration=10)
    j.add_build("top", 1, timestamp=T0, duration=10)
    j.fail(r"^/job/bad/api/json$", 500)
    assert env.once() == 1
    assert sorted(env.runs()) == [("good/y", 1), ("top", 1)]
    [folder] = _status_json(env, capsys)["failing_folders"]
    assert folder["job"] == "bad" and folder["url"].endswith("/job/bad/api/json")
    j.add_build("good/y", 2, timestamp=T0 + 1, duration=10)
    assert env.once() == 1
    assert env.sent("good/y") == [1, 2]
    j.clear_faults()
    assert env.once() == 0
    assert env.sent("bad/x") == [1]
    assert _status_json(env, capsys)["failing_folders"] == []


# -- two processes, one state file ---------------------------------------------------------


def _cli(env: Env, *args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poller", "-c", str(env.config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _many_builds(env: Env, jobs: int = 12, per_job: int = 50) -> int:
    for j in range(jobs):
        for n in range(1, per_job + 1):
            env.jenkins.add_build(f"f{j % 3}/job{j}", n, timestamp=T0 + n, duration=10)
    return jobs * per_job


def test_two_once_runs_on_one_state_never_post_a_build_twice(env: Env) -> None:
    total = _many_builds(env)
    env.sei.latency = 0.005  # slow enough that both runs are delivering at once
    procs = [_cli(env, "once") for _ in range(2)]
    codes = [p.wait(120) for p in procs]
    assert codes == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    counts = Counter(env.sei.keys())
    assert len(counts) == total
    twice = {k: c for k, c in counts.items() if c > 1}
    assert not twice, f"{len(twice)} builds posted twice by two processes"


def test_a_second_daemon_refuses_to_start_and_once_works_beside_the_first(env: Env) -> None:
    total = _many_builds(env, jobs=6, per_job=40)
    env.write(poll_interval=1)
    env.sei.latency = 0.01
    daemon = _cli(env, "run")
    try:
        lock = Path(str(env.dir / "state.db") + ".lock")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        second = _cli(env, "run")
        assert second.wait(20) == 2
        err = second.stderr.read().strip().splitlines()
        assert len(err) == 1 and f"pid {daemon.pid}" in err[0] and "state.db" in err[0], err
        once = _cli(env, "once")
        assert once.wait(120) == 0, once.stderr.read()[-2000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(env.sei.keys())) < total:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    counts = Counter(env.sei.keys())
    assert len(counts) == total
    assert max(counts.values()) == 1, "a build was posted by both the daemon and `once`"


# -- a state file that is not a database ---------------------------------------------------


def _one_line_exit_2(env: Env, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(env.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [("once",), ("status",), ("run",)])
def test_a_garbage_state_file_is_the_operators_to_fix(env: Env, command: tuple[str]) -> None:
    state = env.dir / "state.db"
    state.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    line = _one_line_exit_2(env, *command)
    assert str(state) in line and "move it aside" in line and "not a usable SQLite" in line
    assert state.read_bytes().startswith(b"this is not a database"), "the file was changed"


def test_a_truncated_state_file_is_the_operators_to_fix(env: Env) -> None:
    _many_builds(env, jobs=4, per_job=200)
    assert env.once() == 0
    state = env.dir / "state.db"
    with sqlite3.connect(state) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = state.read_bytes()
    assert len(data) > 16 * 4096
    state.write_bytes(data[: len(data) // 3])
    for f in (env.dir / "state.db-wal", env.dir / "state.db-shm"):
        f.unlink(missing_ok=True)
    line = _one_line_exit_2(env, "once")
    assert str(state) in line and "move it aside" in line


def test_a_state_from_a_newer_release_is_refused(env: Env) -> None:
    state = env.dir / "state.db"
    with sqlite3.connect(state) as db:
        db.execute("PRAGMA user_version = 99")
    line = _one_line_exit_2(env, "once")
    assert str(state) in line and "newer sei-poller" in line and "schema 99" in line


def test_a_state_path_that_cannot_be_created(env: Env, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    env.config.write_text(
        env.config.read_text().replace('path = "state.db"', f'path = "{blocker}/state.db"')
    )
    line = _one_line_exit_2(env, "once")
    assert f"{blocker}/state.db" in line and "cannot create" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_state_file(env: Env) -> None:  # pragma: no cover - CI runs as root
    assert env.once() == 0
    (env.dir / "state.db").chmod(0o400)
    line = _one_line_exit_2(env, "once")
    assert "state.db" in line
