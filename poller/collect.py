"""One poll of one server: discover jobs, scan the ones that moved, enqueue new builds.

The core owns the watermark arithmetic so connectors only yield what they see. A job's
watermark moves only after its scan completed, in the same transaction as its last outbox
rows; a job that failed keeps its watermark and is retried next poll.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from structlog.contextvars import bound_contextvars

from poller.config import Server
from poller.errors import ConnectorError
from poller.globs import matches, selected
from poller.logs import REDACTOR
from poller.model import Build, Checkpoint, JobCursor, JobRef, Unfinished
from poller.payload import to_sei
from poller.state import JobState, JobUpdate, State
from poller.timeparse import since_ms

log = structlog.get_logger()
BATCH = 200  # builds per transaction while a long history streams in


class Sink(Protocol):
    """Where enqueued builds go: the state database, or stdout for `--dry-run`."""

    def enqueue(
        self,
        server: str,
        job: str,
        items: Iterable[tuple[int, str]],
        update: JobUpdate | None = None,
    ) -> int: ...


class Stopped(Exception):
    """Shutdown was asked for mid-scan; what was enqueued so far stays, the watermark waits."""


@dataclass
class PollResult:
    server: str
    jobs: int = 0
    scanned: int = 0
    failed: int = 0
    enqueued: int = 0
    new_jobs: list[JobRef] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0


Progress = Callable[[str, int], None]


def _noop(_kind: str, _n: int) -> None:
    pass


class Collector:
    """Polls one server through its connector into a sink, reading state for what is known."""

    def __init__(
        self,
        server: Server,
        connector: Any,
        state: State,
        *,
        sink: Sink | None = None,
        stop: threading.Event | None = None,
        progress: Progress = _noop,
        metrics: Any = None,
    ) -> None:
        self.server = server
        self.connector = connector
        self.state = state
        self.sink: Sink = sink or state
        self.stop = stop or threading.Event()
        self.progress = progress
        self.metrics = metrics

    def poll(
        self,
        *,
        backfill: bool = False,
        since: Any = None,
        job_glob: str | None = None,
        new_jobs: str = "scan",
    ) -> PollResult:
        """`new_jobs`: "scan" them now, "defer" them (returned in the result), or "only" them."""
        name = self.server.name
        result = PollResult(name)
        started = time.monotonic()
        with bound_contextvars(server=name):
            try:
                jobs = self._discover(job_glob)
            except ConnectorError as exc:
                result.error = str(exc)
                log.error("discovery failed; will retry next poll", error=str(exc), url=exc.url)
                self._polled(result, started)
                return result
            except Exception as exc:  # a connector bug must not take the poller down
                result.error = repr(exc)
                log.exception("discovery crashed; will retry next poll", error=repr(exc))
                self._polled(result, started)
                return result
            result.jobs = len(jobs)
            self.progress("jobs", len(jobs))
            bound = since_ms(since if since is not None else self.server.config.backfill_since)
            todo = self._select(jobs, backfill, bound, new_jobs, result)
            workers = max(1, self.server.config.max_concurrency)
            with ThreadPoolExecutor(workers, thread_name_prefix=f"scan-{name}") as pool:
                for outcome in pool.map(lambda jb: self._scan_job(*jb, bound), todo):
                    result.scanned += 1
                    self.progress("scanned", 1)
                    if outcome is None:
                        result.failed += 1
                    else:
                        result.enqueued += outcome
            self._polled(result, started)
        return result

    def _discover(self, job_glob: str | None) -> list[JobRef]:
        cfg = self.server.config
        return [
            j
            for j in self.connector.discover()
            if selected(j.full_name, cfg.include, cfg.exclude)
            and (not job_glob or matches(j.full_name, [job_glob]))
        ]

    def _select(
        self,
        jobs: list[JobRef],
        backfill: bool,
        bound: int | None,
        new_jobs: str,
        result: PollResult,
    ) -> list[tuple[JobRef, bool]]:
        """Jobs to scan, and whether each needs a backfill scan below its watermark.

        Jobs that have not moved since the last poll cost nothing more; a backfill skips the
        jobs whose history is already covered back to its bound (so a re-run resumes).
        """
        known = self.state.known_jobs(self.server.name)
        sequential = getattr(self.connector, "sequential", True)
        todo = []
        for job in jobs:
            js = known.get(job.full_name)
            is_new = js is None or js.watermark is None
            if backfill and not _covered(js, bound):
                todo.append((job, True))
            elif is_new and job.last_build is None and sequential:
                continue  # never built: nothing to read
            elif is_new and new_jobs == "defer":
                result.new_jobs.append(job)
            elif not is_new and (new_jobs == "only" or _idle(job, js)):
                continue
            else:
                todo.append((job, False))
        return todo

    def _polled(self, result: PollResult, started: float) -> None:
        if self.metrics is not None:
            self.metrics.poll_done(
                result.server, result.ok, time.monotonic() - started, result.enqueued
            )
        if isinstance(self.sink, State):
            self.state.polled(
                result.server,
                result.ok,
                time.monotonic() - started,
                result.error or (f"{result.failed} job(s) failed" if result.failed else None),
            )
        log.info(
            "poll finished",
            jobs=result.jobs,
            scanned=result.scanned,
            failed=result.failed,
            enqueued=result.enqueued,
            seconds=round(time.monotonic() - started, 3),
        )

    def _scan_job(self, job: JobRef, backfill: bool, bound: int | None) -> int | None:
        with bound_contextvars(server=self.server.name, job=job.full_name):
            try:
                return _JobScan(self, job, backfill, bound).run()
            except Stopped:
                return 0
            except ConnectorError as exc:
                error = str(exc)
                log.error(
                    "job scan failed; watermark kept, retried next poll",
                    error=error,
                    url=exc.url,
                    status=exc.status,
                )
            except Exception as exc:
                error = repr(exc)
                log.exception("job scan crashed; watermark kept, retried next poll", error=error)
            if isinstance(self.sink, State):
                self.state.job_failed(self.server.name, job.full_name, REDACTOR.scrub(error))
            return None


def _covered(js: JobState | None, bound: int | None) -> bool:
    if js is None or js.watermark is None or js.covered_ms is None:
        return False
    return js.covered_ms <= (bound or 0)


def _idle(job: JobRef, js: JobState | None) -> bool:
    """Nothing can have changed since the last scan, so no request is needed.

    The newest and the newest completed build numbers are the same as last time, and every
    build still running then was above the newest completed one (the watermark sits just
    below the lowest running build). Had any of those finished, the server's newest
    completed build would have moved. Only a build running *below* a finished one (11 done
    while 10 runs) can finish unseen, and such a job is scanned every poll.
    """
    return (
        js is not None
        and job.last_build is not None
        and job.last_build == js.last_build
        and job.last_completed == js.last_completed
        and js.watermark is not None
        and js.watermark >= (job.last_completed or 0)
    )


class _JobScan:
    """The arithmetic of one job's scan: which builds are wanted, where the marks move."""

    def __init__(self, c: Collector, job: JobRef, backfill: bool, bound: int | None) -> None:
        self.c, self.job, self.backfill, self.bound = c, job, backfill, bound
        self.name = c.server.name
        js = c.state.job(self.name, job.full_name)
        self.sequential = getattr(c.connector, "sequential", True)
        if (
            self.sequential
            and js.watermark is not None
            and job.last_build is not None
            and job.last_build < js.watermark
        ):
            log.warning(
                "build numbers went backwards: job recreated? backfilling it as new",
                last_build=job.last_build,
                watermark=js.watermark,
            )
            if isinstance(c.sink, State):
                c.state.reset_job(self.name, job.full_name)
            js = JobState()
        self.js = js
        self.is_new = js.watermark is None
        stop_at = None if backfill or not self.sequential else js.watermark
        self.cursor = JobCursor(
            watermark=stop_at,
            floor=js.floor,
            cursor=js.cursor,
            since_ms=bound if (backfill or self.is_new) else None,
        )
        self.seen: set[int] = set()
        self.low: int | None = None
        self.running: list[int] = []
        self.checkpoint = js.cursor

    def wanted(self, n: int) -> bool:
        self.seen.add(n)
        self.low = n if self.low is None else min(self.low, n)
        if n in self.js.ledger:
            return False
        if not self.sequential:
            return True  # numbers are keys, not a sequence: the ledger alone decides
        wm, floor = self.js.watermark, self.js.floor
        return not (wm is not None and n <= wm and (floor is None or n >= floor))

    def run(self) -> int:
        added, batch = 0, []
        for item in self.c.connector.scan(self.job, self.cursor, self.wanted):
            if self.c.stop.is_set():
                raise Stopped
            if isinstance(item, Unfinished):
                self.running.append(item.number)
                self.seen.add(item.number)
                continue
            if isinstance(item, Checkpoint):
                self.checkpoint = item.cursor
                continue
            batch.append((item.number, _encode(item, self.c.server)))
            if len(batch) >= BATCH:
                added += self._flush(batch, None)
                batch = []
        added += self._flush(batch, self._update())
        return added

    def _flush(self, batch: list[tuple[int, str]], update: JobUpdate | None) -> int:
        if not batch and update is None:
            return 0
        n = self.c.sink.enqueue(self.name, self.job.full_name, batch, update)
        self.c.progress("found", len(batch))
        return n

    def _update(self) -> JobUpdate:
        js, job = self.js, self.job
        top = max([job.last_build or 0, js.watermark or 0, *self.seen])
        watermark = min(self.running) - 1 if self.running else top
        if js.watermark is not None:
            watermark = max(watermark, js.watermark)
        if self.is_new:
            floor = self.low if self.low is not None else watermark + 1
        elif self.backfill and self.low is not None:
            floor = min(self.low, js.floor if js.floor is not None else self.low)
        else:
            floor = js.floor
        if not self.sequential:
            # The highest number seen, marking the job as known; nothing is pruned below it.
            return JobUpdate(
                max(top, js.watermark or 0),
                floor,
                job.last_build,
                job.last_completed,
                self.checkpoint,
                None,
                prune=False,
            )
        if not self.is_new and not self.backfill:
            self._log_vanished(js.watermark or 0, watermark)
        covered = js.covered_ms
        if self.is_new or self.backfill:
            reached = self.bound or 0
            covered = reached if covered is None else min(covered, reached)
        return JobUpdate(
            watermark, floor, job.last_build, job.last_completed, self.checkpoint, covered
        )

    def _log_vanished(self, old: int, new: int) -> None:
        if new - old > 10_000:
            return
        gone = [
            n for n in range(old + 1, new + 1) if n not in self.seen and n not in self.js.ledger
        ]
        if gone:
            log.warning(
                "builds vanished before they were handled (retention or deletion); skipped",
                count=len(gone),
                builds=gone[:20],
            )


def _encode(build: Build, server: Server) -> str:
    return json.dumps(to_sei(build, server.config), separators=(",", ":"), ensure_ascii=False)
