"""Bamboo under the seeded fault schedule of `tests/invariants.py`: nothing lost, early,
twice or stuck. Results start and finish in any order on two plans and a plan branch; one
plan stops at a manual stage, so its results wait for a person (held, never sent early);
some results are children of others (their chain's head is read, a detail that can fail);
finished results of the first plan are deployed to an environment, deployments finishing
in any order too. The server caps pages at 7, so every listing pages."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.bamboo.standin import FakeBamboo
from connectors.bamboo.standin.model import Environment, Version
from tests.invariants import Truth, play, seeds

PLANS = ("ACME-APP", "ACME-LIB", "ACME-GATE")
GATED: list[tuple[str, bool, list[str]]] = [("Build", False, ["Compile"]), ("Ship", True, ["Go"])]
HOUR = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


class Bamboo:
    name = "bamboo"

    def __init__(self) -> None:
        self.fb = FakeBamboo(max_page=7).start()
        self.faults = self.fb.faults
        for key in PLANS:
            self.fb.add_plan(
                key,
                key.split("-")[1].title(),
                project_name="Acme",
                stages=GATED if key == "ACME-GATE" else None,
                repositories=["acme"],
            )
        self.branch = self.fb.add_branch("ACME-APP", "feature/x")
        self.plans = (*PLANS, self.branch)
        self.project = self.fb.add_deployment_project("Acme App", "ACME-APP", ["prod"])
        self.env: Environment = self.project.environments[0]
        self.running: list[tuple[str, int]] = []  # plan results queued or running
        self.held: list[tuple[str, int]] = []  # finished at a manual stage
        self.deploying: list[int] = []
        self.versions: list[Version] = []
        self.finished: dict[tuple[str, int], Truth] = {}

    def server(self) -> dict[str, Any]:
        return {
            "name": "bamboo",
            "type": "bamboo",
            "url": self.fb.url,
            "token": self.fb.token,
            "instance_guid": "7c2e9a41-3b5d-4e8f-9a10-6d4c2b1e0f93",
            "instance_name": "Bamboo",
        }

    def _job(self, plan: str) -> str:
        return "ACME-APP/feature-x" if plan == self.branch else plan

    def act(self, rng: random.Random) -> str:
        what = rng.choice(["finished", "finished", "start", "finish", "deploy", "continue"])
        plan = rng.choice(self.plans)
        if what == "finished":
            stamp = time.time()
            n = self.fb.add_result(
                plan,
                rng.choice(["Successful", "Failed"]),
                started=now_ms() - rng.randint(1_000, 600_000),
                completed=now_ms(),
                revisions={"acme": f"{rng.getrandbits(160):040x}"},
                **self._trigger(rng),
            )
            self._settled(plan, n, stamp)
        elif what == "start":
            n = self.fb.trigger(plan, queued=rng.random() < 0.3, **self._trigger(rng))
            self.running.append((plan, n))
        elif what == "finish" and self.running:
            self._finish(self.running.pop(rng.randrange(len(self.running))), rng)
        elif what == "deploy":
            self._deploy(rng)
        elif what == "continue" and self.held:
            self._continue(self.held.pop(rng.randrange(len(self.held))))
        return what

    def _trigger(self, rng: random.Random) -> dict[str, Any]:
        """A third of the time the child of an earlier result: its head is looked up."""
        done = [(p, n) for p, n in self.finished if not p.startswith("deploy/")]
        if done and rng.random() < 0.33:
            p, n = rng.choice(done)
            key = self.branch if p == "ACME-APP/feature-x" else p
            return {"trigger": "child", "parent": f"{key}-{n}"}
        return {"trigger": rng.choice(["user", "code"]), "user": "alice"}

    def _finish(self, item: tuple[str, int], rng: random.Random) -> None:
        plan, n = item
        stamp = time.time()  # before the server has it: a receipt after this is not early
        r = self.fb.result(plan, n)
        if r.life == "Queued":
            self.fb.start_result(plan, n)
        if rng.random() < 0.2:
            self.fb.stop_result(plan, n)
        else:
            self.fb.finish(plan, n, rng.choice(["Successful", "Failed"]))
        self._settled(plan, n, stamp)

    def _settled(self, plan: str, n: int, stamp: float) -> None:
        r = self.fb.result(plan, n)
        if r.continuable:
            self.held.append((plan, n))  # not finished for SEI: it waits for a person
            return
        result = {"Successful": "SUCCESS", "Failed": "FAILURE", "Unknown": "ABORTED"}[r.state]
        self.finished[(self._job(plan), n)] = Truth(stamp, result)
        if plan == "ACME-APP" and r.state == "Successful":
            self.versions.append(
                self.fb.create_version(self.project, f"v{len(self.versions)}", [(plan, n)])
            )

    def _continue(self, item: tuple[str, int]) -> None:
        plan, n = item
        self.fb.continue_stage(plan, n, user="bob")
        stamp = time.time()
        self.fb.finish(plan, n)
        self._settled(plan, n, stamp)

    def _deploy(self, rng: random.Random) -> None:
        if self.deploying and rng.random() < 0.5:
            d = self.deploying.pop(rng.randrange(len(self.deploying)))
            stamp = time.time()
            self.fb.finish_deploy(d, rng.choice(["SUCCESS", "FAILED"]))
            self._deployed(d, stamp)
        elif self.versions:
            d = self.fb.deploy(self.env, rng.choice(self.versions), user="carol")
            self.deploying.append(d)

    def _deployed(self, d: int, stamp: float) -> None:
        state = self.fb.deploy_result(d).state
        result = {"SUCCESS": "SUCCESS", "FAILED": "FAILURE"}[state]
        self.finished[("deploy/Acme App/prod", d)] = Truth(stamp, result)

    def finish_all(self) -> None:
        rng = random.Random(0)
        while self.running:
            self._finish(self.running.pop(), rng)
        while self.held:
            self._continue(self.held.pop())
        while self.deploying:
            d = self.deploying.pop()
            stamp = time.time()
            self.fb.finish_deploy(d)
            self._deployed(d, stamp)

    def truth(self) -> dict[tuple[str, int], Truth]:
        return dict(self.finished)

    def close(self) -> None:
        self.fb.stop()


@pytest.mark.parametrize("seed", seeds(3000))
def test_bamboo_keeps_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(Bamboo(), seed, tmp_path, monkeypatch)
