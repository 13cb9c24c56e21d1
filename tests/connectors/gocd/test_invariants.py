"""GoCD under the seeded fault schedule of `tests/invariants.py`: nothing lost, early, twice
or stuck, in both granularities. Instances are triggered, their stages scheduled, built and
finished in any order across instances; some wait at a manual gate until someone passes it;
with stage granularity stages are also run again (each re-run a run of its own)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.gocd.standin import FakeGoCD, StageConfig, changes, commit, forced, git, now_ms
from connectors.gocd.standin.model import FINAL, Instance
from tests.invariants import Truth, play, seeds

PIPELINES = {
    "build": ["compile", "test"],
    "deploy": ["package", StageConfig("prod", manual=True)],
    "svc": ["build"],
}
REPO = git("https://github.com/acme/app.git", "main")
WORST = {"Failed": "FAILURE", "Cancelled": "ABORTED", "Passed": "SUCCESS"}


class GoCD:
    def __init__(self, granularity: str) -> None:
        self.granularity = granularity
        self.name = f"gocd-{granularity}"
        self.gocd = FakeGoCD().start()
        self.faults = self.gocd.faults
        for name, stages in PIPELINES.items():
            self.gocd.add_pipeline(name, "acme", stages, [REPO])
        self.finished: dict[tuple[str, int], Truth] = {}
        # One instance building when the world begins: it finishes in the settling at the
        # latest, so no world is without a finished run.
        counter = self.gocd.trigger("build", forced("alice"), at=now_ms() - 3_600_000)
        self.gocd.begin("build", counter, "compile", at=now_ms() - 3_500_000)

    def server(self) -> dict[str, Any]:
        return {
            "name": "gocd",
            "type": "gocd",
            "url": self.gocd.url,
            "token": self.gocd.token,
            "granularity": self.granularity,
            "instance_guid": "3d6f0b1e-8a2c-4c5e-9f1a-7b6c5d4e3f2a",
            "instance_name": "GoCD",
        }

    # -- life on the server ------------------------------------------------------------------

    def act(self, rng: random.Random) -> str:
        moves = ["finished", "finished", "trigger", "begin", "finish", "finish", "approve"]
        if self.granularity == "stage":
            moves.append("rerun")
        what = rng.choice(moves)
        name = rng.choice(sorted(PIPELINES))
        if what == "finished":
            results = {"test": rng.choice(["Passed", "Failed"]), "build": rng.choice(list(FINAL))}
            before = self._snapshot()
            stamp = time.time()
            self.gocd.run(
                name,
                self._cause(rng),
                at=now_ms() - rng.randint(1_000, 600_000),
                results=results,
                seconds=1,
            )
            self._settled(before, stamp)
        elif what == "trigger":
            self.gocd.trigger(name, self._cause(rng))
        else:
            candidates = self._candidates(what)
            if not candidates:
                return f"{what}: nothing to do"
            inst, stage = rng.choice(candidates)
            self._move(what, inst, stage, rng)
        return what

    def _cause(self, rng: random.Random) -> Any:
        if rng.random() < 0.5:
            return forced(rng.choice(["alice", "bob"]))
        return changes((REPO, [commit(f"{rng.getrandbits(160):040x}", "dev <d@x>", now_ms())]))

    def _candidates(self, what: str) -> list[tuple[Instance, str]]:
        out = []
        for inst in self.gocd.instances:
            for cfg in inst.stages:
                if self._can(what, inst, cfg):
                    out.append((inst, cfg.name))
        return out

    def _can(self, what: str, inst: Instance, cfg: StageConfig) -> bool:
        run = inst.latest(cfg.name)
        if what == "begin":
            return bool(run and run.result not in FINAL) and any(
                j.state == "Scheduled" for j in run.live_jobs()
            )
        if what == "finish":
            return bool(run and run.result not in FINAL)
        if what == "approve":
            return cfg.manual and run is None and self._gated(inst, cfg.name)
        return bool(run and run.result in FINAL and not inst.active())  # rerun

    def _gated(self, inst: Instance, stage: str) -> bool:
        names = [s.name for s in inst.stages]
        before = inst.latest(names[names.index(stage) - 1])
        return before is not None and before.result == "Passed"

    def _move(self, what: str, inst: Instance, stage: str, rng: random.Random) -> None:
        before = self._snapshot()
        stamp = time.time()  # before the server has it: a receipt after this is not early
        g, name, c = self.gocd, inst.pipeline, inst.counter
        if what == "begin":
            g.begin(name, c, stage)
        elif what == "finish":
            result = rng.choice(["Passed", "Passed", "Failed", "Cancelled"])
            if result == "Cancelled":
                g.cancel(name, c, stage)
            else:
                g.finish(name, c, stage, result)
        elif what == "approve":
            g.approve(name, c, stage, rng.choice(["alice", "bob"]))
        elif what == "rerun":
            g.rerun(name, c, stage, "carol")
        self._settled(before, stamp)

    # -- what finished, by SEI's keys ----------------------------------------------------------

    def _snapshot(self) -> set[tuple[str, int]]:
        return set(self._done())

    def _done(self) -> dict[tuple[str, int], str]:
        out = {}
        for inst in self.gocd.instances:
            if self.granularity == "stage":
                for run in inst.runs:
                    if run.result in FINAL and all(j.state == "Completed" for j in run.live_jobs()):
                        key = (f"{inst.pipeline}/{run.name}", inst.counter * 1000 + run.counter)
                        out[key] = WORST[run.result]
                continue
            ran = [inst.latest(s.name) for s in inst.stages]
            runs = [r for r in ran if r is not None]
            if not runs or any(r.result not in FINAL for r in runs):
                continue
            results = {r.result for r in runs}
            if "Failed" in results or "Cancelled" in results or len(runs) == len(inst.stages):
                worst = next(r for r in ("Failed", "Cancelled", "Passed") if r in results)
                out[(inst.pipeline, inst.counter)] = WORST[worst]
        return out

    def _settled(self, before: set[tuple[str, int]], stamp: float) -> None:
        for key, result in self._done().items():
            if key not in before and key not in self.finished:
                self.finished[key] = Truth(stamp, result)

    def finish_all(self) -> None:
        rng = random.Random(0)
        for _ in range(1000):
            moves = self._candidates("finish")
            if self.granularity == "pipeline":
                moves += [m for m in self._candidates("approve")]
            if not moves:
                return
            inst, stage = moves[0]
            run = inst.latest(stage)
            self._move("approve" if run is None else "finish", inst, stage, rng)
        raise AssertionError("finish_all did not settle")

    def truth(self) -> dict[tuple[str, int], Truth]:
        return dict(self.finished)

    def close(self) -> None:
        self.gocd.stop()


@pytest.mark.parametrize("seed", seeds(3000))
def test_gocd_pipelines_keep_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(GoCD("pipeline"), seed, tmp_path, monkeypatch)


@pytest.mark.parametrize("seed", seeds(4000))
def test_gocd_stages_keep_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(GoCD("stage"), seed, tmp_path, monkeypatch)
