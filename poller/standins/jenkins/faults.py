"""Fault injection: make chosen paths fail or answer slowly, to test a client's error handling.

Paths are matched with ``re.search`` against the path as sent (percent-encoded, no query).
"""

from __future__ import annotations

import re
import threading
from typing import Any


class Faults:
    """The faults a :class:`~.controller.FakeJenkins` applies to the requests it serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fails: list[list[Any]] = []  # [compiled regex, status, remaining or None]
        self._delays: list[tuple[re.Pattern[str], float]] = []

    def fail(self, path_regex: str, status: int = 500, times: int | None = None) -> None:
        """Answer ``status`` (HTML body) to matching requests; ``times=None``: forever."""
        with self._lock:
            self._fails.append([re.compile(path_regex), status, times])

    def delay(self, path_regex: str, seconds: float) -> None:
        """Sleep ``seconds`` before answering matching requests (timeout tests)."""
        with self._lock:
            self._delays.append((re.compile(path_regex), seconds))

    def clear(self) -> None:
        with self._lock:
            self._fails.clear()
            self._delays.clear()

    # -- used by the server ----------------------------------------------------------------
    def pause(self, path: str) -> float:
        """Seconds to wait before answering ``path`` (the first matching delay, else 0)."""
        with self._lock:
            return next((s for rx, s in self._delays if rx.search(path)), 0.0)

    def failure(self, path: str) -> int | None:
        """The status to answer ``path`` with instead of its real answer, if a fault applies."""
        with self._lock:
            for fault in self._fails:
                rx, status, left = fault
                if (left is None or left > 0) and rx.search(path):
                    if left is not None:
                        fault[2] = left - 1
                    return status
        return None
