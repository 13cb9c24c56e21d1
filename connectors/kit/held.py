"""Held until finished: builds that look done but wait for a person, with a deadline.

A Buildkite build stopped at a block step, a GoCD stage behind a manual approval, a Bamboo
deployment waiting to be promoted: the server calls them finished (or nearly), yet the
result may still change when someone acts. Such a build is held (yielded as `Unfinished`,
so the core keeps it pending) until it is released or until it has waited
`max_pending_age`; then it is sent as it stands. `Held` remembers since when each build has
waited, inside the server cursor, so the deadline holds across `once` runs and restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping


class Held:
    """Keys (`pipeline#42`, say) and since when (ms) each has been held."""

    def __init__(self, since: Mapping[str, int] | None = None) -> None:
        self._since: dict[str, int] = {str(k): int(v) for k, v in (since or {}).items()}

    def hold(self, key: str, since_ms: int) -> int:
        """Hold `key` (the first time: from `since_ms`); returns since when it is held."""
        return self._since.setdefault(key, since_ms)

    def release(self, key: str) -> None:
        self._since.pop(key, None)

    def waited(self, key: str, now_ms: int) -> int | None:
        at = self._since.get(key)
        return None if at is None else now_ms - at

    def still_held(self, key: str, now_ms: int, max_age_ms: int) -> bool:
        """Held, and not yet for `max_age_ms`: keep waiting."""
        waited = self.waited(key, now_ms)
        return waited is not None and waited < max_age_ms

    def expired(self, now_ms: int, max_age_ms: int) -> Iterator[str]:
        """Keys held for `max_age_ms` or longer, released as they are yielded."""
        for key, at in list(self._since.items()):
            if now_ms - at >= max_age_ms:
                self.release(key)
                yield key

    def update(self, other: Iterable[tuple[str, int]]) -> None:
        for key, at in other:
            self._since.setdefault(key, at)

    def items(self) -> list[tuple[str, int]]:
        return list(self._since.items())

    def as_dict(self) -> dict[str, int]:
        """For the server cursor."""
        return dict(self._since)
