"""Globs over job full names: `*` stays inside one path segment, `**` crosses them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


# Patterns come from the config (include, exclude, cd_jobs) and one `--job` glob, so a handful
# per server; 256 is far more than any config holds, and keeps a bound should that change.
@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(_compile(p).match(name) for p in patterns)


def selected(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    return matches(name, include) and not matches(name, exclude)
