"""The daemon: APScheduler polls each server on its own interval; delivery runs continuously.

Each server has its own interval job (max one instance, coalesced) in a pool large enough
for all of them, so a slow or failing server never delays another. Jobs seen for the first
time are backfilled by a separate job, so a long backfill never delays a live poll.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from poller.collect import Collector
from poller.config import Config, Server
from poller.deliver import AUTH_PAUSE, Deliverer
from poller.notify import notify, watchdog_interval
from poller.state import State

log = structlog.get_logger()
PASS_BUDGET = 5.0  # seconds of delivery before the loop looks up (watchdog, stop)
STOP_BUDGET = 9.0  # from SIGTERM to exit: the spec allows 10 s
STUCK_AFTER = 900.0  # a live poll running longer than this (and 10 intervals) starves the watchdog


class Daemon:
    def __init__(
        self,
        cfg: Config,
        state: State,
        deliverer: Deliverer,
        connectors: dict[str, Any],
        stop: threading.Event,
        metrics: Any = None,
    ) -> None:
        self.cfg, self.state, self.deliverer, self.metrics = cfg, state, deliverer, metrics
        self.connectors, self.stop = connectors, stop
        self.wake = threading.Event()
        self.running: dict[str, float] = {}
        self.stopped_at: float | None = None
        self.backfilling: set[str] = set()
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max(4, 2 * len(cfg.servers) + 1))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def _collector(self, server: Server) -> Collector:
        return Collector(
            server, self.connectors[server.name], self.state, stop=self.stop, metrics=self.metrics
        )

    def poll(self, server: Server) -> None:
        self.running[server.name] = time.monotonic()
        try:
            result = self._collector(server).poll(new_jobs="defer")
            with self._lock:
                start = bool(result.new_jobs) and server.name not in self.backfilling
                if start:
                    self.backfilling.add(server.name)
            if start and not self.stop.is_set():
                self.scheduler.add_job(
                    self.backfill,
                    id=f"backfill:{server.name}",
                    args=[server],
                    replace_existing=True,
                    next_run_time=datetime.now(UTC),
                )
        finally:
            self.running.pop(server.name, None)
            self.wake.set()

    def backfill(self, server: Server) -> None:
        """First sight of jobs, in its own job: the live polls go on meanwhile."""
        try:
            self._collector(server).poll(new_jobs="only")
        finally:
            with self._lock:
                self.backfilling.discard(server.name)
            self.wake.set()

    def healthy(self) -> bool:
        now = time.monotonic()
        for server in self.cfg.servers:
            began = self.running.get(server.name)
            limit = max(STUCK_AFTER, 10 * server.config.poll_interval)
            if began is not None and now - began > limit:
                log.error("poll stuck; withholding the watchdog ping", server=server.name)
                return False
        return True

    def run(self) -> int:
        for server in self.cfg.servers:
            interval = server.config.poll_interval
            self.scheduler.add_job(
                self.poll,
                "interval",
                seconds=interval,
                args=[server],
                id=f"poll:{server.name}",
                jitter=min(30.0, interval * 0.1),
                next_run_time=datetime.now(UTC),
            )
        self.scheduler.start()
        threading.Thread(target=self._stop_scheduling, name="stop-watch", daemon=True).start()
        notify("READY=1")
        log.info("daemon started", servers=[s.name for s in self.cfg.servers])
        ping_every = watchdog_interval()
        last_ping = 0.0
        while not self.stop.is_set():
            report = self.deliverer.pass_once(budget=PASS_BUDGET)
            if ping_every and time.monotonic() - last_ping >= ping_every and self.healthy():
                notify("WATCHDOG=1")
                last_ping = time.monotonic()
            if report.halted:
                self.stop.wait(AUTH_PAUSE)
                continue
            nxt = self.state.next_due_at()
            timeout = 1.0 if nxt is None else min(1.0, max(0.05, nxt - time.time()))
            if report.sent == 0:
                self.wake.wait(timeout)
            self.wake.clear()
        return self.shutdown()

    def _stop_scheduling(self) -> None:
        """The moment a stop is asked for, no new poll starts; the POSTs in flight finish."""
        self.stop.wait()
        self.stopped_at = time.monotonic()
        notify("STOPPING=1")
        log.info("stopping: no new polls, finishing the POSTs in flight")
        self.scheduler.shutdown(wait=False)
        self.wake.set()

    def shutdown(self) -> int:
        self.deliverer.close()
        deadline = (self.stopped_at or time.monotonic()) + STOP_BUDGET
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                if thread.name.startswith("sei-post"):
                    continue  # abandoned POSTs: their rows are still pending
                thread.join(max(0.0, deadline - time.monotonic()))
        log.info("stopped")
        return 0
