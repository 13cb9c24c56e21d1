"""GoCD's answers into the neutral records, without I/O: pure functions, tested alone.

What finished means, which result a pipeline instance has, who triggered it, what its Git
materials say, how long its stages ran, and how a run is numbered for SEI. The connector
(`connector.py`) fetches; this module decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from poller.model import Cause, Param, Stage, Step

FINAL = ("Passed", "Failed", "Cancelled")
RESULTS = {"Passed": "SUCCESS", "Failed": "FAILURE", "Cancelled": "ABORTED"}
# A counter reset (a pipeline recreated under the same name) starts a new generation; a
# run's number is generation * GEN + its number within the generation, so SEI, which keeps
# the first write of every (job, number), gets the new runs as new runs. GoCD's counters
# stay far below this; a Java long (SEI's build_number) holds 9 million generations.
GEN = 10**12
STAGE_FACTOR = 1000  # granularity "stage": pipeline counter * 1000 + stage counter
AUTOMATIC = ("changes", "", None)  # `approved_by` of a stage nobody approved by hand
TIMER_USER = "timer"  # GoCD's `Username.CRUISE_TIMER`: a timer trigger is "forced" by it
_URL = re.compile(r"URL:\s*(?P<url>.+?),\s*Branch:\s*(?P<branch>.+?)\s*$")
_DEPENDENCY = re.compile(r"^(?P<p>[^/]+)/(?P<c>\d+)/(?P<s>[^/]+)/(?P<sc>\d+)$")


# -- numbers ----------------------------------------------------------------------------


def generation(boundaries: Sequence[int], scheduled_ms: int) -> int:
    """How many counter resets came before an instance scheduled at `scheduled_ms`."""
    return sum(1 for b in boundaries if b <= scheduled_ms)


def number(boundaries: Sequence[int], scheduled_ms: int, base: int) -> int:
    return generation(boundaries, scheduled_ms) * GEN + base


def decode(n: int) -> tuple[int, int]:
    """(generation, number within it)."""
    return divmod(n, GEN)


def stage_base(counter: int, stage_counter: int) -> int | None:
    """`counter * 1000 + stage counter`; None when the stage counter does not fit."""
    if not 0 < stage_counter < STAGE_FACTOR:
        return None
    return counter * STAGE_FACTOR + stage_counter


def reset_boundary(instances: Sequence[dict[str, Any]]) -> int | None:
    """Where a counter reset shows in a history page (newest first): the schedule time of
    the oldest instance of the newest generation, if the counters go up anywhere going down
    the page. None: no reset in sight."""
    prev: tuple[int, int] | None = None
    for inst in instances:
        counter, at = _int(inst.get("counter")), _int(inst.get("scheduled_date"))
        if counter is None or at is None:
            continue
        if prev is not None and counter >= prev[0]:
            return prev[1]
        prev = (counter, at)
    return None


# -- finished? ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a pipeline instance stands: `running`, `waiting` (every stage that ran passed
    and a later one was never scheduled: a manual gate, `gate` names it, waited on since
    `since`), or `done`."""

    state: str
    since: int | None = None
    gate: str | None = None


def progress(inst: dict[str, Any]) -> Progress:
    """Finished means every stage that was scheduled has a final result and every one of
    its jobs completed; a stage after a failed or cancelled one never runs on its own."""
    stages = [s for s in inst.get("stages") or [] if isinstance(s, dict)]
    ran = [s for s in stages if s.get("scheduled")]
    if not ran or inst.get("preparing_to_schedule"):
        return Progress("running")
    for s in ran:
        if s.get("result") not in FINAL:
            return Progress("running")
        if s.get("status") is not None and s.get("status") not in FINAL:
            return Progress("running")
        if any(j.get("state") != "Completed" for j in s.get("jobs") or []):
            return Progress("running")
    if any(s.get("result") in ("Failed", "Cancelled") for s in ran):
        return Progress("done")
    waiting = [s for s in stages if not s.get("scheduled")]
    if not waiting:
        return Progress("done")
    # GUESS: history gives no finish time, so the wait is counted from when the last stage
    # that ran had its jobs scheduled (early by at most that stage's own duration).
    last = ran[-1]
    times = [_int(j.get("scheduled_date")) for j in last.get("jobs") or []]
    since = max([t for t in times if t is not None] or [_int(inst.get("scheduled_date")) or 0])
    return Progress("waiting", since, str(waiting[0].get("name")))


def result_of(stages: Iterable[dict[str, Any]]) -> tuple[str, str]:
    """(SEI result, GoCD's own word) of the stages that ran: the worst one."""
    results = [str(s.get("result")) for s in stages if s.get("scheduled", True)]
    for raw in ("Failed", "Cancelled", "Passed"):
        if raw in results:
            return RESULTS[raw], raw
    return "NOT_BUILT", "Unknown"


def job_result(raw: Any) -> str:
    return RESULTS.get(str(raw), "NOT_BUILT")


# -- who and why --------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """A dependency material's revision `A-PIPELINE/2066/smoke-test-dev/1`."""

    pipeline: str
    counter: int
    stage: str
    stage_counter: int
    at: int  # the modification's time: when the upstream stage passed


def upstreams(cause: dict[str, Any]) -> list[Upstream]:
    """The upstream stage runs that triggered the instance (changed dependency materials)."""
    out = []
    for rev in cause.get("material_revisions") or []:
        material = rev.get("material") or {}
        if material.get("type") != "Pipeline" or not rev.get("changed", True):
            continue
        for mod in rev.get("modifications") or []:
            m = _DEPENDENCY.match(str(mod.get("revision") or ""))
            if m:
                out.append(
                    Upstream(
                        m["p"],
                        int(m["c"]),
                        m["s"],
                        int(m["sc"]),
                        _int(mod.get("modified_time")) or 0,
                    )
                )
                break
    return out


def trigger_kind(cause: dict[str, Any]) -> str:
    """`user`, `timer`, `upstream` or `scm`, in that order of precedence."""
    if cause.get("trigger_forced"):
        return "timer" if str(cause.get("approver") or "") == TIMER_USER else "user"
    message = str(cause.get("trigger_message") or "")
    changed_scm = any(
        (r.get("material") or {}).get("type") != "Pipeline" and r.get("changed")
        for r in cause.get("material_revisions") or []
    )
    if message.lower().startswith("triggered by") and upstreams(cause):
        return "upstream"
    if not changed_scm and upstreams(cause):
        return "upstream"
    return "scm"


def own_trigger(cause: dict[str, Any]) -> tuple[str, list[Cause]]:
    """Who or what started an instance, when it was not an upstream pipeline, in the words
    Jenkins' connector uses: a user, `SCMTrigger`, `TimerTrigger`."""
    kind = trigger_kind(cause)
    if kind == "timer":
        return "TimerTrigger", [Cause("TimerTriggerCause", TIMER_USER)]
    if kind == "user":
        who = str(cause.get("approver") or "") or "SYSTEM"
        return who, [Cause("UserIdCause", who)]
    return "SCMTrigger", [Cause("SCMTriggerCause", "SCMTrigger")]


def approver_trigger(approved_by: Any) -> tuple[str, list[Cause]] | None:
    """A stage someone approved or re-ran: that user (None: an automatic stage)."""
    if approved_by in AUTOMATIC:
        return None
    who = str(approved_by)
    if who == TIMER_USER:
        return "TimerTrigger", [Cause("TimerTriggerCause", TIMER_USER)]
    return who, [Cause("UserIdCause", who)]


# -- what was built -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scm:
    commits: tuple[str, ...]
    repo_url: str | None
    branch: str | None


def scm(cause: dict[str, Any]) -> Scm:
    """Every Git material's revisions (the changes since the previous run, the built one
    first); the repository and branch of the first Git material that changed (else the
    first Git material), from its description `URL: <url>, Branch: <branch>`."""
    commits: list[str] = []
    chosen: tuple[str | None, str | None] | None = None
    first: tuple[str | None, str | None] | None = None
    for rev in cause.get("material_revisions") or []:
        material = rev.get("material") or {}
        if material.get("type") != "Git":
            continue
        for mod in rev.get("modifications") or []:
            if mod.get("revision"):
                commits.append(str(mod["revision"]))
        where = _where(material)
        first = first or where
        if rev.get("changed") and chosen is None:
            chosen = where
    url, branch = chosen or first or (None, None)
    return Scm(tuple(dict.fromkeys(commits)), url, branch)


def _where(material: dict[str, Any]) -> tuple[str | None, str | None]:
    m = _URL.match(str(material.get("description") or ""))
    if m:
        return m["url"].strip(), m["branch"].strip()
    name = str(material.get("name") or "")
    return (name if "://" in name or name.startswith("git@") else None), None


# -- how long -----------------------------------------------------------------------------


def transitions(job: dict[str, Any]) -> dict[str, int]:
    """A job's state → when it entered it (epoch ms; ISO strings read too)."""
    out: dict[str, int] = {}
    for t in job.get("job_state_transitions") or []:
        when = _ms(t.get("state_change_time"))
        if when is not None and t.get("state"):
            out[str(t["state"])] = when
    return out


def live_jobs(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage's job runs that count: not one rescheduled because its agent was lost (its
    replacement, a job run of the same name, is the one), the latest of each name."""
    by_name: dict[str, dict[str, Any]] = {}
    for job in stage.get("jobs") or []:
        if not isinstance(job, dict) or job.get("state") == "Rescheduled":
            continue
        by_name[str(job.get("name"))] = job
    return list(by_name.values())


def span(stage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(start, finish) of a stage run (stage instance API): its first job building, its
    last job completed."""
    starts, ends = [], []
    for job in live_jobs(stage):
        t = transitions(job)
        start = t.get("Building") or t.get("Preparing") or t.get("Assigned") or t.get("Scheduled")
        if start is not None:
            starts.append(start)
        if t.get("Completed") is not None:
            ends.append(t["Completed"])
    finish = max(ends) if ends else _ms(stage.get("last_transitioned_time"))
    return (min(starts) if starts else _ms(stage.get("scheduled_at"))), finish


def steps(stage: dict[str, Any], prefix: str) -> tuple[Step, ...]:
    out = []
    for job in live_jobs(stage):
        t = transitions(job)
        start = t.get("Building") or t.get("Scheduled") or _ms(job.get("scheduled_date"))
        end = t.get("Completed")
        name = str(job.get("name"))
        out.append(
            Step(
                id=f"{prefix}/{name}",
                name=name,
                description=name,
                result=job_result(job.get("result")),
                state="FINISHED",
                start_ms=start,
                duration_ms=max(0, end - start) if start is not None and end else 0,
            )
        )
    return tuple(out)


def stage_record(
    pipeline: str,
    counter: int,
    summary: dict[str, Any],
    detail: dict[str, Any] | None,
) -> Stage:
    """One stage of an instance: the latest run (with its jobs as steps when the stage
    instance API gave them), or a stage never scheduled (NOT_BUILT, skipped)."""
    name = str(summary.get("name"))
    if not summary.get("scheduled"):
        return Stage(
            id=f"{pipeline}/{counter}/{name}",
            name=name,
            description=name,
            result="NOT_BUILT",
            state="SKIPPED",
            start_ms=None,
            duration_ms=0,
        )
    sc = str(summary.get("counter") or "1")
    prefix = f"{pipeline}/{counter}/{name}/{sc}"
    source = detail if detail is not None else summary
    start, finish = span(source) if detail is not None else (_first_scheduled(summary), None)
    return Stage(
        id=prefix,
        name=name,
        description=name,
        result=RESULTS.get(str(source.get("result")), "NOT_BUILT"),
        state="FINISHED",
        start_ms=start,
        duration_ms=max(0, finish - start) if start is not None and finish else 0,
        steps=steps(source, prefix),
    )


def _first_scheduled(stage: dict[str, Any]) -> int | None:
    times = [_ms(j.get("scheduled_date")) for j in stage.get("jobs") or []]
    found = [t for t in times if t is not None]
    return min(found) if found else None


# -- parameters ---------------------------------------------------------------------------


def params(pairs: Iterable[tuple[str, Any]]) -> Iterator[Param]:
    for name, value in pairs:
        if value is not None and value != "":
            yield Param("StringParameterValue", name, str(value))


# -- plumbing -----------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _ms(value: Any) -> int | None:
    """Epoch ms, or an ISO string (the dashboard, agent job history) in epoch ms."""
    n = _int(value)
    if n is not None:
        return n
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def counter_of(value: Any) -> int | None:
    """A counter: an int in some answers, a string (`"1"`) in others."""
    return _int(value)


def ms(value: Any) -> int | None:
    return _ms(value)
