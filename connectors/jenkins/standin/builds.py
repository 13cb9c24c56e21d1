"""Build JSON as ``<build>/api/json`` returns it: actions, causes, git ``BuildData``, change sets.

Key order and action lists follow the recorded builds (see :mod:`.fixtures`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .fixtures import _fixtures
from .names import (
    BUILD_DATA,
    CAUSE_ACTION,
    FREESTYLE_BUILD,
    MAVEN_BUILD,
    PARAMETERS_ACTION,
    PIPELINE_BUILD,
    USER_CAUSE,
    _enc,
    _sha,
)
from .tree import _JMap, _LazyMap

if TYPE_CHECKING:
    from .controller import FakeJenkins
    from .model import _Job


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


def _executor(job: _Job) -> dict[str, Any]:
    return {"_class": "hudson.model.OneOffExecutor" if job.pipeline else "hudson.model.Executor"}


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
    cls = PIPELINE_BUILD if job.pipeline else FREESTYLE_BUILD
    data: dict[str, Any] = {
        "_class": MAVEN_BUILD if job.kind == "maven" else cls,
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
