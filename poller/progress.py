"""Backfill progress a person can read: a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import structlog

log = structlog.get_logger()
LOG_EVERY = 10.0  # seconds between progress log lines when stderr is not a terminal


class Progress:
    """Builds delivered of builds found (so the ETA means something), and jobs scanned.

    Safe to update from the scanning threads and the delivery thread at once.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.counts = {"jobs": 0, "scanned": 0, "found": 0, "delivered": 0}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=0, unit="build", desc="delivered", dynamic_ncols=True, file=sys.stderr
            )

    def update(self, kind: str, n: int = 1) -> None:
        if not self.enabled or not n:
            return
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + n
            self._render()

    def delivered(self, _item: Any, outcome: Any) -> None:
        """A Deliverer outcome hook."""
        if outcome.kind == "sent":
            self.update("delivered")

    def _render(self, force: bool = False) -> None:
        c = self.counts
        if self._bar is not None:
            self._bar.total = c["found"]
            self._bar.n = c["delivered"]
            self._bar.set_postfix_str(f"jobs scanned {c['scanned']}/{c['jobs']}", refresh=False)
            self._bar.refresh()
        elif force or time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            elapsed = max(time.monotonic() - self._started, 1e-6)
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
            self._render(force=True)
