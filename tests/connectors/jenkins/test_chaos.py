"""Randomized, seeded fault schedules against real processes, checked against invariants.

Each seed plays a schedule that mixes Jenkins faults (500 bursts, a share of all GETs
failing, hangs, latency, builds finishing out of order, a build deleted, a job recreated, a
folder failing for a while, a build whose stages never load), SEI faults (503, 429 with
Retry-After, a poison build answered 400, POSTs that hang past the timeout) and process
faults (SIGKILL of the daemon at random moments, a `once` next to `run`). Then the faults
stop, the daemon polls a few times cleanly, and:

- every finished build is in SEI, except the poison one (dead-lettered) and the broken one
  (parked, listed by `status`);
- none was sent before it finished (receipt after finish, final result and duration);
- no build was posted twice, except POSTs in flight at a kill or abandoned at a timeout;
- nothing is stuck: no pending outbox rows, no failing folder.

`SEI_POLLER_CHAOS_SEEDS=50` runs 50 seeds; `SEI_POLLER_CHAOS_SEED=1234` replays one.
"""

from __future__ import annotations

import json
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
from typing import Any

import pytest

from connectors.jenkins.standin import FakeJenkins
from tests.conftest import write_config
from tests.connectors.jenkins.env import jenkins_server
from tests.invariants import TimedSei

CONCURRENCY = 4  # write_config's [sei] concurrency: the most POSTs a kill can leave in flight
SEI_TIMEOUT = 2.0
STEPS = 18
STEP_SECONDS = 0.5
SETTLE_SECONDS = 120.0
JOBS = ("f0/a", "f0/p", "f1/b", "f1/q", "top", "phoenix")
PIPELINES = ("f0/p", "f1/q")


def _seeds() -> list[int]:
    if one := os.environ.get("SEI_POLLER_CHAOS_SEED"):
        return [int(one)]
    count = int(os.environ.get("SEI_POLLER_CHAOS_SEEDS", "3"))
    return [1000 + i for i in range(count)]


@dataclass
class Truth:
    """What the test knows of one build, by (job, number, start)."""

    result: str | None = None
    duration: int = 0
    finished_at: float | None = None
    gone: bool = False  # deleted (or its job recreated): delivery optional
    broken: bool = False  # its stages never load: parked, not delivered
    poison: bool = False  # SEI answers 400: dead-lettered, not delivered


@dataclass
class World:
    seed: int
    dir: Path
    rng: random.Random = field(init=False)
    jenkins: FakeJenkins = field(init=False)
    sei: TimedSei = field(init=False)
    builds: dict[tuple[str, int, int], Truth] = field(default_factory=dict)
    running: list[tuple[str, int, int]] = field(default_factory=list)
    next_number: Counter = field(default_factory=Counter)
    permanent: list[str] = field(default_factory=list)
    transient: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    kills: int = 0
    hung_posts: int = 0
    recreated: bool = False
    daemon: subprocess.Popen | None = None
    side: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.jenkins = FakeJenkins().start()
        self.sei = TimedSei().start()
        self.config = self.dir / "config.toml"
        server = jenkins_server(self.jenkins, poll_interval=1)
        write_config(self.config, sei_url=self.sei.url, servers=[server])
        text = self.config.read_text().replace("[sei]\n", f"[sei]\ntimeout = {SEI_TIMEOUT}\n", 1)
        self.config.write_text(text)
        for folder in ("f0", "f1"):
            self.jenkins.add_folder(folder)
        for job in JOBS:
            self.jenkins.add_job(job, "pipeline" if job in PIPELINES else "freestyle")
        for job in JOBS:  # some history before the first poll
            for _ in range(self.rng.randint(1, 4)):
                self.add_finished(job)

    # -- the Jenkins side --------------------------------------------------------------

    def _number(self, job: str) -> int:
        self.next_number[job] += 1
        return self.next_number[job]

    def add_finished(self, job: str, *, broken: bool = False) -> None:
        n, start = self._number(job), int(time.time() * 1000) - 60_000
        result = self.rng.choice(("SUCCESS", "SUCCESS", "FAILURE", "UNSTABLE", "ABORTED"))
        duration = self.rng.randint(1_000, 50_000)
        if broken:
            path = f"^{self._job_path(job)}/({n}/wfapi/describe|wfapi/runs)$"
            self.permanent.append(path)
            self.jenkins.break_path(path, 500)
        self.jenkins.add_build(job, n, result=result, timestamp=start, duration=duration)
        self.builds[(job, n, start)] = Truth(result, duration, time.time(), broken=broken)

    def start_running(self, job: str) -> None:
        n, start = self._number(job), int(time.time() * 1000)
        self.jenkins.add_build(job, n, result=None, building=True, timestamp=start)
        self.builds[(job, n, start)] = Truth()
        self.running.append((job, n, start))

    def finish_one(self) -> None:
        if not self.running:
            return
        key = self.running.pop(self.rng.randrange(len(self.running)))  # any order
        result = self.rng.choice(("SUCCESS", "FAILURE", "ABORTED"))
        duration = self.rng.randint(1_000, 50_000)
        truth = self.builds[key]
        # The truth first: the poller may read the build the instant it is finished.
        truth.result, truth.duration, truth.finished_at = result, duration, time.time()
        self.jenkins.finish_build(key[0], key[1], result, duration)

    def delete_one(self) -> None:
        candidates = [k for k, t in self.builds.items() if not t.gone and k[0] != "phoenix"]
        if candidates:
            key = self.rng.choice(candidates)
            self.jenkins.delete_build(key[0], key[1])
            self.builds[key].gone = True
            if key in self.running:
                self.running.remove(key)

    def recreate_phoenix(self) -> None:
        """Delete the job and start its numbers again.

        Only once, and only once the old history is handled past #2: a job recreated
        before its numbers could be seen going backwards looks like the same job.
        """
        if self.recreated or any(k[0] == "phoenix" for k in self.running):
            return
        if (self._watermark("phoenix") or 0) < 2:
            return
        self.recreated = True
        self.jenkins.delete_job("phoenix")
        for key, truth in self.builds.items():
            if key[0] == "phoenix":
                truth.gone = True
        self.running = [k for k in self.running if k[0] != "phoenix"]
        self.next_number["phoenix"] = 0
        self.jenkins.add_job("phoenix", "freestyle")
        self.add_finished("phoenix")

    def _job_path(self, job: str) -> str:
        return "".join(f"/job/{seg}" for seg in job.split("/"))

    def clear_transient(self) -> None:
        """Heal every fault but the permanent ones (never cleared: a moment without them
        would let the broken build through)."""
        for pattern in self.transient:
            self.jenkins.heal(pattern)
        self.transient.clear()

    def _fault(self, pattern: str) -> str:
        self.transient.add(pattern)
        return pattern

    # -- processes ----------------------------------------------------------------------

    def _cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "poller", "-c", str(self.config), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_daemon(self) -> None:
        self.daemon = self._cli("run")

    def kill_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
            self.kills += 1
        self.start_daemon()

    # -- the schedule ----------------------------------------------------------------------

    def step(self) -> None:
        rng, job = self.rng, self.rng.choice(JOBS)
        what = rng.choices(
            [
                "finished",
                "running",
                "finish",
                "delete",
                "recreate",
                "burst",
                "flaky",
                "jhang",
                "latency",
                "folder",
                "broken",
                "sei503",
                "sei429",
                "poison",
                "hang",
                "kill",
                "once",
                "clear",
            ],
            weights=[14, 8, 10, 2, 1, 4, 3, 1, 2, 2, 1, 3, 2, 1, 1, 3, 2, 4],
        )[0]
        self.log.append(f"{what} {job}")
        if what == "finished":
            self.add_finished(job)
        elif what == "running":
            self.start_running(job)
        elif what == "finish":
            self.finish_one()
        elif what == "delete":
            self.delete_one()
        elif what == "recreate":
            self.recreate_phoenix()
        elif what == "burst":
            target = rng.choice([".*", self._job_path(job) + "/", r"/api/json$"])
            self.jenkins.fail(self._fault(target), 500, times=rng.randint(2, 12))
        elif what == "flaky":  # a controller under load: a share of every GET fails
            rate, seed = rng.choice([0.1, 0.25, 0.5]), rng.randrange(1 << 30)
            self.jenkins.flaky(rate, seed=seed, path_regex=self._fault(".*"))
        elif what == "jhang":  # no answer at all, past the client's timeout
            target = self._fault(rng.choice([".*", r"/wfapi/"]))
            self.jenkins.hang(target, 3.0, times=rng.randint(1, 3))
        elif what == "latency":
            delay = rng.choice([0.2, 0.5, 2.5])  # 2.5 s: past the timeout
            self.jenkins.delay(self._fault(".*"), delay)
        elif what == "folder":
            self.jenkins.fail(self._fault(r"^/job/f1/api/json$"), 500)  # until the next clear
        elif what == "broken" and not self.permanent:
            self.add_finished(rng.choice(PIPELINES), broken=True)
        elif what == "sei503":
            self.sei.script(*[(503, None)] * rng.randint(1, 6))
        elif what == "sei429":
            self.sei.script((429, {"Retry-After": "1"}))
        elif what == "poison":
            done = [k for k, t in self.builds.items() if t.finished_at and not t.gone]
            key = rng.choice(done)
            self.sei.reject(key[0], key[1], 400)
            for k, t in self.builds.items():  # SEI matches job and number, not the start
                if k[:2] == key[:2]:
                    t.poison = True
        elif what == "hang":
            self._hang(rng.uniform(0.5, 1.5))
        elif what == "kill":
            self.kill_daemon()
        elif what == "once":
            self.side.append(self._cli("once"))
        elif what == "clear":
            self.clear_transient()

    def _hang(self, seconds: float) -> None:
        """POSTs answered only after the client's timeout: SEI may keep them anyway."""
        before = len(self.sei.attempts)
        self.sei.latency = SEI_TIMEOUT + 1.0
        time.sleep(seconds)
        self.sei.latency = 0.0
        time.sleep(SEI_TIMEOUT + 1.5)  # the hung ones land now
        self.hung_posts += len(self.sei.attempts) - before + CONCURRENCY

    def play(self) -> None:
        self.start_daemon()
        for _ in range(STEPS):
            self.step()
            time.sleep(STEP_SECONDS * self.rng.uniform(0.5, 1.5))

    def settle(self) -> None:
        """Faults off, running builds finished; wait for the daemon to converge."""
        self.clear_transient()
        self.sei.latency = 0.0
        self.sei.clear_script()
        while self.running:
            self.finish_one()
        for proc in self.side:
            proc.wait(90)
        if self.daemon is None or self.daemon.poll() is not None:
            self.start_daemon()
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            if not self.missing() and self._pending() == 0:
                time.sleep(2.5)  # a couple more clean polls: nothing more may arrive
                return
            time.sleep(0.25)

    def stop(self) -> int | None:
        code = None
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            code = self.daemon.wait(15)
        for proc in self.side:
            if proc.poll() is None:
                proc.kill()
        self.jenkins.stop()
        self.sei.stop()
        return code

    # -- the invariants ----------------------------------------------------------------------

    def _watermark(self, job: str) -> int | None:
        try:
            with sqlite3.connect(self.dir / "state.db", timeout=30) as db:
                row = db.execute("SELECT watermark FROM jobs WHERE job = ?", [job]).fetchone()
        except sqlite3.OperationalError:
            return None  # not created yet
        return row[0] if row else None

    def _pending(self) -> int:
        with sqlite3.connect(self.dir / "state.db", timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]

    def required(self) -> set[tuple[str, int, int]]:
        return {
            k
            for k, t in self.builds.items()
            if t.finished_at and not (t.gone or t.broken or t.poison)
        }

    def received(self) -> list[tuple[tuple[str, int, int], dict[str, Any], float]]:
        with self.sei._lock:
            runs, stamps = list(self.sei.received), list(self.sei.stamps)
        return [
            ((r["job_full_name"], r["build_number"], r["start_time"]), r, at)
            for r, at in zip(runs, stamps, strict=True)
        ]

    def missing(self) -> set[tuple[str, int, int]]:
        return self.required() - {k for k, _, _ in self.received()}

    def check(self) -> None:
        got = self.received()
        assert not self.missing(), f"never delivered: {sorted(self.missing())}"
        for key, run, at in got:
            truth = self.builds.get(key)
            assert truth is not None, f"SEI got a build that never existed: {key}"
            assert truth.finished_at is not None and at >= truth.finished_at, f"early: {key}"
            assert (run["result"], run["duration"]) == (truth.result, truth.duration), key
        counts = Counter(k for k, _, _ in got)
        twice = sum(c - 1 for c in counts.values())
        allowed = self.kills * CONCURRENCY + self.hung_posts
        assert twice <= allowed, f"{twice} duplicate posts, allowed {allowed} (kills, hangs)"
        assert self._pending() == 0, "outbox rows still pending: stuck"
        status = self._status()
        assert status.get("failing_folders") == [], status.get("failing_folders")
        parked = {(p["job"], p["number"]) for p in status.get("parked_builds", ())}
        broken = {k[:2] for k, t in self.builds.items() if t.broken and not t.gone}
        assert parked == broken, f"parked {parked}, broken {broken}"
        poison = {k[:2] for k, t in self.builds.items() if t.poison and t.finished_at}
        dead = {(d["job"], d["number"]) for d in self._dead()}
        assert dead <= poison, f"dead-lettered without cause: {dead - poison}"

    def _status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "poller", "-c", str(self.config), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout)

    def _dead(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.dir / "state.db") as db:
            db.row_factory = sqlite3.Row
            return [
                dict(r) for r in db.execute("SELECT job, number FROM outbox WHERE status='dead'")
            ]


@pytest.mark.parametrize("seed", _seeds())
def test_random_fault_schedule_keeps_every_promise(seed: int, tmp_path: Path) -> None:
    world = World(seed, tmp_path)
    failure: str | None = None
    try:
        world.play()
        world.settle()
        world.check()
    except AssertionError as exc:
        failure = str(exc)
    finally:
        code = world.stop()
    replay = f"SEI_POLLER_CHAOS_SEED={seed} python -m pytest tests/connectors/jenkins/test_chaos.py"
    assert failure is None, f"seed {seed} ({replay}): {failure}\nschedule: {world.log}"
    assert code == 0, f"seed {seed} ({replay}): daemon exit {code} on SIGTERM"
