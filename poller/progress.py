"""Backfill progress a person can read: a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import threading
import time

import structlog

log = structlog.get_logger()
LOG_EVERY = 10.0  # seconds between progress log lines when stderr is not a terminal


class Progress:
    """Counts jobs scanned, builds found and delivered; safe to update from many threads."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.counts = {"jobs": 0, "scanned": 0, "found": 0, "delivered": 0}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=0, unit="job", desc="jobs scanned", dynamic_ncols=True, file=sys.stderr
            )

    def update(self, kind: str, n: int) -> None:
        if not self.enabled or not n:
            return
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + n
            if kind == "jobs" and self._bar is not None:
                self._bar.total = self.counts["jobs"]
            self._render()

    def _render(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        c = self.counts
        if self._bar is not None:
            self._bar.n = c["scanned"]
            self._bar.set_postfix(
                found=c["found"],
                delivered=c["delivered"],
                rate=f"{c['delivered'] / elapsed:.0f}/s",
                refresh=False,
            )
            self._bar.refresh()
        elif time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            log.info(
                "backfill progress",
                jobs=c["jobs"],
                jobs_scanned=c["scanned"],
                builds_found=c["found"],
                builds_delivered=c["delivered"],
                builds_per_second=round(c["delivered"] / elapsed, 1),
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.counts["jobs"]:
            self._last_log = 0.0
            self._render()
