"""GoCD through the other commands: `run` (a real process), `--dry-run`, `explain`,
`demo --ci gocd`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.gocd.standin import FakeGoCD, StageConfig, forced, now_ms
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import wait_until
from tests.connectors.gocd.env import DAY, SECOND, Env
from tests.connectors.gocd.test_connector import APP

T0 = (now_ms() - DAY) // SECOND * SECOND


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeGoCD() as gocd, FakeSei() as sei:
        e = Env(gocd, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1)
        yield e


@pytest.mark.parametrize("granularity", ["pipeline", "stage"])
def test_daemon_backfills_then_sends_each_run_as_it_finishes(env: Env, granularity: str) -> None:
    g = env.gocd
    env.write(poll_interval=1, granularity=granularity)
    for k in range(5):
        g.add_pipeline(f"p{k}", "g", ["build", StageConfig("deploy", manual=True)], [APP])
        for n in range(4):
            g.run(f"p{k}", forced("alice"), at=T0 + n * 1000)
    # pipeline: every instance waits at the gate, and has waited a day: sent at once
    # (max_pending_age 1h); stage: the build stages are the runs
    env.write(poll_interval=1, granularity=granularity, max_pending_age="1h")
    with env.daemon():
        assert wait_until(lambda: len(env.sei.keys()) == 20), "backfill never arrived"
        c = g.trigger("p3", forced("bob"))
        g.begin("p3", c, "build")
        time.sleep(1.5)
        g.finish("p3", c, "build", "Failed")
        assert wait_until(lambda: len(env.sei.keys()) == 21), "the new run never arrived"
        g.reset_requests()
        time.sleep(2.5)  # two idle polls or more
        polls = [(r.path, r.status) for r in g.requests]
        assert polls and set(polls) == {("/go/api/dashboard", 304)}
    key = ("p3", 5) if granularity == "pipeline" else ("p3/build", 5001)
    assert env.runs()[key]["result"] == "FAILURE"
    assert len(env.sei.keys()) == len(set(env.sei.keys())) == 21


def test_dry_run_writes_payloads_and_moves_no_cursor(env: Env, tmp_path: Path) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    assert env.once() == 0
    before = env.cursor()
    c = g.run("app", forced("alice"), at=now_ms() - 60 * SECOND)
    out = tmp_path / "out.jsonl"
    assert env.once("--dry-run", "--output", str(out)) == 0
    payloads = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["job_full_name"], p["build_number"]) for p in payloads] == [("app", c)]
    assert env.sei.received == []
    assert env.cursor() == before
    assert env.once() == 0
    assert env.sent() == [c]


def test_explain_reads_one_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build", StageConfig("prod", manual=True)], [APP])
    g.run("app", forced("alice"), at=T0)
    assert env.run("explain", "gocd-main", "app", "1", "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["payload"] is None
    assert [f["code"] for f in out["findings"]] == ["running"]  # held at the gate
    env.write(granularity="stage")
    assert env.run("explain", "gocd-main", "app/build", "1001", "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["payload"]["result"] == "SUCCESS"
    assert out["payload"]["user_id"] == "alice"


def test_demo_shows_gocd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "demo", "--ci", "gocd"]) == 0
    out = capsys.readouterr().out
    assert "stand-in GoCD at http://127.0.0.1:" in out
    assert "SEI received 6 payloads" in out
    assert "A-PIPELINE#2061" in out and "A-PIPELINE#2063" not in out  # 2063 is held
    assert "user=admin" in out and "user=TimerTrigger" in out
    assert "ABORTED" in out and "FAILURE" in out
