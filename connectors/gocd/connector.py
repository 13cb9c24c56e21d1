"""GoCD, read through its versioned JSON API (`<url>/go/api/`).

Identity. `granularity = "pipeline"` (the default): one SEI job per pipeline,
`job_full_name` = the pipeline's name, `qualified_name` = `<group>/<pipeline>`,
`build_number` = the pipeline counter (the label, a template, goes into `job_run_params`).
`granularity = "stage"`: one SEI job per `<pipeline>/<stage>`, `build_number` = counter *
1000 + stage counter, so a stage re-run is a run of its own and every deployment stage
counts on its own. A counter reset (a pipeline deleted and created again under its name)
starts a new generation: its runs are numbered generation * 10^12 + the above, so they never
collide with the runs SEI already holds under the name.

Every request sends the `Accept: application/vnd.go.cd.vN+json` it was written for
(`ACCEPT`): GoCD answers any other version, or none, with an HTML 404 page, which is
reported as one line naming the URL and the version asked for. `check` refuses a GoCD older
than `MIN_VERSION` (cursor-paged history and the stage instance API v3).

Polling cost. An idle poll costs one request for the whole server: the dashboard
(`api/dashboard`, v4) with `If-None-Match`, answered 304. The dashboard's ETag moves with
any stage of any instance of any pipeline changing state (GoCD gives each pipeline's entry a
new `last_updated_timestamp` then), and each entry's timestamp says which pipelines moved.
A pipeline that moved costs, at discovery, the first page of its history (100 instances,
reused by its scan), then one request per stage (the first page of the stage's history,
where re-runs of old instances show), history pages down to the oldest instance not
finished at the last scan, and one stage instance request per stage of each instance sent
(job state transitions: GoCD's history has no finish times). Upstream pipelines are read
once each (the chain's head), cached.

Finished means finished. A pipeline instance is finished when every stage that was
scheduled has a final result and all its jobs completed. One that stopped in front of a
stage never scheduled (a manual approval gate) waits: held until the stage runs or until
`max_pending_age`, then sent with that stage NOT_BUILT. With `granularity = "stage"` each
stage run is sent when it finishes, gates or not. A stage re-run of an instance already
sent cannot change what SEI holds (it keeps the first write): it is counted
(`sei_poller_changed_after_send_total`) and logged. A job run rescheduled because its agent
was lost is not a result: its replacement is.

Cursors. Pipeline history pages by `after=<internal pipeline id>` (not the counter), newest
first, and shows only the latest run of each stage; so a pipeline's own cursor is a time,
the schedule time of its oldest instance not finished at its last scan (every instance
older is handled), and each stage's newest run seen in stage history. The server cursor the
core keeps holds the dashboard's ETag, each pipeline's timestamp, group, stages and counter
generations, and the instances held at a gate (so `max_pending_age` is kept across runs,
and a held instance is sent when its time is up even if nothing else happens).
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, quote, urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field

import connectors.gocd.mapping as m
from connectors.base import (
    ChangesAfterSend,
    GetBuild,
    HoldsPending,
    RecentBuilds,
    ServerCursor,
    Services,
)
from connectors.kit.cursors import date_header, dump_cursor, load_cursor
from connectors.kit.held import Held
from connectors.kit.http import (
    Client,
    foreign_redirect,
    json_answer,
    redact_url,
    status_error,
)
from connectors.kit.paging import follow
from connectors.kit.settings import Duration, TokenOrPassword
from poller.errors import ConnectorError, NotFound
from poller.model import (
    Broken,
    Build,
    Cause,
    Checkpoint,
    JobCursor,
    JobRef,
    ServerSpec,
    Stage,
    Unfinished,
)

log = structlog.get_logger()

# The media type version each API was written for, and the GoCD release that serves it
# (`data/api-docs/versions.yml`; the API docs' `updated_to`).
ACCEPT = {
    "dashboard": (4, "18.8.0"),
    "history": (1, "19.12.0"),  # cursor paging (`after`, `page_size`)
    "instance": (1, "14.3.0"),
    "stage": (3, "20.9.0"),
    "stage_history": (3, "20.9.0"),
    "version": (1, "16.6.0"),
    "current_user": (1, "17.5.0"),
}
MIN_VERSION = (20, 9, 0)
PAGE = 100  # GoCD's largest page
PEEK = 10  # GoCD's smallest page: enough to see whether a stage ran again
MAX_BODY = 64 * 1024 * 1024
UPSTREAM_DEPTH = 10
CACHE = 4096
CURSOR_VERSION = 1
INDEX_REACH = 86_400_000  # stage granularity: read history this far past a run for its instance
MESSAGE = 300
# Stage history is read down to the newest run seen at the last scan, found by its key; a
# run this much older than that one ends the walk too (GUESS: the key cannot vanish, but a
# walk must end).
STAGE_SLACK = 86_400_000


class Settings(TokenOrPassword):
    """Keys only GoCD servers have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    granularity: Literal["pipeline", "stage"] = Field(
        default="pipeline",
        description='"pipeline" (one SEI job per pipeline) or "stage" (one per pipeline stage)',
    )
    # A stage behind a manual approval gate waits for a person. Seven days outlast a
    # weekend and a holiday; an instance still waiting then is sent with that stage NOT_BUILT.
    max_pending_age: Duration = Field(
        default=7 * 86400.0, description="a duration like '12h' or '7d'"
    )


@dataclass
class _Pipe:
    """One pipeline as discovery knows it."""

    name: str
    group: str
    stages: list[str] = field(default_factory=list)
    gens: list[int] = field(default_factory=list)  # counter reset boundaries (schedule ms)

    @classmethod
    def of(cls, name: str, entry: dict[str, Any]) -> _Pipe:
        """From its entry in the server cursor."""
        gens = sorted(int(g) for g in entry.get("gens") or [])
        return cls(name, str(entry.get("group") or ""), list(entry.get("stages") or []), gens)


@dataclass(frozen=True)
class _Run:
    """One stage run as stage history lists it."""

    counter: int  # the pipeline counter
    stage_counter: int
    at: int  # its first job's scheduled time
    result: str
    finished: bool

    @property
    def key(self) -> str:
        return f"{self.counter}/{self.stage_counter}"


class _Index:
    """Stage granularity: a pipeline's instances by counter, read from its history as far
    as the stage runs being sent need (one page serves 100 of them), for one poll."""

    def __init__(self, pages: Iterator[dict[str, Any]]) -> None:
        self.pages = pages
        self.by_counter: dict[int, list[dict[str, Any]]] = {}
        self.lowest: int | None = None  # the oldest schedule time read so far
        self.done = False
        self.lock = threading.Lock()

    def find(self, counter: int, at: int) -> dict[str, Any] | None:
        """The instance with `counter` scheduled last at or before `at`, reading on while
        the history has not passed `at` by more than `INDEX_REACH`."""
        with self.lock:
            while True:
                found = [
                    i
                    for i in self.by_counter.get(counter, [])
                    if (m.ms(i.get("scheduled_date")) or 0) <= at
                ]
                if found:
                    return max(found, key=lambda i: m.ms(i.get("scheduled_date")) or 0)
                if self.done or (self.lowest is not None and self.lowest < at - INDEX_REACH):
                    return None
                inst = next(self.pages, None)
                if inst is None:
                    self.done = True
                    continue
                c, t = m.counter_of(inst.get("counter")), m.ms(inst.get("scheduled_date"))
                if c is None or t is None:
                    continue
                self.by_counter.setdefault(c, []).append(inst)
                self.lowest = t if self.lowest is None else min(self.lowest, t)


class GoCDConnector(ServerCursor, HoldsPending, ChangesAfterSend, RecentBuilds, GetBuild):
    """One GoCD server. Thread-safe: the core scans several pipelines at once."""

    type: ClassVar[str] = "gocd"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    # Counters grow per pipeline, but instances finish out of order, a stage re-run makes a
    # new run below newer ones (stage granularity), and counters start again when a
    # pipeline is recreated: numbers are keys, the core's ledger says what was sent.
    sequential: ClassVar[bool] = False
    changed_after_send: int = 0  # counted per instance (ChangesAfterSend)

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        self.settings: Settings = spec.settings
        url = spec.url if spec.url.endswith("/") else spec.url + "/"
        # `url` may be the server's base or its `/go/` (GoCD serves everything under /go).
        self.base = url if urlsplit(url).path.rstrip("/").endswith("/go") else url + "go/"
        self.api = self.base + "api/"
        self._http = Client(
            spec, "GoCD", limit=MAX_BODY, on_request=self.services.on_request, accept=None
        )  # each API wants its own versioned Accept, sent per request
        self.settings.authorise(self._http.session)
        self._lock = threading.Lock()
        self._pipes: dict[str, _Pipe] = {}
        self._now: int | None = None  # the server's clock at the last discovery (ms)
        self._date: int | None = None  # the server's clock at its last answer (ms)
        # history page 1 of each pipeline read at discovery, and its next cursor: this poll
        self._first: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
        self._index: dict[str, _Index] = {}
        self._held_seen: dict[str, int] = {}  # held instances scans found (key → since)
        self._counted: OrderedDict[str, None] = OrderedDict()  # re-runs counted already
        self._upstream: OrderedDict[tuple[str, int], tuple[str, list[Cause]]] = OrderedDict()

    # -- plumbing -------------------------------------------------------------------------

    def _get(
        self, api: str, path: str, params: dict[str, Any] | None = None, *, etag: str | None = None
    ) -> tuple[int, Any, Any]:
        """GET one API answer: (status, JSON, headers); 304 gives no JSON."""
        version, since = ACCEPT[api]
        accept = f"application/vnd.go.cd.v{version}+json"
        url = self.api + path
        where = redact_url(url)
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        resp, body = self._http.get(url, params, headers)
        status = resp.status_code
        date = date_header(resp.headers.get("Date"))
        if date is not None:
            with self._lock:
                self._date = date
        if redirect := foreign_redirect(resp, self.base):
            raise redirect  # never followed: the credentials would go wherever it points
        if status == 304 and etag:
            return status, None, resp.headers
        data = _json(body)
        if data is _NOT_JSON and status == 404:
            raise ConnectorError(
                f"{where} answered HTTP 404 with a page, not JSON: GoCD answers so when it does"
                f" not serve the API version asked for ({accept}, served since GoCD {since}),"
                " or when url is not GoCD's (it should end in /go/)",
                url=where,
                status=404,
            )
        if status == 202 and api == "dashboard":
            raise ConnectorError(
                "GoCD is still loading its dashboard (HTTP 202); polled again next time",
                url=where,
                status=202,
            )
        if status != 200:
            raise status_error(status, "GoCD", where, _message(data))
        if data is _NOT_JSON:
            json_answer(body, resp, url, "GoCD")  # raises: one line on what came instead
        return status, data, resp.headers

    def _pages(
        self, path: str, key: str, size: int = PAGE, after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged history, newest first (from `after`, an id). The
        next page is asked for with our own `page_size` and the `after` cursor taken from
        `_links.next` (GUESS: GoCD's link may not keep `page_size`)."""
        return follow(
            self._fetch_page,
            path,
            {"page_size": size} | ({"after": after} if after else {}),
            items=lambda page: (x for x in page.get(key) or [] if isinstance(x, dict)),
            next_of=lambda page, _h: (
                f"{path}?page_size={PAGE}&after={quote(nxt, safe='')}"
                if (nxt := _next_after(page)) and page.get(key)
                else None
            ),
        )

    def _fetch_page(self, path: str, params: dict[str, Any] | None) -> tuple[Any, dict[str, str]]:
        api = "history" if path.startswith("pipelines/") else "stage_history"
        _, data, _ = self._get(api, path, params)
        where = redact_url(self.api + path.split("?", 1)[0])
        if not isinstance(data, dict):
            raise ConnectorError("GoCD's history answer is not a JSON object", url=where)
        if "pagination" in data and "_links" not in data:
            raise ConnectorError(
                "GoCD answered the offset-paged history of GoCD before 19.12: sei-poller needs"
                f" GoCD {_version_text(MIN_VERSION)} or later",
                url=where,
            )
        return data, {}

    def _history(self, name: str) -> Iterator[dict[str, Any]]:
        """A pipeline's instances newest first; page 1 from discovery's read when it has one."""
        path = f"pipelines/{quote(name, safe='')}/history"
        with self._lock:
            first = self._first.get(name)
        if first is None:
            yield from self._pages(path, "pipelines")
            return
        items, after = first
        yield from items
        if after:
            yield from self._pages(path, "pipelines", PAGE, after)

    def _first_page(self, name: str) -> list[dict[str, Any]]:
        """Page 1 of a pipeline's history, kept for its scan in this poll."""
        data, _ = self._fetch_page(f"pipelines/{quote(name, safe='')}/history", {"page_size": PAGE})
        items = [x for x in data.get("pipelines") or [] if isinstance(x, dict)]
        with self._lock:
            self._first[name] = (items, _next_after(data) if items else None)
        return items

    def _clock(self) -> int:
        with self._lock:
            now = self._now if self._now is not None else self._date
        return now if now is not None else int(time.time() * 1000)

    # -- the Connector protocol -----------------------------------------------------------

    @property
    def max_pending_age(self) -> float:
        return float(self.settings.max_pending_age)

    def describe(self) -> dict[str, Any]:
        """Version (refusing one too old for the APIs used), user, pipelines visible."""
        try:
            _, info, _ = self._get("version", "version")
        except ConnectorError as exc:
            if exc.status != 404:
                raise
            raise ConnectorError(
                "GoCD did not say its version (api/version: 404): GoCD before 16.6.0, or not"
                f" GoCD; sei-poller needs GoCD {_version_text(MIN_VERSION)} or later",
                url=exc.url,
            ) from None
        version = str((info or {}).get("version") or "")
        found = _parse_version(version)
        if found is None:
            raise ConnectorError(
                f"GoCD answered no version we can read ({version!r}): is this GoCD?",
                url=redact_url(self.api + "version"),
            )
        if found < MIN_VERSION:
            raise ConnectorError(
                f"GoCD {version} is too old: sei-poller needs GoCD {_version_text(MIN_VERSION)}"
                " or later (cursor-paged history, stage instance API v3)",
                url=redact_url(self.api + "version"),
            )
        _, user, _ = self._get("current_user", "current_user")
        _, board, _ = self._get("dashboard", "dashboard")
        count = len(_board(board))
        return {
            "version": f"GoCD {version}, {count} pipelines visible",
            "user": (user or {}).get("login_name"),
            "pipelines": count,
        }

    def close(self) -> None:
        self._http.close()

    def discover(self) -> Iterator[JobRef]:
        """Every pipeline (or pipeline stage): one request, the dashboard."""
        _, data, _ = self._get("dashboard", "dashboard")
        with self._lock:
            self._first, self._index = {}, {}
        for b in _board(data):
            with self._lock:
                pipe = self._pipes.setdefault(b.name, _Pipe(b.name, b.group))
                pipe.group = b.group
                pipe.stages = _merge(pipe.stages, b.stages)
            yield from self._refs(pipe, None)

    def discover_since(self, cursor: str | None) -> Iterator[JobRef | Checkpoint]:
        """Every pipeline, and which of them moved since `cursor`: one request when none did."""
        state = _load_cursor(cursor)
        known: dict[str, dict[str, Any]] = dict((state or {}).get("pipelines") or {})
        etag = (state or {}).get("etag") if known else None
        status, data, headers = self._get("dashboard", "dashboard", etag=etag)
        now = self._date if self._date is not None else int(time.time() * 1000)
        with self._lock:
            self._now = now
            self._first, self._index = {}, {}
            found, self._held_seen = dict(self._held_seen), {}
        held = Held((state or {}).get("held"))
        held.update(found.items())
        moved: set[str] = set()
        if status != 304:
            moved = _read_board(_board(data), known, first=state is None)
            etag = headers.get("ETag") or None
        for name in sorted(moved):
            self._look_at(name, known[name], held, now)
        due = self._due(known, held, now)
        pipes = {name: _Pipe.of(name, entry) for name, entry in known.items()}
        with self._lock:
            self._pipes = pipes
        for name in sorted(known):
            if known[name].get("gone"):
                continue
            if state is None or name in moved:
                yield from self._refs(pipes[name], None)
            else:
                yield from self._refs(pipes[name], due.get(name, set()))
        yield Checkpoint(
            dump_cursor(CURSOR_VERSION, now, etag=etag, pipelines=known, held=held.as_dict())
        )

    def _look_at(self, name: str, entry: dict[str, Any], held: Held, now: int) -> None:
        """A moved pipeline's first history page: its stages, counter resets, and (pipeline
        granularity) which instances wait at a gate, so their deadline is kept even on 304s."""
        if not self._polled(name, entry.get("stages") or []):
            return
        try:
            page = self._first_page(name)
        except ConnectorError as exc:
            # Its scan will try again and fail (or not) on its own; the rest goes on.
            log.warning("pipeline history unreadable at discovery", pipeline=name, error=str(exc))
            return
        self._learn(name, entry, page)
        if self.settings.granularity != "pipeline":
            return
        max_age = int(self.max_pending_age * 1000)
        for inst in page:
            key = self._key(name, entry, inst)
            if key is None:
                continue
            p = m.progress(inst)
            if p.state == "waiting" and p.since is not None and now - p.since < max_age:
                held.hold(key, p.since)
            else:
                held.release(key)

    def _due(self, known: dict[str, dict[str, Any]], held: Held, now: int) -> dict[str, set[int]]:
        """Held instances past `max_pending_age`, by pipeline; those of a pipeline deleted or
        renamed are let go (its history is gone)."""
        due: dict[str, set[int]] = {}
        for key in held.expired(now, int(self.max_pending_age * 1000)):
            name, _, n = key.rpartition("#")
            if name in known and not known[name].get("gone") and n.isdigit():
                due.setdefault(name, set()).add(int(n))
        for key, _ in held.items():
            name = key.rpartition("#")[0]
            if name not in known or known[name].get("gone"):
                held.release(key)
        return due

    def _learn(self, name: str, entry: dict[str, Any], page: list[dict[str, Any]]) -> None:
        """What page 1 of a pipeline's history says of it: its stages, its highest counter,
        and a counter reset (the counters going up somewhere down the page)."""
        names = [
            str(s.get("name"))
            for inst in page
            for s in inst.get("stages") or []
            if isinstance(s, dict) and s.get("name")
        ]
        entry["stages"] = _merge(list(entry.get("stages") or []), names)
        gens = sorted(int(g) for g in entry.get("gens") or [])
        boundary = m.reset_boundary(page)
        if boundary is None and entry.pop("reset", False) and page:
            # The counter went down but page 1 holds only the new generation: it starts
            # before the oldest instance on the page (GUESS: read no further for it).
            boundary = m.ms(page[-1].get("scheduled_date"))
        entry.pop("reset", None)
        if boundary is not None and boundary not in gens and (not gens or boundary > gens[-1]):
            log.warning(
                "pipeline counter started again (pipeline recreated?); its new runs are"
                " numbered as a new generation",
                pipeline=name,
                generation=len(gens) + 1,
            )
            gens.append(boundary)
        entry["gens"] = gens
        counters = [c for c in (m.counter_of(i.get("counter")) for i in page[:1]) if c is not None]
        if counters:
            entry["max"] = counters[0]

    def _key(self, name: str, entry: dict[str, Any], inst: dict[str, Any]) -> str | None:
        c, at = m.counter_of(inst.get("counter")), m.ms(inst.get("scheduled_date"))
        if c is None or at is None:
            return None
        return f"{name}#{m.number(entry.get('gens') or [], at, c)}"

    def _polled(self, name: str, stages: list[str]) -> bool:
        """Whether `include` may keep a job of this pipeline (else discovery reads nothing
        more of it). Matched loosely (`*` crosses `/` here): reading one page too many is
        harmless, skipping one the core polls is not; `exclude` is left to the core."""
        if self.settings.granularity == "pipeline":
            names = [name]
        else:
            names = [f"{name}/{s}" for s in stages]
            if not names:
                return True  # no stage known yet: page 1 names them
        globs = [g.replace("**", "*") for g in self.spec.include]
        return any(fnmatchcase(j, g) for j in names for g in globs)

    def _refs(self, pipe: _Pipe, changed: set[int] | None) -> Iterator[JobRef]:
        url = f"{self.base}tab/pipeline/history/{quote(pipe.name, safe='')}"
        view = None if changed is None else tuple(sorted(changed))
        if self.settings.granularity == "pipeline":
            yield JobRef(pipe.name, pipe.name, url, kind="pipeline", changed=view)
            return
        for stage in pipe.stages:
            yield JobRef(f"{pipe.name}/{stage}", pipe.name, url, kind="stage", changed=view)

    def _pipe(self, job: JobRef) -> tuple[_Pipe, str | None]:
        """The job's pipeline (and stage, with stage granularity)."""
        if self.settings.granularity == "stage":
            name, _, stage = job.full_name.rpartition("/")
        else:
            name, stage = job.full_name, ""
        with self._lock:
            pipe = self._pipes.get(name)
        if pipe is None:
            list(self.discover())
            with self._lock:
                pipe = self._pipes.get(name)
        if pipe is None:
            raise NotFound(f"pipeline {name!r} is gone", url=redact_url(self.base))
        return pipe, (stage or None)

    # -- scans ----------------------------------------------------------------------------

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        pipe, stage = self._pipe(job)
        mine = _job_cursor(cursor.cursor)
        gens = sorted(set(pipe.gens) | {int(g) for g in mine.get("gens") or []})
        if stage is None:
            yield from self._scan_pipeline(pipe, gens, job, cursor, mine, wanted)
        else:
            yield from self._scan_stage(pipe, stage, gens, job, cursor, mine, wanted)

    def _scan_pipeline(
        self,
        pipe: _Pipe,
        gens: list[int],
        job: JobRef,
        cursor: JobCursor,
        mine: dict[str, Any],
        wanted: Callable[[int], bool],
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """Instances newest first down to the oldest one not finished at the last scan (on
        first sight or for `backfill`: down to `since_ms`); then each stage's new runs, for
        re-runs of instances already sent. Stage history is read first, so a re-run that
        happens in between is seen in the instance, or counted next time, never lost."""
        now = self._clock()
        max_age = int(self.max_pending_age * 1000)
        tops: dict[str, Any] = dict(mine.get("tops") or {})
        new_runs: list[tuple[str, _Run]] = []
        for stage in pipe.stages:
            runs, tops[stage] = self._stage_runs(pipe.name, stage, tops.get(stage), None)
            if stage in (mine.get("tops") or {}):
                new_runs += [(stage, r) for r in runs]
        # Every instance numbered below `floor` is handled; numbers (counters, generations
        # on top) grow with GoCD's internal ids, which history pages by, so the walk stops
        # at the first one below it. (Not by time: a clock set back would skip instances.)
        floor = None if cursor.backfill else mine.get("floor")
        waiting: list[int] = []
        newest: int | None = None
        yielded: dict[int, dict[str, int]] = {}  # sent now: the stage counters it holds
        listed: set[int] = set()
        for n, inst in self._walk(pipe, gens, floor, cursor):
            newest = n if newest is None else max(newest, n)
            listed.add(n)
            item = self._judge(pipe, inst, n, now, max_age, wanted)
            if isinstance(item, Unfinished):
                waiting.append(n)
            elif item is not None:
                yielded[n] = _stage_counters(inst)
            if item is not None:
                yield item
        for n in job.changed or ():
            if n in listed:
                continue
            alone = self._instance(pipe, gens, n)
            if alone is None:
                continue  # gone: the core unparks it, and it is owed no more
            item = self._judge(pipe, alone, n, now, max_age, wanted)
            if item is not None and not isinstance(item, Unfinished):
                yielded[n] = _stage_counters(alone)
            if item is not None:
                yield item
        for stage, run in new_runs:
            self._count_rerun(pipe, gens, stage, run, yielded, wanted)
        if waiting:
            new_floor: int | None = min(waiting)
        elif newest is not None:
            new_floor = newest + 1
        else:
            new_floor = mine.get("floor")
        yield Checkpoint(
            json.dumps(
                {"v": CURSOR_VERSION, "floor": new_floor, "tops": tops, "gens": gens},
                separators=(",", ":"),
            )
        )

    def _walk(
        self, pipe: _Pipe, gens: list[int], floor: int | None, cursor: JobCursor
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """History newest first, numbered, down to `floor` (or `since_ms` for a backfill)."""
        previous: int | None = None
        for inst in self._history(pipe.name):
            c, at = m.counter_of(inst.get("counter")), m.ms(inst.get("scheduled_date"))
            if c is None or at is None:
                continue
            n = m.number(gens, at, c)
            if floor is not None and n < floor:
                return
            if cursor.backfill and cursor.since_ms is not None and at < cursor.since_ms:
                return
            if previous is not None and n >= previous:
                # Numbers fall as the history goes back, unless the pipeline's counter was
                # reset (recreated) where the generations do not know it: what lies beyond
                # is an older pipeline of the same name, whose numbers would collide with
                # this one's. Not read (GUESS: such history predates sei-poller's watch).
                log.warning(
                    "the pipeline's counter was reset before sei-poller saw it; the runs"
                    " before the reset are not sent",
                    pipeline=pipe.name,
                    counter=c,
                )
                return
            previous = n
            yield n, inst

    def _judge(
        self,
        pipe: _Pipe,
        inst: dict[str, Any],
        n: int,
        now: int,
        max_age: int,
        wanted: Callable[[int], bool],
    ) -> Build | Broken | Unfinished | None:
        """An instance: running or held (`Unfinished`), a build to send, or None (handled)."""
        p = m.progress(inst)
        if p.state == "running":
            return Unfinished(n)
        if p.state == "waiting" and p.since is not None and now - p.since < max_age:
            with self._lock:
                self._held_seen[f"{pipe.name}#{n}"] = p.since
            return Unfinished(n)
        if not wanted(n):
            return None
        return self._pipeline_build_or_broken(pipe, inst, n, p)

    def _count_rerun(
        self,
        pipe: _Pipe,
        gens: list[int],
        stage: str,
        run: _Run,
        yielded: dict[int, dict[str, int]],
        wanted: Callable[[int], bool],
    ) -> None:
        """A stage that ran again (a re-run, a gate approved) on an instance already sent:
        SEI keeps the first write, so it is counted and logged, once. An instance sent in
        this scan counts only if what was sent predates the run (page 1 comes from
        discovery, read before the stage's history)."""
        n = m.number(gens, run.at, run.counter)
        key = f"{pipe.name}/{run.counter}/{stage}/{run.stage_counter}"
        with self._lock:
            if key in self._counted:
                return
        if n in yielded:
            if yielded[n].get(stage, 0) >= run.stage_counter:
                return  # what was sent holds this run
        elif wanted(n):
            return  # not sent yet: what SEI gets will include this run
        with self._lock:
            self._counted[key] = None
            while len(self._counted) > CACHE:
                self._counted.popitem(last=False)
            self.changed_after_send += 1
        self.services.on_changed_after_send()
        log.warning(
            "a stage ran again after its pipeline instance was sent; SEI keeps the first result",
            pipeline=pipe.name,
            counter=run.counter,
            stage=stage,
            stage_counter=run.stage_counter,
            result=run.result,
        )

    def _stage_runs(
        self, name: str, stage: str, top: Any, since_ms: int | None
    ) -> tuple[list[_Run], list[Any]]:
        """The stage's runs newer than `top` ([time, key] of the newest seen; `[0, ""]`: the
        stage had none; None: not read yet, so only the newest is read, to start from), and
        the new top. With `since_ms`, every run back to then."""
        path = f"stages/{quote(name, safe='')}/{quote(stage, safe='')}/history"
        known = top if isinstance(top, list) and len(top) == 2 else None
        out: list[_Run] = []
        first: list[Any] | None = None
        size = PAGE if since_ms is not None or (known and not known[1]) else PEEK
        try:
            for raw in self._pages(path, "stages", size):
                run = _run(raw)
                if run is None:
                    continue
                if first is None:
                    first = [run.at, run.key]
                    if known is None and since_ms is None:
                        break
                # Stage ids, which stage history pages by, grow with schedule time: a run a day
                # older than the newest seen is past it even if that run's key is gone.
                if known is not None and (
                    run.key == known[1] or run.at < int(known[0]) - STAGE_SLACK
                ):
                    break
                if since_ms is not None and run.at < since_ms:
                    break
                out.append(run)
        except NotFound:
            return [], known or [0, ""]  # a stage gone from the configuration
        return out, first or known or [0, ""]

    def _scan_stage(
        self,
        pipe: _Pipe,
        stage: str,
        gens: list[int],
        job: JobRef,
        cursor: JobCursor,
        mine: dict[str, Any],
        wanted: Callable[[int], bool],
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """Stage runs newest first from stage history (every run: new instances, re-runs,
        stages approved on old instances), down to the newest seen at the last scan (on
        first sight or for `backfill`: down to `since_ms`); then the runs that were not
        finished then, and the numbers the core names, each read alone."""
        top = None if cursor.backfill else mine.get("top")
        since = (cursor.since_ms or 0) if (cursor.backfill or top is None) else None
        runs, new_top = self._stage_runs(pipe.name, stage, top, since)
        todo: dict[str, tuple[int, int, int]] = {}  # key → (counter, stage counter, at)
        finished: dict[str, _Run] = {}
        for run in runs:
            todo.setdefault(run.key, (run.counter, run.stage_counter, run.at))
            if run.finished:
                finished[run.key] = run
        for item in mine.get("open") or []:
            if isinstance(item, list) and len(item) == 3:
                c, sc, at = (int(x) for x in item)
                todo.setdefault(f"{c}/{sc}", (c, sc, at))
        for n in job.changed or ():
            _, base = m.decode(n)
            c, sc = divmod(base, m.STAGE_FACTOR)
            todo.setdefault(f"{c}/{sc}", (c, sc, 0))
        walked = {r.key for r in runs}
        still_open: list[list[int]] = []
        for key, (c, sc, at) in todo.items():
            if sc >= m.STAGE_FACTOR:
                log.error(
                    'stage ran 1000 times or more: granularity = "stage" numbers a run'
                    " counter * 1000 + stage counter, which cannot hold it; not sent (use"
                    ' granularity = "pipeline" for this pipeline, or exclude it)',
                    pipeline=pipe.name,
                    counter=c,
                    stage=stage,
                    stage_counter=sc,
                )
                continue
            if key in finished or key not in walked:
                item = self._stage_item(pipe, stage, gens, c, sc, at, wanted)
            else:
                item = Unfinished(m.number(gens, at, c * m.STAGE_FACTOR + sc))
            if isinstance(item, Unfinished):
                still_open.append([c, sc, at])
            if item is not None:
                yield item
        yield Checkpoint(
            json.dumps(
                {"v": CURSOR_VERSION, "top": new_top, "open": still_open, "gens": gens},
                separators=(",", ":"),
            )
        )

    def _stage_item(
        self,
        pipe: _Pipe,
        stage: str,
        gens: list[int],
        counter: int,
        stage_counter: int,
        at: int,
        wanted: Callable[[int], bool],
    ) -> Build | Broken | Unfinished | None:
        """One stage run read alone (stage instance API), with its pipeline instance."""
        try:
            _, detail, _ = self._get(
                "stage",
                f"stages/{quote(pipe.name, safe='')}/{counter}/{quote(stage, safe='')}"
                f"/{stage_counter}",
            )
        except NotFound:
            return None
        if not isinstance(detail, dict):
            return None
        when = at or m.span(detail)[0] or 0
        if detail.get("result") not in m.FINAL:
            return Unfinished(m.number(gens, when, counter * m.STAGE_FACTOR + stage_counter))
        inst = self._instance_for(pipe, counter, when)
        inst_at = m.ms((inst or {}).get("scheduled_date")) or when
        n = m.number(gens, inst_at, counter * m.STAGE_FACTOR + stage_counter)
        if not wanted(n):
            return None
        try:
            return self._stage_build(pipe, stage, inst, detail, n)
        except NotFound:
            raise
        except ConnectorError as exc:
            fallback = self._stage_build(pipe, stage, inst, detail, n, degraded=True)
            return Broken(n, str(exc), exc.url, fallback=fallback)

    def _instance_for(self, pipe: _Pipe, counter: int, at: int) -> dict[str, Any] | None:
        """Stage granularity: the instance a stage run belongs to, from the history index
        (one page holds 100), or read alone when the history is far past it."""
        with self._lock:
            index = self._index.get(pipe.name)
            if index is None:
                index = self._index[pipe.name] = _Index(self._history(pipe.name))
        found = index.find(counter, at)
        if found is not None:
            return found
        try:
            _, data, _ = self._get("instance", f"pipelines/{quote(pipe.name, safe='')}/{counter}")
        except NotFound:
            return None
        return data if isinstance(data, dict) else None

    def _instance(self, pipe: _Pipe, gens: list[int], n: int) -> dict[str, Any] | None:
        """Pipeline granularity: the instance numbered `n`, read alone (GoCD answers the
        newest instance with a counter; one of an older generation is looked for in the
        history)."""
        gen, counter = m.decode(n)
        try:
            _, data, _ = self._get("instance", f"pipelines/{quote(pipe.name, safe='')}/{counter}")
        except NotFound:
            data = None
        if isinstance(data, dict):
            at = m.ms(data.get("scheduled_date"))
            if at is not None and m.generation(gens, at) == gen:
                return data
        start = gens[gen - 1] if 0 < gen <= len(gens) else None
        for inst in self._history(pipe.name):
            c, at = m.counter_of(inst.get("counter")), m.ms(inst.get("scheduled_date"))
            if at is None:
                continue
            if c == counter and m.generation(gens, at) == gen:
                return inst
            if start is not None and at < start:
                break  # older than the generation asked for
        return None

    # -- one build ------------------------------------------------------------------------

    def _pipeline_build_or_broken(
        self, pipe: _Pipe, inst: dict[str, Any], n: int, p: m.Progress
    ) -> Build | Broken:
        try:
            return self._pipeline_build(pipe, inst, n, p)
        except NotFound:
            raise
        except ConnectorError as exc:
            fallback = self._pipeline_build(pipe, inst, n, p, degraded=True)
            return Broken(n, str(exc), exc.url, fallback=fallback)

    def _details(self, name: str, counter: int, stage: dict[str, Any]) -> dict[str, Any] | None:
        """A stage run's details (stage instance API v3): job state transitions."""
        path = (
            f"stages/{quote(name, safe='')}/{counter}/{quote(str(stage.get('name')), safe='')}"
            f"/{m.counter_of(stage.get('counter')) or 1}"
        )
        try:
            _, data, _ = self._get("stage", path)
        except NotFound:
            return None
        return data if isinstance(data, dict) else None

    def _pipeline_build(
        self,
        pipe: _Pipe,
        inst: dict[str, Any],
        n: int,
        p: m.Progress,
        *,
        degraded: bool = False,
    ) -> Build:
        counter = m.counter_of(inst.get("counter")) or 0
        stages = [s for s in inst.get("stages") or [] if isinstance(s, dict)]
        ran = [s for s in stages if s.get("scheduled")]
        # Times need the stage instance API (history has no finish time): every stage that
        # ran when stages are wanted, else the first and the last (and any re-run).
        needed = {
            str(s.get("name"))
            for k, s in enumerate(ran)
            if self.spec.stages
            or k in (0, len(ran) - 1)
            or (m.counter_of(s.get("counter")) or 1) > 1
        }
        details: dict[str, dict[str, Any]] = {}
        if not degraded:
            for s in ran:
                if str(s.get("name")) in needed:
                    d = self._details(pipe.name, counter, s)
                    if d is not None:
                        details[str(s.get("name"))] = d
        starts, ends = [], []
        for d in details.values():
            start, end = m.span(d)
            if start is not None:
                starts.append(start)
            if end is not None:
                ends.append(end)
        scheduled = m.ms(inst.get("scheduled_date")) or 0
        start = min(starts) if starts else scheduled
        result, raw = m.result_of(ran)
        cause = inst.get("build_cause") or {}
        user, causes = self._trigger(cause, "pipeline", degraded=degraded)
        scm = m.scm(cause)
        records: tuple[Stage, ...] | None = None
        if self.spec.stages and not degraded:
            records = tuple(
                m.stage_record(pipe.name, counter, s, details.get(str(s.get("name"))))
                for s in stages
            )
        return Build(
            job_full_name=pipe.name,
            pipeline=pipe.name,
            number=n,
            result=result,
            start_ms=start,
            duration_ms=max(0, max(ends) - start) if ends else 0,
            url=f"{self.base}pipelines/value_stream_map/{quote(pipe.name, safe='')}/{counter}",
            user_id=user,
            triggers=tuple(causes),
            params=tuple(
                m.params(
                    [
                        ("gocd_label", inst.get("label")),
                        ("gocd_counter", counter),
                        ("gocd_natural_order", inst.get("natural_order")),
                        ("gocd_result", raw),
                        ("gocd_trigger", cause.get("trigger_message")),
                        ("gocd_comment", inst.get("comment")),
                        ("gocd_waiting", p.gate if p.state == "waiting" else None),
                    ]
                )
            ),
            commit_ids=scm.commits,
            repo_url=scm.repo_url,
            branch=scm.branch,
            stages=records,
            expects_stages=self.spec.stages,
            report_qualified_name=f"{pipe.group}/{pipe.name}" if pipe.group else None,
        )

    def _stage_build(
        self,
        pipe: _Pipe,
        stage: str,
        inst: dict[str, Any] | None,
        detail: dict[str, Any],
        n: int,
        *,
        degraded: bool = False,
    ) -> Build:
        counter = m.counter_of(detail.get("pipeline_counter")) or 0
        sc = m.counter_of(detail.get("counter")) or 1
        start, end = m.span(detail)
        cause = (inst or {}).get("build_cause") or {}
        mine = m.approver_trigger(detail.get("approved_by"))
        if mine is None:
            user, causes = self._trigger(cause, "stage", degraded=degraded)
        else:
            user, causes = mine
        scm = m.scm(cause)
        raw = str(detail.get("result"))
        prefix = f"{pipe.name}/{counter}/{stage}/{sc}"
        records = None
        if self.spec.stages:
            records = (
                Stage(
                    id=prefix,
                    name=stage,
                    description=stage,
                    result=m.RESULTS.get(raw, "NOT_BUILT"),
                    state="FINISHED",
                    start_ms=start,
                    duration_ms=max(0, end - start) if start is not None and end else 0,
                    steps=m.steps(detail, prefix),
                ),
            )
        return Build(
            job_full_name=f"{pipe.name}/{stage}",
            pipeline=pipe.name,
            number=n,
            result=m.RESULTS.get(raw, "NOT_BUILT"),
            start_ms=start
            if start is not None
            else (m.ms((inst or {}).get("scheduled_date")) or 0),
            duration_ms=max(0, end - start) if start is not None and end else 0,
            url=f"{self.base}pipelines/{quote(pipe.name, safe='')}/{counter}"
            f"/{quote(stage, safe='')}/{sc}",
            user_id=user,
            triggers=tuple(causes),
            params=tuple(
                m.params(
                    [
                        ("gocd_label", (inst or {}).get("label")),
                        ("gocd_counter", counter),
                        ("gocd_stage_counter", sc),
                        ("gocd_result", raw),
                        ("gocd_approved_by", detail.get("approved_by")),
                        ("gocd_cancelled_by", detail.get("cancelled_by")),
                        ("gocd_rerun_of_counter", detail.get("rerun_of_counter")),
                        ("gocd_trigger", cause.get("trigger_message")),
                    ]
                )
            ),
            commit_ids=scm.commits,
            repo_url=scm.repo_url,
            branch=scm.branch,
            stages=records,
            expects_stages=self.spec.stages,
            report_qualified_name=f"{pipe.group}/{pipe.name}/{stage}" if pipe.group else None,
        )

    def _trigger(
        self, cause: dict[str, Any], unit: str, *, degraded: bool
    ) -> tuple[str, list[Cause]]:
        """Who or what started an instance; an upstream pipeline is followed to the chain's
        head for the user, with one `UpstreamCause` per upstream that triggered it."""
        if m.trigger_kind(cause) != "upstream":
            return m.own_trigger(cause)
        ups = m.upstreams(cause)
        causes = [self._upstream_cause(u, unit) for u in ups]
        try:
            user = self._head(ups[0].pipeline, ups[0].counter, 1)
        except ConnectorError:
            if not degraded:
                raise
            user = "SYSTEM"
        return user, causes

    def _upstream_cause(self, u: m.Upstream, unit: str) -> Cause:
        with self._lock:
            gens = list((self._pipes.get(u.pipeline) or _Pipe(u.pipeline, "")).gens)
        if unit == "stage":
            base = m.stage_base(u.counter, u.stage_counter) or u.counter * m.STAGE_FACTOR
            return Cause("UpstreamCause", f"{u.pipeline}/{u.stage}", m.number(gens, u.at, base))
        return Cause("UpstreamCause", u.pipeline, m.number(gens, u.at, u.counter))

    def _head(self, name: str, counter: int, depth: int) -> str:
        """The user (or SCMTrigger, TimerTrigger) at the head of an upstream chain."""
        key = (name, counter)
        with self._lock:
            if key in self._upstream:
                self._upstream.move_to_end(key)
                return self._upstream[key][0]
        try:
            _, data, _ = self._get("instance", f"pipelines/{quote(name, safe='')}/{counter}")
        except NotFound:
            return "SYSTEM"  # gone (deleted, renamed): the chain ends here
        cause = (data or {}).get("build_cause") or {}
        if m.trigger_kind(cause) == "upstream" and depth < UPSTREAM_DEPTH:
            ups = m.upstreams(cause)
            user = self._head(ups[0].pipeline, ups[0].counter, depth + 1)
        elif m.trigger_kind(cause) == "upstream":
            user = "SYSTEM"
        else:
            user = m.own_trigger(cause)[0]
        with self._lock:
            self._upstream[key] = (user, [])
            while len(self._upstream) > CACHE:
                self._upstream.popitem(last=False)
        return user

    # -- check and explain ----------------------------------------------------------------

    def recent_builds(self, job: JobRef, limit: int) -> list[tuple[int, int]]:
        """For `check`: (number, start) of the newest `limit` runs, one request."""
        pipe, stage = self._pipe(job)
        size = max(10, min(PAGE, limit))
        out: list[tuple[int, int]] = []
        if stage is None:
            _, data, _ = self._get(
                "history", f"pipelines/{quote(pipe.name, safe='')}/history", {"page_size": size}
            )
            for inst in (data or {}).get("pipelines") or []:
                c, at = m.counter_of(inst.get("counter")), m.ms(inst.get("scheduled_date"))
                if c is not None and at is not None:
                    out.append((m.number(pipe.gens, at, c), at))
        else:
            _, data, _ = self._get(
                "stage_history",
                f"stages/{quote(pipe.name, safe='')}/{quote(stage, safe='')}/history",
                {"page_size": size},
            )
            for raw in (data or {}).get("stages") or []:
                run = _run(raw)
                base = None if run is None else m.stage_base(run.counter, run.stage_counter)
                if run is not None and base is not None:
                    out.append((m.number(pipe.gens, run.at, base), run.at))
        return out[:limit]

    def get_build(self, job: JobRef, number: int) -> Build | Broken | Unfinished:
        """For `explain`: one run as a scan would yield it."""
        pipe, stage = self._pipe(job)
        now, max_age = self._clock(), int(self.max_pending_age * 1000)
        if stage is None:
            inst = self._instance(pipe, pipe.gens, number)
            if inst is None:
                raise NotFound(
                    f"{pipe.name} #{number}: no such pipeline instance",
                    url=redact_url(self.api + f"pipelines/{pipe.name}/{m.decode(number)[1]}"),
                )
            item = self._judge(pipe, inst, number, now, max_age, lambda _n: True)
            assert item is not None
            return item
        _, base = m.decode(number)
        c, sc = divmod(base, m.STAGE_FACTOR)
        found = self._stage_item(pipe, stage, pipe.gens, c, sc, 0, lambda _n: True)
        if found is None:
            raise NotFound(
                f"{pipe.name}/{stage} #{number}: no such stage run",
                url=redact_url(self.api + f"stages/{pipe.name}/{c}/{stage}/{sc}"),
            )
        return found


# -- pure helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _BoardPipeline:
    name: str
    group: str
    ts: Any
    counters: tuple[int, ...]
    stages: tuple[str, ...]


def _read_board(
    board: list[_BoardPipeline], known: dict[str, dict[str, Any]], *, first: bool
) -> set[str]:
    """Folds the dashboard into `known` (the cursor's pipelines) and says which pipelines
    moved: a new timestamp, back from gone, or everything on first sight. A counter lower
    than the highest seen marks a reset for `_learn` to place."""
    moved: set[str] = set()
    for b in board:
        entry = dict(known.get(b.name) or {})
        if first or entry.get("ts") != b.ts or entry.get("gone"):
            moved.add(b.name)
        entry.update(group=b.group, ts=b.ts, gone=False)
        entry["stages"] = _merge(list(entry.get("stages") or []), b.stages)
        top = max(b.counters, default=None)
        if top is not None and entry.get("max") is not None and top < entry["max"]:
            entry["reset"] = True  # the counter went down: look for the boundary
        known[b.name] = entry
    on_board = {b.name for b in board}
    for name, entry in known.items():
        if name not in on_board:
            entry["gone"] = True
    return moved


def _board(data: Any) -> list[_BoardPipeline]:
    """The dashboard's pipelines: name, group, `last_updated_timestamp`, the counters and
    stage names of the instances it shows."""
    embedded = (data or {}).get("_embedded") or {} if isinstance(data, dict) else {}
    groups = {}
    for g in embedded.get("pipeline_groups") or []:
        for name in g.get("pipelines") or []:
            groups[str(name)] = str(g.get("name") or "")
    out = []
    for p in embedded.get("pipelines") or []:
        if not isinstance(p, dict) or not p.get("name"):
            continue
        instances = (p.get("_embedded") or {}).get("instances") or []
        counters = tuple(
            c for c in (m.counter_of(i.get("counter")) for i in instances) if c is not None
        )
        stages = tuple(
            str(s.get("name"))
            for i in instances
            for s in (i.get("_embedded") or {}).get("stages") or []
            if isinstance(s, dict) and s.get("name")
        )
        name = str(p["name"])
        out.append(
            _BoardPipeline(
                name, groups.get(name, ""), p.get("last_updated_timestamp"), counters, stages
            )
        )
    return out


def _stage_counters(inst: dict[str, Any]) -> dict[str, int]:
    """The latest run of each stage an instance shows (0: never scheduled)."""
    return {
        str(s.get("name")): (m.counter_of(s.get("counter")) or 0) if s.get("scheduled") else 0
        for s in inst.get("stages") or []
        if isinstance(s, dict)
    }


def _run(raw: dict[str, Any]) -> _Run | None:
    c = m.counter_of(raw.get("pipeline_counter"))
    sc = m.counter_of(raw.get("counter"))
    if c is None or sc is None:
        return None
    times = [t for t in (m.ms(j.get("scheduled_date")) for j in raw.get("jobs") or []) if t]
    jobs_done = all(j.get("state") == "Completed" for j in raw.get("jobs") or [])
    result = str(raw.get("result") or "Unknown")
    return _Run(c, sc, min(times) if times else 0, result, result in m.FINAL and jobs_done)


def _merge(known: list[str], more: Any) -> list[str]:
    out = list(known)
    for name in more:
        if name not in out:
            out.append(name)
    return out


def _next_after(page: Any) -> str | None:
    """The `after` cursor of a history page's `_links.next`, if it has one."""
    href = (
        ((page.get("_links") or {}).get("next") or {}).get("href")
        if isinstance(page, dict)
        else None
    )
    after = parse_qs(urlsplit(str(href or "")).query).get("after")
    return after[0] if href and after else None


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _message(data: Any) -> str:
    """GoCD's own words (`{"message": ...}`), cut short."""
    if isinstance(data, dict) and data.get("message"):
        return f": {str(data['message'])[:MESSAGE]}"
    return ""


def _parse_version(text: str) -> tuple[int, int, int] | None:
    parts = text.split("(")[0].strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def _version_text(v: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in v)


def _load_cursor(text: str | None) -> dict[str, Any] | None:
    state = load_cursor(text, CURSOR_VERSION)
    if text and state is None:
        log.warning("server cursor unreadable; every pipeline is scanned once")
    return state


def _job_cursor(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("v") == CURSOR_VERSION else {}
