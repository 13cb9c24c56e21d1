"""Fault injection: make chosen paths fail, answer slowly, hang or break mid-answer.

Paths are matched with ``re.search`` against the path as sent (percent-encoded, no query), and
faults are kept in the order they were added. For one request the server asks, in this order:

1. :meth:`Faults.hang_for`: the first matching ``hang`` keeps the connection silent that long,
   then closes it without an answer (nothing else applies);
2. :meth:`Faults.pause`: the first matching ``delay`` sleeps, then the request is answered;
3. :meth:`Faults.failure`: the first matching ``fail``/``break_path``/``flaky`` that fires turns
   the answer into an error page. Every matching ``flaky`` draws once per request, whether or
   not an earlier fault already fired, so its draws depend only on how many matching requests
   came before (with a seed, a sequential client sees the same schedule every run);
4. :meth:`Faults.resets`: a matching ``reset`` sends the status line, the headers and half the
   body, then resets the connection (TCP RST; the client may lose what was still in flight).

Counted faults (``times``) count only the requests they fired on.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field


def login_page(title: str = "Sign in - Example Corp SSO") -> bytes:
    """What a single-sign-on proxy answers in place of an API: a form, not JSON."""
    return (
        "<!DOCTYPE html><html><head><title>" + title + "</title></head><body>"
        '<form method="post" action="/login"><input name="username"><input name="password"'
        ' type="password"><button>Sign in</button></form></body></html>'
    ).encode()


@dataclass
class _Fault:
    kind: str  # fail | break | flaky | delay | hang | reset | page
    pattern: str
    left: int | None = None  # requests it still fires on; None: every one
    status: int = 500
    seconds: float = 0.0
    rate: float = 0.0
    rng: random.Random | None = None
    query: str | None = None  # also match the raw query string (one page of a listing)
    body: bytes = b""  # a page's HTML
    headers: tuple[tuple[str, str], ...] = ()  # a page's headers (a redirect's Location)
    rx: re.Pattern[str] = field(init=False)
    qx: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        self.rx = re.compile(self.pattern)
        self.qx = re.compile(self.query) if self.query is not None else None

    def matches(self, path: str, query: str = "") -> bool:
        return (
            (self.left is None or self.left > 0)
            and self.rx.search(path) is not None
            and (self.qx is None or self.qx.search(query) is not None)
        )

    def spend(self) -> None:
        if self.left is not None:
            self.left -= 1


class Faults:
    """The faults a :class:`~.controller.FakeJenkins` applies to the requests it serves.

    Thread-safe: faults may be added, healed or cleared while requests are being served.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    # -- adding ----------------------------------------------------------------------------
    def fail(
        self,
        path_regex: str,
        status: int = 500,
        times: int | None = None,
        query: str | None = None,
    ) -> None:
        """Answer ``status`` (HTML body) to matching requests; ``times=None``: forever.

        ``query``: a regex the decoded query string must match too (one page of a listing).
        """
        self._add(_Fault("fail", path_regex, left=times, status=status, query=query))

    def break_path(self, path_regex: str, status: int = 500) -> None:
        """Answer ``status`` to every matching request until :meth:`heal` or :meth:`clear`."""
        self._add(_Fault("break", path_regex, status=status))

    def flaky(self, rate: float, *, seed: int, status: int = 500, path_regex: str = ".*") -> None:
        """Answer ``status`` to each matching request with probability ``rate``.

        The draws come from ``random.Random(seed)``: the n-th matching request fails or not
        the same way in every run.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        self._add(_Fault("flaky", path_regex, status=status, rate=rate, rng=random.Random(seed)))

    def delay(self, path_regex: str, seconds: float) -> None:
        """Sleep ``seconds`` before answering matching requests (a slow answer, but an answer)."""
        self._add(_Fault("delay", path_regex, seconds=seconds))

    def hang(self, path_regex: str, seconds: float, times: int | None = None) -> None:
        """Accept matching requests, send nothing for ``seconds``, then close without answering.

        Unlike :meth:`delay`, no answer ever comes: a client without a read timeout shorter
        than ``seconds`` is stuck that long, then sees the connection closed.
        """
        self._add(_Fault("hang", path_regex, left=times, seconds=seconds))

    def reset(self, path_regex: str, times: int | None = None) -> None:
        """Reset the connection mid-answer: headers and half the body, then a TCP RST."""
        self._add(_Fault("reset", path_regex, left=times))

    def page(
        self,
        path_regex: str,
        status: int = 200,
        body: bytes | None = None,
        location: str | None = None,
    ) -> None:
        """Answer matching requests with an HTML page (a login page by default), as a
        single-sign-on proxy or captive portal in front of the server does; `location`
        makes it a redirect to there."""
        headers = (("Location", location),) if location else ()
        self._add(
            _Fault("page", path_regex, status=status, body=body or login_page(), headers=headers)
        )

    # -- removing --------------------------------------------------------------------------
    def heal(self, path_regex: str) -> int:
        """Remove every fault added with exactly this ``path_regex``; returns how many."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.pattern != path_regex]
            return before - len(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- used by the server ----------------------------------------------------------------
    def hang_for(self, path: str) -> float | None:
        """Seconds to keep silent before dropping the request for ``path``, if it hangs."""
        with self._lock:
            for f in self._faults:
                if f.kind == "hang" and f.matches(path):
                    f.spend()
                    return f.seconds
        return None

    def breaks(self, path: str, query: str = "") -> int | None:
        """The status of a `fail` or `break` (not a flaky share, nor a hang) standing on
        `path`, or None: what a stand-in asks of a part of an answer (a folder listed inside
        another's, say). Nothing is spent: the part is not a request."""
        with self._lock:
            return next(
                (
                    f.status
                    for f in self._faults
                    if f.kind in ("fail", "break") and f.matches(path, query)
                ),
                None,
            )

    def page_for(self, path: str) -> tuple[int, bytes, list[tuple[str, str]]] | None:
        """(status, HTML, headers) when a page answers for the server at ``path``."""
        with self._lock:
            for f in self._faults:
                if f.kind == "page" and f.matches(path):
                    return f.status, f.body, list(f.headers)
        return None

    def pause(self, path: str) -> float:
        """Seconds to wait before answering ``path`` (the first matching delay, else 0)."""
        with self._lock:
            return next(
                (f.seconds for f in self._faults if f.kind == "delay" and f.matches(path)), 0.0
            )

    def failure(self, path: str, query: str = "") -> tuple[str, int] | None:
        """(fault kind, status) to answer ``path`` with instead of its real answer, if any."""
        fired: tuple[str, int] | None = None
        with self._lock:
            for f in self._faults:
                if f.kind not in ("fail", "break", "flaky") or not f.matches(path, query):
                    continue
                if f.kind == "flaky":
                    assert f.rng is not None
                    if f.rng.random() < f.rate and fired is None:
                        fired = (f.kind, f.status)
                elif fired is None:
                    f.spend()
                    fired = (f.kind, f.status)
        return fired

    def resets(self, path: str) -> bool:
        """Whether the answer to ``path`` is to be cut off by a connection reset."""
        with self._lock:
            for f in self._faults:
                if f.kind == "reset" and f.matches(path):
                    f.spend()
                    return True
        return False
