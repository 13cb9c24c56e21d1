"""Jenkins, read through its JSON API with `tree` queries that name every field they need.

Discovery costs one request per container (folder, organisation folder, multibranch
project), builds are read in ranged pages newest first, and stages come from one
`wfapi/describe?fullStages=true` per pipeline build that will actually be sent.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal
from urllib.parse import quote, unquote, urlsplit

import jenkins
import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import GetBuild, RecentBuilds, Services
from connectors.jenkins.names import FOLDER, PluginNames, kind_of, plugin_names
from connectors.kit.http import (
    failure,
    foreign_redirect,
    json_answer,
    prepare,
    read_capped,
    redact_url,
)
from connectors.kit.throttle import Throttle
from poller.errors import ConnectorError, NotFound
from poller.model import (
    Artifact,
    Broken,
    Build,
    Cause,
    JobCursor,
    JobRef,
    Param,
    ServerSpec,
    Stage,
    Step,
    Unfinished,
    Unlisted,
)

PAGE = 100  # builds per ranged page; `builds` itself holds only the newest 100
FIRST_PAGE = 20  # the first page of a time-bounded read, before knowing how far back it goes
JOBS_PAGE = 1000  # children per container request
MAX_BODY = 64 * 1024 * 1024  # a sane cap: no answer we ask for is anywhere near this
UPSTREAM_DEPTH = 10
# Upstream builds' causes, newest used kept: a deploy fan-out's builds (and a chain's levels)
# share one root, read once. 4,096 entries outlast any fan-out and a backfill's cross-job
# reuse; at about 1 KB each that is at most ~4 MB, reached once and never passed however many
# builds go by. A miss costs one request, never a wrong answer.
UPSTREAM_CACHE = 4096
CONTAINER_HINTS = ("Folder", "MultiBranchProject", "OrganizationFolder")

# What discovery reads of every item: enough to tell a container, and whether a job moved
# (its newest and newest completed numbers) or has anything inside `backfill_since`.
ITEM_FIELDS = "name,fullName,url,color,lastBuild[number,timestamp],lastCompletedBuild[number]"
JOB_TREE = ITEM_FIELDS + ",jobs[name]{0,1}"
# Folder levels read per request (as python-jenkins' `get_all_jobs(folder_depth=...)`): a
# controller's whole tree in one answer when it is this deep, deeper folders in more.
DEPTH = 3
FIRST_BATCH = 5  # top-level items in the first request, before their size is known
CAUSE_FIELDS = "causes[userId,upstreamProject,upstreamBuild,upstreamUrl,addr]"
# Never `actions[*]`: the git plugin's BuildData.buildsByBranchName can be megabytes.
BUILD_FIELDS = (
    "number,url,building,result,timestamp,duration,"
    f"actions[{CAUSE_FIELDS},parameters[name,value],"
    "lastBuiltRevision[SHA1,branch[name]],remoteUrls],"
    "changeSet[items[commitId]],changeSets[items[commitId]],artifacts[fileName,relativePath]"
)

# wfapi status → (SEI result, SEI state). A finished build should hold no open stage; one
# that does (IN_PROGRESS, PAUSED_PENDING_INPUT) was cut short, so it reads as ABORTED.
STATUS = {
    "SUCCESS": ("SUCCESS", "FINISHED"),
    "FAILED": ("FAILURE", "FINISHED"),
    "FAILURE": ("FAILURE", "FINISHED"),
    "UNSTABLE": ("UNSTABLE", "FINISHED"),
    "ABORTED": ("ABORTED", "FINISHED"),
    "NOT_EXECUTED": ("NOT_BUILT", "SKIPPED"),
    "NOT_BUILT": ("NOT_BUILT", "SKIPPED"),
    "IN_PROGRESS": ("ABORTED", "FINISHED"),
    "PAUSED_PENDING_INPUT": ("ABORTED", "FINISHED"),
}
SECRET_PARAMS = ("PasswordParameterValue", "FileParameterValue")


class Settings(BaseModel):
    """Keys only Jenkins servers have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    token: SecretStr | None = None
    # "plugin": report jobs under the names SEI's Jenkins plugin gave them (their directory
    # path on the controller), so a team leaving the plugin keeps one history per job in SEI.
    jobs_per_request: int = Field(
        default=10_000,
        ge=100,
        description="a whole number of jobs, at least 100: how many one discovery answer holds",
    )
    naming: Literal["jenkins", "plugin"] = Field(
        default="jenkins",
        description='"jenkins" (Jenkins\' full names) or "plugin" (the names SEI\'s Jenkins'
        " plugin sent)",
    )


class JenkinsConnector(RecentBuilds, GetBuild):
    type: ClassVar[str] = "jenkins"
    Settings: ClassVar[builtins.type[BaseModel]] = Settings
    sequential: ClassVar[bool] = True

    def __init__(self, spec: ServerSpec, services: Services | None = None) -> None:
        self.spec = spec
        self.services = services or Services()
        self.base = spec.url
        settings: Settings = spec.settings or Settings()
        token = settings.token.get_secret_value() if settings.token else None
        self._jk = jenkins.Jenkins(
            self.base, username=settings.username, password=token, timeout=spec.timeout
        )
        session = self._jk._session
        prepare(session, spec)
        session.hooks["response"].append(self._refuse_foreign_redirect)
        self._throttle = Throttle(spec.max_concurrency, spec.requests_per_second)
        self._upstream: OrderedDict[tuple[str, int], list[dict[str, Any]] | None] = OrderedDict()
        self._upstream_lock = threading.Lock()
        self._settings = settings
        self._plugin_naming = settings.naming == "plugin"
        # Every item's kind (folder, multibranch, ...) by full name, learnt by discovery: how
        # its children are laid out on disk, for plugin naming.
        self._kinds: dict[str, str] = {}

    # -- plumbing -------------------------------------------------------------------------

    def _refuse_foreign_redirect(self, resp: requests.Response, **_: Any) -> None:
        """Following a redirect to another host would hand it our answers (and maybe auth);
        python-jenkins follows redirects, so those to our own host are let through."""
        if resp.is_redirect:
            target = urlsplit(requests.compat.urljoin(resp.url, resp.headers["Location"]))
            if target.netloc != urlsplit(self.base).netloc:
                raise foreign_redirect(resp, self.base) or ConnectorError("redirected")

    def get_json(self, url: str, tree: str | None = None, **params: str) -> Any:
        """GET a JSON answer through python-jenkins' session, mapping failures to ours."""
        if tree:
            params["tree"] = tree
        req = requests.Request("GET", url, params=params or None)
        status: int | None = None
        with self._throttle.slot():
            started = time.monotonic()
            resp = None
            try:
                resp = self._jk.jenkins_request(req, add_crumb=False, stream=True)
                status = resp.status_code
                body = read_capped(resp, redact_url(url), MAX_BODY)
            except jenkins.NotFoundException:
                status = 404
                raise NotFound("not found (404)", url=redact_url(url), status=404) from None
            except jenkins.JenkinsException as exc:
                status = _status_of(exc)
                raise ConnectorError(
                    f"HTTP {status or 'error'} from Jenkins", url=redact_url(url), status=status
                ) from None
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                raise ConnectorError(
                    f"HTTP {status} from Jenkins", url=redact_url(url), status=status
                ) from None
            except requests.RequestException as exc:
                raise failure(exc, url, self.spec) from None
            finally:
                if resp is not None:
                    resp.close()
                self.services.on_request(status, time.monotonic() - started)
        return json_answer(body, resp, url, "Jenkins")

    def job_url(self, full_name: str) -> str:
        """`team/feature%2Fx` → `<base>job/team/job/feature%252Fx/`: each segment encoded."""
        return self.base + "".join(f"job/{quote(seg, safe='')}/" for seg in full_name.split("/"))

    # -- the Connector protocol -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Version and identity from one authenticated request, for `sei-poller check`.

        Not python-jenkins' `get_version()`: it sends its request without credentials (the
        library sets them on the session only inside the first `jenkins_request`), so a Jenkins
        that denies anonymous read answers it 403 and good credentials looked refused. Here
        `me/api/json` goes through `jenkins_request`, which resolves the credentials first, and
        the version is that answer's `X-Jenkins` header.
        """
        url = self.base + "me/api/json"
        req = requests.Request("GET", url, params={"tree": "id,fullName"})
        where = redact_url(self.base)
        try:
            with self._throttle.slot():
                resp = self._jk.jenkins_request(req, add_crumb=False, stream=True)
                try:
                    body = read_capped(resp, where, MAX_BODY)
                finally:
                    resp.close()
        except jenkins.TimeoutException:
            raise ConnectorError("cannot reach Jenkins: timed out", url=where) from None
        except jenkins.JenkinsException as exc:
            status = _status_of(exc)
            if status in (401, 403):
                raise ConnectorError(
                    f"Jenkins refused the credentials (HTTP {status})", url=where, status=status
                ) from None
            raise ConnectorError(
                f"Jenkins answered HTTP {status or 'error'}", url=where, status=status
            ) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise ConnectorError(
                f"Jenkins answered HTTP {status or 'error'}", url=where, status=status
            ) from None
        except requests.RequestException as exc:
            raise failure(exc, url, self.spec) from None
        version = resp.headers.get("X-Jenkins")
        if not version:
            raise ConnectorError(
                "the answer has no X-Jenkins header: is this the URL of a Jenkins?",
                url=where,
                status=resp.status_code,
            )
        who = json_answer(body, resp, url, "Jenkins")
        return {"version": f"Jenkins {version}", "user": who.get("id") or who.get("fullName")}

    def close(self) -> None:
        self._jk._session.close()

    def recent_builds(self, job: JobRef, limit: int) -> list[tuple[int, int]]:
        """Optional, for `sei-poller check`: (number, start ms) of the newest `limit` builds.

        Newest first, running builds included: one small `builds[number,timestamp]{0,N}`
        request (`allBuilds` past the 100 that `builds` holds), whatever the builds hold.
        """
        field = "builds" if limit <= PAGE else "allBuilds"
        page = self.get_json(job.url + "api/json", f"{field}[number,timestamp]{{0,{limit}}}")
        return [
            (b["number"], int(b.get("timestamp") or 0))
            for b in page.get(field) or []
            if isinstance(b, dict) and isinstance(b.get("number"), int)
        ]

    def discover(self) -> Iterator[JobRef | Unlisted]:
        """Every buildable job, `DEPTH` folder levels per request, top-level items in batches
        of about `jobs_per_request` jobs: an idle poll of 20,000 jobs in 2,200 folders is a
        few requests. Folders deeper than that are read the same way from there.

        A request that fails is retried a level at a time (the folder alone, then each of its
        folders), so one broken folder is reported as `Unlisted` and hides only itself; only a
        failing root fails discovery. A folder listed without its children (the token may see
        it, not inside it) is asked for on its own, which says why.
        """
        todo: deque[_Container] = deque([_Container("", self.base, False, "")])
        while todo:
            c = todo.popleft()
            try:
                items = list(self._nested(c.url, DEPTH))
            except ConnectorError as exc:
                try:
                    if exc.status is None:  # no answer (down, TLS): asking again won't help
                        raise
                    # The folder's own items alone: each of its folders is asked for next.
                    items = list(self._nested(c.url, 1, peek=False))
                except ConnectorError as again:
                    if not c.prefix:
                        raise again from None
                    yield Unlisted(c.prefix, exc.url or redact_url(c.url), str(exc))
                    continue
            yield from self._walk(items, c, todo)

    def _walk(
        self, items: list[dict[str, Any]], c: _Container, todo: deque[_Container]
    ) -> Iterator[JobRef]:
        """Jobs of one answer; folders whose children it does not hold go to `todo`."""
        for item in items:
            name = item.get("name") or ""
            full = item.get("fullName") or (f"{c.prefix}/{name}" if c.prefix else name)
            cls = item.get("_class", "")
            self._kinds[full] = kind_of(cls)
            if "jobs" in item or any(h in cls for h in CONTAINER_HINTS):
                inner = _Container(full, self.job_url(full), "MultiBranch" in cls, name)
                children = item.get("jobs")
                if children is None or item.get("_frontier"):
                    if children != []:  # an empty folder at the frontier has nothing more
                        todo.append(inner)
                else:
                    yield from self._walk(children, inner, todo)
                continue
            last = item.get("lastBuild")
            yield JobRef(
                full_name=full,
                pipeline=c.project if c.multibranch else name,
                url=self.job_url(full),
                branch=unquote(name) if c.multibranch else None,
                last_build=_number(last),
                last_completed=_number(item.get("lastCompletedBuild")),
                last_started_ms=last.get("timestamp") if isinstance(last, dict) else None,
                kind=cls,
            )

    def _nested(self, url: str, depth: int, *, peek: bool = True) -> Iterator[dict[str, Any]]:
        """A container's items `depth` levels down, top-level items in batches sized so one
        answer holds about `jobs_per_request` jobs. The deepest level's folders are marked
        `_frontier`: their children were not asked for (`peek`: whether they have any)."""
        tree = JOB_TREE if peek else ITEM_FIELDS
        for _ in range(depth - 1):
            tree = f"{ITEM_FIELDS},jobs[{tree}]"
        budget = self._settings.jobs_per_request
        start, size = 0, FIRST_BATCH if depth > 1 else JOBS_PAGE
        while True:
            page = self.get_json(url + "api/json", f"jobs[{tree}]{{{start},{start + size}}}")
            items = page.get("jobs") or []
            _mark_frontier(items, depth)
            yield from items
            if len(items) < size:
                return
            start += size
            if depth > 1:  # size the next batch by what this one weighed
                weight = max(1, _count_jobs(items)) / len(items)
                size = max(1, min(JOBS_PAGE, int(budget / weight)))

    def scan(
        self, job: JobRef, cursor: JobCursor, wanted: Callable[[int], bool]
    ) -> Iterator[Build | Unfinished | Broken]:
        """Builds newer than the watermark, newest first, in ranged pages."""
        stop, since = cursor.watermark, cursor.since_ms
        size = PAGE
        if stop is not None and job.last_build is not None:
            size = max(2, min(PAGE, job.last_build - stop + 2))
        elif since is not None:
            # A time-bounded first read: many jobs have only a few builds in the window, and
            # every build named in a page is a build record Jenkins must load.
            size = FIRST_PAGE
        offset = 0
        while True:
            field = "builds" if offset + size <= PAGE else "allBuilds"
            tree = f"{field}[{BUILD_FIELDS}]{{{offset},{offset + size}}}"
            page = self.get_json(job.url + "api/json", tree).get(field) or []
            batch, ended = [], False
            for raw in page:
                number = raw.get("number")
                if not isinstance(number, int):
                    continue
                if (stop is not None and number <= stop) or (
                    since is not None
                    and not raw.get("building")
                    and (raw.get("timestamp") or 0) < since
                ):
                    ended = True
                    break
                if raw.get("building") or raw.get("result") is None:
                    yield Unfinished(number)
                elif wanted(number):
                    batch.append(raw)
            runs = self._recent_stages(job, batch, stop)
            for raw in batch:
                yield self._build_or_broken(job, raw, runs)
            if ended or len(page) < size:
                return
            offset += size
            size = PAGE

    def get_build(self, job: JobRef, number: int) -> Build | Broken | Unfinished:
        """Optional, for `sei-poller explain`: one build, mapped exactly as `scan` maps it.

        One request for the build (its page in `allBuilds` may be far down a long history),
        then what `scan` would ask for it (stages, upstream causes). NotFound if it is gone.
        """
        raw = self.get_json(f"{job.url}{number}/api/json", BUILD_FIELDS)
        if raw.get("building") or raw.get("result") is None:
            return Unfinished(number)
        return self._build_or_broken(job, raw)

    # -- mapping --------------------------------------------------------------------------

    def _build_or_broken(
        self, job: JobRef, raw: dict[str, Any], runs: dict[int, Any] | None = None
    ) -> Build | Broken:
        """A build whose extra requests (stages, upstream causes) fail is `Broken`: the
        core parks it and lets the rest of the job move; the fallback leaves them out."""
        try:
            return self._build(job, raw, runs=runs)
        except NotFound:
            raise
        except ConnectorError as exc:
            return Broken(
                raw["number"],
                str(exc),
                exc.url,
                fallback=self._build(job, raw, degraded=True),
            )

    def _build(
        self,
        job: JobRef,
        raw: dict[str, Any],
        *,
        degraded: bool = False,
        runs: dict[int, Any] | None = None,
    ) -> Build:
        actions = [a for a in raw.get("actions") or [] if isinstance(a, dict)]
        causes = _causes(actions)
        git = _project_checkout(actions)
        number = raw["number"]
        names = self._plugin_names(job.full_name, tolerant=degraded)
        triggers = tuple(self._trigger(c, tolerant=degraded) for c in causes)
        return Build(
            job_full_name=job.full_name,
            pipeline=names.pipeline if names else job.pipeline,
            number=number,
            result=str(raw["result"]),
            start_ms=int(raw.get("timestamp") or 0),
            duration_ms=int(raw.get("duration") or 0),
            url=raw.get("url") or f"{job.url}{number}/",
            user_id=self._user_id(causes, tolerant=degraded),
            triggers=triggers,
            params=tuple(_params(actions)),
            commit_ids=tuple(_commits(raw, git)),
            repo_url=(git.get("remoteUrls") or [None])[0],
            # The plugin names a branch only from a multibranch job's `branches/<dir>`.
            branch=names.branch if names else job.branch or _branch(git),
            stages=None if degraded else self._stages(job, raw, runs),
            artifacts=tuple(_artifacts(raw, job.url)),
            expects_stages="WorkflowRun" in raw.get("_class", ""),
            report_full_name=names.full_name if names else None,
            report_qualified_name=names.qualified_name if names else None,
        )

    # -- naming = "plugin" ------------------------------------------------------------------

    def _plugin_names(self, full_name: str, *, tolerant: bool) -> PluginNames | None:
        if not self._plugin_naming:
            return None
        return plugin_names(full_name, lambda prefix: self._kind(prefix, tolerant=tolerant))

    def _trigger(self, cause: dict[str, Any], *, tolerant: bool) -> Cause:
        """A cause, an upstream one naming its job as the trigger's own names go."""
        mapped = _cause(cause)
        names = (
            self._plugin_names(mapped.id, tolerant=tolerant)
            if mapped.type == "UpstreamCause" and mapped.id != "unknown"
            else None
        )
        return Cause(mapped.type, names.full_name, mapped.job_run_number) if names else mapped

    def _kind(self, full_name: str, *, tolerant: bool) -> str:
        """What the item `full_name` is; one small request if discovery has not seen it.

        Discovery sees every item, except in a folder it could not list or one created since;
        an item that is gone (an upstream job deleted since) is taken for a plain folder, the
        commonest parent. A failure other than 404 raises, so the build is parked and retried
        rather than sent with a wrong name (SEI keeps the first write); `tolerant` (the
        fallback sent after `give_up_after`) takes the parent for a plain folder instead.
        """
        known = self._kinds.get(full_name)
        if known is not None:
            return known
        try:
            item = self.get_json(self.job_url(full_name) + "api/json", "name")
        except NotFound:
            return FOLDER
        except ConnectorError:
            if tolerant:
                return FOLDER
            raise
        kind = kind_of(str(item.get("_class", "")))
        self._kinds[full_name] = kind
        return kind

    def _user_id(
        self, causes: list[dict[str, Any]], depth: int = 0, *, tolerant: bool = False
    ) -> str:
        """SEI's plugin rule, applied to the root of the upstream chain.

        `tolerant`: an upstream build that cannot be read ends the chain there, for the
        fallback of a build that is otherwise broken.
        """
        up = next((c for c in causes if _simple(c) == "UpstreamCause"), None)
        if up and depth < UPSTREAM_DEPTH:
            try:
                parent = self._upstream_causes(up)
            except ConnectorError:
                if not tolerant:
                    raise
                parent = None
            if parent is not None:
                return self._user_id(parent, depth + 1, tolerant=tolerant)
        names = [_simple(c) for c in causes]
        if any(_is_scm(n) for n in names):
            return "SCMTrigger"
        user = next((c.get("userId") for c in causes if _simple(c) == "UserIdCause"), None)
        if user:
            return str(user)
        if "TimerTriggerCause" in names:
            return "TimerTrigger"
        return "SYSTEM"

    def _upstream_causes(self, cause: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The upstream build's causes, cached: a deploy fan-out shares one root."""
        project, number = cause.get("upstreamProject"), cause.get("upstreamBuild")
        if not project or not isinstance(number, int):
            return None
        key = (project, number)
        with self._upstream_lock:
            if key in self._upstream:
                self._upstream.move_to_end(key)
                return self._upstream[key]
        try:
            data = self.get_json(
                f"{self.job_url(project)}{number}/api/json", f"actions[{CAUSE_FIELDS}]"
            )
            found = _causes([a for a in data.get("actions") or [] if isinstance(a, dict)])
        except NotFound:
            found = None  # upstream build discarded: the chain ends here
        with self._upstream_lock:
            self._upstream[key] = found
            while len(self._upstream) > UPSTREAM_CACHE:
                self._upstream.popitem(last=False)
        return found

    def _recent_stages(
        self, job: JobRef, batch: list[dict[str, Any]], stop: int | None
    ) -> dict[int, Any]:
        """Stages of a live poll's few new pipeline builds, in one request.

        Pipeline Stage View's `wfapi/runs?since=#N&fullStages=true` answers the newest runs
        (at most 10) down to the one named `#N`, each with its stages: one request for a
        job instead of one per build. Used only when it can cover them (a live poll, at
        most 10 builds above the watermark); a build it does not list (a run with its own
        display name breaks `since`, a deleted one shifts the window) falls back to its own
        `describe`, and so does everything when the request fails.
        """
        pipelines = [r for r in batch if "WorkflowRun" in r.get("_class", "")]
        newest = max((r["number"] for r in pipelines), default=0)
        if not (self.spec.stages and stop is not None and pipelines and newest - stop <= 10):
            return {}
        try:
            runs = self.get_json(job.url + "wfapi/runs", since=f"#{stop}", fullStages="true")
        except ConnectorError:
            return {}
        out: dict[int, Any] = {}
        for run in runs if isinstance(runs, list) else ():
            if isinstance(run, dict) and str(run.get("id", "")).isdigit():
                stages = run.get("stages") or []
                out[int(run["id"])] = (
                    tuple(_stage(st) for st in stages if isinstance(st, dict)) or None
                )
        return out

    def _stages(
        self, job: JobRef, raw: dict[str, Any], runs: dict[int, Any] | None = None
    ) -> tuple[Stage, ...] | None:
        if not self.spec.stages or "WorkflowRun" not in raw.get("_class", ""):
            return None
        if runs and raw["number"] in runs:
            found: tuple[Stage, ...] | None = runs[raw["number"]]
            return found
        try:
            data = self.get_json(f"{job.url}{raw['number']}/wfapi/describe", fullStages="true")
        except NotFound:
            return None  # no Pipeline Stage View plugin
        return tuple(_stage(s) for s in data.get("stages") or [] if isinstance(s, dict)) or None


def _causes(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Causes of the build, from CauseAction only.

    An aborted build's InterruptedBuildAction also has `causes`, but those say why it was
    interrupted (ExceededTimeout, UserInterruption), not why it ran.
    """
    return [
        c
        for a in actions
        if "CauseAction" in a.get("_class", "CauseAction")
        for c in a.get("causes") or []
        if isinstance(c, dict)
    ]


def _project_checkout(actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The git BuildData of the project's own checkout.

    Pipeline shared libraries are checked out before the pipeline runs its own `checkout`,
    so their BuildData come first; the project's is the last one.
    """
    found = [a for a in actions if a.get("lastBuiltRevision") or a.get("remoteUrls")]
    return found[-1] if found else {}


def _status_of(exc: Exception) -> int | None:
    cause = exc.__context__
    response = getattr(cause, "response", None)
    return getattr(response, "status_code", None)


@dataclass(frozen=True)
class _Container:
    """A folder (or multibranch project, organisation folder) to read the items of."""

    prefix: str  # its full name; "" for the root
    url: str
    multibranch: bool
    project: str  # its own name: a multibranch project's branches report it as pipeline


def _mark_frontier(items: list[dict[str, Any]], depth: int) -> None:
    """Flag the folders `depth` levels down: their `jobs` is a peek, not their children."""
    level = items
    for _ in range(depth - 1):
        level = [c for item in level for c in item.get("jobs") or [] if isinstance(c, dict)]
    for item in level:
        if "jobs" in item:
            item["_frontier"] = True


def _count_jobs(items: list[dict[str, Any]]) -> int:
    return sum(
        _count_jobs(i["jobs"]) if isinstance(i.get("jobs"), list) else 1
        for i in items
        if isinstance(i, dict)
    )


def _number(ref: Any) -> int | None:
    return ref.get("number") if isinstance(ref, dict) else None


def _simple(obj: dict[str, Any]) -> str:
    """`hudson.model.Cause$UserIdCause` → `UserIdCause`."""
    return _simple_name(str(obj.get("_class", "")))


# Java class names (causes, parameters, actions): a few dozen per server, so 512 never evicts
# in practice, and a plugin minting class names cannot make it grow past ~130 KB.
@lru_cache(maxsize=512)
def _simple_name(java_class: str) -> str:
    return java_class.rsplit(".", 1)[-1].rsplit("$", 1)[-1]


def _is_scm(name: str) -> bool:
    return name in ("SCMTriggerCause", "BranchEventCause") or "Push" in name or "WebHook" in name


def _cause(c: dict[str, Any]) -> Cause:
    name = _simple(c)
    if name == "UpstreamCause":
        return Cause(name, str(c.get("upstreamProject") or "unknown"), c.get("upstreamBuild"))
    if name == "UserIdCause":
        return Cause(name, str(c.get("userId") or "unknown"))
    if _is_scm(name):
        return Cause(name, "SCMTrigger")
    if name == "RemoteCause":
        return Cause(name, str(c.get("addr") or "unknown"))
    return Cause(name or "unknown", "unknown")


def _params(actions: list[dict[str, Any]]) -> Iterator[Param]:
    for action in actions:
        for p in action.get("parameters") or []:
            if not isinstance(p, dict) or not p.get("name"):
                continue
            kind = _simple(p)
            if any(s in kind for s in SECRET_PARAMS):
                continue
            yield Param(kind, p["name"], p.get("value"))


def _commits(raw: dict[str, Any], git: dict[str, Any]) -> Iterator[str]:
    sha = (git.get("lastBuiltRevision") or {}).get("SHA1")
    if sha:
        yield sha
    sets = list(raw.get("changeSets") or [])
    if isinstance(raw.get("changeSet"), dict):
        sets.append(raw["changeSet"])
    for cs in sets:
        for item in (cs or {}).get("items") or []:
            if isinstance(item, dict) and item.get("commitId"):
                yield item["commitId"]


def _branch(git: dict[str, Any]) -> str | None:
    branches = (git.get("lastBuiltRevision") or {}).get("branch") or []
    name = branches[0].get("name") if branches and isinstance(branches[0], dict) else None
    if not isinstance(name, str) or not name:
        return None
    if name.startswith("refs/remotes/"):
        return name.split("/", 3)[3] if name.count("/") >= 3 else name
    return name.removeprefix("refs/heads/")


def _artifacts(raw: dict[str, Any], job_url: str) -> Iterator[Artifact]:
    build_url = raw.get("url") or f"{job_url}{raw['number']}/"
    for a in raw.get("artifacts") or []:
        if isinstance(a, dict) and a.get("relativePath"):
            yield Artifact(
                name=a.get("fileName") or a["relativePath"].rsplit("/", 1)[-1],
                location=f"{build_url}artifact/{quote(a['relativePath'])}",
                qualifier=str(raw["number"]),
            )


def _node_status(status: Any) -> tuple[str, str]:
    return STATUS.get(str(status), ("NOT_BUILT", "SKIPPED"))


def _stage(s: dict[str, Any]) -> Stage:
    result, state = _node_status(s.get("status"))
    steps = tuple(
        Step(
            id=str(n.get("id")),
            name=str(n.get("name") or ""),
            description=str(n.get("parameterDescription") or n.get("name") or ""),
            result=_node_status(n.get("status"))[0],
            state=_node_status(n.get("status"))[1],
            start_ms=n.get("startTimeMillis"),
            duration_ms=int(n.get("durationMillis") or 0),
        )
        for n in s.get("stageFlowNodes") or []
        if isinstance(n, dict)
    )
    name = str(s.get("name") or "")
    return Stage(
        str(s.get("id")),
        name,
        name,
        result,
        state,
        s.get("startTimeMillis"),
        int(s.get("durationMillis") or 0),
        steps,
    )
