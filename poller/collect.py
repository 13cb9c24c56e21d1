"""One poll of one server: discover jobs, scan the ones that moved, enqueue new builds.

The core owns the watermark arithmetic so connectors only yield what they see.

The rule every mark obeys (a sequential job's watermark, a time-cursored job's own cursor,
the server-wide "finished since" cursor): a mark moves past a finished build only once that
build is *handled*: in the ledger (sent, or pending in the outbox), parked (in `problems`,
retried), or owed (in `owed`, handed to its job's next scan). A job's marks move only with a
scan of it that completed, in the same transaction as its last outbox rows; a scan that
failed anywhere (a listing page, a build's details) leaves them where they were, and the
next poll scans the job again from there. The server cursor moves with every poll that was
not stopped, so what it passes must already be handled: builds it named for a job whose
scan then failed are recorded as owed, and a connector with a server cursor looks at every
number in `JobRef.changed`, reached by its listing or not (see `connectors/base.py`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
from structlog.contextvars import bound_contextvars

from connectors.base import Connector, ServerCursor
from poller.config import Server
from poller.errors import ConnectorError
from poller.globs import matches, selected
from poller.logs import REDACTOR
from poller.model import Broken, Build, Checkpoint, JobCursor, JobRef, Unfinished, Unlisted
from poller.payload import to_sei
from poller.quality import Facts, facts
from poller.state import JobState, JobUpdate, Parked, Row, State
from poller.timeparse import since_ms

log = structlog.get_logger()
BATCH = 200  # builds per transaction while a long history streams in
# A parked build is retried after 1 min, then 2, 4, ... at most hourly: a corrupt build
# rarely heals, but a struggling controller does, and a retry costs one request.
PARK_FIRST, PARK_MAX = 60.0, 3600.0


class Sink(Protocol):
    """Where a poll's findings go: the state database, or stdout for `--dry-run`.

    Besides builds, a poll records what went wrong (a failed job, a parked build, a folder
    that could not be listed) and how it ended; a dry run accepts and forgets all of that,
    so the scan logic has no special case for it.
    """

    def enqueue(
        self,
        server: str,
        job: str,
        items: Iterable[Row],
        update: JobUpdate | None = None,
    ) -> int: ...

    def job_failed(self, server: str, job: str, error: str, owed: Iterable[int] = ()) -> None: ...

    def reset_job(self, server: str, job: str) -> None: ...

    def polled(self, server: str, ok: bool, duration: float, error: str | None = None) -> None: ...

    def park(
        self, server: str, job: str, number: int, url: str, error: str, retry_at: float
    ) -> Parked: ...

    def unlisted(self, server: str, failing: Iterable[tuple[str, str, str]]) -> None: ...

    def save_server_cursor(self, server: str, cursor: str) -> None: ...


class Stopped(Exception):
    """Shutdown was asked for mid-scan; what was enqueued so far stays, the watermark waits."""


@dataclass
class PollResult:
    server: str
    jobs: int = 0
    scanned: int = 0
    failed: int = 0
    enqueued: int = 0
    unlisted: int = 0
    parked: int = 0
    new_jobs: list[JobRef] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.failed or self.unlisted or self.parked)

    @property
    def problem(self) -> str | None:
        """One line for `status`: what went wrong in this poll, if anything."""
        if self.error:
            return self.error
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.failed, "job(s) failed"),
                (self.unlisted, "folder(s) unlisted"),
                (self.parked, "build(s) parked"),
            )
            if n
        ]
        return ", ".join(parts) or None


Progress = Callable[[str, int], None]


def _noop(_kind: str, _n: int) -> None:
    pass


class Collector:
    """Polls one server through its connector into a sink, reading state for what is known."""

    def __init__(
        self,
        server: Server,
        connector: Connector,
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
        # A server-wide "finished since" cursor moves only with a poll that looks at every
        # job that changed: not a narrowed one (`--job`), not one for new jobs only.
        resume = isinstance(self.connector, ServerCursor) and not job_glob and new_jobs != "only"
        with bound_contextvars(server=name):
            try:
                jobs, checkpoint = self._discover(job_glob, result, resume)
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
            if resume:
                jobs = self._with_owed(jobs)
            result.jobs = len(jobs)
            self.progress("jobs", len(jobs))
            bound = since_ms(since if since is not None else self.server.config.backfill_since)
            todo = self._select(jobs, backfill, bound, new_jobs, result)
            workers = max(1, self.server.config.max_concurrency)
            with ThreadPoolExecutor(workers, thread_name_prefix=f"scan-{name}") as pool:
                for outcome in pool.map(lambda jb: self._scan_job(jb[0], jb[1], bound), todo):
                    result.scanned += 1
                    self.progress("scanned", 1)
                    result.failed += not outcome.ok
                    result.enqueued += outcome.added
                    result.parked += outcome.parked
            if checkpoint is not None and not self.stop.is_set():
                # What it passes is handled: enqueued, parked, or owed by a failed job.
                self.sink.save_server_cursor(name, checkpoint)
            self._polled(result, started)
        return result

    def _discover(
        self, job_glob: str | None, result: PollResult, resume: bool
    ) -> tuple[list[JobRef], str | None]:
        """What the server could list; a folder that failed is recorded, its siblings kept.

        Also the server cursor a `ServerCursor` connector yields (a `Checkpoint`), to save
        once the poll is done.
        """
        cfg = self.server.config
        jobs, failing = [], []
        checkpoint = None
        found: Iterable[JobRef | Unlisted | Checkpoint] = (
            self.connector.discover_since(self.state.server_cursor(self.server.name))
            if resume and isinstance(self.connector, ServerCursor)
            else self.connector.discover()
        )
        for item in found:
            if isinstance(item, Checkpoint):
                checkpoint = item.cursor if resume else None
            elif isinstance(item, Unlisted):
                log.error(
                    "folder could not be listed; its jobs wait, the rest are polled",
                    folder=item.name,
                    url=item.url,
                    error=item.error,
                )
                failing.append((item.name, item.url, REDACTOR.scrub(item.error)))
            elif selected(item.full_name, cfg.include, cfg.exclude) and (
                not job_glob or matches(item.full_name, [job_glob])
            ):
                jobs.append(item)
        if not job_glob:  # a narrowed discovery says nothing of the folders it skipped
            self.sink.unlisted(self.server.name, failing)
        result.unlisted = len(failing)
        return jobs, checkpoint

    def _with_owed(self, jobs: list[JobRef]) -> list[JobRef]:
        """Each job's `changed`, plus the builds it owes and its parked builds due again.

        A server-cursor connector looks at every number in `changed`, so these are read by
        number: no listing window has to reach back to them.
        """
        extra = self.state.owed(self.server.name)
        for job, numbers in self.state.parked_due(self.server.name, time.time()).items():
            extra.setdefault(job, set()).update(numbers)
        if not extra:
            return jobs
        return [
            replace(j, changed=tuple(sorted(set(j.changed or ()) | extra[j.full_name])))
            if j.full_name in extra
            else j
            for j in jobs
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
        sequential = self.connector.sequential
        todo = []
        for job in jobs:
            js = known.get(job.full_name)
            is_new = js is None or js.watermark is None
            if backfill and not _covered(js, bound):
                todo.append((job, True))
            elif is_new and job.last_build is None and sequential:
                continue  # never built: nothing to read
            elif is_new and sequential and _before(job, bound):
                self._nothing_in_range(job, bound)
            elif is_new and new_jobs == "defer":
                result.new_jobs.append(job)
            elif (
                js is not None
                and not is_new
                and (new_jobs == "only" or _idle(job, js) or _unchanged(job, js))
            ):
                continue
            else:
                todo.append((job, False))
        return todo

    def _nothing_in_range(self, job: JobRef, bound: int | None) -> None:
        """A new job whose newest build started before the window: known, nothing to send,
        no request (build numbers only grow, so every older build started earlier too)."""
        assert job.last_build is not None
        update = JobUpdate(
            job.last_build,
            job.last_build + 1,
            job.last_build,
            job.last_completed,
            covered_ms=bound,
        )
        self.sink.enqueue(self.server.name, job.full_name, [], update)

    def _polled(self, result: PollResult, started: float) -> None:
        if self.metrics is not None:
            self.metrics.poll_done(
                result.server,
                result.ok,
                time.monotonic() - started,
                result.enqueued,
                reached=result.error is None,
            )
        self.sink.polled(result.server, result.ok, time.monotonic() - started, result.problem)
        log.info(
            "poll finished",
            jobs=result.jobs,
            scanned=result.scanned,
            failed=result.failed,
            unlisted=result.unlisted,
            enqueued=result.enqueued,
            seconds=round(time.monotonic() - started, 3),
        )

    def _scan_job(self, job: JobRef, backfill: bool, bound: int | None) -> _Outcome:
        with bound_contextvars(server=self.server.name, job=job.full_name):
            scan = None
            try:
                scan = _JobScan(self, job, backfill, bound)
                scan.run()
                return _Outcome(scan.added, len(scan.blocked), ok=True)
            except Stopped:
                return _Outcome(scan.added if scan else 0, 0, ok=True)
            except ConnectorError as exc:
                error = str(exc)
                log.error(
                    "job scan failed; what it found is kept, the watermark waits,"
                    " retried next poll",
                    error=error,
                    url=exc.url,
                    status=exc.status,
                )
            except Exception as exc:
                error = repr(exc)
                log.exception("job scan crashed; watermark kept, retried next poll", error=error)
            owed = set(job.changed or ()) - (scan.handled if scan else set())
            self.sink.job_failed(self.server.name, job.full_name, REDACTOR.scrub(error), owed)
            return _Outcome(scan.added if scan else 0, 0, ok=False)


@dataclass(frozen=True)
class _Outcome:
    added: int
    parked: int
    ok: bool


def _covered(js: JobState | None, bound: int | None) -> bool:
    if js is None or js.watermark is None or js.covered_ms is None:
        return False
    return js.covered_ms <= (bound or 0)


def _before(job: JobRef, bound: int | None) -> bool:
    """The job's newest build started before `bound`: nothing of it is in range."""
    return (
        bound is not None
        and job.last_build is not None
        and job.last_started_ms is not None
        and job.last_started_ms < bound
    )


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


def _unchanged(job: JobRef, js: JobState) -> bool:
    """The connector's server-wide query saw nothing finish in this job since the last poll,
    and the job owes nothing and has no parked build due (those are in `changed` too).

    Still scanned: a job whose last scan failed, from its own cursor.
    """
    return job.changed is not None and not job.changed and not js.failed


class _JobScan:
    """The arithmetic of one job's scan: which builds are wanted, where the marks move."""

    def __init__(self, c: Collector, job: JobRef, backfill: bool, bound: int | None) -> None:
        self.c, self.job, self.backfill, self.bound = c, job, backfill, bound
        self.name = c.server.name
        js = c.state.job(self.name, job.full_name)
        self.sequential = c.connector.sequential
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
            c.sink.reset_job(self.name, job.full_name)
            js = JobState()
        self.js = js
        self.is_new = js.watermark is None
        stop_at = None if backfill or not self.sequential else js.watermark
        self.cursor = JobCursor(
            watermark=stop_at,
            floor=js.floor,
            cursor=js.cursor,
            since_ms=bound if (backfill or self.is_new) else None,
            backfill=backfill or self.is_new,
        )
        self.parked: dict[int, Parked] = c.state.parked(self.name, job.full_name)
        self.now = time.time()
        self.seen: set[int] = set()
        self.low: int | None = None
        self.running: list[int] = []
        self.blocked: set[int] = set()  # parked: finished, not sent, holding the watermark
        self.waiting: set[int] = set()  # parked before, not due: the connector never saw them
        self.checkpoint = js.cursor
        self.batch: list[Row] = []
        self.added = 0
        self.handled: set[int] = set()  # enqueued or parked by this scan

    def wanted(self, n: int) -> bool:
        self.seen.add(n)
        self.low = n if self.low is None else min(self.low, n)
        if n in self.js.ledger:
            return False
        if self.sequential:
            wm, floor = self.js.watermark, self.js.floor
            if wm is not None and n <= wm and (floor is None or n >= floor):
                return False
        parked = self.parked.get(n)
        if parked is not None and parked.retry_at > self.now:
            self.blocked.add(n)  # not due for another try yet: no request for it
            self.waiting.add(n)
            return False
        return True  # for a time-cursored job numbers are keys: the ledger alone decides

    def run(self) -> None:
        try:
            for item in self.c.connector.scan(self.job, self.cursor, self.wanted):
                if self.c.stop.is_set():
                    raise Stopped
                self._take(item)
        except BaseException:
            # Keep what was found: its ledger rows mean nothing is read or sent twice; the
            # watermark waits, since it moves only over a completed scan.
            self._flush(None)
            raise
        self._flush(self._update())

    def _take(self, item: Build | Unfinished | Checkpoint | Broken) -> None:
        if isinstance(item, Unfinished):
            self.running.append(item.number)
            self.seen.add(item.number)
        elif isinstance(item, Checkpoint):
            self.checkpoint = item.cursor
        elif isinstance(item, Broken):
            self._broken(item)
        else:
            self.batch.append((item.number, *_encode(item, self.c.server)))
            self.handled.add(item.number)
            if len(self.batch) >= BATCH:
                self._flush(None)

    def _broken(self, item: Broken) -> None:
        """Park a build whose details keep failing, or send what there is after long enough."""
        n, cfg = item.number, self.c.server.config
        prior = self.parked.get(n)
        give_up = cfg.give_up_after
        if (
            prior is not None
            and give_up is not None
            and item.fallback is not None
            and self.now - prior.first_at >= give_up
        ):
            log.warning(
                "build still broken after give_up_after; sent without the part that fails",
                build=n,
                url=item.url,
                error=item.error,
                broken_for=round(self.now - prior.first_at),
            )
            self.batch.append((n, *_encode(item.fallback, self.c.server)))
            self.handled.add(n)
            return
        attempts = (prior.attempts if prior else 0) + 1
        retry_at = self.now + min(PARK_MAX, PARK_FIRST * 2 ** (attempts - 1))
        error = REDACTOR.scrub(item.error)
        self.parked[n] = self.c.sink.park(
            self.name, self.job.full_name, n, item.url, error, retry_at
        )
        self.blocked.add(n)
        self.handled.add(n)
        log.error(
            "build details keep failing; parked, the rest of the job moves on",
            build=n,
            url=item.url,
            error=error,
            attempts=attempts,
            retry_in=round(retry_at - self.now),
        )

    def _flush(self, update: JobUpdate | None) -> None:
        if not self.batch and update is None:
            return
        batch, self.batch = self.batch, []
        self.added += self.c.sink.enqueue(self.name, self.job.full_name, batch, update)
        self.c.progress("found", len(batch))

    def _update(self) -> JobUpdate:
        js, job = self.js, self.job
        top = max([job.last_build or 0, js.watermark or 0, *self.seen])
        holds = [*self.running, *self.blocked]
        watermark = min(holds) - 1 if holds else top
        if js.watermark is not None:
            watermark = max(watermark, js.watermark)
        floor: int | None
        if self.is_new:
            floor = self.low if self.low is not None else watermark + 1
        elif self.backfill and self.low is not None:
            floor = min(self.low, js.floor if js.floor is not None else self.low)
        else:
            floor = js.floor
        if not self.sequential:
            return self._keyed_update(top, floor)
        if not self.is_new and not self.backfill:
            self._log_vanished(js.watermark or 0, watermark)
        covered = js.covered_ms
        below = [n for n in self.blocked if js.watermark is not None and n <= js.watermark]
        if below and floor is not None:
            # A build parked below the watermark (found by a backfill): the handled range
            # must not span it, so the next backfill asks for it again.
            floor = max(floor, max(below) + 1)
        elif self.is_new or self.backfill:
            reached = self.bound or 0
            covered = reached if covered is None else min(covered, reached)
        gone = tuple(n for n in self.parked if n not in self.seen and n not in self.blocked)
        return JobUpdate(
            watermark,
            floor,
            job.last_build,
            job.last_completed,
            self.checkpoint,
            covered,
            vanished=gone,
            settled=tuple(job.changed or ()),
        )

    def _keyed_update(self, top: int, floor: int | None) -> JobUpdate:
        """A time-cursored job: numbers are keys, the ledger says what was sent.

        The highest number seen marks the job as known; nothing is pruned below it. A
        parked build holds the time cursor, as it holds a sequential job's watermark, so
        the listing that finds it again still reaches back to it; a history read with
        nothing parked covers its window, so a backfill run again skips the job.
        """
        js, job = self.js, self.job
        held = self.blocked and js.cursor is not None
        covered = js.covered_ms
        if (self.is_new or self.backfill) and not self.blocked:
            reached = self.bound or 0
            covered = reached if covered is None else min(covered, reached)
        handed = job.changed or ()
        # A parked build asked for by number that the server no longer has: deleted.
        gone = tuple(n for n in handed if n in self.parked and n not in self.seen)
        by_number = isinstance(self.c.connector, ServerCursor)
        if self.waiting and js.cursor is None and not by_number:
            # No earlier cursor to keep, and the connector's own checkpoint passed builds
            # parked by an earlier scan: the job stays unread, so its next scan reads the
            # history again and reaches them.
            return JobUpdate(None, floor, job.last_build, job.last_completed, None, None)
        return JobUpdate(
            max(top, js.watermark or 0),
            floor,
            job.last_build,
            job.last_completed,
            js.cursor if held else self.checkpoint,
            covered,
            prune=False,
            vanished=gone,
            settled=tuple(handed),
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


def _encode(build: Build, server: Server) -> tuple[str, Facts]:
    """The payload as sent, and what `status` keeps of it once it is gone."""
    payload = to_sei(build, server.config)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False), facts(build, payload)
