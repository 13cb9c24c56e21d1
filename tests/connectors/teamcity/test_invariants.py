"""TeamCity under the seeded fault schedule of `tests/invariants.py`: nothing lost, early,
twice or stuck. Builds queue, start and finish in any order; two have been running for nine
hours when the world begins, past the server-wide query's start bound, and finish in it."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.teamcity.standin import FakeTeamCity
from tests.invariants import Truth, play, seeds

CONFIGS = ("Acme_Backend_Build", "Acme_Backend_Test", "Acme_Deploy")
STEPS = [{"id": "RUNNER_1", "name": "Compile", "type": "Maven2"}]
STATS = {"buildStageDuration:buildStepRUNNER_1": 1200}
HOUR = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


class TeamCity:
    name = "teamcity"

    def __init__(self) -> None:
        self.tc = FakeTeamCity().start()
        self.faults = self.tc.faults
        self.tc.add_project("Acme", "Acme")
        root = self.tc.add_vcs_root("Acme_App", "https://github.com/acme/app.git")
        for bt in CONFIGS:
            self.tc.add_build_type(bt, bt, "Acme", vcs_roots=[root], steps=STEPS)
        self.root = root
        self.waiting: list[int] = []  # queued or running
        self.finished: dict[tuple[str, int], Truth] = {}
        for bt in CONFIGS[:2]:
            long = self.tc.queue_build(bt, at=now_ms() - 9 * HOUR)
            self.tc.start_build(long, at=now_ms() - 9 * HOUR)
            self.waiting.append(long)

    def server(self) -> dict[str, Any]:
        return {
            "name": "tc",
            "type": "teamcity",
            "url": self.tc.url,
            "token": self.tc.token,
            "instance_guid": "5b1f3c2a-9d4e-4f6a-8b7c-2e1d0a9f8c7b",
            "instance_name": "TeamCity",
        }

    def act(self, rng: random.Random) -> str:
        what = rng.choice(["finished", "finished", "queue", "start", "finish"])
        bt = rng.choice(CONFIGS)
        rev = [(self.root, f"{rng.getrandbits(160):040x}", "refs/heads/main")]
        if what == "finished":
            at, stamp = now_ms() - rng.randint(1_000, 600_000), time.time()
            build = self.tc.add_build(
                bt,
                queued=at,
                finished=now_ms(),
                revisions=rev,
                triggered=self._trigger(rng),
                statistics=STATS,
            )
            self._finished(build, stamp)
        elif what == "queue":
            self.waiting.append(self.tc.queue_build(bt, revisions=rev))
        elif what == "start":
            build = self.tc.queue_build(bt, at=now_ms() - rng.randint(0, 60_000), revisions=rev)
            self.tc.start_build(build)
            self.waiting.append(build)
        elif self.waiting:
            self._finish(self.waiting.pop(rng.randrange(len(self.waiting))), rng)
        return what

    def _trigger(self, rng: random.Random) -> dict[str, Any] | None:
        """Half the time a snapshot dependency of an earlier build: the chain's head is
        looked up (one request per build up a chain), a detail that can fail."""
        done = [n for _, n in self.finished]
        if done and rng.random() < 0.5:
            return {"type": "snapshotDependency", "build": rng.choice(done)}
        return None

    def _finish(self, build: int, rng: random.Random) -> None:
        stamp = time.time()  # before the server has it: a receipt after this is not early
        if self.tc.builds[build].state == "queued" and rng.random() < 0.3:
            self.tc.cancel_build(build)  # canceled in the queue: finished, never started
        else:
            if self.tc.builds[build].state == "queued":
                self.tc.start_build(build)
            self.tc.finish_build(build, rng.choice(["SUCCESS", "FAILURE"]), statistics=STATS)
        self._finished(build, stamp)

    def _finished(self, build: int, stamp: float) -> None:
        b = self.tc.builds[build]
        result = "ABORTED" if b.canceled else b.status
        self.finished[(f"Acme/{b.bt.id}", build)] = Truth(stamp, result)

    def finish_all(self) -> None:
        rng = random.Random(0)
        while self.waiting:
            self._finish(self.waiting.pop(), rng)

    def truth(self) -> dict[tuple[str, int], Truth]:
        return dict(self.finished)

    def close(self) -> None:
        self.tc.stop()


@pytest.mark.parametrize("seed", seeds(2000))
def test_teamcity_keeps_every_promise_under_faults(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(TeamCity(), seed, tmp_path, monkeypatch)
