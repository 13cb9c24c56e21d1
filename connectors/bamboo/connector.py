"""Bamboo Data Center, read through its REST API (`<url>rest/api/latest/`), plans and
deployments.

Identity. One SEI job per plan (`job_full_name` = the plan key, `PROJ-PLAN`), one per plan
branch (`PROJ-PLAN/<branch short name>`: a branch plan numbers its results from 1, so it
must not share the plan's name) and one per deployment environment
(`deploy/<deployment project>/<environment>`). `build_number` is the result's
`buildNumber`, a deployment result's `id`.

Finished means finished: a result whose `lifeCycleState` is `Queued`, `Pending` or
`InProgress` waits; a finished one whose manual stage has not run yet (`continuable`) is
held until that stage runs or `max_pending_age` has passed since it finished, then sent
with the stages that ran. A result restarted in place ("rerun failed jobs") or continued
after it was sent finishes again under the same number: SEI keeps the first write, so it is
counted (`changed_after_send`) and logged, never sent twice.

Polling cost. Discovery (the plan list, each plan's branches, the deployment projects) runs
on the first poll and then every `DISCOVER_EVERY`; between runs its answer is kept in the
server cursor, so a `once` from cron does not repeat it. Every poll then asks each plan,
branch plan and deployment environment one question: its newest results, newest first
(`result/<KEY>?includeAllStates=true&expand=results.result&max-result=N`, N covering what
the job's own cursor still watches: results running or held at the last poll and the
newest `RECENT` finished ones, whose restart it notices). Nothing new: one request per job,
and that is the idle poll. Something new: the listing goes on until it reaches what was
seen before, and each new finished result costs one request for its details (changes,
variables, artifacts, stages with their jobs). A first sight or a backfill reads the
history instead, every detail expanded inside the listing: one request per page.

Paging. Bamboo pages by `start-index` and `max-result` (singular), 25 by default, and caps
what a client asks; its `size` counts the answer, not the collection. So a short page
proves nothing: listings go on until an empty page (`connectors.kit.paging.by_offset`
with `capped`), or until the numbers reach what is known. A result added while a listing
pages shifts it by one: results seen twice are skipped.

GUESS, each said again in `docs/connectors/bamboo.md`: a stopped result is `Finished` with
state `Unknown` (→ ABORTED); without `includeAllStates=true` running results are not listed;
nested collections come whole inside an expansion; `search/jobs/<PLAN>` names the plan's
default branch; a deployment result whose `lifeCycleState` is `NOT_BUILT` never ran.
"""

from __future__ import annotations

import builtins
import html
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote

import structlog
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import (
    ChangesAfterSend,
    GetBuild,
    HoldsPending,
    RecentBuilds,
    ServerCursor,
    Services,
)
from connectors.kit.cursors import dump_cursor, load_cursor
from connectors.kit.held import Held
from connectors.kit.http import (
    Client,
    foreign_redirect,
    json_answer,
    redact_url,
    status_error,
)
from connectors.kit.paging import by_offset
from connectors.kit.settings import Duration, TokenOrPassword
from poller.errors import ConnectorError, NotFound
from poller.model import (
    Artifact,
    Broken,
    Build,
    Cause,
    Checkpoint,
    JobCursor,
    JobRef,
    Param,
    ServerSpec,
    Stage,
    Step,
    Unfinished,
)

log = structlog.get_logger()

PAGE = 100  # asked for per page; Bamboo answers at most its cap (25 unless raised)
RECENT = 5  # newest finished results of each job watched for a restart
RECENT_CHECK = 10  # newest results of each plan `check` reads for unmapped repositories
DISCOVER_EVERY = 900_000  # plans, branches and environments are listed again every 15 min
MAX_BODY = 64 * 1024 * 1024
UPSTREAM_DEPTH = 10
CACHE = 4096
CURSOR_VERSION = 1
TRACK_VERSION = 1
REASON_CHARS = 300
RUNNING = {"Queued", "Pending", "InProgress"}
DEPLOY_RUNNING = {"QUEUED", "PENDING", "IN_PROGRESS"}
RESULTS = {"Successful": "SUCCESS", "Failed": "FAILURE", "Unknown": "ABORTED"}
DEPLOY_RESULTS = {
    "SUCCESS": "SUCCESS",
    "FAILED": "FAILURE",
    "UNKNOWN": "ABORTED",  # GUESS: a deployment stopped by a person
    "REPLACED": "NOT_BUILT",  # superseded by a newer deployment before it ran
    "SKIPPED": "NOT_BUILT",
    "NEVER": "NOT_BUILT",
    "NOT_BUILT": "NOT_BUILT",
}
# Bamboo masks variables whose names hold these words ("Variables to mask", its default).
SECRET_NAME = re.compile(r"password|secret|passphrase|sshkey|token|credential|api_?key", re.I)
MASKED = "********"
SCM_REASONS = (
    "code changes detected",
    "changes by",
    "first build for this plan",
    "code has changed",
    "triggered by a change",
    "pull request",
)
_USER = re.compile(r'href="[^"]*/browse/user/([^"/?#]+)"')
_CHILD_KEY = re.compile(r"([A-Z0-9]+-[A-Z0-9]+(?:-[A-Z0-9]+)?-[0-9]+)")
_TAGS = re.compile(r"<[^>]+>")


class Settings(TokenOrPassword):
    """Keys only Bamboo servers have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: bool = Field(
        default=True, description="true (send deployment results too) or false"
    )
    repo_urls: dict[str, str] = Field(
        default={},
        description='a table of repository name (or id) = "git URL", like'
        ' { "shop-api" = "https://bitbucket.example.com/scm/shop/api.git" }',
    )
    # A result waits at a manual stage for a person. Seven days outlasts a weekend and a
    # holiday; one still waiting after that is sent with the stages that ran.
    max_pending_age: Duration = Field(
        default=7 * 86400.0, description="a duration like '12h' or '7d'"
    )


@dataclass(frozen=True)
class _Job:
    """One SEI job as discovery saw it: a plan, a branch plan or a deployment environment."""

    name: str  # job_full_name
    kind: str  # "plan" | "branch" | "env"
    key: str  # the plan or branch plan key; the environment id
    pipeline: str
    url: str
    branch: str | None = None  # a branch plan's short name
    master: str | None = None  # a branch plan's master plan key

    def row(self) -> list[Any]:
        return [self.name, self.kind, self.key, self.pipeline, self.url, self.branch, self.master]

    @staticmethod
    def of(row: Any) -> _Job | None:
        if (
            not isinstance(row, list)
            or len(row) != 7
            or not all(isinstance(x, str) for x in row[:5])
        ):
            return None
        return _Job(*row)


@dataclass
class _Track:
    """What a job's own cursor keeps between scans (saved only with a scan that completed).

    `top`: the highest number seen. `open`: seen queued or running. `again`: of `open` and
    `held`, those seen finished before (restarted or continued after being handled).
    `held`: finished but continuable, since when (the result's completion, ms). `recent`:
    the newest finished results, each with its state and completion time, so a restart
    that came and went between two polls still shows. `branch`: a plan's default branch.
    """

    top: int | None = None
    open: set[int] = field(default_factory=set)
    again: set[int] = field(default_factory=set)
    held: Held = field(default_factory=Held)
    recent: dict[int, str] = field(default_factory=dict)
    branch: str | None = None

    def watched(self) -> set[int]:
        return self.open | {int(k) for k, _ in self.held.items()} | set(self.recent)

    def dump(self, now: int) -> str:
        return dump_cursor(
            TRACK_VERSION,
            now,
            top=self.top,
            open=sorted(self.open),
            again=sorted(self.again & (self.open | {int(k) for k, _ in self.held.items()})),
            held=self.held.as_dict(),
            recent={str(k): v for k, v in sorted(self.recent.items())},
            branch=self.branch,
        )

    @staticmethod
    def load(text: str | None) -> _Track | None:
        data = load_cursor(text, TRACK_VERSION)
        if data is None:
            return None
        try:
            return _Track(
                top=int(data["top"]) if data.get("top") is not None else None,
                open={int(n) for n in data.get("open") or []},
                again={int(n) for n in data.get("again") or []},
                held=Held({str(k): int(v) for k, v in (data.get("held") or {}).items()}),
                recent={int(k): str(v) for k, v in (data.get("recent") or {}).items()},
                branch=data.get("branch"),
            )
        except (TypeError, ValueError, AttributeError):
            return None


class BambooConnector(ServerCursor, HoldsPending, ChangesAfterSend, RecentBuilds, GetBuild):
    """One Bamboo server. Thread-safe: the core scans several jobs at once."""

    type: ClassVar[str] = "bamboo"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    # Numbers grow per plan, but a result finishes again after a restart or a continued
    # manual stage, results finish out of order, and deployment ids are server-wide: the
    # core's ledger says what was sent, each job's own cursor what to look at again.
    sequential: ClassVar[bool] = False
    changed_after_send: int = 0  # counted per instance (ChangesAfterSend)

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        self.base = spec.url if spec.url.endswith("/") else spec.url + "/"
        self.settings: Settings = spec.settings
        self._http = Client(spec, "Bamboo", limit=MAX_BODY, on_request=self.services.on_request)
        self.settings.authorise(self._http.session)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}  # by job_full_name
        self._by_key: dict[str, _Job] = {}  # plans and branch plans by plan key
        self._listed_at = 0  # ms, when discovery last ran (0: never)
        self._stale = False  # a job vanished: discover again at the next poll
        self._parents: OrderedDict[str, tuple[str, str | None] | None] = OrderedDict()
        self._sources: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._counted: set[tuple[str, int, str]] = set()
        self._fetching: dict[str, threading.Lock] = {}
        self.unmapped: dict[str, str] = {}  # repositories seen that repo_urls does not map
        self.deploy_problem: str | None = None  # why deployments cannot be listed, if so

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.services.clock.time() * 1000)

    def _api(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `rest/api/latest/<path>.json`: a JSON answer, or one line saying why not."""
        url = f"{self.base}rest/api/latest/{path}.json"
        where = redact_url(url)
        resp, body = self._http.get(url, params)
        status = resp.status_code
        if redirect := foreign_redirect(resp, self.base):
            raise redirect  # never followed: the credentials would go wherever it points
        if status != 200:
            raise status_error(status, "Bamboo", where, _message(body))
        return json_answer(body, resp, url, "Bamboo")

    def _items(self, path: str, params: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
        """The list at `keys` in the answer (`results`, `result`), dicts only."""
        data: Any = self._api(path, params)
        for k in keys:
            data = data.get(k) if isinstance(data, dict) else None
        return [x for x in data or [] if isinstance(x, dict)]

    def _paged(
        self, path: str, params: dict[str, Any], *keys: str, first: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing: pages until an empty one (Bamboo caps pages and its
        `size` is no total); the consumer may stop early."""
        return by_offset(
            lambda offset, limit: self._items(
                path, {**params, "max-result": limit, "start-index": offset}, *keys
            ),
            PAGE,
            first=first,
            capped=True,
        )

    # -- the Connector protocol -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Version and user, what is visible, and the repositories `repo_urls` misses."""
        info = self._api("info")
        if not isinstance(info, dict) or "version" not in info:
            raise ConnectorError(
                "the answer has no version: is this the URL of a Bamboo server?",
                url=redact_url(self.base),
            )
        user = self._api("currentUser")
        name = str((user or {}).get("name") or "unknown")
        jobs = self._catalogue()
        plans = [j for j in jobs if j.kind == "plan"]
        branches = [j for j in jobs if j.kind == "branch"]
        envs = [j for j in jobs if j.kind == "env"]
        workers = max(1, min(self.spec.max_concurrency, len(plans) + len(branches)))
        with ThreadPoolExecutor(workers, thread_name_prefix="bamboo-check") as pool:
            list(pool.map(self._repositories_of, [*plans, *branches]))
        with self._lock:
            unmapped = dict(sorted(self.unmapped.items(), key=lambda kv: kv[1]))
        version = (
            f"Bamboo {info['version']} (build {info.get('buildNumber', '?')}):"
            f" {_n(len(plans), 'plan')}, {_n(len(branches), 'branch plan')},"
            f" {_n(len(envs), 'deployment environment')}"
        )
        who = name
        if self.deploy_problem:
            who += f"; {self.deploy_problem}"
        if unmapped:
            listed = ", ".join(f"{n} (id {i})" for i, n in unmapped.items())
            who += f"; repositories in recent results that repo_urls does not map: {listed}"
        return {
            "version": version,
            "user": who,
            "plans": len(plans),
            "branch_plans": len(branches),
            "environments": len(envs),
            "unmapped_repositories": [{"id": i, "name": n} for i, n in unmapped.items()],
        }

    def _repositories_of(self, job: _Job) -> None:
        try:
            rows = self._items(
                f"result/{job.key}",
                {"expand": "results.result.vcsRevisions", "max-result": RECENT_CHECK},
                "results",
                "result",
            )
        except NotFound:
            return
        for row in rows:
            self._repo_url(row)

    def close(self) -> None:
        self._http.close()

    @property
    def max_pending_age(self) -> float:
        return float(self.settings.max_pending_age)

    def discover(self) -> Iterator[JobRef]:
        """Every plan, branch plan and deployment environment (listed again when stale)."""
        for j in self._catalogue():
            yield self._ref(j)

    def discover_since(self, cursor: str | None) -> Iterator[JobRef | Checkpoint]:
        """Every job, from the list the server cursor keeps while it is fresh; no request
        at all then. Each job is scanned (`changed` None): its own cursor says what to ask."""
        state = load_cursor(cursor, CURSOR_VERSION)
        if cursor and state is None:
            log.warning("server cursor unreadable; plans and environments are listed again")
        now = self._now()
        with self._lock:
            empty = not self._jobs
        if empty and state and not self._stale:
            self._restore(state, now)
        jobs = self._catalogue()
        for j in jobs:
            yield self._ref(j)
        with self._lock:
            listed, rows = self._listed_at, [j.row() for j in self._jobs.values()]
        yield Checkpoint(dump_cursor(CURSOR_VERSION, now, listed=listed, jobs=rows))

    def _ref(self, j: _Job) -> JobRef:
        return JobRef(
            full_name=j.name, pipeline=j.pipeline, url=j.url, branch=j.branch, kind=j.kind
        )

    def _restore(self, state: dict[str, Any], now: int) -> None:
        listed = int(state.get("listed") or 0)
        if not 0 <= now - listed < DISCOVER_EVERY:
            return
        jobs = [j for j in (_Job.of(r) for r in state.get("jobs") or []) if j is not None]
        if jobs:
            self._install(jobs, listed)

    def _install(self, jobs: list[_Job], listed: int) -> None:
        with self._lock:
            self._jobs = {j.name: j for j in jobs}
            self._by_key = {j.key: j for j in jobs if j.kind != "env"}
            self._listed_at = listed
            self._stale = False

    def _catalogue(self) -> list[_Job]:
        """The jobs, listed again when never listed, older than `DISCOVER_EVERY`, or stale."""
        now = self._now()
        with self._lock:
            fresh = self._jobs and not self._stale and 0 <= now - self._listed_at < DISCOVER_EVERY
            if fresh:
                return sorted(self._jobs.values(), key=lambda j: j.name)
        jobs = self._list_jobs()
        self._install(jobs, now)
        return sorted(jobs, key=lambda j: j.name)

    def _list_jobs(self) -> list[_Job]:
        """The plan list (paged), the branches of each plan that has any, the deployment
        projects with their environments."""
        plans = [
            p
            for p in self._paged("plan", {"expand": "plans.plan"}, "plans", "plan")
            if isinstance(p.get("key"), str)
        ]
        jobs: dict[str, _Job] = {}
        for p in plans:
            j = _Job(
                p["key"], "plan", p["key"], str(p.get("name") or p["key"]), self._browse(p["key"])
            )
            jobs[j.name] = j
        branched = [p for p in plans if int((p.get("branches") or {}).get("size") or 0) > 0]
        if branched:
            workers = max(1, min(self.spec.max_concurrency, len(branched)))
            with ThreadPoolExecutor(workers, thread_name_prefix="bamboo-branches") as pool:
                for p, found in zip(branched, pool.map(self._branches, branched), strict=True):
                    for b in found:
                        short = str(b.get("shortName") or b["key"])
                        j = _Job(
                            f"{p['key']}/{short}",
                            "branch",
                            b["key"],
                            str(p.get("name") or p["key"]),
                            self._browse(b["key"]),
                            branch=short,
                            master=p["key"],
                        )
                        jobs.setdefault(j.name, j)
        if self.settings.deployments:
            try:
                projects = self._api("deploy/project/all")
                self.deploy_problem = None
            except ConnectorError as exc:
                if exc.status not in (403, 404):
                    raise
                # No right to see deployments (or a Bamboo without them): the plans are
                # still polled; `check` says why no environment is.
                self.deploy_problem = f"deployment projects cannot be listed: {exc}"
                log.warning(
                    "deployment projects cannot be listed; deployments are not sent"
                    " (deployments = false silences this)",
                    error=str(exc),
                )
                projects = []
            for d in projects if isinstance(projects, list) else []:
                if not isinstance(d, dict) or not d.get("name"):
                    continue
                for e in d.get("environments") or []:
                    if not isinstance(e, dict) or e.get("id") is None or not e.get("name"):
                        continue
                    name = f"deploy/{d['name']}/{e['name']}"
                    if name in jobs:
                        log.warning(
                            "two deployment environments share a name; the first kept", job=name
                        )
                        continue
                    jobs[name] = _Job(
                        name,
                        "env",
                        str(e["id"]),
                        str(d["name"]),
                        f"{self.base}deploy/viewEnvironment.action?id={e['id']}",
                    )
        return list(jobs.values())

    def _branches(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return [
                b
                for b in self._paged(f"plan/{plan['key']}/branch", {}, "branches", "branch")
                if isinstance(b.get("key"), str)
            ]
        except NotFound:
            return []  # the plan went between the two requests

    def _browse(self, key: str) -> str:
        return f"{self.base}browse/{key}"

    def _job(self, job: JobRef) -> _Job:
        with self._lock:
            found = self._jobs.get(job.full_name)
        if found is None:
            with self._lock:
                self._stale = True
            self._catalogue()
            with self._lock:
                found = self._jobs.get(job.full_name)
        if found is None:
            raise NotFound(f"{job.full_name!r} is gone from Bamboo", url=redact_url(self.base))
        return found

    # -- optional capabilities ------------------------------------------------------------

    def recent_builds(self, job: JobRef, limit: int) -> list[tuple[int, int]]:
        """For `check`: (number, start ms) of the newest `limit` results, running included."""
        j = self._job(job)
        now = self._now()
        out = []
        for row in self._rows(j, full=False, first=min(limit, PAGE)):
            n = _number(j, row)
            if n is None:
                continue
            start = _start(j, row)
            out.append((n, start if start is not None else now))
            if len(out) >= limit:
                break
        return out

    def get_build(self, job: JobRef, number: int) -> Build | Broken | Unfinished:
        """For `explain`: one result, mapped as `scan` maps it."""
        j = self._job(job)
        track = _Track()
        row = self._one(j, number)
        state = self._classify(j, row)
        if state == "running":
            return Unfinished(number)
        if state == "held" and self._still_held(track, number, row):
            return Unfinished(number)
        return self._build_or_broken(j, row, track, held=state == "held")

    # -- scanning ---------------------------------------------------------------------------

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """One job: its history back to `since_ms` on first sight or for `backfill`;
        otherwise its newest results down to the oldest it still watches."""
        j = self._job(job)
        old = _Track.load(cursor.cursor)
        try:
            if cursor.backfill or old is None:
                yield from self._history(j, cursor, old, wanted, set(job.changed or ()))
            else:
                yield from self._since(j, old, wanted, set(job.changed or ()))
        except NotFound as exc:
            if exc.url.endswith((f"/result/{j.key}.json", f"/environment/{j.key}/results.json")):
                # The plan, branch or environment is gone (a branch whose VCS branch was
                # deleted, say): nothing more to read; the next poll lists jobs again.
                log.info("gone from Bamboo; jobs are listed again next poll", job=j.name)
                with self._lock:
                    self._stale = True
                return
            raise

    def _history(
        self,
        j: _Job,
        cursor: JobCursor,
        old: _Track | None,
        wanted: Callable[[int], bool],
        changed: set[int],
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """Every result back to `since_ms`, details expanded inside the listing."""
        now = self._now()
        track = _Track(branch=old.branch if old else None)
        seen: set[int] = set()
        since = cursor.since_ms
        for row in self._rows(j, full=True, first=PAGE):
            n = _number(j, row)
            if n is None or n in seen:
                continue  # a result added meanwhile shifted the pages: seen already
            seen.add(n)
            state = self._classify(j, row)
            started = _start(j, row)
            if since is not None and state != "running" and (started or 0) < since:
                break  # newest first: the rest started earlier still
            track.top = max(track.top or n, n)
            if state == "running":
                if since is None or started is None or started >= since:
                    track.open.add(n)
                    yield Unfinished(n)
                continue
            if len(track.recent) < RECENT:
                track.recent[n] = _signature(j, row)
            if state == "held" and self._still_held(track, n, row):
                yield Unfinished(n)
                continue
            if wanted(n):
                yield self._build_or_broken(j, row, track, held=state == "held")
            if j.kind != "env" and n == 1:
                break  # the first result: nothing older
        if old is not None:  # a backfill over a known job: what it watched, it still does
            track.top = max(track.top or 0, old.top or 0) or None
            for n in old.open - seen:
                track.open.add(n)
            for k, at in old.held.items():
                if int(k) not in seen:
                    track.held.hold(k, at)
            track.again = old.again
        yield from self._by_number(j, changed - seen, track, wanted, refinish=set())
        yield Checkpoint(track.dump(now))

    def _since(
        self, j: _Job, old: _Track, wanted: Callable[[int], bool], changed: set[int]
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """The newest results down to the oldest the job's cursor watches: new ones, those
        that were running or held, and the newest finished ones again (a restart)."""
        now = self._now()
        top = old.top or 0
        watched = old.watched()
        floor = min(watched | {top})
        held_keys = {int(k) for k, _ in old.held.items()}
        if j.kind == "env":
            first = min(PAGE, len(watched) + 2)
        else:
            first = min(PAGE, max(1, top - floor + 2))
        track = _Track(top=old.top, branch=old.branch, again=set(old.again))
        seen: set[int] = set()
        todo: list[tuple[int, dict[str, Any], bool]] = []  # (number, row, finished again)
        for row in self._rows(j, full=False, first=first):
            n = _number(j, row)
            if n is None or n in seen:
                continue
            seen.add(n)
            state = self._classify(j, row)
            track.top = max(track.top or n, n)
            if state != "running" and len(track.recent) < RECENT:
                track.recent[n] = _signature(j, row)
            if state == "running":
                if n <= top and n not in old.open and n not in held_keys:
                    track.again.add(n)  # it had finished: restarted, or a stage continued
                track.open.add(n)
                yield Unfinished(n)
            elif n > top or n in old.open or n in held_keys or n in changed:
                # new, or watched, or named by the core (owed, parked and due again)
                if n in held_keys:
                    track.held.hold(str(n), old.held.as_dict()[str(n)])
                if state == "held" and self._still_held(track, n, row):
                    yield Unfinished(n)
                else:
                    todo.append((n, row, n in old.again))
            elif n in old.recent and old.recent[n] != _signature(j, row):
                # Restarted, or a manual stage run, and finished again between two polls.
                todo.append((n, row, True))
            if n <= floor or (j.kind != "env" and n == 1):
                break
        for n, row, again in todo:
            track.again.discard(n)
            if not wanted(n):
                if again:
                    self._refinished(j, n, row)
                continue
            item = self._detailed(j, n, row, track, held=row.get("continuable") is True)
            if item is not None:
                yield item
        yield from self._by_number(j, changed - seen, track, wanted, refinish=old.again)
        yield Checkpoint(track.dump(now))

    def _detailed(
        self, j: _Job, n: int, row: dict[str, Any], track: _Track, *, held: bool
    ) -> Build | Broken | Unfinished | None:
        """A listed result with every detail: one request for a plan result (a listing row
        has none), none for a deployment (its row has everything)."""
        if j.kind != "env":
            try:
                row = self._one(j, n)
            except NotFound:
                return None  # deleted since it was listed
            state = self._classify(j, row)
            if state == "running":  # restarted since it was listed
                track.open.add(n)
                return Unfinished(n)
            if state == "held" and self._still_held(track, n, row):
                return Unfinished(n)
            held = state == "held"
        return self._build_or_broken(j, row, track, held=held)

    def _by_number(
        self,
        j: _Job,
        numbers: Iterable[int],
        track: _Track,
        wanted: Callable[[int], bool],
        refinish: set[int],
    ) -> Iterator[Build | Broken | Unfinished]:
        """The numbers the core named (owed by a failed scan, parked and due) that the
        listing did not reach: each read alone; a 404 means it is gone."""
        for n in sorted(numbers, reverse=True):
            try:
                row = self._one(j, n)
            except NotFound:
                continue
            state = self._classify(j, row)
            if state == "running":
                track.open.add(n)
                yield Unfinished(n)
                continue
            if state == "held" and self._still_held(track, n, row):
                yield Unfinished(n)
                continue
            if wanted(n):
                yield self._build_or_broken(j, row, track, held=state == "held")
            elif n in refinish:
                self._refinished(j, n, row)

    def _refinished(self, j: _Job, n: int, row: dict[str, Any]) -> None:
        """A result handled already finished again: SEI keeps the first write."""
        sig = _signature(j, row)
        with self._lock:
            if (j.name, n, sig) in self._counted:
                return  # the same finish seen again (a scan that kept its old cursor)
            self._counted.add((j.name, n, sig))
            self.changed_after_send += 1
        self.services.on_changed_after_send()
        log.warning(
            "result finished again after it was sent (restarted, or a manual stage run);"
            " SEI keeps the first result",
            job=j.name,
            build=n,
            state=row.get("state") or row.get("deploymentState"),
        )

    def _still_held(self, track: _Track, n: int, row: dict[str, Any]) -> bool:
        """A continuable result waits until `max_pending_age` after it finished."""
        since = _ms(row.get("buildCompletedTime")) or self._now()
        track.held.hold(str(n), since)
        if track.held.still_held(str(n), self._now(), int(self.max_pending_age * 1000)):
            return True
        track.held.release(str(n))
        return False

    def _rows(self, j: _Job, *, full: bool, first: int) -> Iterator[dict[str, Any]]:
        """A job's results, newest first: every detail expanded (`full`), or one line each."""
        if j.kind == "env":
            return self._paged(f"deploy/environment/{j.key}/results", {}, "results", first=first)
        expand = self._expand("results.result.") if full else "results.result"
        return self._paged(
            f"result/{j.key}",
            {"expand": expand, "includeAllStates": "true"},
            "results",
            "result",
            first=first,
        )

    def _expand(self, prefix: str = "") -> str:
        parts = ["vcsRevisions", "changes.change", "variables", "artifacts", "labels"]
        if self.spec.stages:
            parts.append("stages.stage.results.result")
        return ",".join([prefix.rstrip("."), *(prefix + p for p in parts)] if prefix else parts)

    def _one(self, j: _Job, n: int) -> dict[str, Any]:
        if j.kind == "env":
            row = self._api(f"deploy/result/{n}")
        else:
            row = self._api(f"result/{j.key}-{n}", {"expand": self._expand()})
        if not isinstance(row, dict) or _number(j, row) != n:
            raise NotFound(f"{j.name} #{n} is not in the answer", url=redact_url(self.base))
        return row

    def _classify(self, j: _Job, row: dict[str, Any]) -> str:
        """ "running", "held" (finished, a manual stage not run yet) or "finished"."""
        if j.kind == "env":
            life = str(row.get("lifeCycleState") or "").upper().replace(" ", "_")
            return "running" if life in DEPLOY_RUNNING else "finished"
        if str(row.get("lifeCycleState") or "") in RUNNING:
            return "running"
        if row.get("continuable") is True and str(row.get("lifeCycleState")) == "Finished":
            return "held"
        return "finished"

    # -- mapping --------------------------------------------------------------------------

    def _build_or_broken(
        self, j: _Job, row: dict[str, Any], track: _Track, *, held: bool
    ) -> Build | Broken:
        """A result whose extra requests (the chain's head, the default branch, the plan
        results a deployment came from) keep failing is `Broken`: the core parks it; the
        fallback leaves those parts out."""
        n = _number(j, row) or 0
        try:
            if j.kind == "env":
                return self._deployment(j, row)
            return self._plan_build(j, row, track, held=held)
        except NotFound:
            raise
        except ConnectorError as exc:
            fallback = (
                self._deployment(j, row, degraded=True)
                if j.kind == "env"
                else self._plan_build(j, row, track, held=held, degraded=True)
            )
            return Broken(n, str(exc), exc.url, fallback=fallback)

    def _plan_build(
        self, j: _Job, row: dict[str, Any], track: _Track, *, held: bool, degraded: bool = False
    ) -> Build:
        n = int(row["buildNumber"] if "buildNumber" in row else row["number"])
        key = str(row.get("buildResultKey") or f"{j.key}-{n}")
        started = _ms(row.get("buildStartedTime"))
        completed = _ms(row.get("buildCompletedTime"))
        duration = row.get("buildDuration")
        user, causes = self._trigger(str(row.get("buildReason") or ""), degraded=degraded)
        return Build(
            job_full_name=j.name,
            pipeline=j.pipeline,
            number=n,
            result=_result(row),
            start_ms=started if started is not None else (completed or 0),
            duration_ms=int(duration)
            if isinstance(duration, int)
            else (max(0, completed - started) if started is not None and completed else 0),
            url=self._browse(key),
            user_id=user,
            triggers=tuple(causes),
            params=tuple(_params(row, j, held=held)),
            commit_ids=tuple(_commits(row)),
            repo_url=self._repo_url(row),
            branch=j.branch if j.kind == "branch" else self._default_branch(j, track, degraded),
            stages=_stages(row) if self.spec.stages else None,
            artifacts=tuple(_artifacts(row, key)),
            expects_stages=self.spec.stages,
        )

    def _deployment(self, j: _Job, row: dict[str, Any], *, degraded: bool = False) -> Build:
        """A deployment result: its commits, repository and branch are those of the plan
        results its version was built from, which it names as input artifacts and in its
        trigger chain, so SEI can follow a commit from build to deploy."""
        n = int(row["id"])
        version = row.get("deploymentVersion") or {}
        items = [i for i in version.get("items") or [] if isinstance(i, dict)]
        sources: list[str] = []
        for item in items:
            k = ((item.get("planResultKey") or {}).get("key")) or ""
            if k and k not in sources:
                sources.append(k)
        reason = str(row.get("reasonSummary") or "")
        kind, value = _reason(reason)
        if kind == "child" and value and value not in sources:
            sources.insert(0, value)
        upstream = [Cause("UpstreamCause", *self._job_of_result(k)) for k in sources]
        if kind == "child":
            user = self._head_user(value or "", degraded=degraded)
            causes = upstream
        else:
            user, own = self._trigger(reason, degraded=degraded)
            causes = [*own, *upstream]
        commits: list[str] = []
        repo: str | None = None
        for k in sources:
            src = None if degraded else self._source(k)
            if src is None:
                continue
            commits.extend(_commits(src))
            repo = repo or self._repo_url(src)
        started = row.get("startedDate") if isinstance(row.get("startedDate"), int) else None
        finished = row.get("finishedDate") if isinstance(row.get("finishedDate"), int) else None
        queued = row.get("queuedDate") if isinstance(row.get("queuedDate"), int) else None
        start = started if started is not None else (queued or finished or 0)
        own_key = str((row.get("key") or {}).get("key") or n)
        params = [
            Param(
                "StringParameterValue", "bamboo_deployment_state", str(row.get("deploymentState"))
            ),
            Param("StringParameterValue", "bamboo_version", str(version.get("name") or "")),
            Param("StringParameterValue", "bamboo_result_key", own_key),
            Param("StringParameterValue", "bamboo_reason", _plain(reason)),
        ]
        return Build(
            job_full_name=j.name,
            pipeline=j.pipeline,
            number=n,
            result=_deploy_result(row),
            start_ms=start,
            duration_ms=max(0, finished - start) if finished is not None and start else 0,
            url=f"{self.base}deploy/viewDeploymentResult.action?deploymentResultId={n}",
            user_id=user,
            triggers=tuple(causes),
            params=tuple(params),
            commit_ids=tuple(commits),
            repo_url=repo,
            branch=str(version["planBranchName"]) if version.get("planBranchName") else None,
            artifacts=tuple(_inputs(items)),
            deployment=True,  # cd = true, ci = false, unless a payload rule says otherwise
        )

    def _source(self, key: str) -> dict[str, Any] | None:
        """A plan result a deployment came from, with its revisions and changes (cached: a
        release goes to several environments). None when it is gone (expired)."""

        def fetch() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self._api(
                    f"result/{key}", {"expand": "vcsRevisions,changes.change"}
                )
            except NotFound:
                return None
            return found

        source: dict[str, Any] | None = self._cached(self._sources, key, fetch)
        return source

    def _cached(self, cache: OrderedDict[str, Any], key: str, fetch: Callable[[], Any]) -> Any:
        """`cache[key]`, fetched once even when several scans ask at the same moment."""
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
            gate = self._fetching.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in cache:
                    return cache[key]
            try:
                found = fetch()
            except BaseException:
                with self._lock:
                    self._fetching.pop(key, None)
                raise
            with self._lock:
                cache[key] = found
                while len(cache) > CACHE:
                    cache.popitem(last=False)
                self._fetching.pop(key, None)
            return found

    def _trigger(self, reason: str, *, degraded: bool) -> tuple[str, list[Cause]]:
        """Who or what started it, in the words Jenkins' connector uses."""
        kind, value = _reason(reason)
        if kind == "child" and value:
            cause = Cause("UpstreamCause", *self._job_of_result(value))
            return self._head_user(value, degraded=degraded), [cause]
        return _who(kind, value), [_cause(kind, value)]

    def _job_of_result(self, result_key: str) -> tuple[str, int | None]:
        """`PROJ-PLAN3-12` → (`PROJ-PLAN/feature-x`, 12): the SEI job of a plan result."""
        plan_key, _, number = result_key.rpartition("-")
        with self._lock:
            j = self._by_key.get(plan_key)
        return (j.name if j else plan_key), (int(number) if number.isdigit() else None)

    def _head_user(self, result_key: str, *, degraded: bool) -> str:
        """Follow "Child of" up the chain to its head, as Jenkins' connector follows
        UpstreamCause, and take the head's user (or SCMTrigger, TimerTrigger, SYSTEM)."""
        key = result_key
        for _ in range(UPSTREAM_DEPTH):
            try:
                found = self._parent_reason(key)
            except ConnectorError:
                if not degraded:
                    raise
                return "SYSTEM"
            if found is None:
                return "SYSTEM"  # gone (expired): the chain ends there
            kind, value = found
            if kind == "child" and value:
                key = value
                continue
            return _who(kind, value)
        return "SYSTEM"

    def _parent_reason(self, result_key: str) -> tuple[str, str | None] | None:
        def fetch() -> tuple[str, str | None] | None:
            try:
                data = self._api(f"result/{result_key}")
            except NotFound:
                return None
            return _reason(str(data.get("buildReason") or ""))

        found: tuple[str, str | None] | None = self._cached(self._parents, result_key, fetch)
        return found

    def _default_branch(self, j: _Job, track: _Track, degraded: bool) -> str | None:
        """The plan's default branch, as `search/jobs/<PLAN>` names it (GUESS), asked once
        per plan and kept in the job's cursor."""
        if track.branch is not None:
            return track.branch or None
        if degraded:
            return None
        try:
            found = self._items(f"search/jobs/{j.key}", {"max-result": 1}, "searchResults")
        except NotFound:
            found = []
        name = ""
        for item in found:
            name = str((item.get("searchEntity") or {}).get("branchName") or "")
            if name:
                break
        track.branch = name  # "" when none is named: not asked again
        return name or None

    def _repo_url(self, row: dict[str, Any]) -> str | None:
        """The first repository's URL through `repo_urls` (by name, else by id): a Bamboo
        result names its repositories but never their URLs. One it does not map is noted
        for `check` and logged once."""
        revs = [
            r
            for r in (row.get("vcsRevisions") or {}).get("vcsRevision") or []
            if isinstance(r, dict)
        ]
        urls = self.settings.repo_urls
        first: str | None = None
        for i, rev in enumerate(revs):
            name = str(rev.get("repositoryName") or "")
            rid = str(rev.get("repositoryId") or "")
            url = urls.get(name) or urls.get(rid)
            if i == 0:
                first = url
            ident = rid or name
            if url is None and ident:
                with self._lock:
                    new = ident not in self.unmapped
                    self.unmapped[ident] = name or rid
                if new:
                    log.warning(
                        "repository not in repo_urls: builds from it carry no repo_url, and"
                        " lead time needs one",
                        repository=name,
                        repository_id=rid,
                    )
        return first


# -- pure helpers ---------------------------------------------------------------------------


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _message(body: bytes) -> str:
    """Bamboo's own words (`{"message": ..., "status-code": N}`), cut short."""
    try:
        msg = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {str(msg)[:300]}" if msg else ""


def _ms(value: Any) -> int | None:
    """`2023-08-03T09:49:07.432Z`, `2017-08-09T09:44:23.700-05:00` → epoch ms."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _number(j: _Job, row: dict[str, Any]) -> int | None:
    value = row.get("id") if j.kind == "env" else row.get("buildNumber", row.get("number"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _start(j: _Job, row: dict[str, Any]) -> int | None:
    if j.kind == "env":
        for k in ("startedDate", "queuedDate"):
            if isinstance(row.get(k), int):
                return int(row[k])
        return None
    return _ms(row.get("buildStartedTime")) or _ms(row.get("buildCompletedTime"))


def _signature(j: _Job, row: dict[str, Any]) -> str:
    """What changes when a finished result finishes again: its state and completion."""
    if j.kind == "env":
        return f"{row.get('deploymentState')}@{row.get('finishedDate')}"
    return f"{row.get('state') or row.get('buildState')}@{row.get('buildCompletedTime')}"


def _result(row: dict[str, Any]) -> str:
    """Successful → SUCCESS, Failed → FAILURE; finished yet neither (stopped by a person,
    GUESS) → ABORTED; never built → NOT_BUILT. Bamboo has no UNSTABLE."""
    if str(row.get("lifeCycleState")) == "NotBuilt":
        return "NOT_BUILT"
    return RESULTS.get(str(row.get("state") or row.get("buildState")), "FAILURE")


def _deploy_result(row: dict[str, Any]) -> str:
    if str(row.get("lifeCycleState") or "").upper().replace(" ", "_") == "NOT_BUILT":
        return "NOT_BUILT"
    state = str(row.get("deploymentState") or "").upper().replace(" ", "_")
    return DEPLOY_RESULTS.get(state, "FAILURE")


def _plain(text: str) -> str:
    return html.unescape(_TAGS.sub("", text)).strip()[:REASON_CHARS]


def _reason(text: str) -> tuple[str, str | None]:
    """A result's reason (HTML) → ("child", parent result key) | ("scm", None) |
    ("timer", None) | ("user", username) | ("other", the text)."""
    plain = _plain(text)
    low = plain.lower()
    if low.startswith(("child of", "dependant of", "dependent of")):
        m = _CHILD_KEY.search(plain) or _CHILD_KEY.search(text)
        return "child", (m.group(1) if m else None)
    if low.startswith(SCM_REASONS):
        return "scm", None
    if "schedul" in low:
        return "timer", None
    m = _USER.search(text)
    if m:
        return "user", unquote(m.group(1))
    return "other", plain


def _who(kind: str, value: str | None) -> str:
    if kind == "scm":
        return "SCMTrigger"
    if kind == "timer":
        return "TimerTrigger"
    if kind == "user" and value:
        return value
    return "SYSTEM"


def _cause(kind: str, value: str | None) -> Cause:
    if kind == "user" and value:
        return Cause("UserIdCause", value)
    if kind == "scm":
        return Cause("SCMTriggerCause", "SCMTrigger")
    if kind == "timer":
        return Cause("TimerTriggerCause", "unknown")
    return Cause("BambooReason", value or "unknown")


def _entries(row: dict[str, Any], collection: str, item: str) -> list[dict[str, Any]]:
    found = (row.get(collection) or {}).get(item) or []
    return [x for x in found if isinstance(x, dict)]


def _params(row: dict[str, Any], j: _Job, *, held: bool) -> Iterator[Param]:
    """The result's variables (never one Bamboo would mask), then what Bamboo says of the
    result in its own words."""
    for v in _entries(row, "variables", "variable"):
        name, value = str(v.get("name") or ""), v.get("value")
        if not name or SECRET_NAME.search(name) or value == MASKED:
            continue
        yield Param("StringParameterValue", name, "" if value is None else str(value))
    labels = ",".join(str(x.get("name")) for x in _entries(row, "labels", "label") if x.get("name"))
    own = {
        "bamboo_result": row.get("state") or row.get("buildState"),
        "bamboo_result_key": row.get("buildResultKey"),
        "bamboo_reason": _plain(str(row.get("buildReason") or "")) or None,
        "bamboo_labels": labels or None,
        "bamboo_branch_plan": j.key if j.kind == "branch" else None,
        "bamboo_continuable": "true" if held else None,
    }
    for name, value in own.items():
        if value is not None:
            yield Param("StringParameterValue", name, str(value))


def _commits(row: dict[str, Any]) -> Iterator[str]:
    for rev in _entries(row, "vcsRevisions", "vcsRevision"):
        if rev.get("vcsRevisionKey"):
            yield str(rev["vcsRevisionKey"])
    for change in _entries(row, "changes", "change"):
        if change.get("changesetId"):
            yield str(change["changesetId"])


def _artifacts(row: dict[str, Any], key: str) -> Iterator[Artifact]:
    for a in _entries(row, "artifacts", "artifact"):
        if not a.get("name"):
            continue
        href = str((a.get("link") or {}).get("href") or "")
        yield Artifact(name=str(a["name"]), location=href, qualifier=key)


def _inputs(items: list[dict[str, Any]]) -> Iterator[Artifact]:
    """A deployment's version items: the artifacts of plan results it deployed, matched to
    those results' own (output) artifacts on name and plan result key."""
    for item in items:
        prk = str((item.get("planResultKey") or {}).get("key") or "")
        name = str(item.get("label") or item.get("name") or "")
        if prk and name:
            yield Artifact(
                name=name, location=str(item.get("location") or ""), qualifier=prk, output=False
            )


def _node_result(life: str, state: str) -> tuple[str, str]:
    if life == "NotBuilt":
        return "NOT_BUILT", "SKIPPED"
    return RESULTS.get(state, "FAILURE"), "FINISHED"


def _stages(row: dict[str, Any]) -> tuple[Stage, ...] | None:
    """Stages in order, each with its jobs as steps. A stage's start is its first job's,
    its duration to its last job's end."""
    key = str(row.get("buildResultKey") or "")
    out: list[Stage] = []
    for s in _entries(row, "stages", "stage"):
        steps: list[Step] = []
        for jr in _entries(s, "results", "result"):
            start = _ms(jr.get("buildStartedTime"))
            result, state = _node_result(str(jr.get("lifeCycleState")), str(jr.get("state")))
            name = str(jr.get("planName") or (jr.get("plan") or {}).get("shortName") or "job")
            steps.append(
                Step(
                    id=str(jr.get("buildResultKey") or jr.get("key") or name),
                    name=name,
                    description=name,
                    result=result,
                    state=state,
                    start_ms=start,
                    duration_ms=int(jr.get("buildDuration") or 0),
                )
            )
        starts = [x.start_ms for x in steps if x.start_ms is not None]
        ends = [x.start_ms + x.duration_ms for x in steps if x.start_ms is not None]
        result, state = _node_result(str(s.get("lifeCycleState")), str(s.get("state")))
        name = str(s.get("name") or "stage")
        out.append(
            Stage(
                id=f"{key}/{s.get('id', len(out))}",
                name=name,
                description=str(s.get("description") or name),
                result=result,
                state=state,
                start_ms=min(starts) if starts else None,
                duration_ms=(max(ends) - min(starts)) if starts else 0,
                steps=tuple(steps),
            )
        )
    return tuple(out) or None
