"""The stand-in Bamboo's model and how each entity is rendered, in the recorded shapes.

Plans (and plan branches, which are plans of their own with their own numbering) hold
results; a result holds its stage results, each holding job results. Deployment projects
hold environments, which hold deployment results of a version built from plan results.
Rendering follows the recorded answers' key order (:func:`.fixtures.ordered`).

Bamboo's words: a result's `lifeCycleState` is `Queued`, `Pending`, `InProgress`,
`Finished` or `NotBuilt`; its `state` (`buildState`) is `Successful`, `Failed` or `Unknown`.
A deployment's `lifeCycleState` is `QUEUED`, `PENDING`, `IN_PROGRESS`, `FINISHED` or
`NOT_BUILT`, its `deploymentState` `SUCCESS`, `FAILED`, `REPLACED`, `SKIPPED`, `NEVER` or
`UNKNOWN` (all seen in the DevLake capture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .fixtures import ordered

if TYPE_CHECKING:
    from .controller import FakeBamboo

FINISHED = "Finished"
RUNNING = ("Queued", "Pending", "InProgress")


@dataclass
class Repository:
    id: int
    name: str


@dataclass
class StageDef:
    """A stage of a plan: its jobs as (job short key, job name)."""

    name: str
    manual: bool
    jobs: list[tuple[str, str]]
    description: str = ""


@dataclass
class Plan:
    """A plan, or a plan branch (`master` set): a plan of its own, numbered from 1."""

    key: str  # PROJ-PLAN; a branch plan: PROJ-PLAN3
    project_key: str
    project_name: str
    short_key: str
    short_name: str
    description: str
    stages: list[StageDef]
    repositories: list[Repository]
    default_branch: str
    master: str | None = None
    branch_name: str | None = None  # a branch plan's VCS branch
    enabled: bool = True
    counter: int = 0
    results: dict[int, Result] = field(default_factory=dict)
    branches: list[str] = field(default_factory=list)  # branch plan keys (a master plan)
    branch_counter: int = 0

    @property
    def name(self) -> str:
        return f"{self.project_name} - {self.short_name}"


@dataclass
class JobResult:
    key: str  # PROJ-PLAN-JOB1
    name: str
    stage: str
    id: int
    life: str = "Queued"
    state: str = "Unknown"
    queued_ms: int | None = None
    started_ms: int | None = None
    completed_ms: int | None = None


@dataclass
class StageResult:
    name: str
    id: int
    manual: bool
    description: str
    jobs: list[JobResult]
    released: bool = False  # a manual stage a person has run (or asked to run)

    @property
    def life(self) -> str:
        lives = {j.life for j in self.jobs}
        if lives & {"InProgress", "Queued", "Pending"}:
            return "InProgress"
        if lives == {"NotBuilt"} or not lives:
            return "NotBuilt"
        return FINISHED

    @property
    def state(self) -> str:
        states = [j.state for j in self.jobs if j.life == FINISHED]
        if "Failed" in states:
            return "Failed"
        if states and all(s == "Successful" for s in states) and self.life == FINISHED:
            return "Successful"
        return "Unknown"


@dataclass
class Result:
    plan: Plan
    number: int
    id: int
    reason: str
    queued_ms: int
    life: str = "Queued"
    state: str = "Unknown"
    started_ms: int | None = None
    completed_ms: int | None = None
    revisions: list[tuple[Repository, str]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    variables: list[tuple[str, str]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    tests: tuple[int, int] = (0, 0)  # successful, failed
    once_off: bool = False

    @property
    def key(self) -> str:
        return f"{self.plan.key}-{self.number}"

    @property
    def finished(self) -> bool:
        return self.life == FINISHED

    @property
    def continuable(self) -> bool:
        """Finished, and a manual stage has not run yet (it can be run later)."""
        return (
            self.finished
            and self.state == "Successful"
            and any(s.manual and s.life == "NotBuilt" for s in self.stages)
        )

    @property
    def restartable(self) -> bool:
        return self.finished and self.state == "Failed"

    @property
    def duration_ms(self) -> int:
        if self.started_ms is None or self.completed_ms is None:
            return 0
        return max(0, self.completed_ms - self.started_ms)


@dataclass
class Environment:
    id: int
    name: str
    project: DeploymentProject
    position: int
    description: str = ""
    results: dict[int, DeployResult] = field(default_factory=dict)


@dataclass
class DeploymentProject:
    id: int
    name: str
    plan_key: str
    description: str = ""
    environments: list[Environment] = field(default_factory=list)


@dataclass
class Version:
    id: int
    name: str
    created_ms: int
    creator: str | None
    items: list[tuple[str, Result]]  # (artifact name, the plan result it came from)
    branch: str
    artifact_ids: list[int] = field(default_factory=list)


@dataclass
class DeployResult:
    id: int
    env: Environment
    version: Version
    reason: str
    queued_ms: int
    state: str = "UNKNOWN"
    life: str = "QUEUED"
    started_ms: int | None = None
    executed_ms: int | None = None
    finished_ms: int | None = None


# -- rendering -------------------------------------------------------------------------------


def iso(ms: int | None, tz: str) -> str | None:
    """Bamboo's times: ISO-8601 with milliseconds and the server's offset (`Z` for UTC)."""
    if ms is None:
        return None
    if tz == "Z":
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    sign = -1 if tz.startswith("-") else 1
    hours, minutes = (int(x) for x in tz[1:].split(":"))
    offset = timedelta(hours=hours, minutes=minutes) * sign
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC) + offset
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}{tz}"


def _pretty(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%a, %-d %b, %I:%M %p")


def _duration_words(ms: int) -> str:
    if ms < 1000:
        return "< 1 second"
    if ms < 120_000:
        return f"{ms // 1000} seconds"
    return f"{ms // 60_000} minutes"


def collection(items: list[Any] | None, name: str, size: int, start: int = 0) -> dict[str, Any]:
    """A Bamboo collection: `size`, `start-index`, `max-result`, and the items when expanded.

    GUESS (the less convenient reading of BAM-17961): `size` counts what this answer holds,
    not the whole collection, so a client cannot tell from it whether more pages exist.
    """
    out: dict[str, Any] = {"size": size}
    if items is not None:
        out["expand"] = name
    out["start-index"] = start
    out["max-result"] = size
    if items is not None:
        out[name] = items
    return out


def link(fb: FakeBamboo, rel_path: str, rel: str = "self") -> dict[str, str]:
    return {"href": f"{fb.url}rest/api/latest/{rel_path}", "rel": rel}


def plan_ref(fb: FakeBamboo, p: Plan, kind: str = "chain") -> dict[str, Any]:
    """The short plan entity results carry (`plan` in a result)."""
    return {
        "shortName": p.short_name,
        "shortKey": p.short_key,
        "type": kind,
        "enabled": p.enabled,
        "link": link(fb, f"plan/{p.key}"),
        "key": p.key,
        "name": p.name,
        "planKey": {"key": p.key},
    }


def plan(fb: FakeBamboo, p: Plan) -> dict[str, Any]:
    """A plan as `plan?expand=plans.plan` lists it (keys as `_raw_bamboo_api_plan.csv`)."""
    jobs = sum(len(s.jobs) for s in p.stages)
    building = any(r.life in RUNNING for r in p.results.values())
    values: dict[str, Any] = {
        "expand": "actions,stages,branches",
        "projectKey": p.project_key,
        "projectName": p.project_name,
        "project": {
            "key": p.project_key,
            "name": p.project_name,
            "description": "",
            "link": link(fb, f"project/{p.project_key}"),
        },
        "description": p.description,
        "shortName": p.short_name,
        "buildName": p.short_name,
        "shortKey": p.short_key,
        "type": "chain",
        "enabled": p.enabled,
        "link": link(fb, f"plan/{p.key}"),
        "isFavourite": False,
        "isActive": building,
        "isBuilding": building,
        "averageBuildTimeInSeconds": 0.0,
        "actions": collection(None, "action", 7),
        "stages": collection(None, "stage", len(p.stages) if jobs else 0),
        "branches": collection(None, "branch", len(p.branches)),
        "key": p.key,
        "name": p.name,
        "planKey": {"key": p.key},
    }
    return ordered("plan", values)


def branch(fb: FakeBamboo, b: Plan) -> dict[str, Any]:
    """A plan branch as `plan/<KEY>/branch` lists it (the shape BAM-10975 shows)."""
    latest = max(b.results.values(), key=lambda r: r.number, default=None)
    out: dict[str, Any] = {
        "description": b.description,
        "shortName": b.short_name,
        "shortKey": b.short_key,
        "enabled": b.enabled,
        "link": link(fb, f"plan/{b.key}"),
        "key": b.key,
        "name": b.name,
    }
    if latest is not None:
        out["latestCurrentlyActive"] = {
            "key": latest.key,
            "lifeCycleState": latest.life,
            "number": latest.number,
        }
    return out


def _reason(fb: FakeBamboo, r: Result) -> str:
    return r.reason.replace("{base}", fb.url)


def result(
    fb: FakeBamboo, r: Result, expand: set[str], prefix: str = "", *, short: bool = False
) -> dict[str, Any]:
    """A plan result. `short`: the form a listing gives without `expand=results.result`.

    Nested collections (`vcsRevisions`, `changes`, `variables`, `artifacts`, `labels`,
    `stages`) carry their items only when expanded (`<prefix>vcsRevisions`, ...).
    """

    def wants(name: str) -> bool:
        path = prefix + name
        return any(e == path or e.startswith(path + ".") for e in expand)

    p = r.plan
    base_keys: dict[str, Any] = {
        "link": link(fb, f"result/{r.key}"),
        "plan": plan_ref(fb, p),
        "buildResultKey": r.key,
        "lifeCycleState": r.life,
        "id": r.id,
    }
    tail = {
        "key": r.key,
        "planResultKey": {"key": r.key, "entityKey": {"key": p.key}, "resultNumber": r.number},
        "state": r.state,
        "buildState": r.state,
        "number": r.number,
        "buildNumber": r.number,
    }
    if short:
        return ordered("result", {**base_keys, **tail})
    tz = fb.tz
    duration = r.duration_ms
    revisions = [
        {"repositoryId": repo.id, "repositoryName": repo.name, "vcsRevisionKey": rev}
        for repo, rev in r.revisions
    ]
    values: dict[str, Any] = {
        "expand": "changes,metadata,plan,vcsRevisions,artifacts,comments,labels,jiraIssues,"
        "variables,stages",
        **base_keys,
        "planName": p.short_name,
        "projectName": p.project_name,
        "buildStartedTime": iso(r.started_ms, tz),
        "prettyBuildStartedTime": _pretty(r.started_ms),
        "buildCompletedTime": iso(r.completed_ms, tz),
        "buildCompletedDate": iso(r.completed_ms, tz),
        "prettyBuildCompletedTime": _pretty(r.completed_ms),
        "buildDurationInSeconds": duration // 1000,
        "buildDuration": duration,
        "buildDurationDescription": _duration_words(duration),
        "buildRelativeTime": "",
        "vcsRevisionKey": r.revisions[0][1] if r.revisions else None,
        "vcsRevisions": collection(
            revisions if wants("vcsRevisions") else None, "vcsRevision", len(revisions)
        ),
        "buildTestSummary": _tests(r),
        "successfulTestCount": r.tests[0],
        "failedTestCount": r.tests[1],
        "quarantinedTestCount": 0,
        "skippedTestCount": 0,
        "continuable": r.continuable,
        "onceOff": r.once_off,
        "restartable": r.restartable,
        "notRunYet": r.life == "Queued",
        "finished": r.finished,
        "successful": r.finished and r.state == "Successful",
        "buildReason": _reason(fb, r),
        "reasonSummary": _reason(fb, r),
        "changes": collection(
            [_change(c, wants("changes.change.files")) for c in r.changes]
            if wants("changes")
            else None,
            "change",
            len(r.changes),
        ),
        "artifacts": collection(
            [_artifact(fb, r, a) for a in r.artifacts] if wants("artifacts") else None,
            "artifact",
            len(r.artifacts),
        ),
        "comments": collection(None, "comment", 0),
        "labels": collection(
            [{"name": n} for n in r.labels] if wants("labels") else None, "label", len(r.labels)
        ),
        "jiraIssues": collection(None, "issue", 0),
        "variables": collection(
            [{"name": k, "value": v} for k, v in r.variables] if wants("variables") else None,
            "variable",
            len(r.variables),
        ),
        "stages": collection(
            [stage(fb, s, r, wants("stages.stage.results")) for s in r.stages]
            if wants("stages")
            else None,
            "stage",
            len(r.stages),
        ),
        **tail,
    }
    if not r.revisions:
        values.pop("vcsRevisionKey")
    if r.started_ms is None:
        for k in ("buildStartedTime", "prettyBuildStartedTime"):
            values.pop(k)
    if r.completed_ms is None:
        for k in ("buildCompletedTime", "buildCompletedDate", "prettyBuildCompletedTime"):
            values.pop(k)
    return ordered("result", values)


def _tests(r: Result) -> str:
    ok, failed = r.tests
    if not ok and not failed:
        return "No tests found"
    if failed:
        return f"{failed} of {ok + failed} failed"
    return f"{ok} passed"


def _change(c: dict[str, Any], files: bool) -> dict[str, Any]:
    values = {
        "changesetId": c["id"],
        "fullName": c.get("full_name") or c["author"],
        "userName": c["author"],
        "author": c["author"],
        "expand": "files",
        "comment": c.get("comment", ""),
        "date": c.get("date"),
        "commitUrl": c.get("url"),
        "files": collection(
            [{"name": f, "revision": c["id"]} for f in c.get("files", [])] if files else None,
            "file",
            len(c.get("files", [])),
        ),
    }
    return ordered("change", {k: v for k, v in values.items() if v is not None})


def _artifact(fb: FakeBamboo, r: Result, a: dict[str, Any]) -> dict[str, Any]:
    """GUESS on the shape (no capture lists a result's artifacts)."""
    job = a.get("job") or (r.plan.stages[0].jobs[0][0] if r.plan.stages else "JOB1")
    return {
        "name": a["name"],
        "link": {
            "href": f"{fb.url}browse/{r.key}/artifact/{job}/{quote(a['name'])}/",
            "rel": "link",
        },
        "producerJobKey": f"{r.plan.key}-{job}",
        "shared": bool(a.get("shared", True)),
        "size": int(a.get("size", 0)),
        "prettySizeDescription": f"{int(a.get('size', 0))} bytes",
    }


def stage(fb: FakeBamboo, s: StageResult, r: Result, with_jobs: bool) -> dict[str, Any]:
    """A stage result (keys as the flyte capture), its job results when expanded."""
    life = s.life
    values: dict[str, Any] = {
        "name": s.name,
        "description": s.description,
        "id": s.id,
        "lifeCycleState": life,
        "state": s.state,
        "displayClass": life if life != FINISHED else s.state,
        "displayMessage": _stage_message(s),
        "collapsedByDefault": True,
        "manual": s.manual,
        "restartable": s.state == "Failed" and r.finished,
        "runnable": s.manual and life == "NotBuilt" and r.continuable,
    }
    out = ordered("stage", values)
    out["results"] = collection(
        [job_result(fb, j, r) for j in s.jobs] if with_jobs else None, "result", len(s.jobs)
    )
    return out


def _stage_message(s: StageResult) -> str:
    n = len(s.jobs)
    if s.life == "NotBuilt":
        return f"{n} of {n} job not executed" if n == 1 else f"{n} of {n} jobs not executed"
    failed = sum(1 for j in s.jobs if j.state == "Failed")
    if failed:
        return f"{failed} of {n} jobs failed"
    return "1 job passed" if n == 1 else f"{n} jobs passed"


def job_result(fb: FakeBamboo, j: JobResult, r: Result) -> dict[str, Any]:
    """A job result (keys as `_raw_bamboo_api_job_builds.csv`); it shares the plan result's
    number and names it as `parent`."""
    key = f"{j.key}-{r.number}"
    duration = (
        max(0, j.completed_ms - j.started_ms)
        if j.started_ms is not None and j.completed_ms is not None
        else 0
    )
    tz = fb.tz
    values: dict[str, Any] = {
        "expand": "plan,vcsRevisions,artifacts,comments,labels,jiraIssues,variables",
        "link": link(fb, f"result/{key}"),
        "plan": {
            "shortName": j.name,
            "shortKey": j.key.split("-", 1)[1],
            "type": "job",
            "enabled": True,
            "link": link(fb, f"plan/{j.key}"),
            "key": j.key,
            "name": f"{r.plan.name} - {j.name}",
            "planKey": {"key": j.key},
        },
        "planName": j.name,
        "projectName": r.plan.project_name,
        "stage": j.stage,
        "buildResultKey": key,
        "lifeCycleState": j.life,
        "id": j.id,
        "buildStartedTime": iso(j.started_ms, tz),
        "buildCompletedTime": iso(j.completed_ms, tz),
        "buildCompletedDate": iso(j.completed_ms, tz),
        "buildDurationInSeconds": duration // 1000,
        "buildDuration": duration,
        "buildDurationDescription": _duration_words(duration),
        "queueStartedTime": iso(j.queued_ms, tz),
        "buildTestSummary": "No tests found",
        "successfulTestCount": 0,
        "failedTestCount": 0,
        "quarantinedTestCount": 0,
        "skippedTestCount": 0,
        "onceOff": False,
        "buildReason": _reason(fb, r),
        "reasonSummary": _reason(fb, r),
        "parent": link(fb, f"result/{r.key}", "parent"),
        "key": key,
        "planResultKey": {"key": key, "entityKey": {"key": j.key}, "resultNumber": r.number},
        "state": j.state,
        "buildState": j.state,
        "number": r.number,
        "buildNumber": r.number,
    }
    return ordered("job_result", {k: v for k, v in values.items() if v is not None})


def search_entity(p: Plan, stage_name: str, job: tuple[str, str]) -> dict[str, Any]:
    """One job of `search/jobs/<PLAN>` (keys as `_raw_bamboo_api_jobs.csv`): it names the
    plan's branch, the default branch for a master plan."""
    key = f"{p.key}-{job[0]}"
    entity = ordered(
        "search_entity",
        {
            "id": key,
            "key": key,
            "projectName": p.project_name,
            "planName": p.short_name,
            "branchName": p.branch_name or p.default_branch,
            "stageName": stage_name,
            "jobName": job[1],
            "description": "",
            "type": "job",
        },
    )
    return {"id": key, "type": "job", "searchEntity": entity}


OPERATIONS = {
    "canView": True,
    "canEdit": False,
    "canDelete": False,
    "allowedToExecute": False,
    "canExecute": False,
    "allowedToCreateVersion": False,
    "allowedToSetVersionStatus": False,
}


def deployment_project(fb: FakeBamboo, d: DeploymentProject) -> dict[str, Any]:
    """`deploy/project/all`: a project with its environments (GUESS on the shape: no capture
    of it; names and ids as the deployment results' keys show them)."""
    return {
        "id": d.id,
        "oid": f"{d.id:x}",
        "key": {"key": str(d.id)},
        "name": d.name,
        "planKey": {"key": d.plan_key},
        "description": d.description,
        "environments": [
            {
                "id": e.id,
                "key": {"key": f"{d.id}-{e.id}"},
                "name": e.name,
                "description": e.description,
                "deploymentProjectId": d.id,
                "operations": OPERATIONS,
                "position": e.position,
                "configurationState": "TASKED",
            }
            for e in d.environments
        ],
        "operations": OPERATIONS,
    }


def deploy_result(fb: FakeBamboo, d: DeployResult) -> dict[str, Any]:
    """A deployment result (keys as `_raw_bamboo_api_deploy_builds.csv`; times epoch ms)."""
    v = d.version
    items = []
    for (name, pr), art_id in zip(v.items, v.artifact_ids, strict=True):
        prk = {
            "key": pr.key,
            "entityKey": {"key": pr.plan.key},
            "resultNumber": pr.number,
        }
        items.append(
            ordered(
                "version_item",
                {
                    "id": art_id + 130_000,
                    "name": name,
                    "planResultKey": prk,
                    "type": "BAM_ARTIFACT",
                    "label": name,
                    "location": "",
                    "copyPattern": name,
                    "size": 4,
                    "artifact": {
                        "id": art_id,
                        "label": name,
                        "size": 4,
                        "isSharedArtifact": True,
                        "isGloballyStored": False,
                        "linkType": "com.atlassian.bamboo.plugin.artifact.handler.local:"
                        "ServerLocalArtifactHandler",
                        "planResultKey": prk,
                        "archiverType": "NONE",
                    },
                },
            )
        )
    version: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "creationDate": v.created_ms,
        "items": items,
        "operations": OPERATIONS,
        "planBranchName": v.branch,
        "ageZeroPoint": v.created_ms,
    }
    if v.creator:
        version["creatorUserName"] = v.creator
        version["creatorDisplayName"] = v.creator
    env = d.env
    values: dict[str, Any] = {
        "deploymentVersion": ordered("version", version),
        "deploymentVersionName": v.name,
        "id": d.id,
        "deploymentState": d.state,
        "lifeCycleState": d.life,
        "startedDate": d.started_ms,
        "queuedDate": d.queued_ms,
        "executedDate": d.executed_ms,
        "finishedDate": d.finished_ms,
        "reasonSummary": d.reason.replace("{base}", fb.url),
        "key": {
            "key": f"{env.project.id}-{env.id}-{d.id}",
            "entityKey": {"key": f"{env.project.id}-{env.id}"},
            "resultNumber": d.id,
        },
        "agent": {
            "id": 360449,
            "name": "Default Agent",
            "type": "LOCAL",
            "active": True,
            "enabled": True,
            "busy": False,
        },
        "operations": OPERATIONS,
    }
    return ordered("deploy_result", {k: v for k, v in values.items() if v is not None})
