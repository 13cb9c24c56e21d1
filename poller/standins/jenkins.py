"""A Jenkins stand-in that answers Jenkins' JSON API over real HTTP.

Why: the poller's tests, its benchmarks and ``sei-poller demo`` need a controller that behaves like
Jenkins where it matters to a poller (``tree`` pruning with ranges, ``builds`` capped at 100,
``allBuilds`` hidden unless asked for, encoded branch job names, wfapi stages and steps, basic
auth, slow or failing answers) without running a JVM. Object shapes are built from recorded
responses shipped in ``data/jenkins/`` (see ``data/README.md``), not from memory.

Deliberate simplifications, so nobody mistakes them for Jenkins behaviour:

- ``depth=`` is accepted and ignored (every answer without ``tree`` is the depth-0 answer).
- Views are accepted as URL prefixes (``/view/all/job/...``) but ``url`` fields never contain them.
- Only GET (and HEAD) are served; other methods get 405.
- ``GET <context>/`` (the dashboard page, which python-jenkins' ``get_version()`` fetches without
  credentials) is served to anonymous callers; every other path needs credentials when
  ``require_auth`` is set. Wrong credentials always get 401.
- A malformed ``tree`` gets 400.

Faithful on purpose: ``*`` in a tree matches every property, ``allBuilds`` included (Stapler's
``NamedPathPruner`` ignores visibility), so ``jobs[*]`` costs what it costs on Jenkins.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import copy
import csv
import functools
import hashlib
import hmac
import io
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["FakeJenkins", "Recorded", "TreeError", "parse_tree", "seed_bulk", "seed_demo"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --------------------------------------------------------------------------------------------
# Class names and small constants (from the recorded responses in data/jenkins/)
# --------------------------------------------------------------------------------------------

FREESTYLE_JOB = "hudson.model.FreeStyleProject"
PIPELINE_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
FREESTYLE_BUILD = "hudson.model.FreeStyleBuild"
PIPELINE_BUILD = "org.jenkinsci.plugins.workflow.job.WorkflowRun"
CONTAINER_CLASSES = {
    "folder": "com.cloudbees.hudson.plugins.folder.Folder",
    "multibranch": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "org": "jenkins.branch.OrganizationFolder",
}
BUILD_DATA = "hudson.plugins.git.util.BuildData"
CAUSE_ACTION = "hudson.model.CauseAction"
PARAMETERS_ACTION = "hudson.model.ParametersAction"
USER_CAUSE = "hudson.model.Cause$UserIdCause"

#: Jenkins ``Result`` values, best first (the ordinal order of ``hudson.model.Result``).
RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED")
_BALL = {
    "SUCCESS": "blue",
    "UNSTABLE": "yellow",
    "FAILURE": "red",
    "NOT_BUILT": "notbuilt",
    "ABORTED": "aborted",
}
#: wfapi ``StatusExt`` for a finished run's result (``FAILED``, not ``FAILURE``).
_WF_STATUS = {
    "SUCCESS": "SUCCESS",
    "UNSTABLE": "UNSTABLE",
    "FAILURE": "FAILED",
    "NOT_BUILT": "NOT_EXECUTED",
    "ABORTED": "ABORTED",
}
#: Permalinks Jenkins serves under a job (``job/x/lastBuild/api/json``).
PERMALINKS = _words(
    "lastBuild lastCompletedBuild lastSuccessfulBuild lastFailedBuild lastStableBuild "
    "lastUnstableBuild lastUnsuccessfulBuild"
)
#: ``builds`` is ``getBuilds().limit(100)`` in core ``Job.java``.
BUILDS_CAP = 100
_DAY_MS = 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _enc(segment: str) -> str:
    """Encode one URL path segment like Jenkins' ``Util.rawEncode`` (so ``%`` becomes ``%25``)."""
    return quote(segment, safe="!$&'()*+,=@")


def _sha(*parts: object) -> str:
    """A stable fake git SHA-1 for generated data (not security relevant)."""
    text = "\0".join(str(p) for p in parts).encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------------------------
# Recorded fixtures
# --------------------------------------------------------------------------------------------

_DATA = resources.files(__package__) / "data" / "jenkins"


def _read_json(rel: str) -> Any:
    return json.loads((_DATA / rel).read_text(encoding="utf-8"))


def _read_csv(rel: str) -> list[dict[str, Any]]:
    """Rows' ``data`` column of a DevLake raw table, parsed."""
    csv.field_size_limit(1 << 27)
    text = (_DATA / rel).read_text(encoding="utf-8")
    return [json.loads(row["data"]) for row in csv.DictReader(io.StringIO(text))]


def _skeleton(actions: list[dict[str, Any]]) -> list[Any]:
    """An action list with the per-build actions replaced by markers (order kept)."""
    out: list[Any] = []
    for action in actions:
        cls = action.get("_class")
        if cls == CAUSE_ACTION:
            out.append("CAUSE")
        elif cls == BUILD_DATA:
            out.append("GIT")
        elif cls == "jenkins.model.InterruptedBuildAction":
            continue
        else:
            out.append(action)
    return out


class _Fixtures:
    """What the stand-in takes from the recorded responses (loaded once, on first use)."""

    def __init__(self) -> None:
        builds = _read_csv("devlake/_raw_jenkins_api_builds.csv")
        mb_builds = _read_csv("devlake/_raw_jenkins_api_builds_multibranch.csv")

        def has_git(b: dict[str, Any]) -> bool:
            return any(a.get("_class") == BUILD_DATA for a in b["actions"])

        fs = [b for b in builds if b["_class"] == FREESTYLE_BUILD]
        self.freestyle_git = _skeleton(next(b for b in fs if has_git(b))["actions"])
        self.freestyle_plain = _skeleton(next(b for b in fs if not has_git(b))["actions"])
        wf = next(b for b in builds if b["_class"] == PIPELINE_BUILD)
        self.pipeline_plain = _skeleton(wf["actions"])
        mb_ok = next(b for b in mb_builds if b.get("result") == "SUCCESS" and has_git(b))
        self.multibranch_git = _skeleton(mb_ok["actions"])
        self.interrupted = next(
            a
            for b in mb_builds
            for a in b["actions"]
            if a.get("_class") == "jenkins.model.InterruptedBuildAction"
        )
        # A pipeline with git outside multibranch: the multibranch list without SCMRevisionAction.
        self.pipeline_git = [
            a
            for a in self.multibranch_git
            if not (isinstance(a, dict) and a.get("_class") == "jenkins.scm.api.SCMRevisionAction")
        ]
        self.multibranch_plain = [a for a in self.multibranch_git if a != "GIT"]

        stages = _read_csv("devlake/_raw_jenkins_api_stages.csv")
        stages += _read_csv("devlake/_raw_jenkins_api_stages_multibranch.csv")
        self.errors: dict[str, dict[str, Any]] = {}
        for st in stages:
            if st.get("status") in ("FAILED", "ABORTED") and "error" in st:
                self.errors.setdefault(st["status"], st["error"])
        names: list[str] = []
        for st in _read_csv("devlake/_raw_jenkins_api_stages_multibranch.csv"):
            if st["name"] not in names:
                names.append(st["name"])
        # "Declarative: Checkout SCM", "checkout", "build", "test", "deploy"
        self.stage_names = names

        item = _read_json("jenkins-rest/build-info-git-commit.json")["changeSets"][0]
        self.change_list_class = item["_class"]
        self.change_item = item["items"][0]

        self.root = _read_json("api4jenkins/jenkins.json")
        self.folder = _read_json("api4jenkins/folder.json")
        self.multibranch = _read_json("api4jenkins/mbranch.json")
        self.pipeline_job = _read_json("api4jenkins/pipeline.json")


@functools.cache
def _fixtures() -> _Fixtures:
    return _Fixtures()


# --------------------------------------------------------------------------------------------
# tree= parsing and pruning (Stapler's NamedPathPruner grammar)
# --------------------------------------------------------------------------------------------


class TreeError(ValueError):
    """A ``tree=`` expression that Stapler's parser rejects (served as HTTP 400)."""


class _Node:
    """One level of a parsed ``tree``: the properties wanted below it and the range of its list."""

    __slots__ = ("children", "full", "hi", "lo")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.full = False  # internal: emit the value unpruned (depth-0 defaults only)
        self.lo = 0
        self.hi: int | None = None

    def __repr__(self) -> str:
        rng = "" if (self.lo, self.hi) == (0, None) else f"{{{self.lo},{self.hi}}}"
        return f"{'FULL' if self.full else self.children}{rng}"


_SPECIAL = frozenset(",[]{}")


class _TreeParser:
    def __init__(self, spec: str, internal: bool) -> None:
        self.spec = spec
        self.internal = internal
        self.toks: list[tuple[str, int]] = []
        i = 0
        while i < len(spec):
            if spec[i] in _SPECIAL:
                self.toks.append((spec[i], i))
                i += 1
                continue
            j = i
            while j < len(spec) and spec[j] not in _SPECIAL:
                j += 1
            self.toks.append((spec[i:j], i))
            i = j
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def pos(self) -> int:
        return self.toks[self.i][1] if self.i < len(self.toks) else len(self.spec)

    def expect(self, tok: str) -> None:
        if self.peek() != tok:
            raise TreeError(f"expected {tok!r} at {self.pos()} in tree={self.spec!r}")
        self.i += 1

    def parse(self) -> _Node:
        root = _Node()
        self.items(root)
        if self.peek() is not None:
            raise TreeError(f"unexpected {self.peek()!r} at {self.pos()} in tree={self.spec!r}")
        return root

    def items(self, node: _Node) -> None:
        self.node(node)
        while self.peek() == ",":
            self.i += 1
            self.node(node)

    def node(self, parent: _Node) -> None:
        name = self.peek()
        if name is None or name in _SPECIAL:
            raise TreeError(f"expected name at {self.pos()} in tree={self.spec!r}")
        self.i += 1
        sub = _Node()
        parent.children[name] = sub
        if self.peek() == "[":
            self.i += 1
            self.items(sub)
            self.expect("]")
            if self.internal and list(sub.children) == ["**"]:
                sub.children = {}
                sub.full = True
        if self.peek() == "{":
            self.i += 1
            self.range(sub)
            self.expect("}")

    def range(self, sub: _Node) -> None:
        if self.peek() == ",":  # {,N}
            self.i += 1
            sub.lo, sub.hi = 0, self.number()
            return
        lo = self.number()
        if self.peek() == "}":  # {N}: just element N
            sub.lo, sub.hi = lo, lo + 1
            return
        self.expect(",")
        if self.peek() == "}":  # {M,}
            sub.lo, sub.hi = lo, None
            return
        sub.lo, sub.hi = lo, self.number()  # {M,N}: M inclusive, N exclusive

    def number(self) -> int:
        tok = self.peek()
        if tok is None or not re.fullmatch(r"[0-9]+", tok):
            raise TreeError(f"expected number at {self.pos()} in tree={self.spec!r}")
        self.i += 1
        return int(tok)


@functools.lru_cache(maxsize=512)
def parse_tree(spec: str, *, internal: bool = False) -> _Node:
    """Parse a ``tree=`` value with Stapler's grammar: ``a,b[c,d[e]]{M,N},f[*]``.

    Ranges follow a property (``{M,N}`` M inclusive/N exclusive, ``{M,}``, ``{,N}``, ``{N}``).
    Raises :class:`TreeError` where Jenkins would refuse the expression. Results are cached and
    shared: do not mutate them.
    """
    return _TreeParser(spec, internal).parse()


class _Bean:
    """An exported object whose properties are computed only when a request asks for them."""

    __slots__ = ()

    def jclass(self) -> str | None:
        raise NotImplementedError

    def fields(self) -> Sequence[str]:
        raise NotImplementedError

    def values(self, keys: Sequence[str]) -> list[Any]:
        raise NotImplementedError

    def full(self) -> dict[str, Any]:
        """Every property, unpruned (the depth-0 answer for a build)."""
        keys = self.fields()
        out: dict[str, Any] = {}
        cls = self.jclass()
        if cls is not None:
            out["_class"] = cls
        out.update(zip(keys, self.values(keys), strict=True))
        return out


class _JMap(dict):  # type: ignore[type-arg]
    """A ``java.util.Map`` property: its keys are data, so pruning applies to its values only."""


class _LazyMap:
    """A map generated when serialised (``buildsByBranchName`` of bulk builds)."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Iterator[tuple[str, Any]]]) -> None:
        self.factory = factory

    def items(self) -> Iterator[tuple[str, Any]]:
        return self.factory()


class _RunList:
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


def _prune(value: Any, node: _Node) -> Any:
    """Apply one tree level to a value the way Stapler's ``Property.writeValue`` does."""
    if node.full or value is None or isinstance(value, (str, int, float)):
        return value
    if type(value) is dict:
        return _prune_dict(value, node)
    if isinstance(value, (list, tuple, _RunList)):
        return [_prune(v, node) for v in value[node.lo : node.hi]]
    if isinstance(value, _Bean):
        children = node.children
        star = children.get("*")
        out: dict[str, Any] = {}
        cls = value.jclass()
        if cls is not None:
            out["_class"] = cls
        picked = [(k, sub) for k in value.fields() if (sub := children.get(k, star)) is not None]
        vals = value.values([k for k, _ in picked])
        for (k, sub), v in zip(picked, vals, strict=True):
            out[k] = _prune(v, sub)
        return out
    if isinstance(value, (_JMap, _LazyMap)):
        return {k: _prune(v, node) for k, v in value.items()}
    if isinstance(value, dict):
        return _prune_dict(value, node)
    return value


def _prune_dict(value: dict[str, Any], node: _Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = value.get("_class")
    if cls is not None:
        out["_class"] = cls
    children = node.children
    star = children.get("*")
    for k, v in value.items():
        if k == "_class":
            continue
        sub = children.get(k, star)
        if sub is not None:
            out[k] = _prune(v, sub)
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _Bean):
        return obj.full()
    if isinstance(obj, _LazyMap):
        return dict(obj.items())
    if isinstance(obj, _RunList):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dumps(obj: Any, pretty: bool = False) -> bytes:
    if pretty:
        text = json.dumps(obj, default=_json_default, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


_REF = "number,url"
_DEFAULT_JOB = parse_tree(
    "actions[**],description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    f"buildable,builds[{_REF}],color,firstBuild[{_REF}],healthReport[**],inQueue,keepDependencies,"
    f"lastBuild[{_REF}],lastCompletedBuild[{_REF}],lastFailedBuild[{_REF}],lastStableBuild[{_REF}],"
    f"lastSuccessfulBuild[{_REF}],lastUnstableBuild[{_REF}],lastUnsuccessfulBuild[{_REF}],"
    "nextBuildNumber,property[**],queueItem[**],concurrentBuild,disabled,downstreamProjects[**],"
    "labelExpression,resumeBlocked,scm[**],upstreamProjects[**]",
    internal=True,
)
_DEFAULT_FOLDER = parse_tree(
    "actions[**],description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    "healthReport[**],jobs[name,url,color],primaryView[name,url],views[name,url],sources[**]",
    internal=True,
)
_DEFAULT_ROOT = parse_tree(
    "assignedLabels[name],mode,nodeDescription,nodeName,numExecutors,description,"
    "jobs[name,url,color],overallLoad[**],primaryView[name,url],quietingDown,slaveAgentPort,"
    "unlabeledLoad[**],url,useCrumbs,useSecurity,views[name,url]",
    internal=True,
)
_FULL = parse_tree("x[**]", internal=True).children["x"]


# --------------------------------------------------------------------------------------------
# Model: items (root, folders, jobs) and runs
# --------------------------------------------------------------------------------------------


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
        self.fdn = (
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
                out.append(self.jobs())
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
        return self.data["number"]

    @property
    def result(self) -> str | None:
        return self.data["result"]

    @property
    def building(self) -> bool:
        return self.data["building"]

    @property
    def timestamp(self) -> int:
        return self.data["timestamp"]

    @property
    def duration(self) -> int:
        return self.data["duration"]

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
    """A buildable job (freestyle or pipeline); builds are kept sorted by number."""

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
        return _fixtures().pipeline_job["actions"]
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


def _executor(job: _Job) -> dict[str, Any]:
    return {"_class": "hudson.model.OneOffExecutor" if job.pipeline else "hudson.model.Executor"}


# --------------------------------------------------------------------------------------------
# Build JSON
# --------------------------------------------------------------------------------------------

_AUTHORS = (
    ("Alice Example", "alice"),
    ("Bob Builder", "bob"),
    ("Chandra Rao", "chandra"),
    ("Dmitri Volkov", "dmitri"),
)
_MESSAGES = (
    "Fix flaky retry test",
    "Bump requests from 2.31.0 to 2.32.3",
    "Add health endpoint",
    "Refactor payment client",
    "Update README",
    "Handle empty pages in listing",
)
_BRANCH_WORDS = ("feature", "bugfix", "renovate", "release", "hotfix", "chore")


def _cause(raw: dict[str, Any]) -> dict[str, Any]:
    """A cause as Jenkins exports it: ``_class`` first, ``shortDescription`` always present."""
    cls = raw.get("_class", USER_CAUSE)
    out: dict[str, Any] = {"_class": cls}
    if "shortDescription" not in raw:
        out["shortDescription"] = _describe_cause(cls, raw)
    for k, v in raw.items():
        if k != "_class":
            out[k] = v
    if cls == "hudson.model.Cause$UpstreamCause" and "upstreamUrl" not in out:
        project = str(out.get("upstreamProject", ""))
        out["upstreamUrl"] = "".join(f"job/{_enc(s)}/" for s in project.split("/") if s)
    return out


def _describe_cause(cls: str, c: dict[str, Any]) -> str:
    short = cls.rsplit(".", 1)[-1]
    if short == "Cause$UserIdCause":
        return f"Started by user {c.get('userName') or c.get('userId') or 'anonymous'}"
    if short == "Cause$UpstreamCause":
        return (
            f'Started by upstream project "{c.get("upstreamProject")}" '
            f"build number {c.get('upstreamBuild')}"
        )
    if short == "TimerTrigger$TimerTriggerCause":
        return "Started by timer"
    if short == "SCMTrigger$SCMTriggerCause":
        return "Started by an SCM change"
    if short == "Cause$RemoteCause":
        return f"Started by remote host {c.get('addr', '127.0.0.1')}"
    if short == "BranchIndexingCause":
        return "Branch indexing"
    if short == "BranchEventCause":
        return "Branch event"
    return "Started"


def _default_causes() -> list[dict[str, Any]]:
    return [{"_class": USER_CAUSE, "userId": "admin", "userName": "admin"}]


def _branch_entries(
    git: dict[str, Any], number: int, own: dict[str, Any], count: int
) -> Iterator[tuple[str, Any]]:
    """``buildsByBranchName``: every branch this job ever built (the JENKINS-19022 bloat)."""
    branch = git["branch"]
    yield branch, _git_build(number, own)
    prefix = "refs/remotes/origin/" if branch.startswith("refs/remotes/origin/") else ""
    remote = git["remote"]
    for i in range(count):
        name = f"{prefix}{_BRANCH_WORDS[i % len(_BRANCH_WORDS)]}/SEI-{1000 + i * 7}"
        sha = _sha(remote, name)
        rev = {"SHA1": sha, "branch": [{"SHA1": sha, "name": name}]}
        yield name, _git_build(max(1, number - 1 - i % max(1, number)), rev)


def _git_build(number: int, rev: dict[str, Any]) -> dict[str, Any]:
    return {
        "_class": "hudson.plugins.git.util.Build",
        "buildNumber": number,
        "buildResult": None,
        "marked": rev,
        "revision": rev,
    }


def _build_data(git: dict[str, Any], number: int, count: int, lazy: bool) -> dict[str, Any]:
    g = {
        "sha": git.get("sha") or _sha(git.get("remote"), number),
        "branch": git.get("branch", "refs/remotes/origin/main"),
        "remote": git.get("remote", "https://github.com/acme/app.git"),
    }
    rev = {"SHA1": g["sha"], "branch": [{"SHA1": g["sha"], "name": g["branch"]}]}
    if lazy:
        bbbn: Any = _LazyMap(functools.partial(_branch_entries, g, number, rev, count))
    else:
        bbbn = _JMap(_branch_entries(g, number, rev, count))
    return {
        "_class": BUILD_DATA,
        "buildsByBranchName": bbbn,
        "lastBuiltRevision": rev,
        "remoteUrls": list(git.get("remotes") or [g["remote"]]),
        "scmName": git.get("scmName", ""),
    }


def _change_items(
    fj: FakeJenkins, change_ids: list[str], timestamp: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Git change-log items shaped like the recorded ``GitChangeSet`` (and the culprits)."""
    tpl = _fixtures().change_item
    items: list[dict[str, Any]] = []
    culprits: dict[str, dict[str, Any]] = {}
    for i, cid in enumerate(change_ids):
        full, uid = _AUTHORS[int(cid[:6], 16) % len(_AUTHORS)] if _is_hex(cid) else _AUTHORS[i % 4]
        msg = _MESSAGES[(i + len(cid)) % len(_MESSAGES)]
        ts = timestamp - (len(change_ids) - i) * 600_000
        path = f"src/{uid}/module_{i}.py"
        author = {"absoluteUrl": f"{fj.url}user/{uid}", "fullName": full}
        values = {
            "affectedPaths": [path],
            "commitId": cid,
            "timestamp": ts,
            "author": author,
            "authorEmail": f"{uid}@example.com",
            "comment": msg + "\n",
            "date": time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(ts / 1000)),
            "id": cid,
            "msg": msg,
            "paths": [{"editType": "edit", "file": path}],
        }
        item = {k: values.get(k, v) for k, v in tpl.items()}
        items.append(item)
        culprits.setdefault(uid, author)
    return items, list(culprits.values())


def _is_hex(s: str) -> bool:
    return len(s) >= 6 and all(c in "0123456789abcdefABCDEF" for c in s[:6])


def _artifact_list(paths: list[str]) -> list[dict[str, Any]]:
    return [
        {"displayPath": p.rsplit("/", 1)[-1], "fileName": p.rsplit("/", 1)[-1], "relativePath": p}
        for p in paths
    ]


def _make_build(
    job: _Job,
    number: int,
    *,
    result: str | None,
    building: bool,
    timestamp: int,
    duration: int,
    causes: list[dict[str, Any]] | None,
    parameters: list[dict[str, Any]] | None,
    gits: list[dict[str, Any]],
    change_ids: list[str] | None,
    artifacts: list[str] | None,
    estimated: int,
    queue_id: int,
    lazy_map: bool,
) -> dict[str, Any]:
    """A whole build as ``<build>/api/json`` returns it, key order as in the recorded builds."""
    fj = job.fj
    fx = _fixtures()
    multibranch = job.parent is not None and job.parent.kind == "multibranch"
    if not job.pipeline:
        skeleton = fx.freestyle_git if gits else fx.freestyle_plain
    elif multibranch:
        skeleton = fx.multibranch_git if gits else fx.multibranch_plain
    else:
        skeleton = fx.pipeline_git if gits else fx.pipeline_plain
    actions: list[dict[str, Any]] = []
    count = fj.build_data_branches
    for entry in skeleton:
        if entry == "CAUSE":
            cause_list = [_cause(c) for c in (causes if causes is not None else _default_causes())]
            cause_action = {"_class": CAUSE_ACTION, "causes": cause_list}
            if parameters is not None and job.pipeline:
                actions.append(cause_action)
                actions.append({"_class": PARAMETERS_ACTION, "parameters": list(parameters)})
            elif parameters is not None:
                actions.insert(0, {"_class": PARAMETERS_ACTION, "parameters": list(parameters)})
                actions.append(cause_action)
            else:
                actions.append(cause_action)
        elif entry == "GIT":
            actions.extend(_build_data(g, number, count, lazy_map) for g in gits)
        else:
            actions.append(dict(entry))  # a copy: tests may edit a build's actions
    if result == "ABORTED" and not building:
        _add_interrupted(actions)
    items, culprits = _change_items(fj, change_ids or [], timestamp)
    url = f"{job.url}{number}/"
    data: dict[str, Any] = {
        "_class": PIPELINE_BUILD if job.pipeline else FREESTYLE_BUILD,
        "actions": actions,
        "artifacts": _artifact_list(artifacts or []),
        "building": building,
        "description": None,
        "displayName": f"#{number}",
        "duration": 0 if building else duration,
        "estimatedDuration": estimated,
        "executor": _executor(job) if building else None,
        "fullDisplayName": f"{job.fdn} #{number}",
        "id": str(number),
        "inProgress": building,
        "keepLog": False,
        "number": number,
        "queueId": queue_id,
        "result": None if building else result,
        "timestamp": timestamp,
        "url": url,
    }
    if job.pipeline:
        sets = [{"_class": fx.change_list_class, "items": items, "kind": "git"}] if items else []
        data["changeSets"] = sets
        data["culprits"] = culprits
        data["nextBuild"] = job.neighbour_ref(number, +1)
        data["previousBuild"] = job.neighbour_ref(number, -1)
    else:
        data["builtOn"] = ""
        if gits:
            data["changeSet"] = {"_class": fx.change_list_class, "items": items, "kind": "git"}
        else:
            data["changeSet"] = {
                "_class": "hudson.scm.EmptyChangeLogSet",
                "items": [],
                "kind": None,
            }
        data["culprits"] = culprits
    return data


def _add_interrupted(actions: list[dict[str, Any]]) -> None:
    """Aborted runs carry ``InterruptedBuildAction`` (placed before ``RunDisplayAction``)."""
    interrupted = _fixtures().interrupted
    if interrupted in actions:
        return
    display = "org.jenkinsci.plugins.displayurlapi.actions.RunDisplayAction"
    at = next((i for i, a in enumerate(actions) if a.get("_class") == display), len(actions))
    actions.insert(at, dict(interrupted))


def _bulk_spec(job: _Job, number: int, result: str | None) -> dict[str, Any]:
    """Deterministic per-build extras for ``seed_bulk`` builds (causes, params, git, changes)."""
    h = int(_sha(job.full_name, number)[:8], 16)
    if number % 7 == 0:
        causes = [{"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause"}]
    elif h % 4 == 0:
        full, uid = _AUTHORS[h % len(_AUTHORS)]
        causes = [{"_class": USER_CAUSE, "userId": uid, "userName": full}]
    else:
        causes = [{"_class": "hudson.triggers.SCMTrigger$SCMTriggerCause"}]
    params = None
    if int(_sha(job.full_name)[:4], 16) % 3 == 0:
        params = [
            {"_class": "hudson.model.StringParameterValue", "name": "GIT_REF", "value": "main"},
            {"_class": "hudson.model.BooleanParameterValue", "name": "DEPLOY", "value": h % 2 == 0},
        ]
    folder = job.parent.name if job.parent is not None else "root"
    remote = f"https://git.example.com/{folder}/{job.name}.git"
    gits = [{"sha": _sha(remote, number), "branch": "refs/remotes/origin/main", "remote": remote}]
    changes = [_sha(remote, number, i) for i in range(h % 3)]
    arts = [f"target/{job.name}-1.{number}.jar"] if result in ("SUCCESS", "UNSTABLE") else []
    return {
        "causes": causes,
        "parameters": params,
        "gits": gits,
        "change_ids": changes,
        "artifacts": arts,
    }


# --------------------------------------------------------------------------------------------
# Pipeline Stage View (wfapi)
# --------------------------------------------------------------------------------------------

_STEPS = {
    "Declarative: Checkout SCM": [("Check out from version control", "{remote}")],
    "checkout": [("Git", "{remote}")],
    "build": [("Shell Script", "make build"), ("Archive the artifacts", "build/libs/*.jar")],
    "test": [("Shell Script", "make test"), ("Record test results", "build/test-results/*.xml")],
    "deploy": [("Shell Script", "./deploy.sh production")],
}
_STAGE_SHARE = (0.1, 0.5, 0.4)


def _generated_stages(rec: _Run, remote: str, now: int) -> list[dict[str, Any]]:
    """Three plausible wfapi stages whose statuses follow the build's state."""
    fx = _fixtures()
    names = [n for n in fx.stage_names if n != "checkout"][:3]
    start = rec.timestamp
    running = rec.building or rec.result is None
    total = max(1, now - start) if running else max(1, rec.duration)
    out: list[dict[str, Any]] = []
    t = start + 40
    node_id = 6
    for i, name in enumerate(names):
        last = i == len(names) - 1
        dur = int(total * _STAGE_SHARE[i])
        status = "SUCCESS"
        if running and last:
            status = "IN_PROGRESS"
        elif rec.result == "NOT_BUILT":
            status, dur = "NOT_EXECUTED", 0
        elif last and rec.result in ("FAILURE", "ABORTED", "UNSTABLE"):
            status = _WF_STATUS[rec.result or "SUCCESS"]
        error = fx.errors.get(status)
        plan = _STEPS.get(name, [("Shell Script", name)])
        steps: list[dict[str, Any]] = []
        parent = str(node_id)
        step_t = t
        for j, (step_name, desc) in enumerate(plan):
            sid = str(node_id + 1 + j)
            step_last = j == len(plan) - 1
            step_dur = dur // len(plan)
            step: dict[str, Any] = {
                "id": sid,
                "name": step_name,
                "execNode": "",
                "status": status if step_last or status == "NOT_EXECUTED" else "SUCCESS",
            }
            if error is not None and step_last:
                step["error"] = error
            step.update(
                parameterDescription=desc.format(remote=remote),
                startTimeMillis=step_t,
                durationMillis=step_dur,
                pauseDurationMillis=0,
                parentNodes=[parent],
            )
            steps.append(step)
            parent = sid
            step_t += step_dur
        stage: dict[str, Any] = {"id": str(node_id), "name": name, "execNode": "", "status": status}
        if error is not None:
            stage["error"] = error
        stage.update(
            startTimeMillis=t, durationMillis=dur, pauseDurationMillis=0, stageFlowNodes=steps
        )
        out.append(stage)
        t += dur
        node_id += 7
    return out


def _norm_step(step: dict[str, Any], base: str) -> dict[str, Any]:
    sid = str(step.get("id", ""))
    node = f"{base}execution/node/{sid}/wfapi/"
    out: dict[str, Any] = {
        "_links": {"self": {"href": node + "describe"}, "log": {"href": node + "log"}},
        "id": sid,
        "name": step.get("name", "Shell Script"),
        "execNode": step.get("execNode", ""),
        "status": step.get("status", "SUCCESS"),
    }
    if "error" in step:
        out["error"] = step["error"]
    if "parameterDescription" in step:
        out["parameterDescription"] = step["parameterDescription"]
    out["startTimeMillis"] = step.get("startTimeMillis", 0)
    out["durationMillis"] = step.get("durationMillis", 0)
    out["pauseDurationMillis"] = step.get("pauseDurationMillis", 0)
    out["parentNodes"] = [str(p) for p in step.get("parentNodes", [])]
    for k, v in step.items():
        out.setdefault(k, v)
    return out


def _norm_stage(
    stage: dict[str, Any], base: str, index: int, run_start: int, with_nodes: bool
) -> dict[str, Any]:
    sid = str(stage.get("id", 6 + 7 * index))
    out: dict[str, Any] = {
        "_links": {"self": {"href": f"{base}execution/node/{sid}/wfapi/describe"}},
        "id": sid,
        "name": stage.get("name", f"stage-{index + 1}"),
        "execNode": stage.get("execNode", ""),
        "status": stage.get("status", "SUCCESS"),
    }
    if "error" in stage:
        out["error"] = stage["error"]
    out["startTimeMillis"] = stage.get("startTimeMillis", run_start)
    out["durationMillis"] = stage.get("durationMillis", 0)
    out["pauseDurationMillis"] = stage.get("pauseDurationMillis", 0)
    for k, v in stage.items():
        if k not in ("stageFlowNodes", "_links"):
            out.setdefault(k, v)
    if with_nodes:
        out["stageFlowNodes"] = [_norm_step(s, base) for s in stage.get("stageFlowNodes", [])]
    return out


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class Recorded(NamedTuple):
    """One request the stand-in answered (faults and 401s included)."""

    method: str
    path: str  # as sent on the wire (still percent-encoded), without the query
    query: dict[str, str]  # decoded query parameters (last value wins)
    status: int
    raw_query: str = ""
    size: int = 0  # response body bytes: lets benchmarks see who fetched the BuildData bloat


class _NotFound(Exception):
    pass


_JSON = "application/json;charset=utf-8"
_HTML = "text/html;charset=utf-8"
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _error_page(status: int, path: str, message: str | None = None) -> bytes:
    """The Jetty error page Jenkins answers with for unknown URLs and errors."""
    reason = message or _REASONS.get(status, "Error")
    uri = path.replace("&", "&amp;").replace("<", "&lt;")
    return (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
        f"<title>Error {status} {reason}</title>\n</head>\n"
        f"<body><h2>HTTP ERROR {status} {reason}</h2>\n<table>\n"
        f"<tr><th>URI:</th><td>{uri}</td></tr>\n"
        f"<tr><th>STATUS:</th><td>{status}</td></tr>\n"
        f"<tr><th>MESSAGE:</th><td>{reason}</td></tr>\n"
        "<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n"
        '<hr/><a href="https://eclipse.org/jetty">Powered by Jetty:// 10.0.20</a><hr/>\n'
        "</body>\n</html>\n"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fj: FakeJenkins) -> None:
        self.fj = fj
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Without TCP_NODELAY, Nagle plus delayed ACK stalls every keep-alive answer ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.conns_lock:
            self.conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (timeout tests do) is not an error worth printing."""

    def drop_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "Jetty(10.0.20)"
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read ``FakeJenkins.requests`` instead."""

    def do_GET(self) -> None:
        self.server.fj._serve(self, "GET")

    def do_HEAD(self) -> None:
        self.server.fj._serve(self, "HEAD")

    def do_POST(self) -> None:
        self.server.fj._serve(self, "POST")

    def do_PUT(self) -> None:
        self.server.fj._serve(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.fj._serve(self, "DELETE")


# --------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------


class FakeJenkins:
    """A Jenkins controller on 127.0.0.1 with an editable model of folders, jobs and builds.

    The port is bound at construction, so ``url`` (and every build's ``url``) is final before
    ``start()``. Mutators may be called while the server answers; a lock keeps answers
    consistent. Usable as a context manager (``with FakeJenkins() as fj: ...``).
    """

    #: Size of every git ``BuildData.buildsByBranchName`` map (besides the built branch):
    #: large enough that fetching it by mistake shows up in ``Recorded.size``.
    build_data_branches: int = 40

    def __init__(
        self,
        *,
        context_path: str = "",
        username: str = "sei-bot",
        token: str = "jenkins-secret-token",  # noqa: S107 - a test double's well-known token
        require_auth: bool = True,
        version: str = "2.440.3",
    ) -> None:
        stripped = context_path.strip("/")
        self.context_path = f"/{stripped}" if stripped else ""
        self.username = username
        self.token = token
        self.require_auth = require_auth
        self.version = version
        self._lock = threading.RLock()
        self._req_lock = threading.Lock()
        self._stopping = threading.Event()
        self._fails: list[list[Any]] = []  # [compiled regex, status, remaining or None]
        self._delays: list[tuple[re.Pattern[str], float]] = []
        self._queue_id = 100
        self._session = _sha(id(self), time.time())[:8]
        self.requests: list[Recorded] = []
        self._httpd = _Server(self)
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}{self.context_path}/"
        self._root = _Root(self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeJenkins:
        """Serve in a daemon thread; returns self so ``fj = FakeJenkins().start()`` reads well."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-jenkins-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.drop_connections()
        self._httpd.server_close()

    def __enter__(self) -> FakeJenkins:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- model -------------------------------------------------------------------------------
    def _find(self, full_name: str) -> _Item | None:
        item: _Item = self._root
        for seg in full_name.strip("/").split("/"):
            if not isinstance(item, _Container):
                return None
            nxt = item.children.get(seg)
            if nxt is None:
                return None
            item = nxt
        return item

    def _container(self, full_name: str) -> _Container:
        """The container at ``full_name``, creating plain folders on the way."""
        if not full_name:
            return self._root
        item: _Container = self._root
        for seg in full_name.split("/"):
            nxt = item.children.get(seg)
            if nxt is None:
                nxt = _Container(self, item, seg, "folder")
                item.put(nxt)
            if not isinstance(nxt, _Container):
                raise ValueError(f"{nxt.full_name!r} is a job, not a folder")
            item = nxt
        return item

    def add_folder(self, full_name: str, kind: str = "folder") -> None:
        """Add a container: ``folder``, ``multibranch`` (branch jobs inside) or ``org``."""
        if kind not in CONTAINER_CLASSES:
            raise ValueError(f"unknown folder kind {kind!r}")
        with self._lock:
            parent_name, _, name = full_name.strip("/").rpartition("/")
            parent = self._container(parent_name)
            existing = parent.children.get(name)
            if existing is not None:
                if existing.kind != kind:
                    raise ValueError(f"{full_name!r} already exists as a {existing.kind}")
                return
            parent.put(_Container(self, parent, name, kind))

    def add_job(self, full_name: str, kind: str | None = None) -> None:
        """Add a ``freestyle`` or ``pipeline`` job; parents become folders if missing.

        ``kind`` defaults to ``pipeline`` inside a multibranch project, else ``freestyle``.
        Branch jobs are named as Jenkins names them, encoded: ``svc/feature%2Fx``.
        """
        with self._lock:
            self._job(full_name, kind)

    def _job(self, full_name: str, kind: str | None = None) -> _Job:
        parent_name, _, name = full_name.strip("/").rpartition("/")
        parent = self._container(parent_name)
        existing = parent.children.get(name)
        if isinstance(existing, _Job) and kind in (None, existing.kind):
            return existing
        if existing is not None:
            raise ValueError(f"{full_name!r} already exists as a {existing.kind}")
        if kind is None:
            kind = "pipeline" if parent.kind == "multibranch" else "freestyle"
        if kind not in ("freestyle", "pipeline"):
            raise ValueError(f"unknown job kind {kind!r}")
        job = _Job(self, parent, name, kind)
        parent.put(job)
        return job

    def _existing_job(self, full_name: str) -> _Job:
        item = self._find(full_name)
        if not isinstance(item, _Job):
            raise KeyError(f"no job {full_name!r}")
        return item

    def add_build(
        self,
        job: str,
        number: int | None = None,
        *,
        result: str | None = "SUCCESS",
        building: bool = False,
        timestamp: int | None = None,
        duration: int = 60000,
        causes: list[dict[str, Any]] | None = None,
        parameters: list[dict[str, Any]] | None = None,
        git: dict[str, Any] | list[dict[str, Any]] | None = None,
        change_ids: list[str] | None = None,
        artifacts: list[str] | None = None,
        stages: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add a build and return its stored JSON dict (edits to it show in later answers).

        A missing job is created (freestyle, or pipeline inside a multibranch project).
        ``git`` may be a list for several ``BuildData`` actions (e.g. a shared library's
        checkout next to the project's). ``stages`` are wfapi stage dicts; pipelines without
        them get stages generated from the build's state at answer time.
        """
        if result is not None and result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS} or None")
        with self._lock:
            j = self._job(job)
            n = j.next_number if number is None else number
            if n in j.runs:
                raise ValueError(f"{job} #{n} already exists")
            if timestamp is None:
                timestamp = _now_ms() - (5_000 if building else duration + 5_000)
            done: list[int] = []
            for m in reversed(j.nums):
                if not j.runs[m].building:
                    done.append(j.runs[m].duration)
                    if len(done) == 3:
                        break
            estimated = sum(done) // len(done) if done else -1
            self._queue_id += 1
            gits = [] if git is None else [git] if isinstance(git, dict) else list(git)
            data = _make_build(
                j,
                n,
                result=result,
                building=building,
                timestamp=timestamp,
                duration=duration,
                causes=causes,
                parameters=parameters,
                gits=gits,
                change_ids=change_ids,
                artifacts=artifacts,
                estimated=estimated,
                queue_id=self._queue_id,
                lazy_map=False,
            )
            j.add(_Explicit(data, copy.deepcopy(stages)))
            return data

    def finish_build(
        self, job: str, number: int, result: str = "SUCCESS", duration: int = 60000
    ) -> None:
        """Complete a running build, as Jenkins does when the executor finishes."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}")
        with self._lock:
            j = self._existing_job(job)
            rec = j.runs[number]
            if isinstance(rec, _Explicit):
                rec.data.update(
                    building=False,
                    inProgress=False,
                    result=result,
                    duration=duration,
                    executor=None,
                )
                if result == "ABORTED":
                    _add_interrupted(rec.data["actions"])
                final = _WF_STATUS[result]
                for stage in rec.stages or ():
                    for node in (stage, *stage.get("stageFlowNodes", ())):
                        if node.get("status") == "IN_PROGRESS":
                            node["status"] = final
            else:
                rec.building = False
                rec.result = result
                rec.duration = duration

    def delete_build(self, job: str, number: int) -> None:
        """Discard a build (retention): its URLs answer 404 from now on."""
        with self._lock:
            self._existing_job(job).remove(number)

    def delete_job(self, full_name: str) -> None:
        """Delete a job or a whole folder (like a multibranch branch going away)."""
        with self._lock:
            item = self._find(full_name)
            if item is None or item.parent is None:
                raise KeyError(f"no item {full_name!r}")
            item.parent.remove(item.name)

    # -- faults and recording ----------------------------------------------------------------
    def fail(self, path_regex: str, status: int = 500, times: int | None = None) -> None:
        """Answer ``status`` (HTML body) to requests whose path ``re.search``-matches.

        The path is matched as sent (percent-encoded, no query). ``times=None``: forever.
        """
        with self._lock:
            self._fails.append([re.compile(path_regex), status, times])

    def delay(self, path_regex: str, seconds: float) -> None:
        """Sleep ``seconds`` before answering matching requests (timeout tests)."""
        with self._lock:
            self._delays.append((re.compile(path_regex), seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._fails.clear()
            self._delays.clear()

    def reset_requests(self) -> None:
        with self._req_lock:
            self.requests.clear()

    def count(self, path_regex: str = ".*") -> int:
        """How many recorded requests have a path matching ``path_regex`` (``re.search``)."""
        rx = re.compile(path_regex)
        with self._req_lock:
            return sum(1 for r in self.requests if rx.search(r.path))

    # -- serving -----------------------------------------------------------------------------
    def _serve(self, h: _Handler, method: str) -> None:
        path, _, raw_query = h.path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        with self._lock:
            pause = next((s for rx, s in self._delays if rx.search(path)), 0.0)
        if pause:
            self._stopping.wait(pause)
        extra: dict[str, str] = {}
        try:
            status, ctype, body = self._answer(method, path, query, h.headers, extra)
        except Exception as exc:  # a stand-in bug must not hang the client
            status, ctype, body = 500, _HTML, _error_page(500, path, f"{type(exc).__name__}: {exc}")
        with self._req_lock:
            self.requests.append(Recorded(method, path, query, status, raw_query, len(body)))
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.send_header("X-Content-Type-Options", "nosniff")
            h.send_header("X-Jenkins", self.version)
            h.send_header("X-Jenkins-Session", self._session)
            h.send_header("X-Hudson", "1.395")
            for k, v in extra.items():
                h.send_header(k, v)
            if method not in ("GET", "HEAD"):
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _user(self, headers: Any) -> tuple[bool, str | None]:
        """(credentials sent?, user name if they are right)."""
        auth = headers.get("Authorization")
        if not auth:
            return False, None
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            return True, None
        try:
            user, _, secret = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return True, None
        ok = hmac.compare_digest(user.encode(), self.username.encode()) and hmac.compare_digest(
            secret.encode(), self.token.encode()
        )
        return True, user if ok else None

    def _answer(
        self, method: str, path: str, query: dict[str, str], headers: Any, extra: dict[str, str]
    ) -> tuple[int, str, bytes]:
        with self._lock:
            for fault in self._fails:
                rx, status, left = fault
                if (left is None or left > 0) and rx.search(path):
                    if left is not None:
                        fault[2] = left - 1
                    return status, _HTML, _error_page(status, path)
        ctx = self.context_path
        if not (path == ctx or path.startswith(ctx + "/")):
            return 404, _HTML, _error_page(404, path)
        rel = path[len(ctx) :]
        sent, user = self._user(headers)
        dashboard = rel in ("", "/")
        if (sent and user is None) or (self.require_auth and user is None and not dashboard):
            extra["X-You-Are-Authenticated-As"] = "anonymous"
            extra["WWW-Authenticate"] = 'Basic realm="Jenkins"'
            msg = "Invalid password/token for user" if sent else "Authentication required"
            return 401, _HTML, _error_page(401, path, msg)
        if method not in ("GET", "HEAD"):
            return 405, _HTML, _error_page(405, path)
        try:
            with self._lock:
                return self._route(rel, query, user)
        except _NotFound:
            return 404, _HTML, _error_page(404, path)
        except TreeError as exc:
            return 400, _HTML, _error_page(400, path, str(exc))

    def _route(self, rel: str, query: dict[str, str], user: str | None) -> tuple[int, str, bytes]:
        segs = rel.split("/")[1:] if rel else []
        while segs and segs[-1] == "":
            segs.pop()
        if "" in segs:
            raise _NotFound
        dec = [unquote(s) for s in segs]  # each segment decoded exactly once
        item: _Item = self._root
        i = 0
        while i + 1 < len(dec) and isinstance(item, _Container):
            if dec[i] == "job":
                child = item.children.get(dec[i + 1])
                if child is None:
                    raise _NotFound
                item = child
            elif dec[i] == "view" and dec[i + 1] in item.view_names():
                pass
            else:
                break
            i += 2
        rest = dec[i:]
        if isinstance(item, _Job) and rest:
            head = rest[0]
            rec: _Run | None
            if re.fullmatch(r"[0-9]+", head):
                rec = item.runs.get(int(head))
                if rec is None:
                    raise _NotFound
                return self._route_run(item, rec, rest[1:], query)
            if head in PERMALINKS:
                rec = item.permalink(head)
                if rec is None:
                    raise _NotFound
                return self._route_run(item, rec, rest[1:], query)
        return self._route_item(item, rest, query, user)

    def _tree(self, query: dict[str, str], default: _Node) -> _Node:
        spec = query.get("tree")
        return default if spec is None else parse_tree(spec)

    def _route_item(
        self, item: _Item, rest: list[str], query: dict[str, str], user: str | None
    ) -> tuple[int, str, bytes]:
        pretty = query.get("pretty") == "true"
        if not rest:
            title = "Dashboard [Jenkins]" if isinstance(item, _Root) else f"{item.fdn} [Jenkins]"
            page = f"<!DOCTYPE html><html><head><title>{title}</title></head><body></body></html>"
            return 200, _HTML, page.encode()
        if rest == ["api", "json"]:
            if isinstance(item, _Root):
                default = _DEFAULT_ROOT
            elif isinstance(item, _Job):
                default = _DEFAULT_JOB
            else:
                default = _DEFAULT_FOLDER
            return 200, _JSON, _dumps(_prune(item, self._tree(query, default)), pretty)
        if isinstance(item, _Root) and rest == ["me", "api", "json"]:
            uid = user or "anonymous"
            me = {
                "_class": "hudson.model.User",
                "absoluteUrl": f"{self.url}user/{_enc(uid)}",
                "description": None,
                "fullName": uid,
                "id": uid,
                "property": [],
            }
            return 200, _JSON, _dumps(_prune(me, self._tree(query, _FULL)), pretty)
        if isinstance(item, _Root) and rest == ["queue", "api", "json"]:
            queue = {"_class": "hudson.model.Queue", "discoverableItems": [], "items": []}
            return 200, _JSON, _dumps(_prune(queue, self._tree(query, _FULL)), pretty)
        if isinstance(item, _Job) and item.pipeline and rest[0] == "wfapi":
            base = f"{self.context_path}/{item.rel_url}"
            if rest == ["wfapi", "describe"]:
                body = {
                    "_links": {
                        "self": {"href": base + "wfapi/describe"},
                        "runs": {"href": base + "wfapi/runs"},
                    },
                    "name": item.name,
                    "runCount": len(item.nums),
                }
                return 200, _JSON, _dumps(body, pretty)
            if rest == ["wfapi", "runs"]:
                full = query.get("fullStages") == "true"
                runs = [
                    self._wf_run(item, item.runs[n], full) for n in list(reversed(item.nums))[:10]
                ]
                return 200, _JSON, _dumps(runs, pretty)
        raise _NotFound

    def _route_run(
        self, job: _Job, rec: _Run, rest: list[str], query: dict[str, str]
    ) -> tuple[int, str, bytes]:
        pretty = query.get("pretty") == "true"
        if not rest:
            page = f"<!DOCTYPE html><html><head><title>{job.fdn} #{rec.number} [Jenkins]</title>"
            return 200, _HTML, (page + "</head><body></body></html>").encode()
        if rest == ["api", "json"]:
            spec = query.get("tree")
            out = rec.obj if spec is None else _prune(rec.obj, parse_tree(spec))
            return 200, _JSON, _dumps(out, pretty)
        if job.pipeline and rest == ["wfapi", "describe"]:
            full = query.get("fullStages") == "true"
            return 200, _JSON, _dumps(self._wf_run(job, rec, full), pretty)
        if (
            job.pipeline
            and len(rest) == 5
            and rest[:2] == ["execution", "node"]
            and rest[3:] == ["wfapi", "describe"]
        ):
            for stage in self._wf_run(job, rec, True)["stages"]:
                if stage["id"] == rest[2]:
                    return 200, _JSON, _dumps(stage, pretty)
            raise _NotFound
        if rest == ["consoleText"]:
            text = f"Started\nBuilding {job.fdn} #{rec.number}\nFinished: {rec.result}\n"
            return 200, "text/plain;charset=utf-8", text.encode()
        if rest[0] == "artifact" and len(rest) > 1:
            wanted = "/".join(rest[1:])
            if any(a["relativePath"] == wanted for a in rec.artifacts()):
                return 200, "application/octet-stream", f"artifact {wanted}\n".encode()
        raise _NotFound

    def _wf_run(self, job: _Job, rec: _Run, full_stages: bool) -> dict[str, Any]:
        """``<build>/wfapi/describe`` (RunExt), shaped like the recorded ``workflow.json``."""
        now = _now_ms()
        base = f"{self.context_path}/{job.rel_url}{rec.number}/"
        running = rec.building or rec.result is None
        start = rec.timestamp
        dur = max(0, now - start) if running else rec.duration
        if rec.stages is not None:
            raw = rec.stages
        else:
            remotes = rec.remotes()
            raw = _generated_stages(rec, remotes[-1] if remotes else "", now)
        links: dict[str, Any] = {"self": {"href": base + "wfapi/describe"}}
        if rec.artifacts():
            links["artifacts"] = {"href": base + "wfapi/artifacts"}
        status = "IN_PROGRESS" if running else _WF_STATUS.get(rec.result or "", "SUCCESS")
        return {
            "_links": links,
            "id": str(rec.number),
            "name": f"#{rec.number}",
            "status": status,
            "startTimeMillis": start,
            "endTimeMillis": start + dur,
            "durationMillis": dur,
            "queueDurationMillis": 3 + rec.number % 11,
            "pauseDurationMillis": 0,
            "stages": [_norm_stage(s, base, i, start, full_stages) for i, s in enumerate(raw)],
        }


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------


def seed_demo(fj: FakeJenkins, *, now_ms: int | None = None) -> None:
    """A small, realistic controller for the demo command and for end-to-end tests.

    Contents (timestamps within the last week before ``now_ms``):

    - ``team/api`` freestyle, #1-#6 (SUCCESS, FAILURE, SUCCESS, UNSTABLE, SUCCESS, SUCCESS):
      string/boolean/password (no value)/file parameters, ``UserIdCause``, git BuildData whose
      remote carries credentials (``https://ci-bot:ghp_secret@github.com/acme/api``), change
      ids, one artifact.
    - ``team/deploy`` pipeline, #1-#5 started by ``UpstreamCause`` from ``team/api`` builds;
      #2 ABORTED, #4 FAILURE, #5 still building; explicit Checkout/Build/Deploy stages; two
      BuildData actions (the shared library's first, then the project's).
    - ``team/docs`` freestyle with no builds (``color: notbuilt``).
    - ``svc`` multibranch with branch jobs ``main`` (#1-#4, #3 FAILURE) and ``feature%2Fx``
      (#1-#3, #2 NOT_BUILT): ``BranchIndexingCause``/``BranchEventCause``, remote
      ``git@github.com:acme/svc.git``, generated stages.
    - ``nightly-cleanup`` freestyle at the top level, #1-#3 started by ``TimerTriggerCause``.
    """
    now = _now_ms() if now_ms is None else now_ms
    day, hour, minute = _DAY_MS, 3_600_000, 60_000
    fj.add_folder("team")
    fj.add_job("team/api", "freestyle")
    fj.add_job("team/deploy", "pipeline")
    fj.add_job("team/docs", "freestyle")
    fj.add_folder("svc", "multibranch")
    fj.add_job("svc/main", "pipeline")
    fj.add_job("svc/feature%2Fx", "pipeline")
    fj.add_job("nightly-cleanup", "freestyle")

    api_remote = "https://ci-bot:ghp_secret@github.com/acme/api"
    api_results = ["SUCCESS", "FAILURE", "SUCCESS", "UNSTABLE", "SUCCESS", "SUCCESS"]
    api_users = [("alice", "Alice Example"), ("bob", "Bob Builder")]
    for i, result in enumerate(api_results, start=1):
        uid, name = api_users[i % 2]
        sha = _sha("acme/api", i)
        fj.add_build(
            "team/api",
            i,
            result=result,
            timestamp=now - (7 - i) * day - 2 * hour,
            duration=95_000 + 7_000 * i,
            causes=[{"_class": USER_CAUSE, "userId": uid, "userName": name}],
            parameters=[
                {"_class": "hudson.model.StringParameterValue", "name": "GIT_REF", "value": "main"},
                {
                    "_class": "hudson.model.BooleanParameterValue",
                    "name": "RUN_E2E",
                    "value": i % 2 == 0,
                },
                {"_class": "hudson.model.PasswordParameterValue", "name": "DEPLOY_TOKEN"},
                {"_class": "hudson.model.FileParameterValue", "name": "release-notes.md"},
            ],
            git={"sha": sha, "branch": "refs/remotes/origin/main", "remote": api_remote},
            change_ids=[_sha("acme/api", i, "c1"), _sha("acme/api", i, "c2")][: 1 + i % 2],
            artifacts=[f"build/libs/api-1.4.{i}.jar"],
        )

    lib = {
        "sha": _sha("acme/jenkins-shared-lib", 3),
        "branch": "refs/remotes/origin/main",
        "remote": "https://github.com/acme/jenkins-shared-lib.git",
    }
    deploy = [(1, "SUCCESS"), (3, "ABORTED"), (5, "SUCCESS"), (6, "FAILURE"), (6, None)]
    for n, (upstream, result) in enumerate(deploy, start=1):
        building = result is None
        start = now - 2 * minute if building else now - (7 - upstream) * day - hour
        dur = 240_000
        fj.add_build(
            "team/deploy",
            n,
            result=result,
            building=building,
            timestamp=start,
            duration=dur,
            causes=[
                {
                    "_class": "hudson.model.Cause$UpstreamCause",
                    "upstreamBuild": upstream,
                    "upstreamProject": "team/api",
                    "upstreamUrl": "job/team/job/api/",
                }
            ],
            parameters=[
                {"_class": "hudson.model.StringParameterValue", "name": "ENV", "value": "staging"}
            ],
            git=[
                lib,
                {
                    "sha": _sha("acme/deploy", n),
                    "branch": "refs/remotes/origin/main",
                    "remote": "https://github.com/acme/deploy.git",
                },
            ],
            change_ids=[_sha("acme/deploy", n, "c")] if n % 2 else None,
            stages=_deploy_stages(start, now - start if building else dur, result),
        )

    svc_remote = "git@github.com:acme/svc.git"
    branches = {
        "svc/main": ("main", ["SUCCESS", "SUCCESS", "FAILURE", "SUCCESS"]),
        "svc/feature%2Fx": ("feature/x", ["SUCCESS", "NOT_BUILT", "SUCCESS"]),
    }
    for job, (branch, results) in branches.items():
        for n, result in enumerate(results, start=1):
            if n == 1:
                cause = {"_class": "jenkins.branch.BranchIndexingCause"}
            else:
                cause = {
                    "_class": "jenkins.branch.BranchEventCause",
                    "shortDescription": f"Push event to branch {branch}",
                }
            fj.add_build(
                job,
                n,
                result=result,
                timestamp=now - (5 - n) * day - 5 * hour,
                duration=31_000 + 1_500 * n,
                causes=[cause],
                git={"sha": _sha(svc_remote, branch, n), "branch": branch, "remote": svc_remote},
                change_ids=[_sha(svc_remote, branch, n, "c")] if n > 1 else None,
            )

    for n, result in enumerate(["SUCCESS", "SUCCESS", "FAILURE"], start=1):
        fj.add_build(
            "nightly-cleanup",
            n,
            result=result,
            timestamp=now - (4 - n) * day - 20 * hour,
            duration=12_000,
            causes=[{"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause"}],
        )


def _deploy_stages(start: int, dur: int, result: str | None) -> list[dict[str, Any]]:
    """Checkout/Build/Deploy stages for ``team/deploy``, statuses following ``result``."""
    errors = _fixtures().errors
    plan = [
        (
            "Checkout",
            0.15,
            [("Check out from version control", "https://github.com/acme/deploy.git")],
        ),
        ("Build", 0.35, [("Shell Script", "make image")]),
        ("Deploy", 0.5, [("Shell Script", "./deploy.sh staging"), ("Print Message", "deployed")]),
    ]
    stages: list[dict[str, Any]] = []
    t = start + 50
    nid = 5
    for i, (name, share, steps) in enumerate(plan):
        last = i == len(plan) - 1
        d = int(dur * share)
        status = "SUCCESS"
        if last and result is None:
            status = "IN_PROGRESS"
        elif last and result is not None:
            status = _WF_STATUS[result]
        stage: dict[str, Any] = {"id": str(nid), "name": name, "status": status}
        if status in errors:
            stage["error"] = dict(errors[status])
        stage.update(startTimeMillis=t, durationMillis=d, stageFlowNodes=[])
        parent = str(nid)
        st = t
        for j, (step, desc) in enumerate(steps):
            sid = str(nid + 1 + j)
            sd = d // len(steps)
            node: dict[str, Any] = {
                "id": sid,
                "name": step,
                "status": status if j == len(steps) - 1 else "SUCCESS",
                "parameterDescription": desc,
                "startTimeMillis": st,
                "durationMillis": sd,
                "parentNodes": [parent],
            }
            stage["stageFlowNodes"].append(node)
            parent, st = sid, st + sd
        stages.append(stage)
        t += d
        nid += 1 + len(steps) + 2
    return stages


def seed_bulk(
    fj: FakeJenkins,
    *,
    folders: int,
    jobs_per_folder: int,
    builds_per_job: int,
    pipeline_share: float = 0.3,
    now_ms: int | None = None,
) -> None:
    """A large controller for benchmarks, cheap to build and to hold.

    ``folder-NNN/job-NNN``; a ``pipeline_share`` of each folder's jobs are pipelines. Builds
    #1..N spread over the 30 days before ``now_ms``, mostly SUCCESS with some FAILURE, UNSTABLE,
    ABORTED and NOT_BUILT. Every 20th job's newest build is still running; every 50th job
    (offset 7) has its second-newest build running while the newest has finished (out-of-order
    completion). Builds are stored as a few numbers each and turned into JSON (with the same
    actions, BuildData, change sets and stages as ``add_build`` builds) only when requested.
    """
    now = _now_ms() if now_ms is None else now_ms
    rng = random.Random(20240501)  # deterministic: benchmarks compare runs
    span = 30 * _DAY_MS
    weights = (("SUCCESS", 80), ("FAILURE", 10), ("UNSTABLE", 5), ("ABORTED", 4), ("NOT_BUILT", 1))
    table = [r for r, w in weights for _ in range(w)]
    with fj._lock:
        serial = 0
        for f in range(folders):
            folder = fj._container(f"folder-{f:03d}")
            for j in range(jobs_per_folder):
                pipeline = int((j + 1) * pipeline_share) > int(j * pipeline_share)
                job = _Job(fj, folder, f"job-{j:03d}", "pipeline" if pipeline else "freestyle")
                folder.put(job)
                base_dur = rng.randrange(30_000, 600_000)
                job.estimated = base_dur
                job.queue_base = 10_000 + serial * (builds_per_job + 1)
                step = span // max(1, builds_per_job)
                running = set()
                if serial % 20 == 0:
                    running.add(builds_per_job)
                if serial % 50 == 7 and builds_per_job > 1:
                    running.add(builds_per_job - 1)
                runs = job.runs
                rand = rng.random
                for n in range(1, builds_per_job + 1):
                    ts = now - span + (n - 1) * step + int(rand() * step * 0.2)
                    dur = int(base_dur * (0.6 + 0.8 * rand()))
                    if n in running:
                        ts = now - int(dur * 0.5)
                        runs[n] = _Lazy(job, n, None, True, ts, dur)
                    else:
                        runs[n] = _Lazy(job, n, table[int(rand() * 100)], False, ts, dur)
                job.nums = list(range(1, builds_per_job + 1))
                job.next_number = builds_per_job + 1
                serial += 1
