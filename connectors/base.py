"""The contract between the core and a connector, in one screen.

A connector knows one CI system and nothing of SEI or of our database: it lists jobs and
yields neutral `poller.model` records; the core owns scheduling, the ledger, every cursor,
payloads and delivery. `Connector` is what every one implements. Each optional capability is
a small protocol of its own, claimed by subclassing it (`class X(ServerCursor, GetBuild)`)
and checked when the connector is loaded (`poller.registry`): a claim without the methods it
promises is refused with one line naming the connector and what it lacks. What the core
gives a connector comes in one `Services` object, at construction; the core never sets
attributes on a connector. `docs/connectors/writing.md` walks through writing one.
"""

from __future__ import annotations

import builtins
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import structlog
from pydantic import BaseModel

from poller.model import (
    Broken,
    Build,
    Checkpoint,
    JobCursor,
    JobRef,
    ServerSpec,
    Unfinished,
    Unlisted,
)

Wanted = Callable[[int], bool]
Found = Iterator[Build | Unfinished | Broken | Checkpoint]


class Clock(Protocol):
    """Wall time and waiting, so tests can move time instead of sleeping."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _ignore(*_args: Any) -> None:
    pass


@dataclass(frozen=True)
class Services:
    """What the core hands a connector: call the hooks, read the clock, log through `log`."""

    #: Each request the connector makes: (HTTP status or None for no answer, seconds taken).
    on_request: Callable[[int | None, float], None] = _ignore
    #: A build handled already finished again with another result (a retry, an unblock):
    #: SEI keeps the first write, so this is how an operator hears of it (a metric).
    on_changed_after_send: Callable[[], None] = _ignore
    clock: Clock = field(default_factory=SystemClock)
    log: Any = field(default_factory=structlog.get_logger)


@runtime_checkable
class Connector(Protocol):
    """Required. Register the class under the `sei_poller.connectors` entry point.

    - `Settings`: a pydantic model of this connector's own keys (credentials, say), with
      `extra="forbid"`; mark secrets `SecretStr` and the log redactor learns them.
    - `sequential`: True when a job's build numbers only grow (Jenkins): the core keeps a
      watermark. False (TeamCity ids, GitHub's run * 1000 + attempt): numbers are keys, the
      ledger says what was sent, and the connector keeps a time cursor by yielding
      `Checkpoint`s (saved only with a scan that completed).
    - `discover()`: every buildable job, cheaply; `Unlisted` for a folder it could not list.
    - `scan(job, cursor, wanted)`: the job's builds newest first, stopping at
      `cursor.watermark` (exclusive) and at builds started before `cursor.since_ms`; back to
      `since_ms` when `cursor.backfill`. `Unfinished(n)` for running builds; for each finished
      one call `wanted(n)` and yield a `Build` (or a `Broken` whose details keep failing)
      only if it is wanted. Raise `poller.errors.ConnectorError` when the server fails.
    - `describe()`: version and user, for `check`.
    """

    type: ClassVar[str]
    Settings: ClassVar[builtins.type[BaseModel]]
    sequential: ClassVar[bool]

    def __init__(self, spec: ServerSpec, services: Services) -> None: ...

    def discover(self) -> Iterator[JobRef | Unlisted]: ...

    def scan(self, job: JobRef, cursor: JobCursor, wanted: Wanted) -> Found: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class ServerCursor(Protocol):
    """The server can say what finished since T for all jobs at once (TeamCity, Buildkite).

    `discover_since(cursor)` gets the cursor the core saved after the last poll (None at
    first) and yields the `JobRef`s, each with `changed` = the numbers that finished since
    (empty: none; None: cannot tell), and one `Checkpoint`: the next cursor, saved when the
    poll ends unstopped. The core adds to `changed` the builds a failed scan owes and parked
    builds due again, so `scan` must look at every number in `changed`, reached by its
    listing or not (read it alone; a 404 means gone). A job with empty `changed` is not
    scanned: an idle poll costs what this costs.
    """

    def discover_since(self, cursor: str | None) -> Iterator[JobRef | Unlisted | Checkpoint]: ...


@runtime_checkable
class HoldsPending(Protocol):
    """Builds that look finished but wait for a person (a block step, an approval gate) are
    yielded as `Unfinished` until released, or until `max_pending_age` seconds have passed;
    then they are sent as they stand. `check` says so. (A property, read from Settings.)"""

    @property
    def max_pending_age(self) -> float: ...


@runtime_checkable
class ChangesAfterSend(Protocol):
    """A handled build can finish again with another result (a retried job); the connector
    calls `Services.on_changed_after_send` then, and counts it in `changed_after_send` (a
    class attribute `= 0`, counted per instance). The core keeps the metric's series for it."""

    changed_after_send: int


@runtime_checkable
class RecentBuilds(Protocol):
    """For `check`: (number, start ms) of the newest `limit` builds, in one cheap request."""

    def recent_builds(self, job: JobRef, limit: int) -> list[tuple[int, int]]: ...


@runtime_checkable
class GetBuild(Protocol):
    """For `explain`: one build as `scan` would yield it, without a scan."""

    def get_build(self, job: JobRef, number: int) -> Build | Broken | Unfinished: ...


CAPABILITIES: tuple[type, ...] = (
    ServerCursor,
    HoldsPending,
    ChangesAfterSend,
    RecentBuilds,
    GetBuild,
)


def claims(cls: type, capability: type) -> bool:
    """The class subclasses the capability's protocol: it says it has it."""
    return capability in cls.__mro__


def missing(cls: type) -> list[str]:
    """What the class lacks of `Connector` and of each capability it claims, in words."""
    lacks = []
    for proto in (Connector, *(c for c in CAPABILITIES if claims(cls, c))):
        for name in _members(proto):
            impl, stub = getattr(cls, name, None), getattr(proto, name, None)
            if impl is None or (callable(stub) and impl is stub):
                lacks.append(f"{name} ({proto.__name__})")
    return lacks


def _members(proto: type) -> list[str]:
    """A protocol's own attributes and methods, in the order it declares them."""
    names = list(inspect.get_annotations(proto))
    names += [
        n
        for n, v in vars(proto).items()
        if (callable(v) or isinstance(v, property)) and not n.startswith("_")
    ]
    return names
