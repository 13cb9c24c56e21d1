"""The controller's object model: root, folders, multibranch projects, jobs and their runs.

Items compute their exported properties only when a request asks for them (see
:class:`~.tree._Bean`); builds are either stored JSON (``add_build``) or a few numbers turned
into JSON on demand (``seed_bulk``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .builds import _artifact_list, _bulk_spec, _executor, _make_build
from .fixtures import _fixtures
from .names import (
    _BALL,
    BUILDS_CAP,
    CONTAINER_CLASSES,
    FREESTYLE_BUILD,
    FREESTYLE_JOB,
    MAVEN_BUILD,
    MAVEN_JOB,
    PERMALINKS,
    PIPELINE_BUILD,
    PIPELINE_JOB,
    _enc,
    _words,
)
from .tree import _Bean, _LazyList

if TYPE_CHECKING:
    from .controller import FakeJenkins


class _RunList(_LazyList):
    """A job's builds, newest first, sliced without materialising the whole history."""

    __slots__ = ("cap", "job")

    def __init__(self, job: _Job, cap: int | None) -> None:
        self.job = job
        self.cap = cap

    def __len__(self) -> int:
        n = len(self.job.nums)
        return n if self.cap is None else min(n, self.cap)

    def __getitem__(self, s: slice) -> list[Any]:
        lo, hi, _ = s.indices(len(self))
        nums, runs = self.job.nums, self.job.runs
        last = len(nums) - 1
        return [runs[nums[last - i]].obj for i in range(lo, hi)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])


class _Item(_Bean):
    """A folder-like container or a job, addressed by its ``fullName``."""

    __slots__ = ("display", "fdn", "fj", "full_name", "kind", "name", "parent", "rel_url")

    def __init__(self, fj: FakeJenkins, parent: _Container | None, name: str, kind: str) -> None:
        self.fj = fj
        self.parent = parent
        self.name = name
        self.kind = kind
        if parent is None or isinstance(parent, _Root):
            self.full_name = name
            self.rel_url = f"job/{_enc(name)}/"
        else:
            self.full_name = f"{parent.full_name}/{name}"
            self.rel_url = f"{parent.rel_url}job/{_enc(name)}/"
        # Branch jobs of a multibranch project have encoded names; their display name is the
        # branch name ("feature%2Fx" is shown as "feature/x").
        decoded = parent is not None and parent.kind == "multibranch"
        self.display = unquote(name) if decoded else name
        self.fdn: str = (
            self.display
            if parent is None or isinstance(parent, _Root)
            else f"{parent.fdn} » {self.display}"
        )

    @property
    def url(self) -> str:
        return self.fj.url + self.rel_url

    def _item_value(self, key: str) -> Any:
        if key == "description":
            return "" if isinstance(self, _Job) else None
        if key == "displayName":
            return self.display
        if key == "displayNameOrNull":
            return self.display if self.display != self.name else None
        if key == "fullDisplayName":
            return self.fdn
        if key == "fullName":
            return self.full_name
        if key == "name":
            return self.name
        if key == "url":
            return self.url
        raise KeyError(key)


_ITEM_KEYS = _words(
    "actions description displayName displayNameOrNull fullDisplayName fullName name url"
)


class _Container(_Item):
    """Folder, multibranch project or organisation folder: has ``jobs``."""

    __slots__ = ("_sorted", "children")

    def __init__(self, fj: FakeJenkins, parent: _Container | None, name: str, kind: str) -> None:
        super().__init__(fj, parent, name, kind)
        self.children: dict[str, _Item] = {}
        self._sorted: list[_Item] | None = None

    def jobs(self) -> list[_Item]:
        """Children sorted case-insensitively, as cloudbees-folder keeps them."""
        if self._sorted is None:
            self._sorted = sorted(self.children.values(), key=lambda i: i.name.casefold())
        return self._sorted

    def put(self, item: _Item) -> None:
        self.children[item.name] = item
        self._sorted = None

    def remove(self, name: str) -> None:
        del self.children[name]
        self._sorted = None

    def _listable(self) -> bool:
        """Whether this folder's children may be listed inside another item's answer.

        A fault on the folder's own listing stands for it everywhere: refused (401/403: the
        token may see the folder, not inside it) leaves its children out (`jobs: null`), as
        Jenkins' permission filtering does; broken (500, ...) fails the whole answer, as an
        exception in Jenkins' serialisation does, so a query from the root that reaches into
        it fails whole."""
        status = self.fj.faults.breaks(urlsplit(self.url).path + "api/json", "tree=jobs")
        if status in (401, 403):
            return False
        if status is not None:
            raise RuntimeError(f"cannot list {self.full_name}")
        return True

    def view_names(self) -> tuple[str, ...]:
        if self.kind == "multibranch":
            return ("default", "change-requests", "All", "all")
        return ("all", "All", "default")

    def jclass(self) -> str | None:
        return CONTAINER_CLASSES[self.kind]

    def fields(self) -> Sequence[str]:
        base = (*_ITEM_KEYS, "healthReport", "jobs", "primaryView", "views")
        return (*base, "sources") if self.kind == "multibranch" else base

    def _views(self) -> list[dict[str, Any]]:
        if self.kind == "multibranch":
            cls = "jenkins.branch.MultiBranchProjectViewHolder$ViewImpl"
            return [
                {
                    "_class": cls,
                    "name": "change-requests",
                    "url": self.url + "view/change-requests/",
                },
                {"_class": cls, "name": "default", "url": self.url},
            ]
        if self.kind == "org":
            cls = "jenkins.branch.OrganizationFolderViewHolder$ViewImpl"
            return [{"_class": cls, "name": "default", "url": self.url}]
        return [{"_class": "hudson.model.AllView", "name": "All", "url": self.url}]

    def values(self, keys: Sequence[str]) -> list[Any]:
        fx = _fixtures()
        out: list[Any] = []
        for k in keys:
            if k == "actions":
                tpl = fx.multibranch if self.kind == "multibranch" else fx.folder
                out.append(tpl["actions"])
            elif k == "jobs":
                out.append(self.jobs() if self._listable() else None)
            elif k == "healthReport":
                out.append(_worst_health(self))
            elif k == "primaryView":
                views = self._views()
                out.append(views[-1])
            elif k == "views":
                out.append(self._views())
            elif k == "sources":
                out.append([{}])
            else:
                out.append(self._item_value(k))
        return out


_ROOT_KEYS = _words(
    "assignedLabels mode nodeDescription nodeName numExecutors description jobs overallLoad "
    "primaryView quietingDown slaveAgentPort unlabeledLoad url useCrumbs useSecurity views"
)


class _Root(_Container):
    """The controller itself (``hudson.model.Hudson``)."""

    __slots__ = ()

    def __init__(self, fj: FakeJenkins) -> None:
        super().__init__(fj, None, "", "root")
        self.full_name = ""
        self.rel_url = ""
        self.fdn = ""

    def jclass(self) -> str | None:
        return "hudson.model.Hudson"

    def fields(self) -> Sequence[str]:
        # hudson.model.Hudson's exported properties, in the recorded root's order.
        return _ROOT_KEYS

    def values(self, keys: Sequence[str]) -> list[Any]:
        rec = _fixtures().root
        view = {"_class": "hudson.model.AllView", "name": "all", "url": self.fj.url}
        out: list[Any] = []
        for k in keys:
            if k == "jobs":
                out.append(self.jobs())
            elif k in ("primaryView",):
                out.append(view)
            elif k == "views":
                out.append([view])
            elif k == "url":
                out.append(self.fj.url)
            elif k == "description":
                out.append(None)
            else:
                out.append(rec.get(k))
        return out


class _Explicit:
    """A build added with ``add_build``: its JSON is a stored dict the test may also edit."""

    __slots__ = ("data", "stages")

    def __init__(self, data: dict[str, Any], stages: list[dict[str, Any]] | None) -> None:
        self.data = data
        self.stages = stages

    @property
    def obj(self) -> dict[str, Any]:
        return self.data

    @property
    def number(self) -> int:
        value: int = self.data["number"]
        return value

    @property
    def result(self) -> str | None:
        value: str | None = self.data["result"]
        return value

    @property
    def building(self) -> bool:
        value: bool = self.data["building"]
        return value

    @property
    def timestamp(self) -> int:
        value: int = self.data["timestamp"]
        return value

    @property
    def duration(self) -> int:
        value: int = self.data["duration"]
        return value

    def artifacts(self) -> list[dict[str, Any]]:
        return self.data.get("artifacts") or []

    def remotes(self) -> list[str]:
        return [u for a in self.data["actions"] for u in a.get("remoteUrls", ())]


_BUILD_KEYS = _words(
    "actions artifacts building description displayName duration estimatedDuration "
    "executor fullDisplayName id inProgress keepLog number queueId result timestamp url"
)
_FREESTYLE_BUILD_KEYS = (*_BUILD_KEYS, "builtOn", "changeSet", "culprits")
_PIPELINE_BUILD_KEYS = (*_BUILD_KEYS, "changeSets", "culprits", "nextBuild", "previousBuild")
_HEAVY = frozenset(("actions", "artifacts", "changeSet", "changeSets", "culprits"))


class _Lazy(_Bean):
    """A generated build (``seed_bulk``): a few numbers, JSON made only when asked for."""

    __slots__ = ("building", "duration", "job", "number", "result", "timestamp")

    def __init__(
        self, job: _Job, number: int, result: str | None, building: bool, ts: int, dur: int
    ) -> None:
        self.job = job
        self.number = number
        self.result = result
        self.building = building
        self.timestamp = ts
        self.duration = dur

    @property
    def obj(self) -> _Lazy:
        return self

    stages = None  # always generated

    def jclass(self) -> str | None:
        if self.job.kind == "maven":
            return MAVEN_BUILD
        return PIPELINE_BUILD if self.job.pipeline else FREESTYLE_BUILD

    def fields(self) -> Sequence[str]:
        return _PIPELINE_BUILD_KEYS if self.job.pipeline else _FREESTYLE_BUILD_KEYS

    def _spec(self) -> dict[str, Any]:
        return _bulk_spec(self.job, self.number, self.result)

    def full(self) -> dict[str, Any]:
        job = self.job
        return _make_build(
            job,
            self.number,
            result=self.result,
            building=self.building,
            timestamp=self.timestamp,
            duration=self.duration,
            estimated=job.estimated,
            queue_id=job.queue_base + self.number,
            lazy_map=True,
            **self._spec(),
        )

    def values(self, keys: Sequence[str]) -> list[Any]:
        if any(k in _HEAVY for k in keys):
            d = self.full()
            return [d[k] for k in keys]
        job = self.job
        n = self.number
        out: list[Any] = []
        for k in keys:
            if k == "number":
                out.append(n)
            elif k == "result":
                out.append(self.result)
            elif k == "timestamp":
                out.append(self.timestamp)
            elif k == "duration":
                out.append(0 if self.building else self.duration)
            elif k in ("building", "inProgress"):
                out.append(self.building)
            elif k == "url":
                out.append(f"{job.url}{n}/")
            elif k == "id":
                out.append(str(n))
            elif k == "displayName":
                out.append(f"#{n}")
            elif k == "fullDisplayName":
                out.append(f"{job.fdn} #{n}")
            elif k == "estimatedDuration":
                out.append(job.estimated)
            elif k == "queueId":
                out.append(job.queue_base + n)
            elif k == "keepLog":
                out.append(False)
            elif k == "description":
                out.append(None)
            elif k == "executor":
                out.append(_executor(job) if self.building else None)
            elif k == "builtOn":
                out.append("")
            elif k == "nextBuild":
                out.append(job.neighbour_ref(n, +1))
            elif k == "previousBuild":
                out.append(job.neighbour_ref(n, -1))
            else:  # pragma: no cover - keys() and this list are kept in step
                raise KeyError(k)
        return out

    def artifacts(self) -> list[dict[str, Any]]:
        return _artifact_list(self._spec()["artifacts"])

    def remotes(self) -> list[str]:
        return [g["remote"] for g in self._spec()["gits"]]


_Run = _Explicit | _Lazy


class _Job(_Item):
    """A buildable job (freestyle, pipeline or Maven); builds are kept sorted by number."""

    __slots__ = ("estimated", "next_number", "nums", "pipeline", "queue_base", "runs")

    def __init__(self, fj: FakeJenkins, parent: _Container, name: str, kind: str) -> None:
        super().__init__(fj, parent, name, kind)
        self.pipeline = kind == "pipeline"
        self.runs: dict[int, _Run] = {}
        self.nums: list[int] = []  # ascending
        self.next_number = 1
        self.estimated = -1
        self.queue_base = 0

    # -- builds --------------------------------------------------------------------------
    def add(self, rec: _Run) -> None:
        n = rec.number
        self.runs[n] = rec
        if not self.nums or n > self.nums[-1]:
            self.nums.append(n)
        else:
            bisect.insort(self.nums, n)
        self.next_number = max(self.next_number, n + 1)
        self._relink(n)

    def remove(self, n: int) -> None:
        del self.runs[n]
        i = bisect.bisect_left(self.nums, n)
        del self.nums[i]
        self._relink(n)

    def neighbour_ref(self, n: int, step: int) -> dict[str, Any] | None:
        i = bisect.bisect_left(self.nums, n)
        present = i < len(self.nums) and self.nums[i] == n
        j = (i + 1 if present else i) if step > 0 else i - 1
        if 0 <= j < len(self.nums):
            m = self.nums[j]
            return {"number": m, "url": f"{self.url}{m}/"}
        return None

    def _relink(self, n: int) -> None:
        """Keep ``previousBuild``/``nextBuild`` of stored pipeline builds next to ``n`` right."""
        if not self.pipeline:
            return
        i = bisect.bisect_left(self.nums, n)
        for j in (i - 1, i, i + 1):
            if 0 <= j < len(self.nums):
                rec = self.runs[self.nums[j]]
                if isinstance(rec, _Explicit):
                    m = self.nums[j]
                    rec.data["nextBuild"] = self.neighbour_ref(m, +1)
                    rec.data["previousBuild"] = self.neighbour_ref(m, -1)

    def newest(self, pred: Callable[[_Run], bool] | None = None) -> _Run | None:
        runs = self.runs
        for n in reversed(self.nums):
            rec = runs[n]
            if pred is None or pred(rec):
                return rec
        return None

    def permalink(self, name: str) -> _Run | None:
        preds: dict[str, Callable[[_Run], bool] | None] = {
            "lastBuild": None,
            "lastCompletedBuild": lambda r: not r.building,
            "lastSuccessfulBuild": lambda r: not r.building and r.result in ("SUCCESS", "UNSTABLE"),
            "lastStableBuild": lambda r: not r.building and r.result == "SUCCESS",
            "lastFailedBuild": lambda r: not r.building and r.result == "FAILURE",
            "lastUnstableBuild": lambda r: not r.building and r.result == "UNSTABLE",
            "lastUnsuccessfulBuild": lambda r: (
                not r.building and r.result is not None and r.result != "SUCCESS"
            ),
        }
        if name == "firstBuild":
            return self.runs[self.nums[0]] if self.nums else None
        return self.newest(preds[name])

    def color(self) -> str:
        """``Job.getIconColor``: the last build's ball; a running build shows its predecessor's."""
        anime = False
        for n in reversed(self.nums):
            rec = self.runs[n]
            if rec.building:
                anime = True
                continue
            base = _BALL.get(rec.result or "", "notbuilt")
            return f"{base}_anime" if anime else base
        return "notbuilt_anime" if anime else "notbuilt"

    # -- bean ------------------------------------------------------------------------------
    def jclass(self) -> str | None:
        if self.kind == "maven":
            return MAVEN_JOB
        return PIPELINE_JOB if self.pipeline else FREESTYLE_JOB

    def fields(self) -> Sequence[str]:
        return _PIPELINE_JOB_KEYS if self.pipeline else _FREESTYLE_JOB_KEYS

    def values(self, keys: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        for k in keys:
            if k == "builds":
                out.append(_RunList(self, BUILDS_CAP))
            elif k == "allBuilds":
                out.append(_RunList(self, None))
            elif k == "firstBuild" or k in PERMALINKS:
                rec = self.permalink(k)
                out.append(None if rec is None else rec.obj)
            elif k == "color":
                out.append(self.color())
            elif k == "nextBuildNumber":
                out.append(self.next_number)
            elif k == "healthReport":
                out.append(_health(self))
            elif k == "actions":
                out.append(_job_actions(self))
            elif k in ("buildable",):
                out.append(True)
            elif k in ("inQueue", "keepDependencies", "disabled", "resumeBlocked"):
                out.append(False)
            elif k == "concurrentBuild":
                out.append(self.pipeline)
            elif k in ("property", "downstreamProjects", "upstreamProjects"):
                out.append([])
            elif k in ("queueItem", "labelExpression"):
                out.append(None)
            elif k == "scm":
                out.append({"_class": "hudson.scm.NullSCM"})
            else:
                out.append(self._item_value(k))
        return out


_JOB_KEYS = (
    *_ITEM_KEYS,
    *_words(
        "allBuilds buildable builds color firstBuild healthReport inQueue keepDependencies "
        "lastBuild lastCompletedBuild lastFailedBuild lastStableBuild lastSuccessfulBuild "
        "lastUnstableBuild lastUnsuccessfulBuild nextBuildNumber property queueItem"
    ),
)
_FREESTYLE_JOB_KEYS = (
    *_JOB_KEYS,
    *_words("concurrentBuild disabled downstreamProjects labelExpression scm upstreamProjects"),
)
_PIPELINE_JOB_KEYS = (*_JOB_KEYS, "concurrentBuild", "resumeBlocked")


def _job_actions(job: _Job) -> list[dict[str, Any]]:
    if job.pipeline:
        actions: list[dict[str, Any]] = _fixtures().pipeline_job["actions"]
        return actions
    return [{}, {}, {"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"}]


def _health(job: _Job) -> list[dict[str, Any]]:
    """Core's build-stability report over the last 5 completed builds."""
    total = failed = seen = 0
    for n in reversed(job.nums):
        rec = job.runs[n]
        if rec.building:
            continue
        seen += 1
        if rec.result in ("SUCCESS", "UNSTABLE"):
            total += 1
        elif rec.result == "FAILURE":
            total += 1
            failed += 1
        if seen == 5:
            break
    if total == 0:
        return []
    score = 100 * (total - failed) // total
    if failed == 0:
        desc = "Build stability: No recent builds failed."
    elif failed == total:
        desc = "Build stability: All recent builds failed."
    else:
        desc = f"Build stability: {failed} out of the last {total} builds failed."
    return [_health_entry(desc, score)]


def _health_entry(desc: str, score: int) -> dict[str, Any]:
    band = "80plus"
    for limit, name in ((20, "00to19"), (40, "20to39"), (60, "40to59"), (80, "60to79")):
        if score <= limit:
            band = name
            break
    return {
        "description": desc,
        "iconClassName": f"icon-health-{band}",
        "iconUrl": f"health-{band}.png",
        "score": score,
    }


def _worst_health(folder: _Container) -> list[dict[str, Any]]:
    worst: tuple[int, str, str] | None = None
    stack: list[_Item] = list(folder.children.values())
    while stack:
        item = stack.pop()
        if isinstance(item, _Container):
            stack.extend(item.children.values())
            continue
        assert isinstance(item, _Job)
        for rep in _health(item):
            if worst is None or rep["score"] < worst[0]:
                worst = (rep["score"], item.fdn, rep["description"])
    if worst is None:
        return []
    return [_health_entry(f"Worst health: {worst[1]}: {worst[2]}", worst[0])]
