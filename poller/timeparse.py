"""Durations and dates as operators write them in config and on the command line."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from `90`, `"90s"`, `"5m"`, `"1h"`, `"30d"`; ValueError names what is wrong."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90, '90s', '5m', '1h' or '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration like 90, '90s', '5m', '1h' or '30d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_since(value: object, *, now: datetime | None = None) -> datetime | None:
    """A backfill bound: `"all"` (None: no bound), an ISO date or datetime, or a duration ago."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    if text.lower() == "all":
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not 'all', an ISO date like '2025-01-01' or a duration like '30d'"
        ) from None
    now = now or datetime.now(UTC)
    return datetime.fromtimestamp(now.timestamp() - seconds, tz=UTC)


def since_ms(value: object) -> int | None:
    """Epoch milliseconds of a backfill bound, None for `all`."""
    bound = parse_since(value)
    return None if bound is None else int(bound.timestamp() * 1000)
