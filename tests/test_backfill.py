"""`sei-poller backfill`: below the watermark, by --since and --job, resumable, polite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, Env

NOW = int(time.time() * 1000)


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write(backfill_since="30d")
        yield e


def test_since_reaches_below_the_watermark_without_resending(env: Env) -> None:
    for n, days in enumerate([90, 60, 40, 10, 1], start=1):
        env.jenkins.add_build("team/api", n, timestamp=NOW - days * DAY, duration=10)
    assert env.once() == 0
    assert env.sent("team/api") == [4, 5]
    assert env.run("backfill", "--since", "50d") == 0
    assert env.sent("team/api") == [3, 4, 5]
    assert env.run("backfill", "--since", "all") == 0
    assert env.sent("team/api") == [1, 2, 3, 4, 5]
    assert len(env.sei.keys()) == 5  # nothing twice
    env.jenkins.reset_requests()
    assert env.run("backfill", "--since", "all") == 0  # covered already: discovery only
    assert env.jenkins.count(r"/job/team/job/api/") == 0


def test_job_glob_limits_the_backfill(env: Env) -> None:
    for job in ("team/api", "team/web", "ops/cleanup"):
        env.jenkins.add_build(job, 1, timestamp=NOW - 90 * DAY, duration=10)
    assert env.run("backfill", "--since", "all", "--job", "team/*") == 0
    assert {k[1] for k in env.sei.keys()} == {"team/api", "team/web"}


def test_bad_since_is_a_usage_error(env: Env, capsys) -> None:
    assert env.run("backfill", "--since", "last tuesday") == 2
    assert "--since" in capsys.readouterr().err


def test_interrupted_backfill_resumes_without_resending(env: Env) -> None:
    env.sei.latency = 0.01
    for j in range(6):
        for n in range(1, 151):
            env.jenkins.add_build(f"big/job{j}", n, timestamp=NOW - 60 * DAY + n, duration=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller", "-c", str(env.config), "backfill", "--since", "all"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 30
    while len(env.sei.received) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 1
    first = len(set(env.sei.keys()))
    assert 0 < first < 900, "interrupt came too late to prove anything"
    assert env.run("backfill", "--since", "all") == 0
    keys = env.sei.keys()
    assert len(set(keys)) == 900
    assert len(keys) - len(set(keys)) <= 4  # at most the in-flight few, twice


def test_politeness_limits_are_observed_by_the_server(env: Env) -> None:
    for j in range(8):
        env.jenkins.add_build(f"p/job{j}", 1, timestamp=NOW - DAY, duration=10)
    env.jenkins.delay(r"/job/job\d/api/json", 0.3)
    env.write(backfill_since="30d", max_concurrency=2)
    started = time.monotonic()
    assert env.once() == 0
    elapsed = time.monotonic() - started
    # 8 slow job pages, 2 at a time: at least 4 rounds of 0.3 s (4 at a time would take 0.6 s)
    assert elapsed >= 1.2, elapsed
    env.jenkins.clear_faults()
    for j in range(8):
        env.jenkins.add_build(f"p/job{j}", 2, timestamp=NOW - DAY + 5, duration=10)
    env.write(backfill_since="30d", max_concurrency=4, requests_per_second=10)
    env.jenkins.reset_requests()
    started = time.monotonic()
    assert env.once() == 0
    elapsed = time.monotonic() - started
    requests = len(env.jenkins.requests)
    assert requests >= 9  # the tree in one answer, then 8 job pages
    # n evenly spaced requests span n - 1 intervals of 1/rate
    assert (requests - 1) / elapsed <= 10.5, (requests, elapsed)
