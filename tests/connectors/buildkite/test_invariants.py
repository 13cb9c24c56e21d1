"""Buildkite under the seeded fault schedule of `tests/invariants.py`: nothing lost, early,
twice or stuck. Builds are scheduled, start and finish in any order across three pipelines;
the organisation-wide "finished since" query is what an idle poll asks."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.buildkite.standin import FakeBuildkite
from tests.invariants import Truth, play, seeds

PIPELINES = ("app", "api", "deploy")
RESULTS = {"passed": "SUCCESS", "failed": "FAILURE", "canceled": "ABORTED"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Buildkite:
    name = "buildkite"

    def __init__(self) -> None:
        self.bk = FakeBuildkite(limit=100_000).start()
        self.faults = self.bk.faults
        for slug in PIPELINES:
            self.bk.add_pipeline(slug)
        self.waiting: list[tuple[str, int]] = []
        self.finished: dict[tuple[str, int], Truth] = {}

    def server(self) -> dict[str, Any]:
        return {
            "name": "bk",
            "type": "buildkite",
            "url": self.bk.url,
            "organization": self.bk.org,
            "token": self.bk.token,
            "instance_guid": "7c2e9a41-3b5d-4e8f-9a6c-1d2b3c4e5f60",
            "instance_name": "Buildkite",
        }

    def act(self, rng: random.Random) -> str:
        what = rng.choice(["finished", "finished", "schedule", "start", "finish"])
        slug = rng.choice(PIPELINES)
        now, stamp = now_ms(), time.time()
        if what == "finished":
            state = rng.choice(["passed", "failed"])
            b = self.bk.add_build(
                slug,
                state=state,
                created=now - 60_000,
                started=now - 50_000,
                finished=now,
                jobs=[self.bk.job("test", state=state, started=now - 50_000, finished=now)],
            )
            self._finished(slug, b["number"], state, stamp)
        elif what == "schedule":
            b = self.bk.add_build(slug, state="scheduled", created=now, jobs=[])
            self.waiting.append((slug, b["number"]))
        elif what == "start":
            b = self.bk.add_build(
                slug,
                state="running",
                created=now - 5_000,
                started=now,
                jobs=[self.bk.job("test", state="running", started=now)],
            )
            self.waiting.append((slug, b["number"]))
        elif self.waiting:
            self._finish(*self.waiting.pop(rng.randrange(len(self.waiting))), rng)
        return what

    def _finish(self, slug: str, n: int, rng: random.Random) -> None:
        state = rng.choice(["passed", "failed", "canceled"])
        now, stamp = now_ms(), time.time()
        started = self.bk.builds[slug][n]["started_at"] and now - 1_000
        job = self.bk.job("test", state=state, started=started or now, finished=now)
        self.bk.update(slug, n, state=state, started=started or now, finished=now, jobs=[job])
        self._finished(slug, n, state, stamp)

    def _finished(self, slug: str, n: int, state: str, stamp: float) -> None:
        self.finished[(f"{self.bk.org}/{slug}", n)] = Truth(stamp, RESULTS[state])

    def finish_all(self) -> None:
        rng = random.Random(0)
        while self.waiting:
            self._finish(*self.waiting.pop(), rng)

    def truth(self) -> dict[tuple[str, int], Truth]:
        return dict(self.finished)

    def close(self) -> None:
        self.bk.stop()


@pytest.mark.parametrize("seed", seeds(3000))
def test_buildkite_keeps_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(Buildkite(), seed, tmp_path, monkeypatch)
