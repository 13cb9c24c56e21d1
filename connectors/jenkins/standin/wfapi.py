"""Pipeline Stage View (``wfapi``): runs, stages and steps shaped like the recorded answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fixtures import _fixtures
from .names import _WF_STATUS, _now_ms

if TYPE_CHECKING:
    from .model import _Job, _Run


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


def _wf_run(context_path: str, job: _Job, rec: _Run, full_stages: bool) -> dict[str, Any]:
    """``<build>/wfapi/describe`` (RunExt), shaped like the recorded ``workflow.json``."""
    now = _now_ms()
    base = f"{context_path}/{job.rel_url}{rec.number}/"
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
