"""TeamCity through the other commands: `run` (a real process), `--dry-run`, `demo --ci`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.teamcity.standin import FakeTeamCity, now_ms
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import wait_until
from tests.connectors.teamcity.env import DAY, SECOND, Env

T0 = (now_ms() - DAY) // SECOND * SECOND


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeTeamCity() as tc, FakeSei() as sei:
        e = Env(tc, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1)
        yield e


def test_daemon_backfills_then_sends_each_build_as_it_finishes(env: Env) -> None:
    tc = env.tc
    for k in range(5):
        tc.add_build_type(f"D_C{k}", f"C{k}", "D")
        for n in range(4):
            tc.add_build(f"D_C{k}", queued=T0 + n * 1000, finished=T0 + n * 1000 + 500)
    with env.daemon():
        assert wait_until(lambda: len(env.sei.keys()) == 20), "backfill never arrived"
        running = tc.queue_build("D_C3")
        tc.start_build(running)
        time.sleep(1.5)
        tc.finish_build(running, "FAILURE")
        assert wait_until(lambda: len(env.sei.keys()) == 21), "the new build never arrived"
        tc.reset_requests()
        time.sleep(2.5)  # two idle polls or more
        polls = [r.path for r in tc.requests]
        assert polls and set(polls) == {"/app/rest/projects", "/app/rest/builds"}
        assert 2 * polls.count("/app/rest/projects") == polls.count("/app/rest/builds")
    assert env.runs()[("D/D_C3", running)]["result"] == "FAILURE"
    assert len(env.sei.keys()) == len(set(env.sei.keys())) == 21


def test_dry_run_writes_payloads_and_moves_no_cursor(env: Env, tmp_path: Path) -> None:
    env.tc.add_build_type("Y_Job", "Job", "Y")
    assert env.once() == 0
    before = env.cursor()
    b = env.tc.add_build("Y_Job", queued=now_ms() - 2000, finished=now_ms() // 1000 * 1000)
    out = tmp_path / "out.jsonl"
    assert env.once("--dry-run", "--output", str(out)) == 0
    payloads = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["job_full_name"], p["build_number"]) for p in payloads] == [("Y/Y_Job", b)]
    assert env.sei.received == []
    assert env.cursor() == before
    assert env.once() == 0
    assert env.sent() == [b]


def test_demo_shows_teamcity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "demo", "--ci", "teamcity"]) == 0
    out = capsys.readouterr().out
    assert "stand-in TeamCity at http://127.0.0.1:" in out
    assert "SEI received 6 payloads" in out
    assert "Backend/Backend_Build#3" in out and "user=alice" in out
    assert "NOT_BUILT" in out and "ABORTED" in out
