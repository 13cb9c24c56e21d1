"""TeamCity, read through its REST API (`<url>app/rest/`) with `fields=` and explicit locators.

One SEI job per build configuration; `build_number` is the build `id` (server-wide, handed
out at queue time, never reused); the display `number` (a string that may repeat, change
while running or hold spaces) goes into `job_run_params` as `tc_build_number`.

Polling cost. Discovery is one request (the project tree with its build configurations).
After the first poll it is followed by one server-wide query for builds that finished since
the server cursor the core keeps for us (`server_cursor`, see `connectors/base.py`):

    state:finished,defaultFilter:false,branch:default:any,personal:false,canceled:any,
    failedToStart:any,finishDate:(date:S-5m,condition:after),
    startDate:(date:S-5m-6h,condition:after),lookupLimit:N,count:500

and one for builds running for more than three hours (`state:running`, usually none), so
an idle poll costs three requests whatever the number of build configurations. A build
configuration in which something finished costs one more request (its builds in that
window, every field at once); stages cost one request per configuration for the step names.

Why each dimension is spelled out: without `defaultFilter:false` TeamCity hides canceled,
failed-to-start, personal and non-default-branch builds, and only `state:finished` keeps
queued and running builds out; without `lookupLimit` a query looks at the newest 5,000
builds only, silently. `finishDate` gives TeamCity no point to stop walking its history, so
`startDate` bounds the walk. A build that started before that bound was running for hours
at the previous poll: the cursor keeps those builds (`long`), and one that is no longer
running is named changed and read by id. The hourly sweep, which leaves the start date open
(and then relies on `lookupLimit`), is what is left for anything else.

The core may name builds in `JobRef.changed` that no listing window reaches (owed by a scan
that failed, parked and due again, long builds): each is read by id after the listing.

Ids are assigned at queue time, builds finish out of id order, and a configuration's ids
have gaps: none of that matters here, because nothing is decided by id order. The time
windows say what to look at, the core's ledger says what was sent. Times are the server's
own (the `Date` header of its answers), with `OVERLAP` of slack; builds seen inside the
overlap are remembered in the cursor, so seeing them again costs nothing.
"""

from __future__ import annotations

import builtins
import itertools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import RecentBuilds, ServerCursor, Services
from connectors.kit.cursors import OVERLAP, date_header, load_cursor
from connectors.kit.http import (
    Client,
    foreign_redirect,
    json_answer,
    redact_url,
    status_error,
)
from connectors.kit.paging import follow
from connectors.kit.settings import TokenOrPassword
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
)

log = structlog.get_logger()

PAGE = 100  # builds per page of one configuration (every field)
DETECT_PAGE = 500  # builds per page of the server-wide query (four fields)
MAX_BODY = 64 * 1024 * 1024
ERROR_TEXT = 300  # characters of TeamCity's own error text kept in ours
# The server-wide query's walk stops at builds that started this long before the window; a
# build running longer than half of it at a poll is tracked by id instead. GUESS: 6 hours.
HORIZON = 6 * 3_600_000
SWEEP_EVERY = 3_600_000  # how often the server-wide query leaves the start date open
FALLBACK_WINDOW = 24 * 3_600_000  # a known job without a cursor of its own: look back a day
UPSTREAM_DEPTH = 10
CACHE = 4096
CURSOR_VERSION = 1
CHAIN = ("snapshotDependency", "buildType")  # triggers that point at another build
RESULTS = {"SUCCESS": "SUCCESS", "FAILURE": "FAILURE", "ERROR": "FAILURE"}
STEP_PREFIX = "buildStageDuration:buildStep"

TRIGGER_FIELDS = "type,details,user(username),buildType(id,internalId),build(id,buildTypeId)"
BUILD_FIELDS = (
    "id,buildTypeId,number,status,state,statusText,branchName,defaultBranch,personal,"
    "composite,failedToStart,queuedDate,startDate,finishDate,webUrl,"
    "canceledInfo(timestamp,text,user(username)),"
    f"triggered({TRIGGER_FIELDS.replace('build(id,buildTypeId)', '')}"
    f"build(id,buildTypeId,triggered({TRIGGER_FIELDS}))),"
    "revisions(revision(version,vcsBranchName,vcs-root-instance(id,vcs-root-id,name))),"
    "changes(change(id,version,username)),"
    "properties(property(name,value,inherited,type(rawValue))),"
    "artifacts(count,href,file(name,fullName,size,children(count)))"
)
STATS_FIELDS = ",statistics(href,property(name,value))"
DETECT_FIELDS = "count,nextHref,build(id,buildTypeId,queuedDate,startDate,finishDate)"
TREE_FIELDS = (
    "project(id,name,parentProjectId,archived,"
    "buildTypes(buildType(id,internalId,name,type,paused,webUrl)))"
)


class Settings(TokenOrPassword):
    """Keys only TeamCity servers have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    personal: bool = Field(default=False, description="true or false")
    job_name: Literal["path", "internal_id"] = Field(
        default="path", description='"path" (project ids / build configuration id) or "internal_id"'
    )
    lookup_limit: int = Field(
        default=100_000, ge=5000, description="a whole number of builds, at least 5000"
    )


@dataclass(frozen=True)
class _Config:
    """One build configuration as the project tree shows it."""

    id: str  # external id: what URLs show; an admin can change it
    internal_id: str  # `bt123`: never changes
    name: str
    path: str  # project ids from the top, then the configuration's id
    kind: str
    web_url: str

    def key(self, job_name: str) -> str:
        return self.internal_id if job_name == "internal_id" else self.path


class TeamCityConnector(ServerCursor, RecentBuilds):
    """One TeamCity server. Thread-safe: the core scans several configurations at once."""

    type: ClassVar[str] = "teamcity"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    # Ids are server-wide, so a configuration's ids have gaps, and builds finish out of id
    # order: no number watermark; the core's ledger says what was sent (connectors/base.py).
    sequential: ClassVar[bool] = False

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        self.base = spec.url if spec.url.endswith("/") else spec.url + "/"
        self.settings: Settings = spec.settings
        self._http = Client(spec, "TeamCity", limit=MAX_BODY, on_request=self.services.on_request)
        self.settings.authorise(self._http.session)
        self._lock = threading.Lock()
        self._configs: dict[str, _Config] = {}  # by external id
        self._by_key: dict[str, _Config] = {}
        self._rows: OrderedDict[int, tuple[int, int]] = OrderedDict()  # id → (start, finish)
        self._steps: dict[str, list[dict[str, Any]]] = {}
        self._vcs: dict[str, str | None] = {}
        self._upstream: OrderedDict[int, dict[str, Any] | None] = OrderedDict()
        self._now: int | None = None  # the server's clock at the last discovery (ms)
        self._warned_clock = False

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, str] | None = None) -> tuple[Any, int | None]:
        """GET a JSON answer, and the server's clock from its `Date` header (ms)."""
        where = redact_url(url)
        resp, body = self._http.get(url, params)
        status = resp.status_code
        if redirect := foreign_redirect(resp, self.base):
            raise redirect  # never followed: the credentials would go wherever it points
        if status != 200:
            raise status_error(status, "TeamCity", where, _error_text(body))
        return json_answer(body, resp, url, "TeamCity"), date_header(resp.headers.get("Date"))

    def _api(self, path: str, **params: str) -> tuple[Any, int | None]:
        return self._get(self.base + "app/rest/" + path, params or None)

    def _pages(self, path: str, locator: str, fields: str) -> Iterator[dict[str, Any]]:
        """Every build of a listing, following TeamCity's `nextHref` (which keeps `fields`).
        A page may be empty and still have a `nextHref`: TeamCity 2022+ answers so when it
        reached `lookupLimit`, with a larger one in the link."""
        return follow(
            lambda url, params: (self._get(url, params)[0], {}),
            self.base + "app/rest/" + path,
            {"locator": locator, "fields": fields},
            items=lambda page: (
                raw
                for raw in page.get("build") or []
                if isinstance(raw, dict) and isinstance(raw.get("id"), int)
            ),
            next_of=lambda page, _: (
                self._absolute(page["nextHref"]) if page.get("nextHref") else None
            ),
        )

    def _absolute(self, href: str) -> str:
        """TeamCity's hrefs leave the context path out; some proxies put it back in."""
        ctx = urlsplit(self.base).path.rstrip("/")
        if ctx and href.startswith(ctx + "/"):
            href = href[len(ctx) :]
        return self.base + href.lstrip("/")

    def _clock(self, server_ms: int | None) -> int:
        if server_ms is not None:
            return server_ms
        if not self._warned_clock:
            log.warning("TeamCity sent no Date header; using this host's clock for windows")
            self._warned_clock = True
        return int(time.time() * 1000)

    def _finished(self, extra: str) -> str:
        """The dimensions that make TeamCity show every finished build, explicitly."""
        personal = "any" if self.settings.personal else "false"
        return (
            f"{extra}state:finished,defaultFilter:false,branch:default:any,personal:{personal},"
            f"canceled:any,failedToStart:any,lookupLimit:{self.settings.lookup_limit}"
        )

    # -- the Connector protocol -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        server, _ = self._api("server", fields="version,versionMajor,versionMinor,currentTime")
        if not isinstance(server, dict) or "version" not in server:
            raise ConnectorError(
                "the answer has no version: is this the URL of a TeamCity server?",
                url=redact_url(self.base),
            )
        user, _ = self._api("users/current", fields="username,name,id")
        return {"version": f"TeamCity {server['version']}", "user": user.get("username")}

    def close(self) -> None:
        self._http.close()

    def discover(self) -> Iterator[JobRef]:
        """Every build configuration: one request."""
        configs, _ = self._tree()
        for c in configs:
            yield JobRef(c.key(self.settings.job_name), c.name, c.web_url, kind=c.kind)

    def discover_since(self, cursor: str | None) -> Iterator[JobRef | Checkpoint]:
        """Every build configuration, and what finished since `cursor` (`ServerCursor`)."""
        configs, now = self._tree()
        state = _load_cursor(cursor)
        changed: dict[str, list[int]] | None = None
        if state is not None:
            changed, new = self._detect(state, now)
        else:
            # No cursor yet: every configuration is read this poll (back to backfill_since, or
            # from its own cursor). One query now learns which builds finished inside the
            # overlap, so the next poll, seeing them again, stays idle.
            _, new = self._detect({"v": CURSOR_VERSION, "at": now, "sweep": now}, now)
        for c in configs:
            yield JobRef(
                full_name=c.key(self.settings.job_name),
                pipeline=c.name,
                url=c.web_url,
                kind=c.kind,
                changed=None if changed is None else tuple(sorted(changed.get(c.id, ()))),
            )
        yield Checkpoint(json.dumps(new, separators=(",", ":")))

    def _tree(self) -> tuple[list[_Config], int]:
        data, server_ms = self._api("projects", fields=TREE_FIELDS)
        projects = {
            p["id"]: p for p in data.get("project") or [] if isinstance(p, dict) and p.get("id")
        }
        configs = []
        for pid, p in projects.items():
            chain = _project_path(pid, projects)
            for bt in (p.get("buildTypes") or {}).get("buildType") or []:
                if not isinstance(bt, dict) or not bt.get("id"):
                    continue
                configs.append(
                    _Config(
                        id=bt["id"],
                        internal_id=str(bt.get("internalId") or bt["id"]),
                        name=str(bt.get("name") or bt["id"]),
                        path="/".join([*chain, bt["id"]]),
                        kind=str(bt.get("type") or "regular"),
                        web_url=bt.get("webUrl")
                        or f"{self.base}viewType.html?buildTypeId={bt['id']}",
                    )
                )
        now = self._clock(server_ms)
        with self._lock:
            self._configs = {c.id: c for c in configs}
            self._by_key = {c.key(self.settings.job_name): c for c in configs}
            self._now = now
        return configs, now

    def _detect(
        self, state: dict[str, Any], now: int
    ) -> tuple[dict[str, list[int]], dict[str, Any]]:
        """Builds finished since the cursor, server-wide, by configuration; the new cursor."""
        since, sweep_at = int(state["at"]), int(state.get("sweep") or state["at"])
        seen = {int(i) for i in state.get("seen") or []}
        sweep = now - sweep_at >= SWEEP_EVERY
        low = min(since, now) - OVERLAP
        if sweep:
            low = min(low, sweep_at - OVERLAP)
            extra = ""
        else:
            extra = f"startDate:(date:{_tc_date(low - HORIZON)},condition:after),"
        locator = (
            self._finished(f"finishDate:(date:{_tc_date(low)},condition:after),{extra}")
            + f",count:{DETECT_PAGE}"
        )
        changed: dict[str, set[int]] = {}
        fresh = []
        for raw in self._pages("builds", locator, DETECT_FIELDS):
            finish = _ms(raw.get("finishDate"))
            start = _ms(raw.get("startDate")) or _ms(raw.get("queuedDate")) or finish
            if finish is None or start is None:
                continue
            self._remember(raw["id"], start, finish)
            if finish > now - OVERLAP:
                fresh.append(raw["id"])
            if raw["id"] in seen:
                continue
            if sweep and finish <= since - OVERLAP and finish - start < HORIZON:
                continue  # the regular queries covered it (see the module docstring)
            changed.setdefault(str(raw.get("buildTypeId")), set()).add(raw["id"])
        # Builds that started too long ago for the query's start bound: those running at the
        # last poll and not now have finished (or are gone), and are looked at by id.
        running = self._long_running(now)
        for build_id, (bt, _) in (state.get("long") or {}).items():
            if int(build_id) not in running:
                changed.setdefault(str(bt), set()).add(int(build_id))
        if changed:
            log.info("builds finished since the last poll", configurations=len(changed))
        new = {
            "v": CURSOR_VERSION,
            "at": now,
            "seen": fresh,
            "sweep": now if sweep else sweep_at,
            "long": {str(i): list(v) for i, v in running.items()},
        }
        return {bt: sorted(ids) for bt, ids in changed.items()}, new

    def _long_running(self, now: int) -> dict[int, tuple[str, int]]:
        """Running builds that started more than half of `HORIZON` ago: (config, start) by id.

        One small request per poll. A build running at one poll that finishes before the next
        started after that poll's `now - OVERLAP - HORIZON` unless it is among these, so the
        finished-since query's start bound never hides a build the cursor has passed.
        """
        personal = "any" if self.settings.personal else "false"
        locator = (
            f"state:running,defaultFilter:false,branch:default:any,personal:{personal},"
            f"startDate:(date:{_tc_date(now - HORIZON // 2)},condition:before),"
            f"lookupLimit:{self.settings.lookup_limit},count:{DETECT_PAGE}"
        )
        out = {}
        for raw in self._pages("builds", locator, "count,nextHref,build(id,buildTypeId,startDate)"):
            start = _ms(raw.get("startDate"))
            if start is not None:
                out[raw["id"]] = (str(raw.get("buildTypeId")), start)
        return out

    def _remember(self, build_id: int, start: int, finish: int) -> None:
        with self._lock:
            self._rows[build_id] = (start, finish)
            self._rows.move_to_end(build_id)
            while len(self._rows) > 64 * CACHE:
                self._rows.popitem(last=False)

    def _config(self, job: JobRef) -> _Config:
        with self._lock:
            found = self._by_key.get(job.full_name)
        if found is None:
            self._tree()
            with self._lock:
                found = self._by_key.get(job.full_name)
        if found is None:
            raise NotFound(
                f"build configuration {job.full_name!r} is gone", url=redact_url(self.base)
            )
        return found

    def recent_builds(self, job: JobRef, limit: int) -> list[tuple[int, int]]:
        """Optional, for `sei-poller check`: (id, start ms) of the newest `limit` builds."""
        c = self._config(job)
        data, _ = self._api(
            "builds",
            locator=self._finished(f"buildType:(id:{c.id}),") + f",count:{limit}",
            fields="count,build(id,queuedDate,startDate)",
        )
        out = []
        for raw in data.get("build") or []:
            start = _ms(raw.get("startDate")) or _ms(raw.get("queuedDate"))
            if isinstance(raw.get("id"), int) and start is not None:
                out.append((raw["id"], start))
        return out

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Broken | Checkpoint]:
        """Finished builds of one configuration: its history back to `since_ms` on first
        sight or for `backfill`, otherwise what finished since its own cursor and what the
        server-wide query saw."""
        c = self._config(job)
        with self._lock:
            now = self._now if self._now is not None else int(time.time() * 1000)
            rows = [self._rows[i] for i in job.changed or () if i in self._rows]
        scope = f"buildType:(id:{c.id}),"
        if cursor.backfill:
            if cursor.since_ms is not None:
                scope += f"startDate:(date:{_tc_date(cursor.since_ms - 1000)},condition:after),"
        else:
            mine = _int(cursor.cursor)
            lows = [f for _, f in rows] + ([mine] if mine is not None else [])
            low = (min(lows) if lows else now - FALLBACK_WINDOW) - OVERLAP
            scope += f"finishDate:(date:{_tc_date(low)},condition:after),"
            if job.changed is not None:
                # The server cursor vouches for the rest: builds running for hours are
                # tracked and named, so the walk may stop at the start bound.
                start_low = min([s for s, _ in rows] + [low - HORIZON]) - 1000
                scope += f"startDate:(date:{_tc_date(start_low)},condition:after),"
            # Else no server cursor yet (a first poll, one lost): nothing tracked the
            # long builds, so this configuration's walk goes as deep as `lookupLimit`.
        fields = BUILD_FIELDS + (STATS_FIELDS if self.spec.stages else "")
        checkpoint = now
        listed: set[int] = set()
        raws = self._pages(
            "builds", self._finished(scope) + f",count:{PAGE}", f"count,nextHref,build({fields})"
        )
        for raw in itertools.chain(raws, self._by_number(job, c, listed, fields)):
            listed.add(raw["id"])
            if raw.get("state") not in (None, "finished"):
                continue
            if cursor.backfill and cursor.since_ms is not None:
                started = _ms(raw.get("startDate")) or _ms(raw.get("queuedDate")) or 0
                if started < cursor.since_ms:
                    continue
            if not wanted(raw["id"]):
                continue
            item = self._build_or_broken(c, raw)
            if isinstance(item, Broken):
                finish = _ms(raw.get("finishDate"))
                if finish is not None:
                    checkpoint = min(checkpoint, finish - 1000)
            yield item
        yield Checkpoint(str(checkpoint))

    def _by_number(
        self, job: JobRef, c: _Config, listed: set[int], fields: str
    ) -> Iterator[dict[str, Any]]:
        """The builds the core named in `changed` that the listing did not hold, one request
        each: builds owed since a failed scan, parked builds due again, builds that ran
        longer than `HORIZON`. Runs after the listing, so `listed` is complete by then."""
        for number in job.changed or ():
            if number in listed:
                continue
            try:
                raw, _ = self._api(f"builds/id:{number}", fields=fields)
            except NotFound:
                continue  # deleted: the core unparks it, and it is owed no more
            if isinstance(raw, dict) and raw.get("id") == number and raw.get("buildTypeId") == c.id:
                yield raw

    # -- mapping --------------------------------------------------------------------------

    def _build_or_broken(self, c: _Config, raw: dict[str, Any]) -> Build | Broken:
        """A build whose extra requests (step names, repository, upstream chain, artifacts)
        keep failing is `Broken`: the core parks it; the fallback leaves those parts out."""
        try:
            return self._build(c, raw)
        except NotFound:
            raise
        except ConnectorError as exc:
            return Broken(raw["id"], str(exc), exc.url, fallback=self._build(c, raw, degraded=True))

    def _build(self, c: _Config, raw: dict[str, Any], *, degraded: bool = False) -> Build:
        number = raw["id"]
        finish = _ms(raw.get("finishDate"))
        started = _ms(raw.get("startDate"))
        start = started if started is not None else (_ms(raw.get("queuedDate")) or finish or 0)
        result = _result(raw)
        user, causes = self._trigger(raw.get("triggered") or {}, tolerant=degraded)
        revision = _main_revision(raw)
        return Build(
            job_full_name=c.key(self.settings.job_name),
            pipeline=c.name,
            number=number,
            result=result,
            start_ms=start,
            duration_ms=max(0, finish - started) if started is not None and finish else 0,
            url=raw.get("webUrl") or f"{self.base}viewLog.html?buildId={number}",
            user_id=user,
            triggers=tuple(causes),
            params=tuple(_params(raw)),
            commit_ids=tuple(_commits(raw)),
            repo_url=self._repo_url(revision, tolerant=degraded),
            branch=_branch(raw, revision),
            stages=None if degraded else self._stages(c, raw, result),
            artifacts=tuple(self._artifacts(c, raw, tolerant=degraded)),
        )

    def _trigger(self, tr: dict[str, Any], *, tolerant: bool) -> tuple[str, list[Cause]]:
        """Who or what started the build, in the words Jenkins' connector uses."""
        kind = str(tr.get("type") or "unknown")
        username = (tr.get("user") or {}).get("username") or None
        if kind in CHAIN and isinstance((tr.get("build") or {}).get("id"), int):
            up = tr["build"]
            cause = Cause("UpstreamCause", self._job_of(up.get("buildTypeId")), up["id"])
            return self._chain_root(up, username, tolerant=tolerant), [cause]
        return _who(kind, username), [_cause(kind, username)]

    def _chain_root(self, up: dict[str, Any], fallback: str | None, *, tolerant: bool) -> str:
        """Follow snapshot-dependency and finish-build triggers to the chain's head, as
        Jenkins' connector follows UpstreamCause, and take the head's trigger."""
        for _ in range(UPSTREAM_DEPTH):
            tr = up.get("triggered")
            if tr is None:
                try:
                    tr = self._upstream_trigger(up["id"])
                except ConnectorError:
                    if not tolerant:
                        raise
                    tr = None
                if tr is None:  # deleted, or not visible: the chain ends here
                    return fallback or "SYSTEM"
            kind = str(tr.get("type") or "unknown")
            username = (tr.get("user") or {}).get("username") or None
            nxt = tr.get("build") or {}
            if kind in CHAIN and isinstance(nxt.get("id"), int):
                fallback = username or fallback
                up = nxt
                continue
            return _who(kind, username)
        return fallback or "SYSTEM"

    def _upstream_trigger(self, build_id: int) -> dict[str, Any] | None:
        with self._lock:
            if build_id in self._upstream:
                self._upstream.move_to_end(build_id)
                return self._upstream[build_id]
        try:
            data, _ = self._api(f"builds/id:{build_id}", fields=f"id,triggered({TRIGGER_FIELDS})")
            found = data.get("triggered") or {}
        except NotFound:
            found = None
        with self._lock:
            self._upstream[build_id] = found
            while len(self._upstream) > CACHE:
                self._upstream.popitem(last=False)
        return found

    def _job_of(self, bt_id: Any) -> str:
        with self._lock:
            c = self._configs.get(str(bt_id))
        return c.key(self.settings.job_name) if c else str(bt_id or "unknown")

    def _repo_url(self, revision: dict[str, Any] | None, *, tolerant: bool) -> str | None:
        """The VCS root's `url` property; without the right to read VCS root settings, the
        root instance's name when it is a URL (TeamCity names roots `<url>#<branch>`)."""
        if revision is None:
            return None
        inst = revision.get("vcs-root-instance") or {}
        name = str(inst.get("name") or "").split("#", 1)[0].strip()
        fallback = name if "://" in name or name.startswith("git@") else None
        inst_id = inst.get("id")
        if inst_id is None:
            return fallback
        key = str(inst_id)
        with self._lock:
            if key in self._vcs:
                return self._vcs[key] or fallback
        try:
            data, _ = self._api(
                f"vcs-root-instances/id:{key}", fields="id,name,properties(property(name,value))"
            )
            props = {
                p.get("name"): p.get("value")
                for p in (data.get("properties") or {}).get("property") or []
                if isinstance(p, dict)
            }
            url = props.get("url") or None
        except NotFound:
            url = None
        except ConnectorError as exc:
            if exc.status == 403:
                url = None  # no right to read VCS root settings: the name is what there is
            elif tolerant:
                return fallback
            else:
                raise
        with self._lock:
            self._vcs[key] = url
        return url or fallback

    def _stages(self, c: _Config, raw: dict[str, Any], result: str) -> tuple[Stage, ...] | None:
        """Build steps as stages: durations from the build's statistics, names from the
        configuration's current steps. TeamCity reports no status per step, so each step
        carries the build's result (GUESS: finer than that needs the build log)."""
        if not self.spec.stages:
            return None
        stats = raw.get("statistics") or {}
        props = stats.get("property")
        if props is None and stats.get("href"):
            data, _ = self._get(self._absolute(stats["href"]))
            props = data.get("property")
        durations = {}
        for p in props or []:
            name = str(p.get("name") or "")
            if name.startswith(STEP_PREFIX):
                try:
                    durations[name[len(STEP_PREFIX) :]] = int(p.get("value") or 0)
                except ValueError:
                    continue
        if not durations:
            return None
        steps = {s["id"]: s for s in self._config_steps(c)}
        order = [i for i in steps if i in durations] + sorted(set(durations) - set(steps))
        out = []
        for runner in order:
            step = steps.get(runner, {})
            name = str(step.get("name") or step.get("type") or runner)
            out.append(
                Stage(
                    id=f"{raw['id']}.{runner}",
                    name=name,
                    description=name,
                    result=result,
                    state="FINISHED",
                    start_ms=None,
                    duration_ms=durations[runner],
                )
            )
        return tuple(out)

    def _config_steps(self, c: _Config) -> list[dict[str, Any]]:
        with self._lock:
            if c.internal_id in self._steps:
                return self._steps[c.internal_id]
        try:
            data, _ = self._api(f"buildTypes/id:{c.id}/steps", fields="step(id,name,type)")
            steps = [s for s in data.get("step") or [] if isinstance(s, dict) and s.get("id")]
        except NotFound:
            steps = []
        except ConnectorError as exc:
            if exc.status != 403:
                raise
            steps = []  # no right to read the settings: stages are named by runner id
        with self._lock:
            self._steps[c.internal_id] = steps
        return steps

    def _artifacts(self, c: _Config, raw: dict[str, Any], *, tolerant: bool) -> Iterable[Artifact]:
        """Top-level artifact files (GUESS: directories are not walked)."""
        arts = raw.get("artifacts") or {}
        files = arts.get("file")
        if files is None and int(arts.get("count") or 0) > 0 and arts.get("href"):
            try:
                data, _ = self._get(self._absolute(arts["href"]))
                files = data.get("file")
            except ConnectorError:
                if not tolerant:
                    raise
                files = None
        for f in files or []:
            if not isinstance(f, dict) or "children" in f or not f.get("name"):
                continue
            path = f.get("fullName") or f["name"]
            yield Artifact(
                name=str(f["name"]),
                location=f"{self.base}repository/download/{c.id}/{raw['id']}:id/{path}",
                qualifier=str(raw["id"]),
            )


# -- pure helpers ---------------------------------------------------------------------------


def _load_cursor(text: str | None) -> dict[str, Any] | None:
    state = load_cursor(text, CURSOR_VERSION)
    if text and state is None:
        log.warning("server cursor unreadable; every build configuration is scanned once")
    return state


def _project_path(pid: str, projects: dict[str, dict[str, Any]]) -> list[str]:
    """Project ids from the top (the root project left out) down to `pid`."""
    chain: list[str] = []
    seen = set()
    current: str | None = pid
    while current and current != "_Root" and current not in seen:
        seen.add(current)
        chain.append(current)
        current = (projects.get(current) or {}).get("parentProjectId")
    return list(reversed(chain))


def _error_text(body: bytes) -> str:
    """TeamCity's own words (its errors are text/plain): the `Details:` line, cut short."""
    text = body.decode("utf-8", "replace").strip()
    if not text or text.startswith("<"):
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith(("Details:", "Error:"))), lines[0])
    detail = detail.split(": ", 1)[-1] if detail.startswith(("Details:", "Error:")) else detail
    if detail.startswith("jetbrains.") and ": " in detail:
        detail = detail.split(": ", 1)[1]
    return f": {detail[:ERROR_TEXT]}"


def _tc_date(ms: int) -> str:
    """TeamCity's locator date, in UTC; `+` must reach it as `%2B` (requests encodes it)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S+0000")


def _ms(value: Any) -> int | None:
    """`20181024T104538+0300` → epoch ms."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.strptime(value, "%Y%m%dT%H%M%S%z").timestamp() * 1000)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _result(raw: dict[str, Any]) -> str:
    """TeamCity has no UNSTABLE. Canceled → ABORTED; failed to start → FAILURE, or NOT_BUILT
    when it never started because a dependency failed (GUESS on TeamCity's wording)."""
    if raw.get("canceledInfo"):
        return "ABORTED"
    if raw.get("failedToStart"):
        text = str(raw.get("statusText") or "").lower()
        return "NOT_BUILT" if "dependenc" in text else "FAILURE"
    return RESULTS.get(str(raw.get("status")), "ABORTED")


def _who(kind: str, username: str | None) -> str:
    if kind == "vcs":
        return "SCMTrigger"
    if kind == "schedule":
        return "TimerTrigger"
    return username or "SYSTEM"  # the super user has an empty username


def _cause(kind: str, username: str | None) -> Cause:
    if kind == "user":
        return Cause("UserIdCause", username or "unknown")
    if kind == "vcs":
        return Cause("SCMTriggerCause", "SCMTrigger")
    if kind == "schedule":
        return Cause("TimerTriggerCause", "unknown")
    return Cause(kind, username or "unknown")


def _params(raw: dict[str, Any]) -> Iterator[Param]:
    """The build's parameters (never a password-typed one: TeamCity sends no value for it),
    then what TeamCity says of the build in its own words."""
    for p in (raw.get("properties") or {}).get("property") or []:
        if not isinstance(p, dict) or not p.get("name") or "value" not in p:
            continue
        raw_type = str((p.get("type") or {}).get("rawValue") or "")
        if raw_type.startswith("password") or str(p["name"]).startswith("secure:"):
            continue
        yield Param("StringParameterValue", str(p["name"]), p["value"])
    own = {
        "tc_build_number": raw.get("number"),
        "tc_result": raw.get("status"),
        "tc_status_text": raw.get("statusText"),
        "tc_trigger": (raw.get("triggered") or {}).get("type"),
        "tc_personal": "true" if raw.get("personal") else None,
    }
    for name, value in own.items():
        if value is not None:
            yield Param("StringParameterValue", name, str(value))


def _commits(raw: dict[str, Any]) -> Iterator[str]:
    for rev in (raw.get("revisions") or {}).get("revision") or []:
        if isinstance(rev, dict) and rev.get("version"):
            yield str(rev["version"])
    for ch in (raw.get("changes") or {}).get("change") or []:
        if isinstance(ch, dict) and ch.get("version"):
            yield str(ch["version"])


def _short_ref(ref: Any) -> str | None:
    return str(ref).removeprefix("refs/heads/") if ref else None


def _main_revision(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The revision of the VCS root the build's branch comes from, else the first one."""
    revs = [r for r in (raw.get("revisions") or {}).get("revision") or [] if isinstance(r, dict)]
    branch = _short_ref(raw.get("branchName"))
    for rev in revs:
        if branch and _short_ref(rev.get("vcsBranchName")) == branch:
            return rev
    return revs[0] if revs else None


def _branch(raw: dict[str, Any], revision: dict[str, Any] | None) -> str | None:
    return _short_ref((revision or {}).get("vcsBranchName")) or _short_ref(raw.get("branchName"))
