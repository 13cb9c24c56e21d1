"""Politeness towards a CI server: at most N requests at once, at most R per second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Throttle:
    """A semaphore for concurrency and an evenly spaced schedule for the rate.

    Spacing requests (rather than a bursty token bucket) is what a controller under load
    prefers, and it needs no library for twenty lines.
    """

    def __init__(self, max_concurrency: int, requests_per_second: float | None) -> None:
        self._sem = threading.BoundedSemaphore(max(1, max_concurrency))
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._sem:
            if self._interval:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._next)
                    self._next = start + self._interval
                if start > now:
                    time.sleep(start - now)
            yield
