"""Neutral records passed from connectors to the core.

Connectors build these from whatever their CI server speaks; nothing here knows SEI or
SQLite, so a third-party connector depends on this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poller.network import Endpoint

# Jenkins' own result vocabulary: SEI stores `result` verbatim and DORA filters match it
# exactly, so every connector maps onto these five strings.
RESULTS = ("SUCCESS", "FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT")


@dataclass(frozen=True)
class ServerSpec:
    """What every connector is told about its server, already validated.

    `settings` is the connector's own validated settings object (its `Settings` model),
    holding what only that connector understands (credentials, for instance).
    """

    name: str
    type: str
    url: str
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    stages: bool = True
    verify_tls: bool | str = True
    timeout: float = 30.0
    max_concurrency: int = 4
    requests_per_second: float | None = None
    settings: Any = None
    # Where requests to `url` go and whom they trust (`poller.network`): every connector's
    # session is prepared from it (`connectors.kit.http.prepare`). None: direct, default trust.
    network: Endpoint | None = None


@dataclass(frozen=True)
class JobRef:
    """One buildable job as discovery saw it.

    `last_build` / `last_completed` let the core skip a job whose history has not moved
    since the previous poll without asking the server anything more.
    """

    full_name: str
    pipeline: str
    url: str
    branch: str | None = None
    last_build: int | None = None
    last_completed: int | None = None
    # When the newest build started (epoch ms), if discovery says: a new job whose newest
    # build started before `backfill_since` has nothing in range and costs no request.
    last_started_ms: int | None = None
    kind: str = ""  # the CI system's own type for the job (a Jenkins `_class`): context only
    # What a server-wide "finished since" query saw (connectors with `server_cursor`): the
    # numbers of this job's builds that finished since the server cursor. None: the
    # connector cannot tell, and the core judges from `last_build` / `last_completed`; an
    # empty tuple: nothing finished, so the core scans the job only if it must anyway.
    changed: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Cause:
    """Why a build ran; `type` is the cause's class simple name (`UserIdCause`)."""

    type: str
    id: str
    job_run_number: int | None = None


@dataclass(frozen=True)
class Param:
    type: str
    name: str
    value: Any


@dataclass(frozen=True)
class Step:
    id: str
    name: str
    description: str
    result: str
    state: str
    start_ms: int | None
    duration_ms: int


@dataclass(frozen=True)
class Stage:
    id: str
    name: str
    description: str
    result: str
    state: str
    start_ms: int | None
    duration_ms: int
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Artifact:
    name: str
    location: str
    qualifier: str
    type: str = "file"
    output: bool = True


@dataclass(frozen=True)
class Build:
    """One finished build, everything SEI can use, nothing more.

    `number` is the key SEI dedupes on (with the job's full name), so connectors for
    systems without build numbers must derive a stable integer (e.g. run * 1000 + attempt).
    """

    job_full_name: str
    pipeline: str
    number: int
    result: str
    start_ms: int
    duration_ms: int
    url: str = ""
    user_id: str = "SYSTEM"
    triggers: tuple[Cause, ...] = ()
    params: tuple[Param, ...] = ()
    commit_ids: tuple[str, ...] = ()
    repo_url: str | None = None
    branch: str | None = None
    stages: tuple[Stage, ...] | None = None
    artifacts: tuple[Artifact, ...] = ()
    # A build of a kind that has stages (a Jenkins Pipeline run; a Buildbot build's steps):
    # one like that with `stages` None lost them, which `explain` and `status` point out.
    expects_stages: bool = False
    # Names to report the job under when the connector was asked for other names than
    # `job_full_name` (Jenkins' `naming = "plugin"`: the job's directory path, and that path
    # without its `jobs/`, `branches/`, `modules/` segments). `job_full_name` stays the job's
    # identity: state, include/exclude and cd_jobs globs all match it. None: the same name.
    report_full_name: str | None = None
    report_qualified_name: str | None = None
    # The connector's own idea of whether this run is a deployment (a Bamboo deployment, a
    # GoCD deploy stage): the default that payload rules (`cd = ...`) refine. None: a build.
    deployment: bool | None = None


@dataclass(frozen=True)
class Unfinished:
    """A build seen still running: the core keeps the job's low watermark below it."""

    number: int


@dataclass(frozen=True)
class Broken:
    """A finished build whose details the server keeps failing to give (a `wfapi` 500 from
    corrupt flow-node storage, say). The core parks it like a running build and retries it;
    `fallback`, when the connector can build one, is the build without the failing part,
    which the core sends once the build has been broken for `give_up_after`."""

    number: int
    error: str
    url: str = ""
    fallback: Build | None = None


@dataclass(frozen=True)
class Unlisted:
    """A container (folder) discovery could not list this time: its siblings are still
    polled, its jobs simply wait, and the core records it for `status`."""

    name: str
    url: str
    error: str


@dataclass(frozen=True)
class Checkpoint:
    """A time-cursored connector's new cursor for this job, saved when its scan completes."""

    cursor: str


@dataclass
class JobCursor:
    """What the core remembers of one job, handed to the connector when it scans.

    `watermark`: every build at or below it is handled (None: job never scanned).
    `floor`: the lowest build number the handled range starts at (backfill extends it).
    `since_ms`: do not read builds that started before this (the backfill window).
    `cursor`: an opaque string a time-cursored connector may keep between scans.
    `backfill`: the core wants the job's history back to `since_ms` (None: all of it), on
    first sight or for `backfill`, not just what changed since `cursor`.
    """

    watermark: int | None = None
    floor: int | None = None
    since_ms: int | None = None
    cursor: str | None = None
    backfill: bool = False
