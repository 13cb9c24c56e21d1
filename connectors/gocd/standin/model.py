"""The stand-in GoCD's model (pipelines, their instances, stage runs, job runs) and how each
renders in GoCD's JSON shapes.

Key names and their order follow the recorded answers in ``data/`` (see ``data/README.md``):
pipeline history and instances (v1) as ``api-docs/pipeline_history.extracted.json``, stage
instances (v3) as ``api-docs/stage_instance.extracted.json``, stage history (v3) as
``api-docs/stage_history.extracted.json``, the dashboard (v4) as
``api-docs/dashboard.extracted.json``; a stage not scheduled yet as the captures in
``gocd-api/history-a-pipeline.json`` show it.

Ids: every pipeline instance gets an id from one server-wide sequence when it is scheduled,
and so does every stage run: those ids, not the counters, are the cursors GoCD's history
APIs page by (`after`, `before`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FINAL = ("Passed", "Failed", "Cancelled")
# The job states GoCD walks through, in order (`job_state_transitions`).
JOB_STATES = ("Scheduled", "Assigned", "Preparing", "Building", "Completing", "Completed")


def iso(ms: int | None) -> str | None:
    """The dashboard's time format: ISO 8601 in UTC, seconds only (`2018-11-21T09:43:07Z`)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StageConfig:
    """A stage as the pipeline's configuration has it: `manual` is an approval gate."""

    name: str
    manual: bool = False
    jobs: tuple[str, ...] = ()  # empty: one job named like the stage


@dataclass(frozen=True)
class Material:
    """A Git material (`url`, `branch`), or a dependency on another pipeline's stage
    (`type="Pipeline"`, `url` = the upstream pipeline, `branch` = its stage)."""

    url: str
    branch: str = "master"
    type: str = "Git"
    name: str | None = None  # GoCD names an unnamed Git material by its URL

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.type}|{self.url}|{self.branch}".encode()).hexdigest()

    def render(self) -> dict[str, Any]:
        if self.type == "Pipeline":
            description = self.url
        else:
            description = f"URL: {self.url}, Branch: {self.branch}"
        return {
            "name": self.name or self.url,
            "fingerprint": self.fingerprint,
            "type": self.type,
            "description": description,
        }


@dataclass(frozen=True)
class Modification:
    revision: str
    modified_ms: int
    user_name: str = "Unknown"
    comment: str = "Unknown"


@dataclass(frozen=True)
class Revision:
    """One material's revisions in a build cause; `changed`: it is why the run happened."""

    material: Material
    modifications: tuple[Modification, ...]
    changed: bool = True


@dataclass(frozen=True)
class BuildCause:
    message: str
    forced: bool
    approver: str
    revisions: tuple[Revision, ...] = ()


@dataclass
class JobRun:
    id: int
    name: str
    scheduled_ms: int
    state: str = "Scheduled"
    result: str = "Unknown"
    agent: str | None = None
    transitions: list[tuple[str, int]] = field(default_factory=list)
    # A job whose agent was lost: GoCD marks it ignored and schedules it again (a new job
    # run of the same name). Pipeline history hides it; the stage instance shows it (GUESS).
    ignored: bool = False
    rerun: bool = False


@dataclass
class StageRun:
    id: int
    name: str
    counter: int
    approval_type: str  # "success" (automatic) or "manual"
    approved_by: str  # "changes" for an automatic stage; a user for a manual or forced one
    scheduled_ms: int
    jobs: list[JobRun]
    result: str = "Unknown"
    cancelled_by: str | None = None
    rerun_of_counter: int | None = None
    last_ms: int = 0

    def live_jobs(self) -> list[JobRun]:
        return [j for j in self.jobs if not j.ignored]

    @property
    def status(self) -> str:
        """GoCD's stage state: the result once final, else Building (Failing once a job
        failed while others still run)."""
        if self.result in FINAL:
            return self.result
        if any(j.result == "Failed" for j in self.live_jobs()):
            return "Failing"
        return "Building"


@dataclass
class Instance:
    """One pipeline instance (a run of the pipeline) and all its stage runs, re-runs too."""

    id: int
    pipeline: str
    counter: int
    label: str
    scheduled_ms: int
    cause: BuildCause
    stages: tuple[StageConfig, ...]  # the configuration's stages when it was scheduled
    runs: list[StageRun] = field(default_factory=list)
    comment: str | None = None

    def latest(self, stage: str) -> StageRun | None:
        found = [r for r in self.runs if r.name == stage]
        return max(found, key=lambda r: r.counter) if found else None

    def active(self) -> bool:
        return any(r.result not in FINAL for r in self.runs)


@dataclass
class Pipeline:
    name: str
    group: str
    stages: tuple[StageConfig, ...]
    materials: tuple[Material, ...]
    label_template: str = "${COUNT}"
    counter: int = 0
    updated: int = 0  # the dashboard's `last_updated_timestamp`
    paused: bool = False


# -- rendering ----------------------------------------------------------------------------


class Render:
    """GoCD's JSON for model objects, for one answer; `base` is `<server>/go/`."""

    def __init__(self, base: str) -> None:
        self.base = base

    def cause(self, c: BuildCause) -> dict[str, Any]:
        return {
            "trigger_message": c.message,
            "trigger_forced": c.forced,
            "approver": c.approver,
            "material_revisions": [
                {
                    "changed": r.changed,
                    "material": r.material.render(),
                    "modifications": [
                        {
                            "revision": m.revision,
                            "modified_time": m.modified_ms,
                            "user_name": m.user_name,
                            "comment": m.comment,
                            "email_address": None,
                        }
                        for m in r.modifications
                    ],
                }
                for r in c.revisions
            ],
        }

    def instance(self, inst: Instance) -> dict[str, Any]:
        """A pipeline instance as history (v1) and instance (v1) show it: the latest run of
        each stage, the stages not scheduled yet as the configuration lists them."""
        stages: list[dict[str, Any]] = []
        for cfg in inst.stages:
            run = inst.latest(cfg.name)
            if run is None:
                stages.append(
                    {
                        "rerun_of_counter": None,
                        "name": cfg.name,
                        "counter": "1",
                        "scheduled": False,
                        "approval_type": None,  # as the capture shows it (GUESS: still so)
                        "approved_by": None,
                        "operate_permission": True,
                        "can_run": False,
                        "jobs": [],
                    }
                )
                continue
            stages.append(
                {
                    "result": run.result,
                    "status": run.status,
                    "rerun_of_counter": run.rerun_of_counter,
                    "name": run.name,
                    "counter": str(run.counter),
                    "scheduled": True,
                    "approval_type": run.approval_type,
                    "approved_by": run.approved_by,
                    "operate_permission": True,
                    "can_run": True,
                    "jobs": [
                        {
                            "name": j.name,
                            "scheduled_date": j.scheduled_ms,
                            "state": j.state,
                            "result": j.result,
                        }
                        for j in run.live_jobs()
                    ],
                }
            )
        return {
            "name": inst.pipeline,
            "counter": inst.counter,
            "label": inst.label,
            "natural_order": float(inst.counter),
            "can_run": True,
            "preparing_to_schedule": False,
            "comment": inst.comment,
            "scheduled_date": inst.scheduled_ms,
            "build_cause": self.cause(inst.cause),
            "stages": stages,
        }

    def stage(self, inst: Instance, run: StageRun) -> dict[str, Any]:
        """A stage run as the stage instance API (v3) shows it, every job run included."""
        out: dict[str, Any] = {
            "name": run.name,
            "counter": run.counter,
            "approval_type": run.approval_type,
            "approved_by": run.approved_by,
        }
        if run.cancelled_by is not None:
            out["cancelled_by"] = run.cancelled_by  # as stage history has it (GUESS here)
        out.update(
            {
                "scheduled_at": run.scheduled_ms,
                "last_transitioned_time": run.last_ms,
                "result": run.result,
                "rerun_of_counter": run.rerun_of_counter,
                "fetch_materials": True,
                "clean_working_directory": False,
                "artifacts_deleted": False,
                "pipeline_name": inst.pipeline,
                "pipeline_counter": inst.counter,
                "jobs": [
                    {
                        "name": j.name,
                        "state": j.state,
                        "result": j.result,
                        "scheduled_date": j.scheduled_ms,
                        "rerun": j.rerun,
                        "original_job_id": None,
                        "agent_uuid": j.agent,
                        "pipeline_name": None,
                        "pipeline_counter": None,
                        "stage_name": None,
                        "stage_counter": None,
                        "job_state_transitions": [
                            {"state": s, "state_change_time": t} for s, t in j.transitions
                        ],
                    }
                    for j in run.jobs
                ],
            }
        )
        return out

    def stage_history_item(self, inst: Instance, run: StageRun) -> dict[str, Any]:
        out: dict[str, Any] = {"name": run.name, "approved_by": run.approved_by}
        if run.cancelled_by is not None:
            out["cancelled_by"] = run.cancelled_by
        out.update(
            {
                "jobs": [
                    {
                        "name": j.name,
                        "result": j.result,
                        "state": j.state,
                        "scheduled_date": j.scheduled_ms,
                    }
                    for j in run.live_jobs()
                ],
                "pipeline_counter": inst.counter,
                "pipeline_name": inst.pipeline,
                "result": run.result,
                "approval_type": run.approval_type,
                "counter": str(run.counter),
                "rerun_of_counter": run.rerun_of_counter,
            }
        )
        return out

    def dashboard_instance(self, inst: Instance) -> dict[str, Any]:
        """An instance on the dashboard (v4): its stages that were scheduled (GUESS: the
        ones behind a gate not yet passed are left out), times as ISO strings."""
        stages = []
        for cfg in inst.stages:
            run = inst.latest(cfg.name)
            if run is None:
                continue
            stages.append(
                {
                    "_links": {
                        "self": {
                            "href": f"{self.base}api/stages/{inst.pipeline}/{inst.counter}"
                            f"/{run.name}/{run.counter}"
                        }
                    },
                    "name": run.name,
                    "counter": str(run.counter),
                    "status": run.status,
                    "approved_by": run.approved_by,
                    "scheduled_at": iso(run.scheduled_ms),
                }
            )
        c = inst.cause
        return {
            "_links": {
                "self": {"href": f"{self.base}api/pipelines/{inst.pipeline}/{inst.counter}"}
            },
            "label": inst.label,
            "counter": inst.counter,
            "triggered_by": c.message if c.forced else "Triggered by changes",
            "scheduled_at": iso(inst.scheduled_ms),
            "_embedded": {"stages": stages},
        }

    def dashboard_pipeline(self, p: Pipeline, instances: list[Instance]) -> dict[str, Any]:
        return {
            "_links": {
                "self": {"href": f"{self.base}api/pipelines/{p.name}/history"},
                "doc": {"href": "https://api.go.cd/current/#pipelines"},
            },
            "name": p.name,
            "last_updated_timestamp": p.updated,
            "locked": False,
            "pause_info": {
                "paused": p.paused,
                "paused_by": None,
                "pause_reason": None,
            },
            "can_operate": True,
            "can_administer": True,
            "can_unlock": True,
            "can_pause": True,
            "from_config_repo": False,
            "_embedded": {"instances": [self.dashboard_instance(i) for i in instances]},
        }
