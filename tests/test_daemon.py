"""`sei-poller run` as a real process: SIGKILL loses nothing, SIGTERM exits 0, systemd hears it."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.conftest import wait_until
from tests.connectors.jenkins.env import DAY, Env

BUILDS = 300
T0 = int(time.time() * 1000) - DAY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei(latency=0.01) as sei:
        for n in range(1, BUILDS + 1):
            jenkins.add_build(f"f{n % 3}/job{n % 10}", n, timestamp=T0 + n, duration=10)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1)
        yield e


def test_sigkill_mid_delivery_loses_nothing(env: Env) -> None:
    proc = env.start()
    try:
        assert wait_until(lambda: len(env.sei.received) >= 60), "delivery never started"
    finally:
        proc.kill()
        proc.wait(10)
    at_kill = len(env.sei.received)
    assert at_kill < BUILDS, "everything was delivered before the kill; test proves nothing"
    proc = env.start()
    try:
        assert wait_until(lambda: len(set(env.sei.keys())) >= BUILDS, timeout=60)
        time.sleep(1.5)  # another poll or two: nothing more may arrive
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    keys = env.sei.keys()
    assert len(set(keys)) == BUILDS
    duplicates = len(keys) - len(set(keys))
    assert duplicates <= 4, f"{duplicates} duplicates: more than the in-flight few (concurrency 4)"


def test_sigterm_readiness_watchdog_and_metrics(env: Env, tmp_path: Path) -> None:
    sock_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(0.2)
    port = _free_port()
    env.write(poll_interval=1)
    env.config.write_text(
        env.config.read_text().replace(
            "[state]", f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n[state]'
        )
    )
    proc = env.start({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"})
    messages: list[str] = []

    def drain() -> None:
        while True:
            try:
                messages.append(notify.recv(256).decode())
            except OSError:
                return

    try:
        assert wait_until(lambda: len(set(env.sei.keys())) >= BUILDS, timeout=60)
        drain()
        scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(15)
        stopped_in = time.monotonic() - started
        drain()
        notify.close()
    assert code == 0
    assert stopped_in < 10
    assert "READY=1" in messages and "WATCHDOG=1" in messages and "STOPPING=1" in messages
    sent = _metric(scrape, 'sei_poller_builds_sent_total{server="jenkins-main"}')
    assert sent >= BUILDS - 4
    assert _metric(scrape, 'sei_poller_builds_discovered_total{server="jenkins-main"}') == BUILDS
    assert _metric(scrape, 'sei_poller_outbox{status="pending"}') >= 0
    assert _metric(scrape, 'sei_poller_ci_requests_total{server="jenkins-main",status="200"}') > 0
    assert _metric(scrape, 'sei_poller_sei_requests_total{status="202"}') >= BUILDS - 4
    assert "sei_poller_last_successful_poll_timestamp_seconds" in scrape
    assert "sei_poller_outbox_oldest_pending_age_seconds" in scrape
    assert 1 <= _metric(scrape, "sei_poller_sei_concurrency_limit") <= 4  # the window


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the scrape")


def test_long_first_sight_backfill_never_delays_live_polls(tmp_path: Path) -> None:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        jenkins.add_build("live", 1, timestamp=T0, duration=10)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1, max_concurrency=2)
        assert e.once() == 0  # `live` is known from now on
        for n in range(1, 401):
            jenkins.add_build("huge", n, timestamp=T0 + n, duration=10)
        jenkins.delay(r"/job/huge/api/json", 1.5)  # every page of its history is slow
        proc = e.start()
        try:
            time.sleep(2.5)  # the daemon has found `huge` and is backfilling it
            jenkins.add_build("live", 2, timestamp=T0 + 5, duration=10)
            added = time.monotonic()
            assert wait_until(lambda: ("live", 2) in e.runs(), timeout=10)
            latency = time.monotonic() - added
            assert len(e.sent("huge")) < 400, "backfill already done: proves nothing"
        finally:
            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = proc.wait(15)
        assert latency < 4.0, latency
        assert code == 0 and time.monotonic() - stopping < 10  # even mid-backfill


def test_sigterm_with_sei_hanging_still_exits_in_time(tmp_path: Path) -> None:
    with FakeJenkins() as jenkins, FakeSei(latency=25.0) as sei:
        jenkins.add_build("x", 1, timestamp=T0, duration=10)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write(poll_interval=1)
        proc = e.start()
        try:
            assert wait_until(lambda: len(sei.attempts) > 0 or e.jenkins.count("/job/x/") > 0, 20)
            time.sleep(1.0)  # the POST is in flight, SEI sits on it
        finally:
            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = proc.wait(20)
        assert code == 0 and time.monotonic() - stopping < 10
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT status FROM outbox").fetchall() == [("pending",)]
