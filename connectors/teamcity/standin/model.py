"""The stand-in's editable model (projects, build configurations, VCS roots, builds) and how
each entity renders in TeamCity's JSON shapes.

Entities render as dicts whose costly members are zero-argument callables, so a `fields=`
spec computes only what it names (see :func:`.locator.prune`). Key names and nesting follow
the recorded answers in ``data/teamcity/`` (``fixtures.py``); the build configuration of a
build is held by reference, so a rename shows on every build at once, as on TeamCity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .locator import Spec, parse_fields

if TYPE_CHECKING:
    from .controller import FakeTeamCity

ROOT = "_Root"


def tc_time(ms: int, tz: str) -> str:
    """`20181024T104538+0300`: TeamCity's date format (seconds only) in the server's zone."""
    sign = -1 if tz.startswith("-") else 1
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * sign
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone(offset))
    return moment.strftime("%Y%m%dT%H%M%S") + tz


def parse_tc_time(text: str) -> int:
    """TeamCity's date format back to epoch ms; raises ValueError like TeamCity's 400."""
    for fmt in ("%Y%m%dT%H%M%S%z", "%Y-%m-%dT%H:%M:%S%z", "%Y%m%dT%H%M%S.%f%z"):
        try:
            return int(datetime.strptime(text, fmt).timestamp() * 1000)
        except ValueError:
            continue
    raise ValueError(
        f"Could not parse date from value '{text}'. Supported formats are ISO8601 or for"
        f" example: {datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}+0000"
    )


@dataclass
class Project:
    id: str
    name: str
    parent: str | None
    internal_id: str
    archived: bool = False
    description: str = ""


@dataclass
class BuildType:
    internal_id: str
    id: str
    name: str
    project: str
    type: str = "regular"
    paused: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    vcs_roots: list[str] = field(default_factory=list)
    counter: int = 0


@dataclass
class VcsRoot:
    id: str
    name: str
    url: str
    branch: str
    vcs_name: str
    instance_id: str


@dataclass
class User:
    id: int
    username: str
    name: str


@dataclass
class Build:
    id: int
    bt: BuildType
    number: str | None
    state: str  # queued | running | finished
    queued_ms: int
    status: str = "UNKNOWN"
    status_text: str | None = None
    start_ms: int | None = None
    finish_ms: int | None = None
    branch: str | None = None
    default_branch: bool | None = None
    personal: bool = False
    owner: str | None = None  # a personal build's user
    composite: bool = False
    failed_to_start: bool = False
    canceled: dict[str, Any] | None = None
    triggered: dict[str, Any] = field(default_factory=lambda: {"type": "unknown"})
    revisions: list[tuple[str, str, str | None]] = field(default_factory=list)  # root, sha, ref
    changes: list[dict[str, Any]] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)
    agent: str | None = "agent-1"
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    statistics: dict[str, int] = field(default_factory=dict)
    snapshot_deps: list[int] = field(default_factory=list)
    tests: dict[str, int] | None = None


# -- rendering ----------------------------------------------------------------------------


class Render:
    """Turns model objects into TeamCity-shaped entities for one answer."""

    def __init__(self, tc: FakeTeamCity) -> None:
        self.tc = tc
        self.ctx = tc.context_path
        self.web = tc.url.rstrip("/")

    def t(self, ms: int | None) -> str | None:
        return None if ms is None else tc_time(ms, self.tc.tz)

    def user(self, username: str | None) -> dict[str, Any] | None:
        if username is None:
            return None
        u = self.tc.users.get(username)
        if u is None:
            return None
        return {
            "username": u.username,
            "name": u.name,
            "id": u.id,
            "href": f"/app/rest/users/id:{u.id}",
        }

    def project(self, p: Project, *, with_build_types: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": p.id,
            "internalId": p.internal_id,
            "name": p.name,
            "parentProjectId": p.parent,
            "archived": p.archived if p.archived else None,
            "description": p.description or None,
            "href": f"/app/rest/projects/id:{p.id}",
            "webUrl": f"{self.web}/project.html?projectId={p.id}",
        }
        parent = self.tc.projects.get(p.parent) if p.parent else None
        if parent is not None:
            out["parentProject"] = lambda: self.project(parent, with_build_types=False)
        if with_build_types:
            own = [bt for bt in self.tc.build_types.values() if bt.project == p.id]
            out["buildTypes"] = lambda: {
                "count": len(own),
                "buildType": [self.build_type(bt) for bt in own],
            }
            out["templates"] = {"count": 0, "buildType": []}
        return out

    def build_type(self, bt: BuildType) -> dict[str, Any]:
        p = self.tc.projects[bt.project]
        return {
            "id": bt.id,
            "internalId": bt.internal_id,
            "name": bt.name,
            "projectName": p.name,
            "projectId": p.id,
            "projectInternalId": p.internal_id,
            "type": bt.type if bt.type != "regular" else None,
            "paused": True if bt.paused else None,
            "href": f"/app/rest/buildTypes/id:{bt.id}",
            "webUrl": f"{self.web}/viewType.html?buildTypeId={bt.id}",
            "steps": lambda: self.steps(bt),
        }

    def steps(self, bt: BuildType) -> dict[str, Any]:
        return {
            "count": len(bt.steps),
            "step": [
                {
                    "id": s["id"],
                    "name": s.get("name", ""),
                    "type": s.get("type", "simpleRunner"),
                    "disabled": True if s.get("disabled") else None,
                    "properties": {"count": 0, "property": []},
                }
                for s in bt.steps
            ],
        }

    def vcs_instance(self, root: VcsRoot, *, with_properties: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": root.instance_id,
            "vcs-root-id": root.id,
            "name": root.name,
            "href": f"/app/rest/vcs-root-instances/id:{root.instance_id}",
        }
        if with_properties:
            out["vcsName"] = root.vcs_name
            out["properties"] = {
                "count": 2,
                "property": [
                    {"name": "branch", "value": root.branch},
                    {"name": "url", "value": root.url},
                ],
            }
        return out

    def build_short(self, b: Build) -> dict[str, Any]:
        """A build as a default list shows it (`buildHistoryMasterPage2.xml`)."""
        out: dict[str, Any] = {"id": b.id, "buildTypeId": b.bt.id}
        if b.number is not None and b.state != "queued":
            out["number"] = b.number
        if b.state != "queued":
            out["status"] = b.status
        out["state"] = b.state
        if b.composite:
            out["composite"] = True
        if b.personal:
            out["personal"] = True
        if b.branch is not None:
            out["branchName"] = b.branch
            if b.default_branch:
                out["defaultBranch"] = True
        out["href"] = self.href(b)
        out["webUrl"] = self.web_url(b)
        return out

    def href(self, b: Build) -> str:
        return (
            f"/app/rest/buildQueue/id:{b.id}"
            if b.state == "queued"
            else f"/app/rest/builds/id:{b.id}"
        )

    def web_url(self, b: Build) -> str:
        if b.state == "queued":
            return f"{self.web}/viewQueued.html?itemId={b.id}"
        return f"{self.web}/viewLog.html?buildId={b.id}&buildTypeId={b.bt.id}"

    def build(self, b: Build) -> dict[str, Any]:
        """Every member a build has (`TestClientGetBuilds.extracted.json`, `build.xml`)."""
        finished = b.state == "finished"
        out: dict[str, Any] = {
            "id": b.id,
            "taskId": b.id,
            "buildTypeId": b.bt.id,
            "buildTypeInternalId": b.bt.internal_id,
            "number": b.number if b.state != "queued" else None,
            "status": b.status if b.state != "queued" else None,
            "state": b.state,
            "running": b.state == "running",
            "composite": b.composite,
            "failedToStart": b.failed_to_start,
            "personal": b.personal,
            "history": False,
            "pinned": False,
            "branchName": b.branch,
            "defaultBranch": b.default_branch if b.branch is not None else None,
            "href": self.href(b),
            "webUrl": self.web_url(b),
            "statusText": b.status_text,
            "buildType": lambda: self.build_type(b.bt),
            "canceledInfo": (
                {
                    "timestamp": self.t(b.canceled["at"]),
                    "text": b.canceled.get("text", ""),
                    "user": self.user(b.canceled.get("user")),
                }
                if b.canceled
                else None
            ),
            "queuedDate": self.t(b.queued_ms),
            "startDate": self.t(b.start_ms),
            "finishDate": self.t(b.finish_ms) if finished else None,
            "triggered": lambda: self.triggered(b),
            "user": self.user(b.owner) if b.personal else None,
            "lastChanges": lambda: self.changes(b, last=True),
            "changes": lambda: self.changes(b),
            "revisions": lambda: self.revisions(b),
            "agent": (
                {"id": 1, "name": b.agent, "typeId": 1, "href": "/app/rest/agents/id:1"}
                if b.agent and b.start_ms is not None
                else None
            ),
            "testOccurrences": (
                {
                    "count": sum(b.tests.values()),
                    "href": f"/app/rest/testOccurrences?locator=build:(id:{b.id})",
                    **b.tests,
                }
                if b.tests
                else None
            ),
            "artifacts": lambda: self.artifacts(b),
            "properties": lambda: self.properties(b),
            "statistics": lambda: self.statistics(b),
            "snapshot-dependencies": lambda: {
                "count": len(b.snapshot_deps),
                "build": [
                    self.build_short(self.tc.builds[i])
                    for i in b.snapshot_deps
                    if i in self.tc.builds
                ],
            },
        }
        if b.state == "queued":
            out["queuePosition"] = 1
        return out

    def triggered(self, b: Build) -> dict[str, Any]:
        tr = b.triggered
        out: dict[str, Any] = {
            "type": tr.get("type", "unknown"),
            "details": tr.get("details"),
            "date": self.t(b.queued_ms),
            "displayText": tr.get("displayText"),
            "user": self.user(tr.get("user")),
        }
        up = self.tc.builds.get(tr["build"]) if tr.get("build") is not None else None
        if up is not None:
            out["build"] = lambda: self.build(up)
            out["buildType"] = lambda: self.build_type(up.bt)
        return out

    def revisions(self, b: Build) -> dict[str, Any]:
        revs = []
        for root_id, sha, ref in b.revisions:
            root = self.tc.vcs_roots[root_id]
            rev: dict[str, Any] = {"version": sha}
            if ref is not None:
                rev["vcsBranchName"] = ref
            rev["vcs-root-instance"] = self.vcs_instance(root, with_properties=False)
            revs.append(rev)
        return {"count": len(revs), "revision": revs}

    def changes(self, b: Build, *, last: bool = False) -> dict[str, Any]:
        items = b.changes[:1] if last else b.changes
        out: dict[str, Any] = {
            "count": len(items),
            "href": f"/app/rest/changes?locator=build:(id:{b.id})",
            "change": [
                {
                    "id": c["id"],
                    "version": c["version"],
                    "username": c.get("username", ""),
                    "date": self.t(c.get("date_ms", b.queued_ms)),
                    "href": f"/app/rest/changes/id:{c['id']}",
                    "vcsRootInstance": (
                        self.vcs_instance(self.tc.vcs_roots[c["root"]], with_properties=False)
                        if c.get("root") in self.tc.vcs_roots
                        else None
                    ),
                }
                for c in items
            ],
        }
        return out

    def artifacts(self, b: Build) -> dict[str, Any]:
        base = f"/app/rest/builds/id:{b.id}/artifacts"
        files = [
            {
                "name": a["name"].rsplit("/", 1)[-1],
                "fullName": a["name"],
                "size": a.get("size", 1024),
                "modificationTime": self.t(b.finish_ms),
                "href": f"{base}/metadata/{a['name']}",
                "content": {"href": f"{base}/content/{a['name']}"},
            }
            for a in b.artifacts
        ]
        return {"count": len(files), "href": f"{base}/children/", "file": files}

    def properties(self, b: Build) -> dict[str, Any]:
        props = []
        for p in b.properties:
            item: dict[str, Any] = {"name": p["name"]}
            secure = str(p.get("type", "")).startswith("password")
            if not secure:
                item["value"] = p.get("value", "")
            if p.get("inherited"):
                item["inherited"] = True
            if p.get("type"):
                item["type"] = {"rawValue": p["type"]}
            props.append(item)
        return {"count": len(props), "property": props}

    def statistics(self, b: Build) -> dict[str, Any]:
        stats = dict(b.statistics)
        if b.start_ms is not None and b.finish_ms is not None:
            stats.setdefault("BuildDuration", b.finish_ms - b.start_ms)
        return {
            "count": len(stats),
            "href": f"/app/rest/builds/id:{b.id}/statistics",
            "property": [{"name": k, "value": str(v)} for k, v in sorted(stats.items())],
        }


# What TeamCity answers without `fields=` (the recorded default shapes).
DEFAULT_BUILD: Spec = parse_fields(
    "id,buildTypeId,number,status,state,running,composite,failedToStart,personal,branchName,"
    "defaultBranch,href,webUrl,statusText,buildType(id,name,projectName,projectId,href,webUrl),"
    "canceledInfo(timestamp,text,user(username,name,id,href)),queuedDate,startDate,finishDate,"
    "triggered(type,details,date,user(username,name,id,href),"
    "build(id,buildTypeId,number,status,state,composite,failedToStart,branchName,defaultBranch,"
    "href,webUrl),buildType(id,name,projectName,projectId,href,webUrl)),user,"
    "lastChanges(count,change(id,version,username,date,href)),changes(href),"
    "revisions(count,revision(version,vcsBranchName,vcs-root-instance(id,vcs-root-id,name,href))),"
    "agent(id,name,typeId,href),testOccurrences(count,href,passed,failed,muted,ignored),"
    "artifacts(href),properties(count,property(name,value,inherited)),statistics(href),"
    "snapshot-dependencies(count,build(id,buildTypeId,number,status,state,branchName,"
    "defaultBranch,href,webUrl))"
)
DEFAULT_BUILD_TYPE: Spec = parse_fields("id,name,projectName,projectId,href,webUrl")
DEFAULT_PROJECT: Spec = parse_fields(
    "id,name,parentProjectId,archived,description,href,webUrl,"
    "parentProject(id,name,parentProjectId,href,webUrl),"
    "buildTypes(count,buildType(id,name,projectName,projectId,href,webUrl)),templates"
)
