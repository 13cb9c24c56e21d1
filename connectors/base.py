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
      While a build of the job is parked, the core keeps the job's earlier cursor, so the
      listing that offers the build again still reaches back to it. `cursor.backfill` says
      the core wants history back to `cursor.since_ms` (first sight, `backfill`), not just
      what changed since `cursor.cursor`.

    Optional, for servers that can say "what finished since T" for every job in one request
    (TeamCity's `finishDate` locator): `server_cursor = True`. The core then calls
    `discover(cursor)` with the opaque server cursor it saved after the previous poll (None
    on the first), and the connector

    - yields, besides the `JobRef`s, one `Checkpoint`: the server's new cursor, which the core
      saves when the poll ends without being stopped (a narrowed `--job` poll, or one that
      only backfills new jobs, is handed None and saves nothing);
    - sets each `JobRef.changed` to the numbers of that job's builds that finished since the
      cursor (an empty tuple: none did), or None when it cannot tell (no cursor yet).

    The core adds to `changed` what it knows better: builds owed by a scan of the job that
    failed after the server cursor moved past them, and parked builds due for another try.
    So `scan` must look at every number in `changed`, whether or not its listing window
    reaches it (read it alone by number when it does not: a 404 means it is gone).

    A job whose `changed` is empty is not scanned, so an idle poll costs what discovery
    costs, however many jobs there are, unless the core knows better: a new job, one being
    backfilled and one whose last scan failed are scanned anyway. `discover()` without an
    argument (`sei-poller check`) must work too, and then yields only `JobRef`s and
    `Unlisted`s.
    Connectors without the attribute (Jenkins, Buildbot) are called and judged as before.
    """

    type: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    sequential: ClassVar[bool]
    # Optional, so not declared here (see above): `server_cursor: ClassVar[bool] = True`.
    # Optional: the core sets it, when metrics are on, to observe every request the connector
    # makes as (HTTP status or None, seconds). Call it if set; leave it None otherwise.
    on_request: Callable[[int | None, float], None] | None
    # Optional, not part of the protocol: a class attribute `on_changed_after_send = None`,
    # which the core sets when metrics are on. Call it when a build already handled finished
    # again with another result (a retried job, an unblock): SEI keeps the first write, so
    # the metric `sei_poller_changed_after_send_total` is how an operator sees it.

    def __init__(self, spec: ServerSpec) -> None: ...

    def discover(self) -> Iterator[JobRef]: ...

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Wanted
    ) -> Iterator[Build | Unfinished]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
