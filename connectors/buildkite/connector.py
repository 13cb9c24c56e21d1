"""Buildkite, read through its REST API (`https://api.buildkite.com/v2/`).

One SEI job per pipeline: `job_full_name` = `<org>/<slug>`, `build_number` = the build
`number` (per pipeline; a rebuild is a new build with a new number; a retried job stays
inside its build, and the build's stages carry the latest attempt of each job).

Polling cost. After the first poll, an idle poll costs one request for the whole
organisation: `GET organizations/<org>/builds?finished_from=T&include_retried_jobs=true`,
whose answer already holds every field of every build that finished (jobs included), so a
pipeline in which something finished costs nothing more unless its build has artifacts
(one request) or was started by another pipeline's trigger step (one or two). The pipeline
list is read on the first poll and then every `PIPELINES_EVERY`, or at once when a build
names a pipeline not seen before (`server_cursor`, see `connectors/base.py`).

Listing is always bounded by time: Buildkite answers 400 to deep paging, so a backfill reads a
pipeline's history with `created_from`/`created_to`, the whole range at first, halving a
window while it pages deeper than `MAX_PAGES` (its first page's `Link: rel="last"` says so,
or Buildkite's 400 does). A pipeline scanned at the previous poll is covered by the org-wide
answer; one behind it (idle for a while, a failed scan, a parked build) reads what finished
since its own cursor: one more request.

Rate limits: Buildkite shares 200 requests a minute per organisation (and a per-user limit)
with everything else the organisation runs. Every answer's `RateLimit-*` headers (or the older
`Rate-Limit-*`) say what is left until the window resets; below half the limit, requests are
spread evenly over what remains of the window, and `RESERVE` requests are always left to the
organisation's other clients. A 429 waits for its reset, then the request is tried again.

Finished means finished: `passed`, `failed`, `canceled`, `skipped`, `not_run`, and not
`blocked: true`. A blocked build keeps `state: passed` and waits for a person; it is treated
as running until it is unblocked (its `finished_at` then moves and it re-enters the
`finished_from` window) or until `max_pending_age` has passed since it blocked, when it is
sent with the jobs that ran (`bk_blocked = true` in its parameters). GUESS: a blocked build
has `finished_at` set (Buildkite's `state=finished` filter includes blocked builds).
"""

from __future__ import annotations

import builtins
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import ChangesAfterSend, HoldsPending, ServerCursor, Services
from connectors.kit.cursors import OVERLAP, date_header, load_cursor
from connectors.kit.held import Held
from connectors.kit.http import (
    Client,
    foreign_redirect,
    json_answer,
    redact_url,
    status_error,
)
from connectors.kit.pacing import Pacer
from connectors.kit.paging import last_page, next_link, same_host
from connectors.kit.settings import Duration
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

DEFAULT_URL = "https://api.buildkite.com/v2/"
PER_PAGE = 100  # Buildkite's maximum
MAX_PAGES = 50  # pages of one window before it is halved (deep paging answers 400)
MAX_BODY = 64 * 1024 * 1024
FALLBACK_WINDOW = 24 * 3_600_000  # a known pipeline without a cursor of its own: a day back
MIN_WINDOW = 60_000  # a window is not halved below a minute
DAY = 86_400_000
PIPELINES_EVERY = 900_000  # the pipeline list is re-read every 15 minutes
RESERVE = 10  # requests of every rate-limit window left to the organisation's other clients
MAX_429 = 3  # a request answered 429 this many times in a row fails the poll
MAX_WAIT = 120.0  # never wait longer than this for a rate-limit reset (seconds)
UPSTREAM_DEPTH = 10
CACHE = 4096
CURSOR_VERSION = 1
FINISHED = {
    "passed": "SUCCESS",
    "failed": "FAILURE",
    "canceled": "ABORTED",
    "skipped": "NOT_BUILT",
    "not_run": "NOT_BUILT",
}
JOB_RESULTS = {
    **FINISHED,
    "timed_out": "FAILURE",
    "broken": "FAILURE",
    "expired": "NOT_BUILT",
    "blocked": "NOT_BUILT",
    "unblocked": "SUCCESS",
    "canceling": "ABORTED",
}
SECRET_NAME = re.compile(r"secret|token|passw|pwd|credential|private|api_?key|auth", re.I)
SHA = re.compile(r"^[0-9a-f]{7,64}$", re.I)
MESSAGE_CHARS = 1000
# What the server cursor keeps of each pipeline, so a `once` run needs no pipeline listing.
PIPELINE_KEYS = ("slug", "name", "web_url", "repository", "default_branch", "created_at")


class Settings(BaseModel):
    """Keys only Buildkite servers have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization: str = Field(min_length=1, description="the organisation slug in quotes")
    token: SecretStr = Field(description='an API access token in quotes (or token_file = "path")')
    # A blocked build waits for a person to unblock it. Seven days outlasts a weekend and a
    # holiday; a build still blocked after that is sent with the jobs that ran.
    max_pending_age: Duration = Field(
        default=7 * 86400.0, description="a duration like '12h' or '7d'"
    )


class BuildkiteConnector(ServerCursor, HoldsPending, ChangesAfterSend):
    """One Buildkite organisation. Thread-safe: the core scans several pipelines at once."""

    type: ClassVar[str] = "buildkite"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    # Numbers only grow within a pipeline, but one number finishes again after a retry or an
    # unblock, and the listing is by time: the core's ledger says what was sent.
    sequential: ClassVar[bool] = False
    default_url: ClassVar[str] = DEFAULT_URL
    changed_after_send: int = 0  # counted per instance (ChangesAfterSend)

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        base = spec.url.rstrip("/")
        if not base.endswith("/v2"):
            base += "/v2"
        self.base = base + "/"
        self.settings: Settings = spec.settings
        self.org = self.settings.organization
        self._http = Client(spec, "Buildkite", limit=MAX_BODY, on_request=self.services.on_request)
        token = self.settings.token.get_secret_value()
        self._http.session.headers["Authorization"] = f"Bearer {token}"
        self._lock = threading.Lock()
        self._pacer = Pacer(reserve=RESERVE, max_wait=MAX_WAIT, clock=self.services.clock)
        self._pipelines: dict[str, dict[str, Any]] = {}  # by slug
        self._pipelines_at = 0.0
        self._fresh: dict[str, dict[int, dict[str, Any]]] = {}  # slug → number → raw build
        self._blocked = Held()  # "slug#n" → ms it was first seen blocked, found by scans
        self._upstream: OrderedDict[str, tuple[str, int, str] | None] = OrderedDict()
        self._now: int | None = None  # the server's clock at the last discovery (ms)
        self._date: int | None = None  # the server's clock at its last answer (ms)
        self._detect_low: int | None = None  # where the last org-wide query's window began
        self.scopes: tuple[str, ...] = ()

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any] | None = None) -> tuple[Any, Any]:
        """GET a JSON answer; (data, headers)."""
        where = redact_url(url)
        for attempt in range(MAX_429 + 1):
            self._pacer.before()
            resp, body = self._http.get(url, params)
            reset = self._pacer.note(resp.headers)
            if resp.status_code != 429:
                break
            wait = min(MAX_WAIT, reset if reset is not None else 60.0)
            if attempt == MAX_429:
                raise ConnectorError(
                    f"Buildkite rate limit hit {MAX_429 + 1} times in a row (HTTP 429)"
                    f"{_message(body)}",
                    url=where,
                    status=429,
                )
            log.warning("Buildkite rate limit reached; waiting for its reset", seconds=wait)
            self.services.clock.sleep(wait)
        status = resp.status_code
        date = date_header(resp.headers.get("Date"))
        if date is not None:
            with self._lock:
                self._date = date
        if scopes := resp.headers.get("X-OAuth-Scopes"):
            self.scopes = tuple(s.strip() for s in scopes.split(",") if s.strip())
        if redirect := foreign_redirect(resp, self.base):
            raise redirect
        if status != 200:
            need = resp.headers.get("X-Accepted-OAuth-Scopes")
            hint = f" (needs scope {need})" if need else ""
            raise status_error(status, "Buildkite", where, _message(body), who="token", hint=hint)
        return json_answer(body, resp, url, "Buildkite"), resp.headers

    def _org(self, path: str = "") -> str:
        return f"{self.base}organizations/{quote(self.org, safe='')}{path}"

    def _pipe(self, slug: str, tail: str) -> str:
        return self._org(f"/pipelines/{quote(slug, safe='')}{tail}")

    def _pages(
        self, url: str, params: dict[str, Any], max_pages: int = MAX_PAGES
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing, following the `Link: <…>; rel="next"` header. A listing
        whose first page says (`rel="last"`) it is deeper than `max_pages` raises `_TooDeep`
        at once, before anything is yielded."""
        next_url: str | None = url
        query: dict[str, Any] | None = {**params, "per_page": PER_PAGE}
        for i in range(max_pages):
            assert next_url is not None
            page, headers = self._get(next_url, query)
            if i == 0 and (last_page(headers) or 0) > max_pages:
                raise _TooDeep(redact_url(url))
            for raw in page if isinstance(page, list) else []:
                if isinstance(raw, dict):
                    yield raw
            link = next_link(headers)
            if not link:
                return
            next_url, query = same_host(link, self.base), None
        raise _TooDeep(redact_url(url))

    # -- the Connector protocol -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        token, _ = self._get(self.base + "access-token")
        scopes = tuple(token.get("scopes") or ()) if isinstance(token, dict) else ()
        # The organisation is checked through its pipeline list (`read_pipelines`, which
        # polling needs anyway), not `organizations/<org>` (`read_organizations`, which not).
        self._get(self._org("/pipelines"), {"per_page": 1})
        missing = [f"{s}: no {why}" for s, why in SCOPES.items() if scopes and s not in scopes]
        user = f"a token with scopes {','.join(scopes) or 'unknown'}"
        if missing:
            user += f" (missing {'; '.join(missing)})"
        return {
            "version": f"Buildkite REST API v2, organization {self.org}",
            "user": user,
            "scopes": list(scopes),
            "missing_scopes": missing,
        }

    def close(self) -> None:
        self._http.close()

    @property
    def max_pending_age(self) -> float:
        return float(self.settings.max_pending_age)

    def discover(self) -> Iterator[JobRef]:
        """Every pipeline."""
        self._read_pipelines()
        for p in self._sorted():
            yield self._ref(p, None)

    def discover_since(self, cursor: str | None) -> Iterator[JobRef | Checkpoint]:
        """Every pipeline, and what finished since `cursor`: one org-wide request."""
        state = _load_cursor(cursor)
        now = int(time.time() * 1000)
        if not self._pipelines and state and now - int(state.get("listed") or 0) < PIPELINES_EVERY:
            self._restore_pipelines(state)  # a new process (`once`): the list the cursor kept
        if not self._pipelines or now - self._pipelines_at >= PIPELINES_EVERY:
            self._read_pipelines()
        since = state["at"] if state else now
        found = self._finished_since(since)
        builds = found or []
        if state is None:
            builds += self._blocked_lately(now)
        with self._lock:
            now = self._date if self._date is not None else now
            self._now = now
            # Where the unbroken chain of org-wide queries began: every build that finished
            # since then was named by one of them, so a pipeline read up to there needs no
            # listing of its own (what a failed scan missed is owed, see poller/collect.py).
            chain = int(state.get("chain") or since) if state and found is not None else None
            self._detect_low = None if chain is None else chain - OVERLAP
        if any(b.get("_slug") not in self._pipelines for b in builds):
            self._read_pipelines()  # a pipeline created since the list was read
        seen = {str(s) for s in (state or {}).get("seen") or []}
        blocked = Held((state or {}).get("blocked"))
        max_age = int(self.max_pending_age * 1000)
        with self._lock:
            blocked.update(self._blocked.items())
            self._blocked = Held()
        changed, fresh, new_seen = _sort_builds(builds, seen, blocked, now, max_age)
        # Blocked builds whose wait is over are sent now, whether or not they moved.
        for key in blocked.expired(now, max_age):
            slug, _, n = key.rpartition("#")
            changed.setdefault(slug, set()).add(int(n))
        with self._lock:
            self._fresh = fresh
        if state is None or found is None:
            changed_view: dict[str, set[int]] | None = None
        else:
            changed_view = changed
            if changed:
                log.info("builds finished since the last poll", pipelines=len(changed))
        for p in self._sorted():
            slug = p["slug"]
            yield self._ref(p, None if changed_view is None else changed_view.get(slug, set()))
        new = {
            "v": CURSOR_VERSION,
            "at": now,
            "chain": now if chain is None else chain,
            "seen": new_seen,
            "blocked": blocked.as_dict(),
            "listed": int(self._pipelines_at),
            "pipelines": {
                slug: [p.get(k) for k in PIPELINE_KEYS] for slug, p in self._pipelines.items()
            },
        }
        yield Checkpoint(json.dumps(new, separators=(",", ":")))

    def _finished_since(self, since: int) -> list[dict[str, Any]] | None:
        """Builds finished since `since`, org-wide; None when more finished than one listing
        may page through (a long outage): every pipeline then reads from its own cursor."""
        try:
            return self._listing(
                self._org("/builds"),
                {"finished_from": _iso(since - OVERLAP), "include_retried_jobs": "true"},
            )
        except ConnectorError as exc:
            if exc.status != 400:
                raise
            log.warning("too many builds finished since the last poll; reading each pipeline")
            return None

    def _blocked_lately(self, now: int) -> list[dict[str, Any]]:
        """On the first poll, blocked builds the backfill will see (one request): remembered
        in the cursor, so `max_pending_age` finds them even across `once` runs."""
        return self._listing(
            self._org("/builds"),
            {
                "state": "blocked",
                "created_from": _iso(now - int(self.settings.max_pending_age * 1000) - DAY),
                "include_retried_jobs": "true",
            },
        )

    def _ref(self, p: dict[str, Any], changed: set[int] | None) -> JobRef:
        return JobRef(
            full_name=f"{self.org}/{p['slug']}",
            pipeline=str(p.get("name") or p["slug"]),
            url=str(p.get("web_url") or f"https://buildkite.com/{self.org}/{p['slug']}"),
            branch=p.get("default_branch") or None,
            kind="pipeline",
            changed=None if changed is None else tuple(sorted(changed)),
        )

    def _sorted(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._pipelines[s] for s in sorted(self._pipelines)]

    def _restore_pipelines(self, state: dict[str, Any]) -> None:
        kept = state.get("pipelines")
        if not isinstance(kept, dict):
            return
        found = {}
        for slug, values in kept.items():
            if isinstance(values, list) and len(values) == len(PIPELINE_KEYS):
                found[slug] = dict(zip(PIPELINE_KEYS, values, strict=True))
        with self._lock:
            self._pipelines = found
            self._pipelines_at = float(state.get("listed") or 0)

    def _read_pipelines(self) -> None:
        found = {}
        for p in self._pages(self._org("/pipelines"), {}, max_pages=1000):
            if p.get("slug") and not p.get("archived_at"):
                found[str(p["slug"])] = p
        with self._lock:
            self._pipelines = found
            self._pipelines_at = time.time() * 1000

    def _listing(self, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for raw in self._pages(url, params):
            if isinstance(raw.get("number"), int):
                raw["_slug"] = _slug_of(raw)
                out.append(raw)
        return out

    def _slug(self, job: JobRef) -> str:
        prefix = f"{self.org}/"
        if not job.full_name.startswith(prefix):
            raise NotFound(f"pipeline {job.full_name!r} is not in {self.org}", url=self.base)
        slug = job.full_name[len(prefix) :]
        with self._lock:
            known = slug in self._pipelines
        if not known:
            self._read_pipelines()
            with self._lock:
                known = slug in self._pipelines
        if not known:
            raise NotFound(f"pipeline {job.full_name!r} is gone", url=redact_url(self.base))
        return slug

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Broken | Unfinished | Checkpoint]:
        """Finished builds of one pipeline: its history back to `since_ms` on first sight or
        for `backfill`, otherwise what the org-wide query saw (fetched again only when it
        did not hold the build) and what finished since the pipeline's own cursor."""
        slug = self._slug(job)
        with self._lock:
            now = self._now if self._now is not None else int(time.time() * 1000)
            fresh = dict(self._fresh.get(slug, {}))
            detect_low = self._detect_low
        checkpoint = now - OVERLAP
        mine = _int(cursor.cursor)
        if cursor.backfill:
            raws: Iterator[dict[str, Any]] = self._history(slug, cursor.since_ms, now)
        elif (
            job.changed is not None
            and mine is not None
            and detect_low is not None
            and mine >= detect_low
        ):
            # The pipeline was read up to where the org-wide query began: that answer holds
            # everything since, so no request is needed for the builds it listed.
            raws = self._changed(slug, job.changed, fresh)
        else:
            # Behind the org-wide window (a pipeline idle for a while, a failed scan, a parked
            # build held the cursor): read what finished since the pipeline's own cursor, then
            # any build the org-wide query named that the listing did not hold.
            low = (mine if mine is not None else now - FALLBACK_WINDOW) - OVERLAP
            raws = self._listed(slug, low, now, job.changed or (), fresh)
        changed = set(job.changed or ())
        for raw in raws:
            n = raw.get("number")
            if not isinstance(n, int):
                continue
            state = str(raw.get("state") or "")
            if state not in FINISHED:
                yield Unfinished(n)
                continue
            if raw.get("blocked"):
                since = _ms(raw.get("finished_at")) or now
                if now - since < self.settings.max_pending_age * 1000:
                    with self._lock:
                        self._blocked.hold(f"{slug}#{n}", since)
                    yield Unfinished(n)
                    continue
            if cursor.backfill and cursor.since_ms is not None:
                started = _ms(raw.get("started_at")) or _ms(raw.get("created_at")) or 0
                if started < cursor.since_ms:
                    continue
            if not wanted(n):
                if n in changed and not cursor.backfill:
                    self.changed_after_send += 1
                    self.services.on_changed_after_send()
                    log.warning(
                        "build finished again after it was sent (retry or unblock); SEI keeps"
                        " the first result",
                        job=job.full_name,
                        build=n,
                        state=state,
                    )
                continue
            yield self._build_or_broken(slug, raw)
        yield Checkpoint(str(checkpoint))

    def _listed(
        self,
        slug: str,
        low: int,
        now: int,
        numbers: tuple[int, ...],
        fresh: dict[int, dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        got = set()
        for raw in self._finished_from(slug, low, now):
            got.add(raw.get("number"))
            yield raw
        yield from self._changed(slug, tuple(n for n in numbers if n not in got), fresh)

    def _changed(
        self, slug: str, numbers: tuple[int, ...], fresh: dict[int, dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        for n in numbers:
            raw = fresh.get(n)
            if raw is None:  # a blocked build whose wait is over, say
                try:
                    raw, _ = self._get(
                        self._pipe(slug, f"/builds/{n}"),
                        {"include_retried_jobs": "true"},
                    )
                except NotFound:
                    continue
            if isinstance(raw, dict):
                yield raw

    def _history(self, slug: str, since_ms: int | None, now: int) -> Iterator[dict[str, Any]]:
        """A pipeline's builds created since `since_ms` (else since the pipeline was
        created), newest first: the whole range in one listing, halved while Buildkite (or
        its `rel="last"` page) says it pages too deep."""
        p = self._pipelines.get(slug) or {}
        floor = _ms(p.get("created_at")) or 0
        low = max(since_ms or 0, floor) - 1000
        url = self._pipe(slug, "/builds")
        windows = [(low, now + OVERLAP)]
        while windows:
            lo, hi = windows.pop(0)
            params = {
                "created_from": _iso(lo),
                "created_to": _iso(hi),
                "include_retried_jobs": "true",
            }
            try:
                got = list(self._pages(url, params))
            except ConnectorError as exc:
                if exc.status != 400:
                    raise
                if hi - lo <= MIN_WINDOW:
                    raise ConnectorError(
                        "Buildkite pages too deep even for a one-minute window",
                        url=redact_url(url),
                        status=400,
                    ) from None
                mid = lo + (hi - lo) // 2
                windows[:0] = [(mid, hi), (lo, mid)]  # newest first
                continue
            yield from got

    def _finished_from(self, slug: str, low: int, now: int) -> Iterator[dict[str, Any]]:
        """A pipeline's builds that finished since `low`; when that pages too deep (a long
        outage), its builds created since a day before `low`, in windows."""
        try:
            got = list(
                self._pages(
                    self._pipe(slug, "/builds"),
                    {"finished_from": _iso(low), "include_retried_jobs": "true"},
                )
            )
        except ConnectorError as exc:
            if exc.status != 400:
                raise
            got = None
        if got is None:
            yield from self._history(slug, low - DAY, now)
        else:
            yield from got

    # -- one build ------------------------------------------------------------------------

    def _build_or_broken(self, slug: str, raw: dict[str, Any]) -> Build | Broken:
        try:
            return self._build(slug, raw)
        except NotFound:
            raise
        except ConnectorError as exc:
            return Broken(
                raw["number"], str(exc), exc.url, fallback=self._build(slug, raw, degraded=True)
            )

    def _build(self, slug: str, raw: dict[str, Any], *, degraded: bool = False) -> Build:
        n = raw["number"]
        jobs = [j for j in raw.get("jobs") or [] if isinstance(j, dict) and not j.get("retried")]
        started = _ms(raw.get("started_at"))
        created = _ms(raw.get("created_at"))
        finished = _ms(raw.get("finished_at"))
        start = started if started is not None else (created or finished or 0)
        user, causes = self._trigger(raw, degraded=degraded)
        pipeline = raw.get("pipeline") or self._pipelines.get(slug) or {}
        repo = pipeline.get("repository")
        commit = str(raw.get("commit") or "")
        return Build(
            job_full_name=f"{self.org}/{slug}",
            pipeline=str(pipeline.get("name") or slug),
            number=n,
            result=_result(raw, jobs),
            start_ms=start,
            duration_ms=max(0, finished - started) if started is not None and finished else 0,
            url=str(raw.get("web_url") or f"https://buildkite.com/{self.org}/{slug}/builds/{n}"),
            user_id=user,
            triggers=tuple(causes),
            params=tuple(_params(raw)),
            commit_ids=(commit,) if SHA.match(commit) else (),
            repo_url=str(repo) if repo else None,
            branch=str(raw["branch"]) if raw.get("branch") else None,
            stages=_stages(jobs) if self.spec.stages else None,
            artifacts=() if degraded else tuple(self._artifacts(slug, raw, jobs)),
            expects_stages=self.spec.stages,
        )

    def _trigger(self, raw: dict[str, Any], *, degraded: bool) -> tuple[str, list[Cause]]:
        """Who or what started the build, in the words Jenkins' connector uses."""
        source = str(raw.get("source") or "")
        if source == "trigger_job":
            try:
                up = self._parent(raw)
            except ConnectorError:
                if not degraded:
                    raise
                up = None
            if up is not None:
                slug, number, user = up
                return user, [Cause("UpstreamCause", f"{self.org}/{slug}", number)]
            return "SYSTEM", [Cause("Buildkite:trigger_job", "unknown")]
        return _who(raw), [_cause(raw)]

    def _parent(self, raw: dict[str, Any]) -> tuple[str, int, str] | None:
        """(parent slug, number, the chain head's user) from the job env of the build's first
        job (`BUILDKITE_TRIGGERED_FROM_BUILD_*`, scope `read_job_env`), followed up the chain
        as Jenkins' connector follows UpstreamCause."""
        bid = str(raw.get("id") or "")
        with self._lock:
            if bid in self._upstream:
                return self._upstream[bid]
        found: tuple[str, int, str] | None = None
        here = raw
        head_user = "SYSTEM"
        first: tuple[str, int] | None = None
        for _ in range(UPSTREAM_DEPTH):
            if str(here.get("source") or "") != "trigger_job":
                head_user = _who(here)
                break
            env = self._env_of(here)
            up_slug = env.get("BUILDKITE_TRIGGERED_FROM_BUILD_PIPELINE_SLUG")
            up_n = _int(env.get("BUILDKITE_TRIGGERED_FROM_BUILD_NUMBER"))
            if not up_slug or up_n is None:
                break
            if first is None:
                first = (up_slug, up_n)
            try:
                here, _ = self._get(
                    self._pipe(up_slug, f"/builds/{up_n}"),
                    {"exclude_jobs": "false"},
                )
            except NotFound:
                break
        if first is not None:
            found = (first[0], first[1], head_user)
        with self._lock:
            self._upstream[bid] = found
            while len(self._upstream) > CACHE:
                self._upstream.popitem(last=False)
        return found

    def _env_of(self, raw: dict[str, Any]) -> dict[str, str]:
        slug, n = _slug_of(raw), raw.get("number")
        for j in raw.get("jobs") or []:
            if isinstance(j, dict) and j.get("type") == "script" and j.get("id"):
                try:
                    data, _ = self._get(self._pipe(slug, f"/builds/{n}/jobs/{j['id']}/env"))
                except NotFound:
                    return {}
                except ConnectorError as exc:
                    if exc.status == 403:
                        return {}  # no read_job_env scope: the parent stays unknown
                    raise
                env = data.get("env") if isinstance(data, dict) else None
                return env if isinstance(env, dict) else {}
        return {}

    def _artifacts(
        self, slug: str, raw: dict[str, Any], jobs: list[dict[str, Any]]
    ) -> Iterator[Artifact]:
        """The build's artifacts (one request), asked for only when a job declares
        `artifact_paths` (GUESS: `buildkite-agent artifact upload` from a script without
        them is not seen; that costs a request for every build otherwise)."""
        if not any(j.get("artifact_paths") for j in jobs):
            return
        n = raw["number"]
        try:
            data = list(self._pages(self._pipe(slug, f"/builds/{n}/artifacts"), {}))
        except ConnectorError as exc:
            if exc.status == 403:
                return  # no read_artifacts scope
            raise
        for a in data:
            if a.get("state") not in (None, "finished") or not a.get("path"):
                continue
            yield Artifact(
                name=str(a.get("filename") or a["path"]),
                location=str(a.get("download_url") or a.get("url") or ""),
                qualifier=str(n),
            )


class _TooDeep(ConnectorError):
    def __init__(self, url: str) -> None:
        super().__init__("listing pages too deep; narrowing the window", url=url, status=400)


SCOPES = {  # the scope, and what a token without it costs
    "read_builds": "builds at all",
    "read_pipelines": "pipeline list (nothing is polled)",
    "read_artifacts": "artifacts",
    "read_job_env": "parent (user, UpstreamCause) for builds started by a trigger step",
}


# -- pure helpers ---------------------------------------------------------------------------


def _load_cursor(text: str | None) -> dict[str, Any] | None:
    state = load_cursor(text, CURSOR_VERSION)
    if text and state is None:
        log.warning("server cursor unreadable; every pipeline is scanned once")
    return state


def _slug_of(raw: dict[str, Any]) -> str:
    p = raw.get("pipeline")
    if isinstance(p, dict) and p.get("slug"):
        return str(p["slug"])
    m = re.search(r"/pipelines/([^/]+)/builds/", str(raw.get("url") or ""))
    return m.group(1) if m else ""


def _message(body: bytes) -> str:
    try:
        msg = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {str(msg)[:300]}" if msg else ""


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(max(0, ms) / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{max(0, ms) % 1000:03d}Z"
    )


def _ms(value: Any) -> int | None:
    """`2023-08-20T19:37:52.851Z` → epoch ms."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _result(raw: dict[str, Any], jobs: list[dict[str, Any]]) -> str:
    """passed → SUCCESS (UNSTABLE when a job soft-failed), failed → FAILURE, canceled →
    ABORTED, skipped / not_run → NOT_BUILT."""
    result = FINISHED.get(str(raw.get("state")), "FAILURE")
    if result == "SUCCESS" and any(j.get("soft_failed") for j in jobs):
        return "UNSTABLE"
    return result


def _who(raw: dict[str, Any]) -> str:
    source = str(raw.get("source") or "")
    if source == "webhook":
        return "SCMTrigger"
    if source == "schedule":
        return "TimerTrigger"
    creator = raw.get("creator") or {}
    return str(creator.get("email") or creator.get("name") or "SYSTEM")


def _cause(raw: dict[str, Any]) -> Cause:
    source = str(raw.get("source") or "")
    if source == "webhook":
        return Cause("SCMTriggerCause", "SCMTrigger")
    if source == "schedule":
        return Cause("TimerTriggerCause", "unknown")
    creator = raw.get("creator") or {}
    who = creator.get("email") or creator.get("name")
    if who:
        return Cause("UserIdCause", str(who))
    return Cause(f"Buildkite:{source or 'unknown'}", "unknown")


def _params(raw: dict[str, Any]) -> Iterator[Param]:
    """The build's env and meta-data (never a name that looks like a secret), then what
    Buildkite says of the build in its own words."""
    for name, value in sorted((raw.get("env") or {}).items()):
        if not SECRET_NAME.search(str(name)):
            yield Param("StringParameterValue", str(name), str(value))
    for name, value in sorted((raw.get("meta_data") or {}).items()):
        if str(name) == "buildkite:git:commit" or SECRET_NAME.search(str(name)):
            continue
        yield Param("StringParameterValue", str(name), str(value))
    pr = raw.get("pull_request") or {}
    own = {
        "bk_result": raw.get("state"),
        "bk_source": raw.get("source"),
        "bk_message": str(raw["message"])[:MESSAGE_CHARS] if raw.get("message") else None,
        "bk_tag": raw.get("tag"),
        "bk_pull_request": pr.get("id"),
        "bk_pull_request_base": pr.get("base"),
        "bk_rebuilt_from": (raw.get("rebuilt_from") or {}).get("number"),
        "bk_blocked": "true" if raw.get("blocked") else None,
        "bk_build_id": raw.get("id"),
    }
    for name, value in own.items():
        if value is not None:
            yield Param("StringParameterValue", name, str(value))


def _job_result(j: dict[str, Any]) -> str:
    result = JOB_RESULTS.get(str(j.get("state")), "NOT_BUILT")
    if result == "FAILURE" and j.get("soft_failed"):
        return "UNSTABLE"
    return result


def _job_node(j: dict[str, Any]) -> Step:
    start = _ms(j.get("started_at"))
    finish = _ms(j.get("finished_at"))
    name = str(j.get("name") or j.get("label") or j.get("step_key") or j.get("type") or "job")
    return Step(
        id=str(j.get("id")),
        name=name,
        description=name,
        result=_job_result(j),
        state="FINISHED",
        start_ms=start,
        duration_ms=max(0, finish - start) if start is not None and finish else 0,
    )


def _stages(jobs: list[dict[str, Any]]) -> tuple[Stage, ...] | None:
    """Latest attempt of each job, in list order; waiters left out. Jobs that share a
    `group_key` are one stage with the jobs as steps, named by the key (GUESS: the REST API
    gives no group label); every other job is a stage of its own."""
    out: list[Stage] = []
    groups: dict[str, list[Step]] = {}
    order: list[tuple[str, str | Step]] = []
    for j in jobs:
        if j.get("type") == "waiter":
            continue
        node = _job_node(j)
        key = j.get("group_key")
        if key:
            if key not in groups:
                groups[key] = []
                order.append(("group", str(key)))
            groups[key].append(node)
        else:
            order.append(("job", node))
    for kind, item in order:
        if kind == "job":
            assert isinstance(item, Step)
            out.append(Stage(**{**item.__dict__}))
            continue
        assert isinstance(item, str)
        steps = groups[item]
        starts = [s.start_ms for s in steps if s.start_ms is not None]
        ends = [s.start_ms + s.duration_ms for s in steps if s.start_ms is not None]
        results = [s.result for s in steps]
        out.append(
            Stage(
                id=item,
                name=item,
                description=item,
                result=_worst(results),
                state="FINISHED",
                start_ms=min(starts) if starts else None,
                duration_ms=(max(ends) - min(starts)) if starts else 0,
                steps=tuple(steps),
            )
        )
    return tuple(out) or None


def _worst(results: list[str]) -> str:
    for r in ("FAILURE", "ABORTED", "UNSTABLE", "SUCCESS", "NOT_BUILT"):
        if r in results:
            return r
    return "NOT_BUILT"


def _sort_builds(
    builds: list[dict[str, Any]], seen: set[str], blocked: Held, now: int, max_age: int
) -> tuple[dict[str, set[int]], dict[str, dict[int, dict[str, Any]]], list[str]]:
    """What the org-wide listing says: the numbers changed per pipeline (not seen at this
    finish time before, not still held as blocked), the listed builds per pipeline (their
    scans need not read them again), and the marks to remember for the overlap."""
    changed: dict[str, set[int]] = {}
    fresh: dict[str, dict[int, dict[str, Any]]] = {}
    new_seen = []
    for raw in builds:
        slug, n = raw["_slug"], raw["number"]
        key = f"{slug}#{n}"
        finished = _ms(raw.get("finished_at")) or 0
        mark = f"{key}@{finished}"
        if finished > now - OVERLAP:
            new_seen.append(mark)
        fresh.setdefault(slug, {})[n] = raw
        if raw.get("blocked"):
            blocked.hold(key, finished or now)
            if blocked.still_held(key, now, max_age):
                continue
        else:
            blocked.release(key)
        if mark not in seen:
            changed.setdefault(slug, set()).add(n)
    return changed, fresh, new_seen
