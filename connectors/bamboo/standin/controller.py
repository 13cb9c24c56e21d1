"""``FakeBamboo``: the stand-in server, its editable model, its faults and its request log."""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any

from poller.standins.http import Standin

from .model import (
    FINISHED,
    DeploymentProject,
    DeployResult,
    Environment,
    JobResult,
    Plan,
    Repository,
    Result,
    StageDef,
    StageResult,
    Version,
)
from .server import _Handler

DEFAULT_STAGES: list[tuple[str, bool, list[str]]] = [("Default Stage", False, ["Default Job"])]


def now_ms() -> int:
    return int(time.time() * 1000)


def user_link(user: str, name: str | None = None) -> str:
    """How Bamboo names a person in a reason: a link to `/browse/user/<name>`."""
    return f'<a href="{{base}}browse/user/{user}">{name or user}</a>'


REASONS = {
    "user": "Manual run by {user}",
    "code": "Code changes detected",
    "first": "First build for this plan",
    "schedule": "Scheduled",  # GUESS: the wording of a scheduled build's reason
    "child": 'Child of <a href="{base}browse/{parent}">{parent}</a>',
}


class FakeBamboo(Standin):
    """A Bamboo Data Center on 127.0.0.1 with an editable model.

    Auth: ``token`` as ``Authorization: Bearer`` (a personal access token), or ``username`` +
    ``password`` as HTTP basic, on every path; anything else is 401. ``tz`` is the offset in
    the server's times (``Z`` like the DevLake capture, ``-05:00`` like the flyte one);
    ``max_page`` the most items one answer holds, whatever ``max-result`` asks.

    Mutators may be called from any thread while the server answers; they and every answer
    hold one lock. Usable as a context manager.
    """

    thread_prefix = "fake-bamboo"

    def __init__(
        self,
        *,
        context_path: str = "",
        token: str = "bamboo-secret-token",
        username: str = "sei-bot",
        password: str = "bamboo-secret-password",
        version: str = "9.2.1",
        build_number: str = "90201",
        tz: str = "Z",
        max_page: int = 25,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(context_path, _Handler, tls)
        self.token, self.username, self.password = token, username, password
        self.version, self.build_number, self.tz = version, build_number, tz
        self.max_page = max_page
        self.plans: dict[str, Plan] = {}
        self.repositories: dict[str, Repository] = {}
        self.deployments: dict[int, DeploymentProject] = {}
        self.environments: dict[int, Environment] = {}
        self.versions: dict[int, Version] = {}
        self._result_ids = itertools.count(884_700)
        self._job_ids = itertools.count(1_884_700)
        self._stage_ids = itertools.count(293_227_900)
        self._repo_ids = itertools.count(622_595)
        self._project_ids = itertools.count(1_015_810)
        self._env_ids = itertools.count(1_146_882)
        self._version_ids = itertools.count(1_376_259)
        self._artifact_ids = itertools.count(1_310_722)
        self._deploy_ids = itertools.count(1_540_100)

    # -- requests (lifecycle and request log: Standin) ---------------------------------------
    def count(self, pattern: str = "") -> int:
        with self._req_lock:
            return sum(1 for r in self.requests if pattern in r.path)

    def info(self) -> dict[str, Any]:
        """`/rest/api/latest/info` (GUESS on the keys: Bamboo's InfoResource)."""
        return {
            "version": self.version,
            "edition": "",
            "buildDate": "2023-01-17T09:13:09.000Z",
            "buildNumber": self.build_number,
            "state": "RUNNING",
        }

    def current_user(self) -> dict[str, Any]:
        """`/rest/api/latest/currentUser` (GUESS on the keys)."""
        return {"name": self.username, "fullName": "SEI Bot", "email": "sei-bot@example.com"}

    # -- model: configuration ----------------------------------------------------------------
    def repository(self, name: str) -> Repository:
        """A linked repository, by name (created on first use, with a new id)."""
        with self._lock:
            if name not in self.repositories:
                self.repositories[name] = Repository(next(self._repo_ids), name)
            return self.repositories[name]

    def add_plan(
        self,
        key: str,
        name: str | None = None,
        *,
        project_name: str | None = None,
        stages: list[tuple[str, bool, list[str]]] | None = None,
        repositories: list[str] | None = None,
        default_branch: str = "main",
        description: str = "",
    ) -> Plan:
        """A plan `PROJ-PLAN`; `stages` as (name, manual, job names), jobs keyed JOB1, ..."""
        project_key, short_key = key.split("-", 1)
        with self._lock:
            counter = itertools.count(1)
            defs = [
                StageDef(s, manual, [(f"JOB{next(counter)}", j) for j in jobs])
                for s, manual, jobs in (stages or DEFAULT_STAGES)
            ]
            p = Plan(
                key=key,
                project_key=project_key,
                project_name=project_name or project_key.title(),
                short_key=short_key,
                short_name=name or short_key.lower(),
                description=description,
                stages=defs,
                repositories=[self.repository(r) for r in repositories or []],
                default_branch=default_branch,
            )
            self.plans[key] = p
            return p

    def add_branch(self, master: str, branch: str) -> str:
        """A plan branch of `master` for the VCS branch `branch`: a plan of its own (key
        `<master><n>`), with its own numbering from 1; returns its key."""
        with self._lock:
            m = self.plans[master]
            m.branch_counter += 1
            key = f"{m.key}{m.branch_counter}"
            self.plans[key] = Plan(
                key=key,
                project_key=m.project_key,
                project_name=m.project_name,
                short_key=f"{m.short_key}{m.branch_counter}",
                short_name=branch.replace("/", "-"),
                description=m.description,
                stages=m.stages,
                repositories=m.repositories,
                default_branch=m.default_branch,
                master=m.key,
                branch_name=branch,
            )
            m.branches.append(key)
            return key

    def delete_plan(self, key: str) -> None:
        """A plan (or a plan branch, as Bamboo removes branches whose VCS branch is gone)
        disappears with its results."""
        with self._lock:
            p = self.plans.pop(key)
            if p.master is not None and p.master in self.plans:
                self.plans[p.master].branches.remove(key)
            for b in p.branches:
                self.plans.pop(b, None)

    # -- model: results ----------------------------------------------------------------------
    def result(self, plan_key: str, number: int) -> Result:
        return self.plans[plan_key].results[number]

    def trigger(
        self,
        plan_key: str,
        *,
        trigger: str = "user",
        user: str | None = None,
        parent: str | None = None,
        reason: str | None = None,
        at: int | None = None,
        queued: bool = False,
        revisions: Mapping[str, str] | None = None,
        changes: list[dict[str, Any]] | None = None,
        variables: Mapping[str, str] | None = None,
        labels: Iterable[str] = (),
    ) -> int:
        """A new result: `Queued`, or `InProgress` from `at`. `trigger` is `user` (with
        `user`), `code`, `first`, `schedule` or `child` (of the result key `parent`);
        `revisions` maps repository name → revision; `changes` are commits
        (`id`, `author`, `comment`, `files`...)."""
        with self._lock:
            p = self.plans[plan_key]
            when = now_ms() if at is None else at
            p.counter += 1
            text = reason or REASONS[trigger].format(
                user=user_link(user or self.username), parent=parent, base="{base}"
            )
            r = Result(
                plan=p,
                number=p.counter,
                id=next(self._result_ids),
                reason=text,
                queued_ms=when,
                revisions=[(self.repository(k), v) for k, v in (revisions or {}).items()],
                changes=list(changes or []),
                variables=list((variables or {}).items()),
                labels=list(labels),
            )
            r.stages = [
                StageResult(
                    s.name,
                    next(self._stage_ids),
                    s.manual,
                    s.description,
                    [
                        JobResult(f"{p.key}-{short}", name, s.name, next(self._job_ids))
                        for short, name in s.jobs
                    ],
                )
                for s in p.stages
            ]
            if not queued:
                r.life, r.started_ms = "InProgress", when
                for j in r.stages[0].jobs:
                    j.life, j.queued_ms, j.started_ms = "InProgress", when, when
            p.results[r.number] = r
            return r.number

    def start_result(self, plan_key: str, number: int, *, at: int | None = None) -> None:
        with self._lock:
            r = self.result(plan_key, number)
            if r.life != "Queued":
                raise ValueError(f"{r.key} is {r.life}, not queued")
            r.life, r.started_ms = "InProgress", now_ms() if at is None else at

    def finish(
        self,
        plan_key: str,
        number: int,
        state: str = "Successful",
        *,
        at: int | None = None,
        failed_jobs: Iterable[str] = (),
        artifacts: list[dict[str, Any]] | None = None,
        tests: tuple[int, int] | None = None,
    ) -> None:
        """Run the result's stages up to the first manual stage nobody ran (the result is then
        finished yet `continuable`), failing the jobs named in `failed_jobs` (or, for
        `state="Failed"`, the first job of the last stage run); stages after a failure are
        `NotBuilt`."""
        with self._lock:
            r = self.result(plan_key, number)
            when = now_ms() if at is None else at
            if r.started_ms is None:
                r.started_ms = r.queued_ms
            failing = set(failed_jobs)
            todo: list[StageResult] = []
            for i, s in enumerate(r.stages):
                if all(j.life in (FINISHED, "NotBuilt") for j in s.jobs) and any(
                    j.life == FINISHED for j in s.jobs
                ):
                    continue
                if s.manual and i > 0 and not s.released:
                    break
                todo.append(s)
            begin = max(
                [r.started_ms]
                + [j.completed_ms for s in r.stages for j in s.jobs if j.completed_ms is not None]
            )
            span = max(0, when - begin)
            failed_at: int | None = None
            if state == "Failed" and not failing and todo:
                failing = {todo[-1].jobs[0].name}
            for k, s in enumerate(todo):
                if failed_at is not None:
                    for j in s.jobs:
                        j.life, j.state = "NotBuilt", "Unknown"
                    continue
                s0 = begin + span * k // len(todo)
                s1 = begin + span * (k + 1) // len(todo)
                for j in s.jobs:
                    if j.life == FINISHED:
                        continue
                    j.queued_ms = j.queued_ms or s0
                    j.started_ms, j.completed_ms = s0, s1
                    j.life = FINISHED
                    j.state = "Failed" if j.name in failing else "Successful"
                if any(j.state == "Failed" for j in s.jobs):
                    failed_at = k
            # Stages after a failure, or from a manual stage nobody ran, do not run.
            for t in r.stages:
                for j in t.jobs:
                    if j.life not in (FINISHED, "NotBuilt"):
                        j.life, j.state = "NotBuilt", "Unknown"
            states = [j.state for s in r.stages for j in s.jobs if j.life == FINISHED]
            r.state = "Failed" if "Failed" in states else "Successful"
            r.life, r.completed_ms = FINISHED, when
            if artifacts is not None:
                r.artifacts = list(artifacts)
            if tests is not None:
                r.tests = tests

    def stop_result(self, plan_key: str, number: int, *, at: int | None = None) -> None:
        """A person stops a running result. GUESS on how REST shows it: `Finished` with
        state `Unknown` (neither passed nor failed); the stopped jobs `Unknown` too, the
        stages not reached `NotBuilt`."""
        with self._lock:
            r = self.result(plan_key, number)
            when = now_ms() if at is None else at
            for s in r.stages:
                for j in s.jobs:
                    if j.life == "InProgress":
                        j.life, j.state, j.completed_ms = FINISHED, "Unknown", when
                    elif j.life != FINISHED:
                        j.life, j.state = "NotBuilt", "Unknown"
            if r.started_ms is None:
                r.started_ms = when
            r.life, r.state, r.completed_ms = FINISHED, "Unknown", when

    def restart(self, plan_key: str, number: int, *, at: int | None = None) -> None:
        """ "Rerun failed jobs": the same result (same number) runs its failed jobs, and the
        stages after them, again; `finish` ends it with its new state."""
        with self._lock:
            r = self.result(plan_key, number)
            if not r.restartable:
                raise ValueError(f"{r.key} is not restartable")
            when = now_ms() if at is None else at
            rerun = False
            for i, s in enumerate(r.stages):
                for j in s.jobs:
                    if j.state == "Failed":
                        rerun = True
                        j.life, j.state = "InProgress", "Unknown"
                        j.started_ms, j.completed_ms = when, None
                    elif rerun and j.life == "NotBuilt" and not (s.manual and i > 0):
                        j.life, j.state = "Queued", "Unknown"
                        j.started_ms = j.completed_ms = None
            r.life, r.state = "InProgress", "Unknown"

    def continue_stage(
        self, plan_key: str, number: int, *, user: str | None = None, at: int | None = None
    ) -> str:
        """A person runs the next manual stage of a continuable result: it is `InProgress`
        again, its reason now "Manual run from the stage: ..." (as in the flyte capture);
        `finish` ends it. Returns the stage's name."""
        with self._lock:
            r = self.result(plan_key, number)
            if not r.continuable:
                raise ValueError(f"{r.key} is not continuable")
            s = next(s for s in r.stages if s.manual and s.life == "NotBuilt")
            s.released = True
            when = now_ms() if at is None else at
            for j in s.jobs:
                j.life, j.state, j.started_ms, j.completed_ms = "InProgress", "Unknown", when, None
            after = False
            for t in r.stages:
                if t is s:
                    after = True
                    continue
                if after and not t.manual:
                    for j in t.jobs:
                        j.life = "Queued"
                elif after:
                    break
            who = user_link(user or self.username)
            r.reason = f"Manual run from the stage: <b>{s.name}</b> by {who}"
            r.life, r.state = "InProgress", "Unknown"
            return s.name

    def add_result(
        self,
        plan_key: str,
        state: str = "Successful",
        *,
        started: int,
        completed: int,
        failed_jobs: Iterable[str] = (),
        artifacts: list[dict[str, Any]] | None = None,
        tests: tuple[int, int] | None = None,
        **trigger: Any,
    ) -> int:
        """Trigger and finish a result in one call, at the given times (epoch ms)."""
        n = self.trigger(plan_key, at=started, **trigger)
        self.finish(
            plan_key,
            n,
            state,
            at=completed,
            failed_jobs=failed_jobs,
            artifacts=artifacts,
            tests=tests,
        )
        return n

    def delete_result(self, plan_key: str, number: int) -> None:
        """A result removed (expiry, or by hand)."""
        with self._lock:
            self.plans[plan_key].results.pop(number, None)

    # -- model: deployments ------------------------------------------------------------------
    def add_deployment_project(
        self, name: str, plan_key: str, environments: Iterable[str] = ("dev", "prod")
    ) -> DeploymentProject:
        with self._lock:
            d = DeploymentProject(next(self._project_ids), name, plan_key)
            for i, env_name in enumerate(environments):
                e = Environment(next(self._env_ids), env_name, d, i)
                d.environments.append(e)
                self.environments[e.id] = e
            self.deployments[d.id] = d
            return d

    def environment(self, project: str, env: str) -> Environment:
        for d in self.deployments.values():
            if d.name == project:
                for e in d.environments:
                    if e.name == env:
                        return e
        raise KeyError(f"{project}/{env}")

    def create_version(
        self,
        project: DeploymentProject,
        name: str,
        results: list[tuple[str, int]],
        *,
        artifact: str = "artifact",
        branch: str | None = None,
        creator: str | None = None,
        at: int | None = None,
    ) -> Version:
        """A release of `project` made of the artifact `artifact` of each plan result."""
        with self._lock:
            picked = [self.result(k, n) for k, n in results]
            if branch is None:
                first = picked[0].plan if picked else None
                branch = (first.branch_name or first.default_branch) if first else "main"
            v = Version(
                next(self._version_ids),
                name,
                now_ms() if at is None else at,
                creator,
                [(artifact, r) for r in picked],
                branch,
            )
            v.artifact_ids = [next(self._artifact_ids) for _ in picked]
            self.versions[v.id] = v
            return v

    def deploy(
        self,
        env: Environment,
        version: Version,
        *,
        user: str | None = None,
        child_of: str | None = None,
        reason: str | None = None,
        at: int | None = None,
        queued: bool = False,
    ) -> int:
        """A deployment of `version` to `env`: `IN_PROGRESS` from `at` (or `QUEUED`), by a
        person or as the child of the plan result `child_of`."""
        with self._lock:
            when = now_ms() if at is None else at
            if reason is None:
                if child_of is not None:
                    reason = REASONS["child"].format(parent=child_of, base="{base}")
                else:
                    reason = REASONS["user"].format(user=user_link(user or self.username))
            d = DeployResult(next(self._deploy_ids), env, version, reason, when)
            if not queued:
                d.life, d.started_ms, d.executed_ms = "IN_PROGRESS", when, when
            env.results[d.id] = d
            return d.id

    def finish_deploy(
        self, result_id: int, state: str = "SUCCESS", *, at: int | None = None
    ) -> None:
        with self._lock:
            d = self.deploy_result(result_id)
            when = now_ms() if at is None else at
            if d.started_ms is None:
                d.started_ms = d.executed_ms = when
            d.state, d.life, d.finished_ms = state, "FINISHED", when

    def deploy_result(self, result_id: int) -> DeployResult:
        for env in self.environments.values():
            if result_id in env.results:
                return env.results[result_id]
        raise KeyError(result_id)

    def add_deployment(
        self,
        env: Environment,
        version: Version,
        state: str = "SUCCESS",
        *,
        started: int,
        finished: int,
        **how: Any,
    ) -> int:
        d = self.deploy(env, version, at=started, **how)
        self.finish_deploy(d, state, at=finished)
        return d
