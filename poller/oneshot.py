"""`once` and `backfill`: read every server while delivering, then drain the outbox.

Delivery runs while the servers are read, so a long backfill streams out instead of piling
up; `--dry-run` writes the payloads instead and changes no state.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from poller import wiring
from poller.collect import Collector, PollResult
from poller.config import Config, Server
from poller.deliver import Deliverer, Report
from poller.errors import ConfigError
from poller.progress import Progress
from poller.sei import Sender
from poller.state import JobUpdate, Parked, State

if TYPE_CHECKING:
    from poller.metrics import Metrics

log = structlog.get_logger()
OK, FAILED = 0, 1


@dataclass(frozen=True)
class RunOptions:
    """What `once` and `backfill` were asked to do, from the command line."""

    config: str | None
    backfill: bool = False
    server: str | None = None
    since: str | None = None
    job: str | None = None
    dry_run: bool = False
    output: str | None = None


class JsonLines:
    """The `--dry-run` sink: payloads to a stream; what a poll would record, forgotten."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def enqueue(self, server: str, job: str, items: Any, update: JobUpdate | None = None) -> int:
        rows = list(items)
        with self.lock:
            for row in rows:
                self.out.write(row[1] + "\n")
            self.out.flush()
        return len(rows)

    def job_failed(self, server: str, job: str, error: str, owed: Any = ()) -> None:
        pass

    def reset_job(self, server: str, job: str) -> None:
        pass

    def polled(self, server: str, ok: bool, duration: float, error: str | None = None) -> None:
        pass

    def park(
        self, server: str, job: str, number: int, url: str, error: str, retry_at: float
    ) -> Parked:
        return Parked(time.time(), 1, retry_at)

    def unlisted(self, server: str, failing: Any) -> None:
        pass

    def save_server_cursor(self, server: str, cursor: str) -> None:
        pass


@contextmanager
def _dry_state(cfg: Config) -> Iterator[State]:
    """Read what is known without creating or changing the real database."""
    if cfg.state_path.exists():
        state = State(cfg.state_path)
        yield state
        state.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        state = State(Path(tmp) / "dry-run.db")
        yield state
        state.close()


def collect_and_deliver(opts: RunOptions) -> int:
    cfg = wiring.config(opts.config)
    servers = wiring.servers(cfg, opts.server)
    stop = threading.Event()
    backfill = opts.backfill
    if opts.dry_run:
        return _dry_run(cfg, servers, opts, stop)
    state = State(cfg.state_path)
    metrics = wiring.metrics(cfg, state)
    progress = Progress(enabled=backfill)

    def observe(item: Any, outcome: Any) -> None:
        progress.delivered(item, outcome)
        if metrics is not None:
            metrics.outcome(item, outcome)

    sender = Sender.from_config(cfg.sei, cfg.sei_network)
    deliverer = wiring.deliverer(cfg, state, sender, stop, metrics, observe)
    try:
        with wiring.signals(stop):
            results, report = _poll_while_delivering(
                cfg,
                servers,
                state,
                deliverer,
                stop,
                progress,
                metrics,
                backfill=backfill,
                since=opts.since,
                job_glob=opts.job,
            )
    finally:
        progress.close()
        deliverer.close()
        sender.close()
        counts = state.counts()
        # Rows a running daemon (or another `once`) has claimed are its to deliver.
        counts["elsewhere"] = state.pending_elsewhere()
        state.close()
    return _summarize(results, report, counts, stop)


def _poll_while_delivering(
    cfg: Config,
    servers: tuple[Server, ...],
    state: State,
    deliverer: Deliverer,
    stop: threading.Event,
    progress: Progress,
    metrics: Metrics | None,
    *,
    backfill: bool,
    since: str | None,
    job_glob: str | None,
) -> tuple[list[PollResult], Report]:
    """Deliver while the servers are read, so a long backfill streams instead of piling up."""
    collecting = threading.Event()
    collecting.set()
    results: list[PollResult] = []
    delivered = Report()

    def deliver_meanwhile() -> None:
        while collecting.is_set() and not stop.is_set():
            rep = deliverer.pass_once()
            delivered.add(rep)
            if rep.halted:
                return
            if not rep.sent:
                time.sleep(0.1)

    courier = threading.Thread(target=deliver_meanwhile, name="deliver", daemon=True)
    courier.start()

    def poll_one(server: Server) -> None:
        try:
            connector = wiring.connector(server, metrics)
        except Exception as exc:  # a connector that cannot even start fails its server only
            log.error("connector failed to start", server=server.name, error=repr(exc))
            results.append(PollResult(server.name, error=repr(exc)))
            return
        try:
            collector = Collector(
                server, connector, state, stop=stop, progress=progress.update, metrics=metrics
            )
            results.append(collector.poll(backfill=backfill, since=since, job_glob=job_glob))
        finally:
            connector.close()

    pollers = [threading.Thread(target=poll_one, args=(s,), name=f"poll-{s.name}") for s in servers]
    for t in pollers:
        t.start()
    for t in pollers:
        while t.is_alive():
            t.join(0.2)
    collecting.clear()
    courier.join()
    if delivered.halted or stop.is_set():
        return results, delivered
    delivered.add(deliverer.drain(cfg.sei.retry_window))
    return results, delivered


def _summarize(
    results: list[PollResult], report: Report, counts: dict[str, int], stop: threading.Event
) -> int:
    failed = [r for r in results if not r.ok]
    ours = counts["pending"] - counts.get("elsewhere", 0)
    log.info(
        "run finished",
        enqueued=sum(r.enqueued for r in results),
        sent=report.sent,
        dead_lettered=report.dead,
        pending=ours,
        pending_in_another_process=counts.get("elsewhere", 0),
        servers_failed=[r.server for r in failed],
        parked=sum(r.parked for r in results),
    )
    if stop.is_set():
        log.warning("interrupted; run again to resume where this run stopped")
    if failed or report.dead or report.halted or ours or stop.is_set():
        return FAILED
    return OK


def _dry_run(
    cfg: Config, servers: tuple[Server, ...], opts: RunOptions, stop: threading.Event
) -> int:
    try:
        out = open(opts.output, "w", encoding="utf-8") if opts.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot write {opts.output}: {exc.strerror}", where="--output") from None
    failed = False
    try:
        with _dry_state(cfg) as state, wiring.signals(stop):
            sink = JsonLines(out)
            for server in servers:
                connector = wiring.connector(server)
                try:
                    result = Collector(server, connector, state, sink=sink, stop=stop).poll(
                        backfill=opts.backfill, since=opts.since, job_glob=opts.job
                    )
                finally:
                    connector.close()
                failed |= not result.ok
    finally:
        if opts.output:
            out.close()
    return FAILED if failed or stop.is_set() else OK
