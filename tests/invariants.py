"""One seeded fault schedule any connector's stand-in can play, and the promises checked after.

A world is a CI stand-in (a `Ci`: it makes builds start and finish, and says which finished
when) and a stand-in SEI. `play()` mixes, by seed: live activity on the CI server, faults on
any of its requests (500s, a share of every request failing, hangs past the client's
timeout, connections reset mid-answer), `sei-poller once` in this process, and `once` in a
child process killed at a random moment. Then the faults stop, every running build
finishes, time moves two hours on (so parked builds are due) and three clean polls run.
`check()` then holds the world to what sei-poller promises:

- every finished build is in SEI (none lost);
- none reached SEI before it finished, and each with its final result;
- none twice, except POSTs in flight when a process was killed;
- nothing stuck: no pending outbox rows, no parked build, no owed build, no failing job.

A failure names the seed, the command that replays it and the schedule.
`SEI_POLLER_CHAOS_SEEDS=N` plays N seeds per connector, `SEI_POLLER_CHAOS_SEED=S` one;
`benchmarks/soak_invariants.py` plays many more.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

import poller.collect
from poller.cli import main
from poller.standins.faults import Faults
from poller.standins.sei import FakeSei
from tests.conftest import fast_retries, write_config

CONCURRENCY = 4  # write_config's [sei] concurrency: the most POSTs a kill can leave in flight
CI_TIMEOUT = 0.5  # seconds per CI request: a hang costs little
STEPS = 14
SHIFT = 2 * 3600.0  # after the faults: parked builds are due (their longest wait is 1 h)
DEFAULT_SEEDS = 12  # a loss in one world of three escapes all twelve 0.8 % of the time


def seeds(first: int = 1000) -> list[int]:
    if one := os.environ.get("SEI_POLLER_CHAOS_SEED"):
        return [int(one)]
    return [first + i for i in range(int(os.environ.get("SEI_POLLER_CHAOS_SEEDS", DEFAULT_SEEDS)))]


@dataclass
class Truth:
    """A finished build as the CI server has it: when it finished, and its final result."""

    finished_at: float
    result: str


class Ci(Protocol):
    """What a connector's world offers the schedule."""

    name: str  # the connector type, for messages
    faults: Faults  # the stand-in's (or the fault proxy's) faults

    def server(self) -> dict[str, Any]:
        """The `[[servers]]` entry, without `timeout`."""

    def act(self, rng: random.Random) -> str:
        """One step of life on the server (a build queued, started, finished); says which."""

    def finish_all(self) -> None:
        """Finish every build still running or queued."""

    def truth(self) -> dict[tuple[str, int], Truth]:
        """Every finished build, by (job_full_name, build_number) as SEI will key it."""

    def close(self) -> None: ...


class TimedSei(FakeSei):
    """SEI that also notes when it accepted each run, to prove none came early."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.stamps: list[float] = []

    def _record(self, status: int, body: dict[str, Any] | None, accepted: bool = False) -> None:
        with self._cond:
            if accepted and body is not None:
                self.stamps.append(time.time())
        super()._record(status, body, accepted)


class _Shifted:
    """`poller.collect`'s view of `time`: wall-clock seconds moved on by `offset`."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class World:
    ci: Ci
    seed: int
    dir: Path
    rng: random.Random = field(init=False)
    sei: TimedSei = field(init=False)
    log: list[str] = field(default_factory=list)
    kills: int = 0
    last_code: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sei = TimedSei().start()
        self.config = self.dir / "config.toml"
        server = {**self.ci.server(), "timeout": CI_TIMEOUT, "backfill_since": "all"}
        write_config(self.config, sei_url=self.sei.url, servers=[server])

    # -- the schedule ----------------------------------------------------------------------

    def play(self) -> None:
        for _ in range(3):
            self.ci.act(self.rng)
        for _ in range(STEPS):
            self.step()

    def step(self) -> None:
        rng, faults = self.rng, self.ci.faults
        what = rng.choices(
            ["act", "flaky", "burst", "hang", "reset", "once", "kill", "clear"],
            weights=[10, 3, 2, 1, 1, 5, 2, 2],
        )[0]
        if what == "act":
            what = f"act: {self.ci.act(rng)}"
        elif what == "flaky":
            rate = rng.choice([0.2, 0.35, 0.5])
            faults.flaky(rate, seed=rng.randrange(1 << 30))
            what = f"flaky {rate}"
        elif what == "burst":
            faults.fail(".*", 500, times=rng.randint(2, 12))
        elif what == "hang":
            faults.hang(".*", CI_TIMEOUT * 2, times=rng.randint(1, 2))
        elif what == "reset":
            faults.reset(".*", times=rng.randint(1, 2))
        elif what == "once":
            self.once()
        elif what == "kill":
            what = f"kill after {self.kill_once():.2f}s"
        elif what == "clear":
            faults.clear()
        self.log.append(what)

    def once(self) -> int:
        self.last_code = main(["-c", str(self.config), "--log-level", "error", "once"])
        return self.last_code

    def kill_once(self) -> float:
        """A `once` in its own process, killed part-way (a crash, an OOM kill, a reboot)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "-c", str(self.config), "once"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        after = self.rng.uniform(0.2, 1.2)
        time.sleep(after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills += 1
        proc.wait(30)
        return after

    def settle(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Faults off, every build finished, two hours later: three clean polls."""
        self.ci.faults.clear()
        self.ci.finish_all()
        monkeypatch.setattr(poller.collect, "time", _Shifted(SHIFT))
        for _ in range(3):
            self.once()

    # -- the promises ------------------------------------------------------------------------

    def check(self) -> None:
        truth = self.ci.truth()
        assert truth, "the world finished no build: it proves nothing"
        with self.sei._lock:
            got = [
                ((r["job_full_name"], r["build_number"]), r, at)
                for r, at in zip(self.sei.received, self.sei.stamps, strict=True)
            ]
        missing = sorted(set(truth) - {k for k, _, _ in got})
        assert not missing, f"never delivered: {missing[:20]} ({len(missing)} of {len(truth)})"
        for key, run, at in got:
            t = truth.get(key)
            assert t is not None, f"SEI got a build that never finished: {key}"
            assert at >= t.finished_at, f"sent before it finished: {key}"
            assert run["result"] == t.result, f"{key}: sent {run['result']}, final {t.result}"
        twice = sum(c - 1 for c in Counter(k for k, _, _ in got).values())
        allowed = self.kills * CONCURRENCY
        assert twice <= allowed, f"{twice} duplicate posts, allowed {allowed} ({self.kills} kills)"
        stuck = self.stuck()
        assert not any(stuck.values()), f"stuck: {stuck}"
        assert self.last_code == 0, f"the last clean `once` exited {self.last_code}"

    def stuck(self) -> dict[str, list[Any]]:
        with sqlite3.connect(self.dir / "state.db") as db:
            return {
                "pending": db.execute(
                    "SELECT job, number FROM outbox WHERE status != 'sent'"
                ).fetchall(),
                "parked": db.execute("SELECT job, number, error FROM problems").fetchall(),
                "owed": db.execute("SELECT job, number FROM owed").fetchall(),
                "failing": db.execute(
                    "SELECT job, last_error FROM jobs WHERE last_error IS NOT NULL"
                ).fetchall(),
            }

    def close(self) -> None:
        self.ci.close()
        self.sei.stop()


def play(ci: Ci, seed: int, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Play one seed against `ci` and check every promise; a failure says how to replay it."""
    world = World(ci, seed, tmp)
    try:
        with fast_retries():
            world.play()
            world.settle(monkeypatch)
        world.check()
    except AssertionError as exc:
        replay = f"SEI_POLLER_CHAOS_SEED={seed} python -m pytest -k {ci.name}"
        raise AssertionError(
            f"{ci.name} seed {seed} ({replay}): {exc}\nschedule: {world.log}"
        ) from None
    finally:
        world.close()
