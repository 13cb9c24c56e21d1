"""``FakeGoCD``: the stand-in server, its editable model, its faults and its request log."""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Iterable, Sequence

from poller.standins.http import Standin

from .model import (
    FINAL,
    BuildCause,
    Instance,
    JobRun,
    Material,
    Modification,
    Pipeline,
    Revision,
    StageConfig,
    StageRun,
)
from .server import VERSIONS, _Handler

SECOND = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def changes(
    *revisions: tuple[Material, Sequence[Modification]]
    | tuple[Material, Sequence[Modification], bool],
    user: str | None = None,
) -> BuildCause:
    """A build cause of material changes: "modified by <the first modification's user>"."""
    revs = tuple(Revision(r[0], tuple(r[1]), bool(r[2]) if len(r) > 2 else True) for r in revisions)
    who = user
    if who is None:
        mods = [m for r in revs if r.changed for m in r.modifications]
        who = mods[0].user_name if mods else "Unknown"
    return BuildCause(f"modified by {who}", False, "changes", revs)


def forced(user: str, revisions: Iterable[Revision] = (), display: str | None = None) -> BuildCause:
    """ "Forced by <display name>", the approver the user's login (`BuildCause.createManualForced`).
    A timer trigger is this with the user `timer` (`TimedBuild`, `Username.CRUISE_TIMER`)."""
    return BuildCause(f"Forced by {display or user}", True, user, tuple(revisions))


def timer(revisions: Iterable[Revision] = ()) -> BuildCause:
    return forced("timer", revisions)


class FakeGoCD(Standin):
    """A GoCD server on 127.0.0.1 (its API under ``<url>api/``, ``url`` ending in ``/go/``)
    with an editable model. Mutators may be called from any thread while it answers; they and
    every answer hold one lock. Usable as a context manager.

    Auth: ``token`` as ``Authorization: Bearer``, or ``username`` + ``password`` as HTTP
    basic, on every path; anything else is 401. ``version`` is what ``api/version`` says.
    """

    thread_prefix = "fake-gocd"

    def __init__(
        self,
        *,
        context_path: str = "/go",
        token: str = "gocd-secret-token",
        username: str = "sei-bot",
        password: str = "gocd-secret-password",
        display_name: str = "SEI poller",
        version: str = "23.1.0",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(context_path, _Handler, tls)
        self.token, self.username, self.password = token, username, password
        self.display_name = display_name
        self.version = version
        self.pipelines: dict[str, Pipeline] = {}
        self.instances: list[Instance] = []  # every instance ever, renamed and deleted too
        self._by_name: dict[str, list[Instance]] = {}  # by pipeline name, oldest first
        self._by_counter: dict[tuple[str, int], Instance] = {}  # the newest with the counter
        self.loading = False  # the dashboard answers 202 until GoCD has loaded it
        # The Accept version each API serves, by API (`server.VERSIONS`): an older GoCD
        # serves older ones, and answers the newer ones with its HTML 404.
        self.served: dict[str, int] = dict(VERSIONS)
        self._pipeline_ids = itertools.count(1)
        self._stage_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._updated = 0

    # -- requests (lifecycle and request log: Standin) ---------------------------------------
    def count(self, pattern: str = "") -> int:
        with self._req_lock:
            return sum(1 for r in self.requests if pattern in r.path)

    # -- configuration -----------------------------------------------------------------------
    def add_pipeline(
        self,
        name: str,
        group: str = "defaultGroup",
        stages: Sequence[StageConfig | str] = ("build",),
        materials: Sequence[Material] = (),
        *,
        label: str = "${COUNT}",
    ) -> Pipeline:
        with self._lock:
            if name in self.pipelines:
                raise ValueError(f"pipeline {name} exists")
            cfgs = tuple(s if isinstance(s, StageConfig) else StageConfig(s) for s in stages)
            p = Pipeline(name, group, cfgs, tuple(materials), label)
            self.pipelines[name] = p
            self._touch(p)
            return p

    def delete_pipeline(self, name: str) -> None:
        """Gone from the configuration: off the dashboard, its history answers 404 (GUESS);
        its instances stay in GoCD's database under the name."""
        with self._lock:
            self.pipelines.pop(name)

    def recreate_pipeline(self, name: str) -> Pipeline:
        """Delete the pipeline and create one with the same name: its counter starts again
        at 1 (GUESS), and the old instances still show in its history (GUESS: they stay in
        the database under the name, and history selects by name)."""
        with self._lock:
            old = self.pipelines.pop(name)
            return self.add_pipeline(
                name, old.group, old.stages, old.materials, label=old.label_template
            )

    def rename_pipeline(self, old: str, new: str) -> Pipeline:
        """Renaming is a new pipeline for GoCD: the new name counts from 1, the old name's
        history stays behind (and answers 404, as for a deleted pipeline: GUESS)."""
        with self._lock:
            p = self.pipelines.pop(old)
            return self.add_pipeline(new, p.group, p.stages, p.materials, label=p.label_template)

    def set_stages(self, name: str, stages: Sequence[StageConfig | str]) -> None:
        with self._lock:
            p = self.pipelines[name]
            p.stages = tuple(s if isinstance(s, StageConfig) else StageConfig(s) for s in stages)
            self._touch(p)

    # -- running pipelines ---------------------------------------------------------------------
    def trigger(
        self,
        name: str,
        cause: BuildCause | None = None,
        *,
        at: int | None = None,
        label: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Schedule an instance (its counter and id now) and its first stage; returns the
        counter. The default cause: forced by the stand-in's user."""
        with self._lock:
            p = self.pipelines[name]
            when = now_ms() if at is None else at
            p.counter += 1
            c = cause or forced(self.username)
            inst = Instance(
                next(self._pipeline_ids),
                name,
                p.counter,
                label if label is not None else _label(p, c),
                when,
                c,
                p.stages,
                comment=comment,
            )
            self.instances.append(inst)
            self._by_name.setdefault(name, []).append(inst)
            self._by_counter[(name, inst.counter)] = inst
            first = p.stages[0]
            approver = c.approver if c.forced else "changes"
            self._schedule(inst, first, approver, when)
            self._touch(p)
            return p.counter

    def instance(self, name: str, counter: int) -> Instance:
        """The newest instance of `name` with this counter (after a reset, the new one)."""
        found = self._by_counter.get((name, counter))
        if found is None:
            raise LookupError(f"no instance {name}/{counter}")
        return found

    def history(self, name: str) -> list[Instance]:
        """Every instance ever scheduled under `name` (all generations), newest first."""
        return list(reversed(self._by_name.get(name, [])))

    def begin(self, name: str, counter: int, stage: str, *, at: int | None = None) -> None:
        """The stage's jobs go to agents and start building."""
        with self._lock:
            run = self._run(name, counter, stage)
            when = now_ms() if at is None else at
            for j in run.live_jobs():
                if j.state == "Scheduled":
                    self._walk(j, "Building", when)
            self._touch(self.pipelines.get(name))

    def finish(
        self,
        name: str,
        counter: int,
        stage: str,
        result: str = "Passed",
        *,
        at: int | None = None,
        jobs: dict[str, str] | None = None,
    ) -> None:
        """The stage's jobs complete (`jobs`: a result per job name, else `result` for all);
        the next stage is scheduled at once when this one passed and it needs no approval."""
        with self._lock:
            inst = self.instance(name, counter)
            run = self._run(name, counter, stage)
            when = now_ms() if at is None else at
            for j in run.live_jobs():
                if j.state == "Completed":
                    continue  # passed in an earlier run: a re-run of failed jobs keeps it
                if j.state != "Building":
                    self._walk(j, "Building", when - 2 * SECOND)
                j.result = (jobs or {}).get(j.name, result)
                self._walk(j, "Completed", when)
            results = [j.result for j in run.live_jobs()]
            run.result = (
                "Failed"
                if "Failed" in results
                else "Cancelled"
                if "Cancelled" in results
                else "Passed"
            )
            run.last_ms = when
            self._next(inst, run, when)
            self._touch(self.pipelines.get(name))

    def run_stage(
        self,
        name: str,
        counter: int,
        stage: str,
        result: str = "Passed",
        *,
        at: int | None = None,
        seconds: int = 60,
        jobs: dict[str, str] | None = None,
    ) -> int:
        """Build and finish a scheduled stage: its jobs start 5 s after `at` and complete
        `seconds` later. Returns when it completed."""
        when = now_ms() if at is None else at
        run = self._run(name, counter, stage)
        start = max(when, run.scheduled_ms) + 5 * SECOND
        self.begin(name, counter, stage, at=start)
        done = start + seconds * SECOND
        self.finish(name, counter, stage, result, at=done, jobs=jobs)
        return done

    def run(
        self,
        name: str,
        cause: BuildCause | None = None,
        *,
        at: int | None = None,
        results: dict[str, str] | None = None,
        seconds: int = 60,
        label: str | None = None,
    ) -> int:
        """Trigger an instance and run its stages in order until one fails, is cancelled or
        waits at a manual gate; `results` per stage (default Passed). Returns the counter."""
        when = now_ms() - 3_600_000 if at is None else at
        counter = self.trigger(name, cause, at=when, label=label)
        with self._lock:
            inst = self.instance(name, counter)
        while True:
            pending = [r for r in inst.runs if r.result not in FINAL]
            if not pending:
                break
            run = pending[0]
            result = (results or {}).get(run.name, "Passed")
            if result == "Cancelled":
                self.begin(name, counter, run.name, at=when + 5 * SECOND)
                self.cancel(name, counter, run.name, at=when + (seconds // 2) * SECOND)
                break
            when = self.run_stage(name, counter, run.name, result, at=when, seconds=seconds)
        return counter

    def approve(
        self, name: str, counter: int, stage: str, user: str, *, at: int | None = None
    ) -> None:
        """A person passes the manual gate in front of `stage`: it is scheduled."""
        with self._lock:
            inst = self.instance(name, counter)
            cfg = _stage_config(inst, stage)
            if inst.latest(stage) is not None:
                raise ValueError(f"{name}/{counter}/{stage} has run; rerun it instead")
            self._schedule(inst, cfg, user, now_ms() if at is None else at)
            self._touch(self.pipelines.get(name))

    def rerun(
        self,
        name: str,
        counter: int,
        stage: str,
        user: str,
        *,
        at: int | None = None,
        failed_jobs: bool = False,
    ) -> int:
        """Run a stage of an instance again (its counter + 1), scheduled by `user`;
        `failed_jobs` re-runs only the failed jobs (the new run names the one it re-runs in
        `rerun_of_counter`). Returns the new stage counter."""
        with self._lock:
            inst = self.instance(name, counter)
            cfg = _stage_config(inst, stage)
            prev = inst.latest(stage)
            if prev is None or prev.result not in FINAL:
                raise ValueError(f"{name}/{counter}/{stage} is not finished")
            when = now_ms() if at is None else at
            run = self._schedule(inst, cfg, user, when)
            if failed_jobs:
                run.rerun_of_counter = prev.counter
                for j, old in zip(run.jobs, prev.live_jobs(), strict=True):
                    if old.result != "Failed":
                        j.state, j.result, j.rerun = old.state, old.result, False
                        j.transitions = list(old.transitions)
                    else:
                        j.rerun = True
            self._touch(self.pipelines.get(name))
            return run.counter

    def cancel(
        self, name: str, counter: int, stage: str, *, by: str = "admin", at: int | None = None
    ) -> None:
        with self._lock:
            run = self._run(name, counter, stage)
            when = now_ms() if at is None else at
            for j in run.live_jobs():
                if j.state != "Completed":
                    j.result = "Cancelled"
                    self._walk(j, "Completed", when, only=("Completed",))
            run.result, run.cancelled_by, run.last_ms = "Cancelled", by, when
            self._touch(self.pipelines.get(name))

    def lose_agent(
        self, name: str, counter: int, stage: str, job: str, *, at: int | None = None
    ) -> None:
        """The agent building `job` is lost: that job run ends Rescheduled (ignored) and the
        job is scheduled again, a new job run of the same name."""
        with self._lock:
            run = self._run(name, counter, stage)
            when = now_ms() if at is None else at
            old = next(j for j in run.live_jobs() if j.name == job)
            old.transitions.append(("Rescheduled", when))
            old.state, old.ignored = "Rescheduled", True
            run.jobs.append(
                JobRun(next(self._job_ids), job, when, transitions=[("Scheduled", when)])
            )
            self._touch(self.pipelines.get(name))

    # -- plumbing ------------------------------------------------------------------------------
    def _touch(self, p: Pipeline | None) -> None:
        """The dashboard's `last_updated_timestamp` of a pipeline moves with any change to
        any of its instances (GoCD refreshes its dashboard entry on every stage status
        change: `GoDashboardPipeline`, a new one each time, carries a new timestamp)."""
        if p is None:
            return
        self._updated = max(now_ms(), self._updated + 1)
        p.updated = self._updated

    def _run(self, name: str, counter: int, stage: str) -> StageRun:
        run = self.instance(name, counter).latest(stage)
        if run is None:
            raise LookupError(f"{name}/{counter}/{stage} was never scheduled")
        return run

    def _schedule(self, inst: Instance, cfg: StageConfig, approver: str, when: int) -> StageRun:
        prev = inst.latest(cfg.name)
        names = cfg.jobs or (cfg.name,)
        run = StageRun(
            next(self._stage_ids),
            cfg.name,
            (prev.counter + 1) if prev else 1,
            "manual" if cfg.manual else "success",
            approver,
            when,
            [
                JobRun(next(self._job_ids), n, when, transitions=[("Scheduled", when)])
                for n in names
            ],
            last_ms=when,
        )
        inst.runs.append(run)
        return run

    def _walk(self, j: JobRun, to: str, when: int, only: tuple[str, ...] = ()) -> None:
        """Move a job through GoCD's states up to `to`, a second apart, ending at `when`."""
        if only:
            steps = list(only)
        else:
            here = JOB_ORDER.index(j.state) if j.state in JOB_ORDER else 0
            steps = list(JOB_ORDER[here + 1 : JOB_ORDER.index(to) + 1])
        start = when - (len(steps) - 1) * SECOND
        for k, state in enumerate(steps):
            j.transitions.append((state, start + k * SECOND))
        if "Assigned" in steps and j.agent is None:
            j.agent = f"agent-{j.id % 3 + 1}"
        j.state = to

    def _next(self, inst: Instance, run: StageRun, when: int) -> None:
        """After a stage passed, the next stage that never ran is scheduled when it needs no
        approval (a manual one waits for a person: `approve`)."""
        if run.result != "Passed":
            return
        names = [s.name for s in inst.stages]
        here = names.index(run.name)
        if here + 1 >= len(names):
            return
        nxt = inst.stages[here + 1]
        if nxt.manual or inst.latest(nxt.name) is not None:
            return
        self._schedule(inst, nxt, "changes", when)


JOB_ORDER = ("Scheduled", "Assigned", "Preparing", "Building", "Completing", "Completed")


def _stage_config(inst: Instance, stage: str) -> StageConfig:
    for s in inst.stages:
        if s.name == stage:
            return s
    raise LookupError(f"{inst.pipeline}/{inst.counter} has no stage {stage}")


def _label(p: Pipeline, cause: BuildCause) -> str:
    """`${COUNT}` is the counter; `${<upstream>}` the upstream's label (its counter here),
    as DOWNSTREAM-PIPELINE's label "2066" for counter 265 in the capture."""
    label = p.label_template.replace("${COUNT}", str(p.counter))
    for r in cause.revisions:
        if r.material.type == "Pipeline" and r.modifications:
            label = label.replace(
                "${" + r.material.url + "}", r.modifications[0].revision.split("/")[1]
            )
    return label


def dependency(
    upstream: str, counter: int, stage: str, stage_counter: int = 1, at: int | None = None
) -> BuildCause:
    """Triggered by an upstream pipeline's stage ("triggered by A/2066/smoke-test-dev/1")."""
    rev = f"{upstream}/{counter}/{stage}/{stage_counter}"
    mod = Modification(rev, now_ms() if at is None else at)
    return BuildCause(
        f"triggered by {rev}",
        False,
        "",
        (Revision(Material(upstream, stage, type="Pipeline"), (mod,)),),
    )


def git(url: str, branch: str = "master", name: str | None = None) -> Material:
    return Material(url, branch, "Git", name)


def commit(revision: str, user: str, at: int, comment: str = "a change") -> Modification:
    return Modification(revision, at, user, comment)


__all__ = [
    "FakeGoCD",
    "changes",
    "commit",
    "dependency",
    "forced",
    "git",
    "now_ms",
    "timer",
]
