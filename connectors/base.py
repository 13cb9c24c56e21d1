"""The contract between the core and a connector.

A connector knows one CI system and nothing of SEI or of our database: it lists jobs and
yields neutral `poller.model` records. The core owns scheduling, the ledger, watermarks,
payloads and delivery, so writing a connector is mostly mapping fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from poller.model import Build, JobCursor, JobRef, ServerSpec, Unfinished

Wanted = Callable[[int], bool]


class Connector(Protocol):
    """What `poller` calls. Register the class under the `sei_poller.connectors` entry point.

    - `Settings`: a pydantic model of the keys only this connector understands (credentials,
      say); unknown keys are the operator's mistake, so use `extra="forbid"`. Mark secrets
      with `SecretStr` and the log redactor will know them.
    - `discover()`: every buildable job, cheaply (for Jenkins one request per folder level).
    - `scan(job, cursor, wanted)`: builds of one job, newest first, stopping at
      `cursor.watermark` (exclusive) and at builds started before `cursor.since_ms`. Yield
      `Unfinished(n)` for builds still running and a `Build` for each finished build for which
      `wanted(n)` is true; call `wanted` for every finished build in range (the core learns
      the range it covered from those calls) and fetch expensive details (stages) only for
      builds it wants. Raise `poller.errors.ConnectorError` when the server fails.
    - `describe()`: version and identity for `sei-poller check` (raise on failure).
    - `sequential`: True when a job's build numbers only grow (Jenkins, Buildbot): the core
      keeps a low watermark and prunes the ledger below it. A time-cursored system whose
      re-runs get numbers below the newest (GitHub: `run_number * 1000 + attempt`) sets it
      False: `cursor.watermark` is then always None, the ledger alone says what was sent,
      and the connector narrows its listing with `cursor.cursor`, which it moves by yielding
      a `Checkpoint` (saved only when the scan completes, with the job's last outbox rows).
    """

    type: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    sequential: ClassVar[bool]
    # Optional: the core sets it, when metrics are on, to observe every request the connector
    # makes as (HTTP status or None, seconds). Call it if set; leave it None otherwise.
    on_request: Callable[[int | None, float], None] | None

    def __init__(self, spec: ServerSpec) -> None: ...

    def discover(self) -> Iterator[JobRef]: ...

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Wanted
    ) -> Iterator[Build | Unfinished]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
