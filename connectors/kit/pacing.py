"""Rate-limit pacing: slow down before a server's limit instead of running into it.

Servers that meter their API (Buildkite; GitHub-style `X-RateLimit-*` too) say in every
answer how many requests are left and when the window resets. Below half the limit, the
requests left (less `reserve`, kept for the server's other clients) are spread evenly over
what remains of the window, across every thread of the poll; at the reserve, requests wait
for the reset. Each paced request is counted as it leaves, so threads waiting together
spread out instead of leaving at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.base import Clock, SystemClock

REMAINING = ("RateLimit-Remaining", "Rate-Limit-Remaining", "X-RateLimit-Remaining")
LIMIT = ("RateLimit-Limit", "Rate-Limit-Limit", "X-RateLimit-Limit")
RESET = ("RateLimit-Reset", "Rate-Limit-Reset", "X-RateLimit-Reset-After", "Retry-After")


@dataclass
class _Window:
    remaining: float
    limit: float
    reset_at: float  # on the clock's monotonic scale


class Pacer:
    """One per server: `before()` ahead of each request, `note(headers)` after its answer."""

    def __init__(self, *, reserve: int = 10, max_wait: float = 120.0, clock: Clock | None = None):
        self.reserve, self.max_wait = reserve, max_wait
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._window: _Window | None = None
        self._next = 0.0

    def before(self) -> float:
        """Wait as the window asks; returns the seconds waited."""
        with self._lock:
            w, now = self._window, self.clock.monotonic()
            left = w.reset_at - now if w else 0.0
            if w is None or left <= 0:
                return 0.0
            if w.remaining <= self.reserve:
                start = w.reset_at
            elif w.remaining < w.limit / 2:
                start = max(now, self._next) + left / (w.remaining - self.reserve)
            else:
                return 0.0
            self._next = start
            w.remaining = max(0.0, w.remaining - 1)
        wait = min(max(0.0, start - now), self.max_wait)
        if wait:
            self.clock.sleep(wait)
        return wait

    def note(self, headers: Mapping[str, str]) -> float | None:
        """Read the rate-limit headers of an answer; the seconds to the reset, if said."""
        remaining, limit, reset = (
            _num(headers, REMAINING),
            _num(headers, LIMIT),
            _num(headers, RESET),
        )
        if remaining is not None and reset is not None:
            with self._lock:
                at = self.clock.monotonic() + reset
                self._window = _Window(remaining, limit or remaining, at)
        return reset


def _num(headers: Mapping[str, str], names: tuple[str, ...]) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value)
        except ValueError:
            continue
    return None
