"""Types for a connector's `Settings`, read the way the core reads its own keys."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from poller.timeparse import parse_duration


def _positive_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration, not true or false")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be above 0")
    return seconds


#: Seconds, from a number or a string like "90s", "12h", "7d"; above 0.
Duration = Annotated[float, BeforeValidator(_positive_duration)]
