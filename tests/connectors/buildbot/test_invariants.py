"""A real Buildbot under the seeded fault schedule of `tests/invariants.py`, through
`FaultProxy`: nothing lost, early, twice or stuck. Quick builds and builds held at a gate
until the schedule lets them finish, on two workers, so they finish out of order.

Seeds share one master (it takes seconds to start), so each world's fresh state file must
deliver the master's whole history, earlier worlds' builds included. Fewer seeds run here
than for the stand-ins: a Buildbot build takes about a second of real time.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.buildbot import standin as harness
from poller.standins.proxy import FaultProxy
from tests.connectors.buildbot.conftest import real_master
from tests.invariants import Truth, play, seeds

pytestmark = pytest.mark.buildbot
QUICK = ("ok", "fail", "multi")
RESULTS = {0: "SUCCESS", 1: "UNSTABLE", 2: "FAILURE", 4: "FAILURE", 6: "ABORTED"}


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Buildbot]:
    with real_master(tmp_path_factory.mktemp("buildbot-chaos")) as bb:
        yield bb


class Buildbot:
    name = "buildbot"

    def __init__(self, bb: harness.Buildbot, seed: int) -> None:
        self.bb = bb
        self.proxy = FaultProxy(bb.url).start()
        self.faults = self.proxy.faults
        self.gates: list[str] = []
        self.prefix = f"s{seed}-"

    def server(self) -> dict[str, Any]:
        return {
            "name": "bb",
            "type": "buildbot",
            "url": self.proxy.url,
            "instance_guid": "0b7c4a52-8d1e-4f3a-9c6b-5e4d3c2b1a09",
            "instance_name": "Buildbot",
        }

    def act(self, rng: random.Random) -> str:
        what = rng.choice(["quick", "quick", "slow", "open"])
        if what == "quick":
            self.bb.force(rng.choice(QUICK))
        elif what == "slow":
            gate = f"{self.prefix}{len(self.gates)}"
            self.bb.force("slow", gate=gate)
            self.gates.append(gate)
        elif self.gates:
            self.bb.open_gate(self.gates.pop(rng.randrange(len(self.gates))))
        return what

    def finish_all(self) -> None:
        while self.gates:
            self.bb.open_gate(self.gates.pop())
        harness.wait(
            lambda: not self.bb.get("buildrequests", complete="false")["buildrequests"],
            60,
            "every build request to complete",
        )

    def truth(self) -> dict[tuple[str, int], Truth]:
        names = {i: n for n, i in self.bb.builder_ids().items()}
        return {
            (names[b["builderid"]], b["number"]): Truth(b["complete_at"], RESULTS[b["results"]])
            for b in self.bb.get("builds", complete="true")["builds"]
        }

    def close(self) -> None:
        self.proxy.stop()


@pytest.mark.parametrize(
    "seed", seeds(5000)[:4] if "SEI_POLLER_CHAOS_SEEDS" not in os.environ else seeds(5000)
)
def test_buildbot_keeps_every_promise_under_faults(
    master: harness.Buildbot, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(Buildbot(master, seed), seed, tmp_path, monkeypatch)
