"""Jenkins under the seeded fault schedule of `tests/invariants.py` (the same one the other
connectors play): nothing lost, early, twice or stuck. Pipelines and freestyle jobs in
folders, builds finishing out of order. `test_chaos.py` beside this file plays Jenkins'
longer schedule against the daemon."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.jenkins.standin import FakeJenkins
from tests.connectors.jenkins.env import jenkins_server
from tests.invariants import Truth, play, seeds

JOBS = {"f0/a": "freestyle", "f0/p": "pipeline", "f1/q": "pipeline", "top": "freestyle"}


class Jenkins:
    name = "jenkins"

    def __init__(self) -> None:
        self.jenkins = FakeJenkins().start()
        self.faults = self.jenkins.faults
        for folder in ("f0", "f1"):
            self.jenkins.add_folder(folder)
        for job, kind in JOBS.items():
            self.jenkins.add_job(job, kind)
        self.next = dict.fromkeys(JOBS, 0)
        self.running: list[tuple[str, int]] = []
        self.finished: dict[tuple[str, int], Truth] = {}

    def server(self) -> dict[str, Any]:
        server = jenkins_server(self.jenkins)
        del server["timeout"], server["backfill_since"]
        return server

    def act(self, rng: random.Random) -> str:
        what = rng.choice(["finished", "finished", "start", "finish"])
        job = rng.choice(list(JOBS))
        if what in ("finished", "start"):
            self.next[job] += 1
            n, start = self.next[job], int(time.time() * 1000) - 30_000
            if what == "start":
                self.jenkins.add_build(job, n, result=None, building=True, timestamp=start)
                self.running.append((job, n))
            else:
                result = rng.choice(["SUCCESS", "FAILURE", "UNSTABLE"])
                self.jenkins.add_build(job, n, result=result, timestamp=start, duration=20_000)
                self.finished[(job, n)] = Truth(time.time(), result)
        elif self.running:
            self._finish(*self.running.pop(rng.randrange(len(self.running))), rng)
        return what

    def _finish(self, job: str, n: int, rng: random.Random) -> None:
        result = rng.choice(["SUCCESS", "FAILURE", "ABORTED"])
        self.finished[(job, n)] = Truth(time.time(), result)
        self.jenkins.finish_build(job, n, result, 25_000)

    def finish_all(self) -> None:
        rng = random.Random(0)
        while self.running:
            self._finish(*self.running.pop(), rng)

    def truth(self) -> dict[tuple[str, int], Truth]:
        return dict(self.finished)

    def close(self) -> None:
        self.jenkins.stop()


@pytest.mark.parametrize("seed", seeds(4000))
def test_jenkins_keeps_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(Jenkins(), seed, tmp_path, monkeypatch)
