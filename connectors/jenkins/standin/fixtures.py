"""The recorded Jenkins answers in ``connectors/jenkins/standin/data/`` that shapes are built from.

The data files live in the ``poller.standins`` package (``data/``, shipped as package data), next
to the README that is their attribution.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from importlib import resources
from typing import Any

from .names import BUILD_DATA, CAUSE_ACTION, FREESTYLE_BUILD, PIPELINE_BUILD

_DATA = resources.files(__package__) / "data"


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
