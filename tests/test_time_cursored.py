"""The core hosts a time-cursored connector whose re-runs get numbers below the newest run.

The connector here is a small in-memory one (GitHub-like: number = run * 1000 + attempt), so
the test exercises the core's ledger and cursor handling, not any HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from poller.collect import Collector
from poller.config import Server, ServerConfig
from poller.model import Build, Checkpoint, JobCursor, JobRef, ServerSpec, Unfinished
from poller.state import State


class Attempts:
    type: ClassVar[str] = "toy"
    Settings: ClassVar[type[BaseModel]] = BaseModel
    sequential: ClassVar[bool] = False

    def __init__(self) -> None:
        self.runs: list[tuple[int, bool, str]] = []  # (number, finished, created)
        self.cursors: list[str | None] = []

    def discover(self) -> Iterator[JobRef]:
        yield JobRef("acme/api/ci.yml", "ci", "https://example/acme/api")

    def scan(self, job: JobRef, cursor: JobCursor, wanted) -> Iterator[object]:
        self.cursors.append(cursor.cursor)
        assert cursor.watermark is None  # never a number watermark for such a connector
        newest = cursor.cursor or ""
        for number, finished, created in sorted(self.runs, key=lambda r: r[2], reverse=True):
            if created < (cursor.cursor or ""):
                break
            newest = max(newest, created)
            if not finished:
                yield Unfinished(number)
            elif wanted(number):
                yield Build(job.full_name, job.pipeline, number, "SUCCESS", 1, 1)
        yield Checkpoint(newest)

    def describe(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def _server() -> Server:
    cfg = ServerConfig(
        name="gh",
        type="toy",
        url="https://example/",
        instance_guid="3b0c5b9e-6f1a-4c2d-9e8f-7a6b5c4d3e2f",
        instance_name="n",
        backfill_since="all",
    )
    return Server(cfg, ServerSpec(name="gh", type="toy", url="https://example/"))


def _numbers(state: State) -> list[int]:
    return sorted(r[0] for r in state.db.execute("SELECT number FROM outbox"))


def test_rerun_below_the_newest_is_sent_and_cursor_kept(tmp_path: Path) -> None:
    state = State(tmp_path / "s.db")
    toy = Attempts()
    collector = Collector(_server(), toy, state)
    toy.runs = [(1001, True, "t1"), (2001, True, "t2"), (3001, False, "t3")]
    assert collector.poll().ok
    assert _numbers(state) == [1001, 2001]
    toy.runs = [(1001, True, "t1"), (2001, True, "t2"), (3001, True, "t3"), (1002, True, "t4")]
    assert collector.poll().ok
    assert _numbers(state) == [1001, 1002, 2001, 3001]  # the re-run of run 1 was not swallowed
    assert toy.cursors == [None, "t3"]
    assert state.job("gh", "acme/api/ci.yml").cursor == "t4"
    assert collector.poll().enqueued == 0  # everything already in the ledger
