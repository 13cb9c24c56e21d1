"""Time cursors with overlap, for servers asked "what finished since T".

The server's own clock decides (its `Date` header: a proxy's or our clock may differ), and
every window reaches back `OVERLAP` further than the last one ended, because a build's
finish stamp is set before it shows as finished. Builds seen inside the overlap are
remembered (`marks`), so seeing them again costs nothing. A cursor is versioned JSON: one
written by another version reads as none, and the connector then reads everything once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

# Seconds of slack on every window, in ms. GUESS (TeamCity, Buildkite): 5 minutes.
OVERLAP = 300_000


def date_header(value: str | None) -> int | None:
    """A `Date` header in epoch ms: the server's clock, for cursors that compare with it."""
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def load_cursor(text: str | None, version: int) -> dict[str, Any] | None:
    """A server cursor written by this connector version (`{"v": version, "at": ms, ...}`),
    or None for none, garbage or another version: the caller then scans everything once."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if data.get("v") == version and isinstance(data.get("at"), int):
            return dict(data)
    except (ValueError, AttributeError):
        pass
    return None


def dump_cursor(version: int, at: int, **fields: Any) -> str:
    return json.dumps({"v": version, "at": at, **fields}, separators=(",", ":"))


def low(at: int, now: int, overlap: int = OVERLAP) -> int:
    """Where the next window starts: the last poll's time (never in the future), less the
    overlap."""
    return min(at, now) - overlap


def fresh(finished: Iterable[tuple[str, int]], now: int, overlap: int = OVERLAP) -> list[str]:
    """The marks of builds that finished inside the overlap: the next window sees them again."""
    return [mark for mark, at in finished if at > now - overlap]
