"""Buildbot (tested on 4.3), read through its REST data API, `<url>api/v2/`.

A builder is a job. Discovery keeps what it learnt about every builder's newest build in
memory and, after the first poll, only asks what changed: builds with a higher `buildid`
(ids only grow) and the builds still running. An idle poll is therefore three small requests
whatever the number of builders or the length of their history. Builds are read newest
first in pages with their properties; steps (our stages) and changes (commits, and the
evidence that a change triggered the build) cost one request each per build that will
actually be sent.

A RETRY build (results 5) is never sent: Buildbot re-queues its build request, and the
re-run is a new build with the next number, sent in its turn. The connector hands the RETRY
build's number to `wanted()` like any finished build, so the core counts it as covered and
its watermark moves past it, and then yields nothing for it.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import requests
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from connectors.base import Services
from connectors.kit.http import (
    Client,
    failure,
    foreign_redirect,
    json_answer,
    redact_url,
)
from connectors.kit.paging import by_offset
from poller.errors import ConnectorError, NotFound
from poller.model import (
    Build,
    Cause,
    JobCursor,
    JobRef,
    Param,
    ServerSpec,
    Stage,
    Unfinished,
)

log = structlog.get_logger()

PAGE = 100  # builds per page while scanning one builder
RECENT = 200  # newest builds read at start-up, to learn most builders' state in one request
MAX_BODY = 64 * 1024 * 1024  # a sane cap: no answer we ask for is anywhere near this
ERROR_TEXT = 200  # characters of Buildbot's own error message kept in ours

# Buildbot's result codes: 0 SUCCESS, 1 WARNINGS, 2 FAILURE, 3 SKIPPED, 4 EXCEPTION,
# 5 RETRY, 6 CANCELLED. SEI matches Jenkins' words exactly, so WARNINGS is UNSTABLE,
# EXCEPTION (an infrastructure error) is a FAILURE and CANCELLED is ABORTED.
RESULTS = {0: "SUCCESS", 1: "UNSTABLE", 2: "FAILURE", 3: "NOT_BUILT", 4: "FAILURE", 6: "ABORTED"}
RETRY = 5
# A step that never finished inside a finished build was cut short.
UNFINISHED_STEP = ("ABORTED", "FINISHED")

FORCE_SOURCE = "Force Build Form"  # the source Buildbot gives properties set by a force
NOT_PARAMS = frozenset({"owner", "reason"})  # force-form properties mapped elsewhere
SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "apikey", "api_key")

BUILD_FIELDS = ("buildid", "builderid", "number", "complete")
CHANGE_FIELDS = ("changeid", "revision", "branch", "repository")
STEP_FIELDS = ("stepid", "name", "results", "started_at", "complete_at", "hidden")


class Settings(BaseModel):
    """Keys only Buildbot servers have: a login, when the master requires one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Settings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both 'username' and 'password', or neither")
        return self


class BuildbotConnector:
    """One Buildbot master. Thread-safe: the core scans several builders at once."""

    type: ClassVar[str] = "buildbot"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    # Build numbers only grow per builder: the core keeps a low watermark (connectors/base.py).
    sequential: ClassVar[bool] = True

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        self.base = spec.url if spec.url.endswith("/") else spec.url + "/"
        self.api = self.base + "api/v2/"
        settings: Settings = spec.settings or Settings()
        self._login_auth = (
            (settings.username, settings.password.get_secret_value())
            if settings.username is not None and settings.password is not None
            else None
        )
        self._http = Client(spec, "Buildbot", limit=MAX_BODY, on_request=self.services.on_request)
        self._login_lock = threading.Lock()
        self._logins = 0  # how many logins so far: a thread that saw a 403 re-logs once
        self._ids: dict[str, int] = {}  # builder name → builderid, from the last discover
        self._known = _Latest()

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, url: str, params: Iterable[tuple[str, Any]] = ()) -> Any:
        """GET a JSON answer; log in (again) when the master asks for it, once."""
        if self._login_auth and not self._logins:
            self._login(0)
        params = list(params)
        seen = self._logins
        try:
            return self._fetch(url, params)
        except ConnectorError as exc:
            # An expired session cookie reads as anonymous, which a deny-by-default Authz
            # refuses with 403: log in again and retry once.
            if exc.status not in (401, 403) or not self._login_auth:
                raise
        self._login(seen)
        return self._fetch(url, params)

    def _fetch(self, url: str, params: list[tuple[str, Any]]) -> Any:
        where = redact_url(url)
        resp, body = self._http.get(url, params or None)
        status = resp.status_code
        if redirect := foreign_redirect(resp, self.base):
            raise redirect  # never followed: it would carry our session cookie along
        if status == 404:
            raise NotFound(f"not found (404){_error_text(body)}", url=where, status=404)
        if status in (401, 403):
            hint = "" if self._login_auth else "; this master needs username and password"
            raise ConnectorError(
                f"HTTP {status} from Buildbot{_error_text(body)}{hint}", url=where, status=status
            )
        if status != 200:
            raise ConnectorError(
                f"HTTP {status} from Buildbot{_error_text(body)}", url=where, status=status
            )
        return json_answer(body, resp, url, "Buildbot")

    def _login(self, seen: int) -> None:
        """Basic auth on `/auth/login` only; the session cookie it sets opens `/api/v2`.

        `seen` is the login count the caller's failed request went out with: when another
        thread has logged in since, its fresh cookie is used instead of logging in again.
        """
        assert self._login_auth is not None
        with self._login_lock:
            if self._logins != seen:
                return
            url = self.base + "auth/login"
            with self._http.throttle.slot():
                try:
                    resp = self._http.session.get(
                        url, auth=self._login_auth, allow_redirects=False, timeout=self.spec.timeout
                    )
                except requests.RequestException as exc:
                    raise failure(exc, url, self.spec) from None
                resp.close()
            if resp.status_code in (401, 403):
                raise ConnectorError(
                    "login refused: check username and password",
                    url=redact_url(url),
                    status=resp.status_code,
                )
            if resp.status_code >= 400:
                raise ConnectorError(
                    f"login failed: HTTP {resp.status_code}",
                    url=redact_url(url),
                    status=resp.status_code,
                )
            self._logins += 1

    def _api(self, path: str, params: Iterable[tuple[str, Any]] = ()) -> Any:
        return self._get(self.api + path, params)

    def _items(self, path: str, key: str, params: Iterable[tuple[str, Any]] = ()) -> list[Any]:
        """The list under `key` (every answer is `{"<collection>": [...], "meta": {...}}`)."""
        items = self._api(path, params).get(key)
        if not isinstance(items, list):
            raise ConnectorError(f"answer has no '{key}' list", url=redact_url(self.api + path))
        return [i for i in items if isinstance(i, dict)]

    # -- the Connector protocol -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Version from `/config`, and who we are there (proves the login took)."""
        config = self._get(self.base + "config")
        versions = {
            v[0]: v[1] for v in config.get("versions") or [] if isinstance(v, list) and len(v) == 2
        }
        user = config.get("user") or {}
        if self._login_auth and user.get("anonymous"):
            raise ConnectorError(
                "logged in, but Buildbot still sees an anonymous user "
                "(is auth configured on this master?)",
                url=redact_url(self.base + "config"),
            )
        self._items("builders", "builders", [("limit", 1), ("field", "builderid")])
        who = user.get("username") or user.get("email") or ("anonymous" if user else None)
        return {"version": f"Buildbot {versions.get('Buildbot', '?')}", "user": who}

    def close(self) -> None:
        self._http.close()

    def discover(self) -> Iterator[JobRef]:
        """Every builder, with its newest and newest finished build numbers."""
        builders = self._items("builders", "builders", [("field", "builderid"), ("field", "name")])
        ids = {
            str(b["name"]): int(b["builderid"])
            for b in builders
            if b.get("name") and isinstance(b.get("builderid"), int)
        }
        self._ids = ids
        self._refresh(ids)
        for name, bid in ids.items():
            last, done = self._known.of(bid)
            yield JobRef(
                full_name=name,
                pipeline=name,
                url=f"{self.base}#/builders/{bid}",
                last_build=last,
                last_completed=done,
                kind="builder",
            )

    def _refresh(self, ids: dict[str, int]) -> None:
        with self._known.lock:
            if self._known.mark is not None:
                self._advance()
                return
            try:
                self._bootstrap(ids)
            except BaseException:
                # Half a picture would read as "never built" for the builders not reached
                # yet, and they would never be scanned: start over on the next poll.
                self._known.reset()
                raise

    def _bootstrap(self, ids: dict[str, int]) -> None:
        """First poll: the newest builds overall, then one query per builder not among them."""
        known = self._known
        recent = self._items(
            "builds", "builds", [("order", "-buildid"), ("limit", RECENT), *_fields(BUILD_FIELDS)]
        )
        known.mark = max(
            (b["buildid"] for b in recent if isinstance(b.get("buildid"), int)), default=0
        )
        for b in recent:
            known.saw(b)
        known.running = {b["buildid"]: b for b in self._running()}
        if len(recent) < RECENT:
            return  # that was the whole history: builders not in it never built
        todo = [bid for bid in ids.values() if known.of(bid)[1] is None]
        workers = max(1, min(self.spec.max_concurrency, len(todo)))
        with ThreadPoolExecutor(workers, thread_name_prefix="buildbot-discover") as pool:
            for bid, newest, done in pool.map(self._newest, todo):
                known.set(bid, newest, done)

    def _newest(self, bid: int) -> tuple[int, int | None, int | None]:
        """A builder's newest build number, and its newest finished one."""
        query = [("order", "-number"), ("limit", 1), *_fields(BUILD_FIELDS)]
        page = self._items(f"builders/{bid}/builds", "builds", query)
        if not page:
            return bid, None, None
        newest = page[0].get("number")
        if page[0].get("complete"):
            return bid, newest, newest
        done = self._items(f"builders/{bid}/builds", "builds", [("complete", "true"), *query])
        return bid, newest, done[0].get("number") if done else None

    def _running(self) -> list[dict[str, Any]]:
        return self._items("builds", "builds", [("complete", "false"), *_fields(BUILD_FIELDS)])

    def _advance(self) -> None:
        """Later polls: builds newer than the last one seen, and which running ones ended."""
        known = self._known
        assert known.mark is not None
        while True:
            page = self._items(
                "builds",
                "builds",
                [
                    ("buildid__gt", known.mark),
                    ("order", "buildid"),
                    ("limit", PAGE),
                    *_fields(BUILD_FIELDS),
                ],
            )
            for b in page:
                known.saw(b)
                if not b.get("complete") and isinstance(b.get("buildid"), int):
                    known.running[b["buildid"]] = b  # kept even if a later request fails
            ids = [b["buildid"] for b in page if isinstance(b.get("buildid"), int)]
            if ids:
                known.mark = max(known.mark, *ids)
            if len(page) < PAGE:
                break
        running = {b["buildid"]: b for b in self._running() if isinstance(b.get("buildid"), int)}
        for buildid, b in known.running.items():
            if buildid not in running:  # finished since we last looked
                known.saw({**b, "complete": True})
        for b in running.values():
            known.saw(b)
        known.running = running

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Unfinished]:
        """Builds newer than the watermark, newest first, in pages with their properties."""
        bid = self._ids.get(job.full_name)
        if bid is None:
            raise NotFound(
                f"builder {job.full_name!r} is gone", url=redact_url(self.api + "builders")
            )
        stop, since = cursor.watermark, cursor.since_ms
        size = PAGE
        if stop is not None and job.last_build is not None:
            size = max(2, min(PAGE, job.last_build - stop + 2))
        previous = None
        pages = by_offset(
            lambda offset, limit: self._items(
                f"builders/{bid}/builds",
                "builds",
                [("order", "-number"), ("limit", limit), ("offset", offset), ("property", "*")],
            ),
            PAGE,
            first=size,
        )
        for raw in pages:
            number = raw.get("number")
            if not isinstance(number, int) or (previous is not None and number >= previous):
                continue  # a new build shifted the pages: already seen
            previous = number
            if stop is not None and number <= stop:
                return
            if not raw.get("complete"):
                yield Unfinished(number)
                continue
            if since is not None and int(raw.get("started_at") or 0) * 1000 < since:
                return
            if not wanted(number):
                continue
            if raw.get("results") == RETRY:
                log.info("RETRY build skipped: its request's re-run is sent instead", build=number)
                continue
            if raw.get("results") not in RESULTS:
                log.warning(
                    "finished build with an unknown result skipped; nothing is sent for it",
                    build=number,
                    results=raw.get("results"),
                )
                continue
            yield self._build(job, bid, raw)

    # -- mapping --------------------------------------------------------------------------

    def _build(self, job: JobRef, bid: int, raw: dict[str, Any]) -> Build:
        props = _properties(raw)
        changes = self._changes(raw["buildid"])
        owner = _text(props.get("owner"))
        started = int(raw.get("started_at") or 0)
        finished = int(raw.get("complete_at") or started)
        scheduler = _text(props.get("scheduler")) or "unknown"
        triggers: list[Cause] = []
        if owner:
            triggers.append(Cause("ForceScheduler", owner))
        if changes:
            triggers.append(Cause("Change", "SCMTrigger"))
        if not triggers:
            triggers.append(Cause("Scheduler", scheduler))
        return Build(
            job_full_name=job.full_name,
            pipeline=job.pipeline,
            number=raw["number"],
            result=RESULTS[raw["results"]],
            start_ms=started * 1000,
            duration_ms=max(0, finished - started) * 1000,
            url=f"{self.base}#/builders/{bid}/builds/{raw['number']}",
            user_id=owner or ("SCMTrigger" if changes else "SYSTEM"),
            triggers=tuple(triggers),
            params=tuple(_params(raw)),
            commit_ids=tuple(_commits(props, changes)),
            repo_url=_text(props.get("repository")) or _first(changes, "repository"),
            branch=_branch(props, changes),
            stages=self._stages(raw["buildid"]),
            expects_stages=True,  # every build runs steps, sent as its stages
        )

    def _changes(self, buildid: int) -> list[dict[str, Any]]:
        """The changes a build was built from: none for a forced build."""
        return self._items(f"builds/{buildid}/changes", "changes", _fields(CHANGE_FIELDS))

    def _stages(self, buildid: int) -> tuple[Stage, ...] | None:
        """Steps as stages: Buildbot has one level where Jenkins has stages of steps."""
        if not self.spec.stages:
            return None
        steps = self._items(f"builds/{buildid}/steps", "steps", _fields(STEP_FIELDS))
        return tuple(_stage(s) for s in steps if not s.get("hidden")) or None


class _Latest:
    """Newest and newest finished build number per builder, kept between polls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.mark: int | None = None  # highest buildid seen: later builds have higher ids
        self.running: dict[int, dict[str, Any]] = {}  # buildid → build, as last seen running
        self._by: dict[int, tuple[int | None, int | None]] = {}

    def of(self, bid: int) -> tuple[int | None, int | None]:
        return self._by.get(bid, (None, None))

    def set(self, bid: int, last: int | None, done: int | None) -> None:
        self._by[bid] = (last, done)

    def saw(self, build: dict[str, Any]) -> None:
        bid, number = build.get("builderid"), build.get("number")
        if not isinstance(bid, int) or not isinstance(number, int):
            return
        last, done = self.of(bid)
        last = number if last is None else max(last, number)
        if build.get("complete"):
            done = number if done is None else max(done, number)
        self._by[bid] = (last, done)


def _fields(names: Iterable[str]) -> list[tuple[str, str]]:
    """`field=a&field=b`: only these fields (a filtered field must be among them)."""
    return [("field", n) for n in names]


def _error_text(body: bytes) -> str:
    """Buildbot's own `{"error": "..."}` message, which names the bad query or missing role."""
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    if isinstance(message, dict):
        message = message.get("message")
    return f": {str(message)[:ERROR_TEXT]}" if message else ""


def _properties(raw: dict[str, Any]) -> dict[str, Any]:
    """`{"name": [value, source]}` → `{"name": value}`."""
    props = raw.get("properties") or {}
    return {k: v[0] for k, v in props.items() if isinstance(v, list) and v}


def _text(value: Any) -> str | None:
    """A non-empty string property (a forced build without revision has `""`), else None."""
    return value if isinstance(value, str) and value.strip() else None


def _first(changes: list[dict[str, Any]], key: str) -> str | None:
    return next((c[key] for c in changes if _text(c.get(key))), None)


def _commits(props: dict[str, Any], changes: list[dict[str, Any]]) -> Iterator[str]:
    """What was checked out (`got_revision`, a dict per codebase when there are several),
    else what was asked for (`revision`), then every change's revision (deduplicated later).

    `revision` only counts without `got_revision`: a force may name a tag or leave it empty,
    while `got_revision` is the commit the source step actually built.
    """
    got = props.get("got_revision")
    if isinstance(got, dict):
        built = [v for v in got.values() if _text(v)]
    else:
        built = [got] if _text(got) else []
    yield from built or ([props["revision"]] if _text(props.get("revision")) else [])
    yield from (c["revision"] for c in changes if _text(c.get("revision")))


def _branch(props: dict[str, Any], changes: list[dict[str, Any]]) -> str | None:
    branch = _text(props.get("branch")) or _first(changes, "branch")
    return branch.removeprefix("refs/heads/") if branch else None


def _params(raw: dict[str, Any]) -> Iterator[Param]:
    """Custom force-form fields, as Jenkins sends build parameters; secret-looking ones never."""
    for name, value in (raw.get("properties") or {}).items():
        if not (isinstance(value, list) and len(value) == 2 and value[1] == FORCE_SOURCE):
            continue
        if name in NOT_PARAMS or any(w in name.lower() for w in SECRET_WORDS):
            continue
        yield Param("ForceSchedulerParameter", name, value[0])


def _stage(step: dict[str, Any]) -> Stage:
    code = step.get("results")
    if code is None:
        result, state = UNFINISHED_STEP
    else:
        result = RESULTS.get(code, "ABORTED" if code == RETRY else "FAILURE")
        state = "SKIPPED" if code == 3 else "FINISHED"
    started = step.get("started_at")
    finished = step.get("complete_at")
    duration = (
        (finished - started) * 1000 if isinstance(started, int) and isinstance(finished, int) else 0
    )
    name = str(step.get("name") or "")
    return Stage(
        id=str(step.get("stepid")),
        name=name,
        description=name,
        result=result,
        state=state,
        start_ms=started * 1000 if isinstance(started, int) else None,
        duration_ms=max(0, duration),
    )
