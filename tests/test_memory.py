"""The daemon's memory and file descriptors do not grow with the builds it handles (issue 12).

The collect-and-deliver cycle runs here, in this process, as `sei-poller run` runs it: one
Collector and one Deliverer over a real SQLite file, polls with new builds between them, and
new scan threads every poll. The stand-in Jenkins and SEI run in processes of their own
(benchmarks/servers.py), so everything tracemalloc sees here belongs to the poller.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import pkgutil
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import connectors
import poller
from benchmarks import servers
from connectors.jenkins.connector import UPSTREAM_CACHE, JenkinsConnector
from poller import logs
from poller.collect import Collector
from poller.config import load
from poller.deliver import Deliverer
from poller.model import ServerSpec
from poller.sei import Sender
from poller.state import State
from tests.conftest import write_config

PER_POLL = 50  # new finished builds between two polls: 5 per job
FIRST, LAST = 1000, 3000  # builds handled at the two measurements
TRACE_FROM = FIRST - 4 * PER_POLL  # tracing triples the cost: from a few polls before FIRST
BUDGET = 256 * 1024  # bytes retained from FIRST to LAST builds: bounded caches, noise
FD_SLACK = 2
SCAN_THREADS = 4

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


class _Discard:
    """A log stream that keeps nothing, as journald takes the daemon's lines away."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _retained() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


def test_retained_memory_does_not_grow_with_builds(tmp_path: Path) -> None:
    logs.configure("info", "json", stream=_Discard())
    with servers.jenkins(2, 5, 2) as jenkins, servers.sei() as sei:
        jk, se = jenkins.info, sei.info
        cfg = load(
            write_config(
                tmp_path / "config.toml",
                sei_url=se["url"],
                api_key=se["api_key"],
                servers=[
                    {
                        "name": "jenkins-main",
                        "type": "jenkins",
                        "url": jk["url"],
                        "username": jk["username"],
                        "token": jk["token"],
                        "instance_guid": "666ba79b-3f3d-4236-ac04-4686ce526705",
                        "instance_name": "Jenkins-1",
                        "backfill_since": "all",
                        "max_concurrency": 4,
                    }
                ],
            )
        )
        server = cfg.servers[0]
        connector = JenkinsConnector(server.spec)
        state = State(cfg.state_path)
        sender = Sender.from_config(cfg.sei)
        deliverer = Deliverer(state, sender, cfg.sei.concurrency)
        try:
            Collector(server, connector, state).poll()  # the seeded history: every job known
            seeded = deliverer.pass_once().sent
            handled, seen = 0, {}
            try:
                while handled < LAST:
                    if handled == TRACE_FROM:
                        tracemalloc.start()  # only what is allocated from here on counts
                    jenkins.ask(f"add {PER_POLL}")
                    result = Collector(server, connector, state).poll(new_jobs="defer")
                    report = deliverer.pass_once()
                    assert result.ok and result.enqueued == PER_POLL == report.sent
                    handled += PER_POLL
                    if handled in (FIRST, LAST):
                        seen[handled] = (_retained(), _fds())
            finally:
                tracemalloc.stop()
            accepted = sei.ask("stats")["unique"]
        finally:
            deliverer.close()
            sender.close()
            connector.close()
            state.close()
    assert accepted == seeded + LAST  # every build delivered, once
    (first, fds_first), (last, fds_last) = seen[FIRST], seen[LAST]
    grown = sum(s.size_diff for s in last.compare_to(first, "filename"))
    top = "\n".join(str(s) for s in last.compare_to(first, "lineno")[:8])
    assert grown < BUDGET, (
        f"{grown / 1024:.0f} KiB more retained after {LAST} builds than after {FIRST}"
        f" (budget {BUDGET // 1024} KiB); grew most:\n{top}"
    )
    assert fds_last <= fds_first + FD_SLACK, (
        f"open file descriptors {fds_first} after {FIRST} builds, {fds_last} after {LAST}"
    )


def test_short_lived_threads_leave_no_connection_open(tmp_path: Path) -> None:
    """Every poll's scan threads (and every metrics scrape's thread) use the state database."""
    state = State(tmp_path / "state.db")

    def poll() -> None:
        threads = [threading.Thread(target=state.counts) for _ in range(SCAN_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        state.counts()
        before = _fds()
        for _ in range(20):
            poll()
        # SQLite may keep a closed connection's descriptor for reuse while another connection
        # holds a lock on the file: at most one per connection open at once.
        assert _fds() <= before + SCAN_THREADS, "finished threads' connections are still open"
    finally:
        state.close()


def _modules() -> list[Any]:
    found = []
    for pkg in (poller, connectors):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if ".standin" in info.name or info.name.endswith(("__main__", ".standin")):
                continue  # the stand-ins are test servers, not the daemon
            found.append(importlib.import_module(info.name))
    return found


def test_every_cache_has_a_bound() -> None:
    unbounded = [
        f"{module.__name__}.{name}"
        for module in _modules()
        for name, obj in vars(module).items()
        if isinstance(obj, functools._lru_cache_wrapper)
        and obj.cache_parameters()["maxsize"] is None
    ]
    assert not unbounded, f"caches without a bound: {unbounded}"


def test_upstream_cache_stays_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = JenkinsConnector(ServerSpec("j", "jenkins", "http://127.0.0.1:9/"))
    answer = {"actions": [{"causes": [{"_class": "hudson.model.Cause$UserIdCause"}]}]}
    monkeypatch.setattr(connector, "get_json", lambda *_a, **_k: answer)
    for n in range(UPSTREAM_CACHE + 100):
        connector._upstream_causes({"upstreamProject": "team/api", "upstreamBuild": n})
    assert len(connector._upstream) == UPSTREAM_CACHE
    assert ("team/api", UPSTREAM_CACHE + 99) in connector._upstream  # newest kept
    assert ("team/api", 0) not in connector._upstream  # oldest went first
    connector.close()
