"""Build → SEI payload. Pure: no I/O, no clock, so it is tested with a record in, a dict out.

SEI keeps the first write of a run and never updates it, so this module never invents a
value: a field the CI server did not give is left out rather than guessed.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from poller import rules
from poller.model import Artifact, Build, Stage, Step

_EXECUTION_NS = uuid.UUID("6f1c2b0e-5c43-4a7e-9a55-3b8f0b5c9e21")


def to_sei(build: Build, server: Any) -> dict[str, Any]:
    """The flat payload SEI's `/v1/custom-cicd` takes; `server` is a ServerConfig."""
    # Rules match the job's own name (as include/exclude do), whatever name SEI is sent.
    fields = rules.apply(server.payload_rules(), build.job_full_name)
    is_cd = fields.cd if fields.cd is not None else bool(build.deployment)
    name = build.report_full_name or build.job_full_name
    payload: dict[str, Any] = {
        "pipeline": build.pipeline,
        "job_full_name": name,
        "qualified_name": build.report_qualified_name or name,
        "instance_name": server.instance_name,
        "instance_guid": server.instance_guid,
        "instance_url": strip_userinfo(server.url),
        "build_number": build.number,
        "start_time": build.start_ms,
        "duration": build.duration_ms,
        "result": build.result,
        "user_id": build.user_id,
        "ci": not is_cd,
        "cd": is_cd,
        "execution_id": execution_id(server.instance_guid, name, build.number),
    }
    payload.update(_triggers(build))
    payload.update(_scm(build))
    payload.update(_stages(build))
    payload.update(_artifacts(build.artifacts))
    if build.url:
        payload["web_url"] = strip_userinfo(build.url)
    if fields.project_name:
        payload["project_name"] = fields.project_name
    if fields.themes is not None:
        payload["themes"] = list(fields.themes)
    cfr = rules.cfr(fields.cfr_status, build.result)
    if cfr is not None:
        payload["cfr_status"] = cfr
    return payload


def execution_id(instance_guid: str, job_full_name: str, number: int) -> str:
    """Stable and unique per build: the same build always gets the same id."""
    return str(uuid.uuid5(_EXECUTION_NS, f"{instance_guid}\n{job_full_name}\n{number}"))


def _triggers(build: Build) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if build.triggers:
        chain = []
        for cause in build.triggers:
            entry: dict[str, Any] = {"id": cause.id, "type": cause.type}
            if cause.job_run_number is not None:
                entry["job_run_number"] = cause.job_run_number
            chain.append(entry)
        out["trigger_chain"] = chain
    if build.params:
        out["job_run_params"] = [
            {"type": p.type, "name": p.name, "value": p.value} for p in build.params
        ]
    return out


def _scm(build: Build) -> dict[str, Any]:
    out: dict[str, Any] = {}
    commits = list(dict.fromkeys(c for c in build.commit_ids if c))
    if commits:
        out["scm_commit_ids"] = commits
    if build.repo_url:
        repo = normalize_repo_url(build.repo_url)
        if repo:
            out["repo_url"] = repo
    if build.branch:
        out["branch_name"] = build.branch
    return out


def _stages(build: Build) -> dict[str, Any]:
    if not build.stages:
        return {}
    return {"job_run": {"stages": [_stage(s) for s in build.stages]}}


def _node(node: Stage | Step) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node.id,
        "displayName": node.name,
        "displayDescription": node.description,
        "result": node.result,
        "state": node.state,
        "durationInMillis": int(node.duration_ms or 0),
    }
    if node.start_ms:
        out["startTime"] = iso_time(node.start_ms)
    return out


def _stage(stage: Stage) -> dict[str, Any]:
    out = _node(stage)
    out["steps"] = [_node(step) for step in stage.steps]
    return out


def _artifacts(artifacts: tuple[Artifact, ...]) -> dict[str, Any]:
    if not artifacts:
        return {}
    return {
        "artifacts": [
            {
                "input": not a.output,
                "output": a.output,
                "type": a.type,
                "location": strip_userinfo(a.location),
                "name": a.name,
                "qualifier": a.qualifier,
            }
            for a in artifacts
        ]
    }


def iso_time(ms: int) -> str:
    """Blue Ocean's format (`2024-05-01T10:00:00.123+0000`), which SEI's plugin already sends."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def strip_userinfo(url: str) -> str:
    """Drop `user:token@` from a URL: credentials never leave in a payload."""
    if "@" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_SCP = re.compile(r"^(?:[^@/\s]+@)?([^:/\s]+):(?!//)(.+)$")


# Keyed by the remote URL as Jenkins reports it: one per repository a server builds, not per
# build. 1,024 covers a large organisation's repositories; at ~350 bytes an entry it stays
# under ~360 KB however long the daemon runs.
@lru_cache(maxsize=1024)
def normalize_repo_url(url: str) -> str | None:
    """A form SEI's repo parser matches: `https://host/org/repo.git` or `git@host:org/repo.git`."""
    url = url.strip()
    if not url:
        return None
    m = _SCP.match(url)
    if m and "://" not in url:
        path = m.group(2).strip("/")
        return f"git@{m.group(1)}:{_dot_git(path)}"
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    path = parts.path.strip("/")
    if not path:
        return None
    if parts.scheme == "ssh":
        return f"git@{parts.hostname}:{_dot_git(path)}"
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}/{_dot_git(path)}"


def _dot_git(path: str) -> str:
    return path if path.endswith(".git") else path + ".git"
