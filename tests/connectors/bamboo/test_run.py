"""Bamboo through the other commands: `run` (a real process), `--dry-run`, `demo --ci`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.bamboo.standin import FakeBamboo, now_ms
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import wait_until
from tests.connectors.bamboo.env import DAY, SECOND, Env

T0 = (now_ms() - DAY) // SECOND * SECOND


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeBamboo() as fb, FakeSei() as sei:
        e = Env(fb, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1)
        yield e


def test_daemon_backfills_then_sends_each_result_and_deployment_as_it_finishes(env: Env) -> None:
    fb = env.bamboo
    for k in range(4):
        fb.add_plan(f"D-P{k}", f"P{k}")
        for n in range(5):
            fb.add_result(f"D-P{k}", started=T0 + n * 1000, completed=T0 + n * 1000 + 500)
    proj = fb.add_deployment_project("D", "D-P0", ["prod"])
    version = fb.create_version(proj, "v1", [("D-P0", 5)])
    prod = proj.environments[0]
    fb.add_deployment(prod, version, started=T0 + 9000, finished=T0 + 9500)
    with env.daemon():
        assert wait_until(lambda: len(env.sei.keys()) == 21), "backfill never arrived"
        running = fb.trigger("D-P2")
        deploying = fb.deploy(prod, version, user="kim")
        time.sleep(1.5)
        fb.finish("D-P2", running, "Failed")
        fb.finish_deploy(deploying)
        assert wait_until(lambda: len(env.sei.keys()) == 23), "the new results never arrived"
        fb.reset_requests()
        time.sleep(2.5)  # two idle polls or more
        polls = [r.path for r in fb.requests]
        jobs = {f"/rest/api/latest/result/D-P{k}.json" for k in range(4)}
        jobs.add(f"/rest/api/latest/deploy/environment/{prod.id}/results.json")
        assert polls and set(polls) == jobs  # one request per job, no discovery
        counts = {p: polls.count(p) for p in jobs}
        assert max(counts.values()) - min(counts.values()) <= 1
    assert env.runs()[("D-P2", running)]["result"] == "FAILURE"
    assert env.runs()[("deploy/D/prod", deploying)]["user_id"] == "kim"
    assert len(env.sei.keys()) == len(set(env.sei.keys())) == 23


def test_dry_run_writes_payloads_and_moves_no_cursor(env: Env, tmp_path: Path) -> None:
    fb = env.bamboo
    fb.add_plan("Y-JOB", "Job")
    assert env.once() == 0
    before = env.job_cursor("Y-JOB")
    fb.add_result("Y-JOB", started=now_ms() - 2000, completed=now_ms())
    out = tmp_path / "out.jsonl"
    assert env.once("--dry-run", "--output", str(out)) == 0
    payloads = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["job_full_name"], p["build_number"]) for p in payloads] == [("Y-JOB", 1)]
    assert env.sei.received == []
    assert env.job_cursor("Y-JOB") == before
    assert env.once() == 0
    assert env.sent() == [1]


def test_demo_shows_bamboo_builds_and_deployments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "demo", "--ci", "bamboo"]) == 0
    out = capsys.readouterr().out
    assert "stand-in Bamboo at http://127.0.0.1:" in out
    assert "SEI received 7 payloads" in out
    assert "SHOP-API/feature-login#1" in out and "ABORTED" in out
    assert "deploy/Shop API/staging#" in out and "user=alice" in out
