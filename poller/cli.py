"""`sei-poller`: wires config, connectors, state, delivery and the scheduler together.

Every mistake an operator can make ends here as one line on stderr and exit 2; a run in
which something failed exits 1; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog

from poller import __version__, logs
from poller.collect import Collector, PollResult
from poller.config import Config, Server, load
from poller.deliver import Deliverer, Report
from poller.errors import ConfigError, SeiPollerError
from poller.metrics import Metrics
from poller.progress import Progress
from poller.registry import connector_class
from poller.sei import Sender
from poller.state import JobUpdate, State

log = structlog.get_logger()
OK, FAILED, USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"sei-poller: {exc}", file=sys.stderr)
        return USAGE
    except SeiPollerError as exc:
        print(f"sei-poller: {logs.REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("sei-poller: interrupted", file=sys.stderr)
        return FAILED
    except Exception as exc:  # a bug: one line for the operator, the traceback in debug logs
        log.debug("internal error", exc_info=True)
        message = logs.REDACTOR.scrub(f"{type(exc).__name__}: {exc}")
        print(
            f"sei-poller: internal error: {message} (--log-level debug shows more)", file=sys.stderr
        )
        return FAILED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sei-poller",
        description="Poll CI servers and deliver every finished build to Harness SEI.",
    )
    p.add_argument(
        "-c",
        "--config",
        help="config file (default: $SEI_POLLER_CONFIG, else /etc/sei-poller/config.toml)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "console"], default=None)
    p.add_argument("--version", action="version", version=f"sei-poller {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="daemon: poll every server, deliver continuously").set_defaults(
        func=cmd_run
    )

    once = sub.add_parser("once", help="poll each server once, deliver what is due, exit")
    once.add_argument("--server")
    _dry_run_args(once)
    once.set_defaults(func=cmd_once)

    bf = sub.add_parser("backfill", help="read history back to --since, deliver, exit")
    bf.add_argument("--server")
    bf.add_argument("--since", help="'all', an ISO date, or a duration like 90d")
    bf.add_argument("--job", help="glob over job full names")
    _dry_run_args(bf)
    bf.set_defaults(func=cmd_backfill)

    st = sub.add_parser("status", help="per server and job: watermark, pending / sent / dead")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    sub.add_parser("check", help="validate config, reach every CI server and SEI").set_defaults(
        func=cmd_check
    )

    dl = sub.add_parser("dead-letters", help="list or retry payloads SEI rejected")
    dl.add_argument("action", choices=["list", "retry"])
    dl.add_argument("--server")
    dl.set_defaults(func=cmd_dead_letters)

    reg = sub.add_parser("register", help="create a CI/CD instance in SEI and print its GUID")
    reg.add_argument("--integration-id", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--type", default="jenkins")
    reg.set_defaults(func=cmd_register)

    demo = sub.add_parser("demo", help="`once` against built-in Jenkins and SEI stand-ins")
    demo.add_argument("--keep", help="keep the demo's config and state in this directory")
    demo.set_defaults(func=cmd_demo)
    return p


def _dry_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="write payloads as JSON lines; change no state"
    )
    p.add_argument("--output", help="with --dry-run: write to this file instead of stdout")


# -- plumbing -----------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    cfg = load(args.config)
    logs.REDACTOR.update(cfg.secrets)
    return cfg


def _connector(server: Server, metrics: Metrics | None = None) -> Any:
    connector = connector_class(server.config.type)(server.spec)
    if metrics is not None and hasattr(connector, "on_request"):
        connector.on_request = metrics.ci_hook(server.name)
    return connector


def _metrics(cfg: Config, state: State) -> Metrics | None:
    """Serve Prometheus metrics when `[metrics] listen` is set."""
    if not cfg.metrics.listen:
        return None
    metrics = Metrics()
    metrics.watch_state(state)
    metrics.serve(cfg.metrics.listen)
    log.info("metrics served", listen=cfg.metrics.listen)
    return metrics


def _servers(cfg: Config, name: str | None) -> tuple[Server, ...]:
    return (cfg.server(name),) if name else cfg.servers


@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT ask for a clean stop; a second SIGINT interrupts at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("signal received; stopping cleanly", signal=signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class JsonLines:
    """The `--dry-run` sink: payloads to a stream, nothing to the database."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def enqueue(self, server: str, job: str, items: Any, update: JobUpdate | None = None) -> int:
        rows = list(items)
        with self.lock:
            for _, payload in rows:
                self.out.write(payload + "\n")
            self.out.flush()
        return len(rows)


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


# -- commands -----------------------------------------------------------------------------


def cmd_once(args: argparse.Namespace) -> int:
    return _collect_and_deliver(args, backfill=False)


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.since is not None:
        from poller.timeparse import parse_since

        try:
            parse_since(args.since)
        except ValueError as exc:
            raise ConfigError(str(exc), where="--since") from None
    return _collect_and_deliver(args, backfill=True)


def _collect_and_deliver(args: argparse.Namespace, *, backfill: bool) -> int:
    cfg = _config(args)
    servers = _servers(cfg, args.server)
    stop = threading.Event()
    if args.dry_run:
        return _dry_run(cfg, servers, args, backfill, stop)
    state = State(cfg.state_path)
    metrics = _metrics(cfg, state)
    progress = Progress(enabled=backfill)

    def observe(item: Any, outcome: Any) -> None:
        progress.delivered(item, outcome)
        if metrics is not None:
            metrics.outcome(item, outcome)

    sender = Sender.from_config(cfg.sei)
    deliverer = Deliverer(state, sender, cfg.sei.concurrency, stop=stop, on_outcome=observe)
    try:
        with _signals(stop):
            results, report = _poll_while_delivering(
                cfg,
                servers,
                state,
                deliverer,
                stop,
                progress,
                metrics,
                backfill=backfill,
                since=getattr(args, "since", None),
                job_glob=getattr(args, "job", None),
            )
    finally:
        progress.close()
        deliverer.close()
        sender.close()
        counts = state.counts()
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
            delivered.sent += rep.sent
            if rep.auth_failed:
                delivered.auth_failed = True
                return
            if not rep.sent:
                time.sleep(0.1)

    courier = threading.Thread(target=deliver_meanwhile, name="deliver", daemon=True)
    courier.start()

    def poll_one(server: Server) -> None:
        try:
            connector = _connector(server, metrics)
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
    if delivered.auth_failed or stop.is_set():
        return results, delivered
    final = deliverer.drain(cfg.sei.retry_window)
    final.sent += delivered.sent
    return results, final


def _summarize(
    results: list[PollResult], report: Report, counts: dict[str, int], stop: threading.Event
) -> int:
    failed = [r for r in results if not r.ok]
    log.info(
        "run finished",
        enqueued=sum(r.enqueued for r in results),
        sent=report.sent,
        dead_lettered=report.dead,
        pending=counts["pending"],
        servers_failed=[r.server for r in failed],
    )
    if stop.is_set():
        log.warning("interrupted; run again to resume where this run stopped")
    if failed or report.dead or report.auth_failed or counts["pending"] or stop.is_set():
        return FAILED
    return OK


def _dry_run(
    cfg: Config,
    servers: tuple[Server, ...],
    args: argparse.Namespace,
    backfill: bool,
    stop: threading.Event,
) -> int:
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    failed = False
    try:
        with _dry_state(cfg) as state, _signals(stop):
            sink = JsonLines(out)
            for server in servers:
                connector = _connector(server)
                try:
                    result = Collector(server, connector, state, sink=sink, stop=stop).poll(
                        backfill=backfill,
                        since=getattr(args, "since", None),
                        job_glob=getattr(args, "job", None),
                    )
                finally:
                    connector.close()
                failed |= not result.ok
    finally:
        if args.output:
            out.close()
    return FAILED if failed or stop.is_set() else OK


def cmd_run(args: argparse.Namespace) -> int:
    from poller.scheduler import Daemon

    cfg = _config(args)
    state = State(cfg.state_path)
    stop = threading.Event()
    metrics = _metrics(cfg, state)
    sender = Sender.from_config(cfg.sei)
    deliverer = Deliverer(
        state,
        sender,
        cfg.sei.concurrency,
        stop=stop,
        on_outcome=metrics.outcome if metrics else None,
    )
    connectors = {s.name: _connector(s, metrics) for s in cfg.servers}
    with _signals(stop):
        code = Daemon(cfg, state, deliverer, connectors, stop, metrics).run()
    state.close()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.current_thread()
    ):
        # A scan blocked in a slow request: everything it wrote is committed, so leave now
        # rather than outlive systemd's stop timeout.
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if not cfg.state_path.exists():
        raise SeiPollerError(f"no state database yet at {cfg.state_path} (nothing has run)")
    state = State(cfg.state_path)
    try:
        data = state.status()
        counts = state.counts()
        oldest = state.oldest_pending_at()
    finally:
        state.close()
    now = time.time()
    if args.json:
        print(
            json.dumps(
                {
                    "servers": data,
                    "totals": counts,
                    "oldest_pending_age": None if oldest is None else round(now - oldest, 1),
                },
                indent=2,
                sort_keys=True,
            )
        )
        return OK
    _print_status(data, counts, oldest, now)
    return OK


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    secs = int(now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _print_status(
    data: dict[str, Any], counts: dict[str, int], oldest: float | None, now: float
) -> None:
    rows = [("SERVER / JOB", "WATERMARK", "PENDING", "SENT", "DEAD", "OLDEST PENDING", "LAST")]
    for name, srv in sorted(data.items()):
        outcome = srv.get("last_outcome") or "-"
        err = f" ({srv['last_error']})" if srv.get("last_error") else ""
        rows.append(
            (
                name,
                "",
                "",
                "",
                "",
                "",
                f"poll {outcome} {_age(srv.get('last_poll_at'), now)} ago{err}",
            )
        )
        for job, j in sorted(srv["jobs"].items()):
            rows.append(
                (
                    f"  {job}",
                    str(j["watermark"] if j["watermark"] is not None else "-"),
                    str(j["pending"]),
                    str(j["sent"]),
                    str(j["dead"]),
                    _age(j["oldest_pending_at"], now),
                    j["last_error"] or "",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6])
    print(
        f"\ntotal: {counts['pending']} pending, {counts['sent']} sent, {counts['dead']} dead;"
        f" oldest pending {_age(oldest, now)}"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from poller.registry import origin

    cfg = _config(args)
    rows: list[tuple[str, str, str]] = [("config", "ok", str(cfg.path))]
    for server in cfg.servers:
        rows.append(_check_server(server, origin(server.config.type)))
    sender = Sender.from_config(cfg.sei)
    outcome = sender.probe()
    sender.close()
    ok = outcome.kind == "sent"
    rows.append(
        (
            "sei",
            "ok" if ok else "FAILED",
            f"{cfg.sei.endpoint}: {outcome.detail if not ok else 'reachable, API key accepted'}",
        )
    )
    width = max(len(r[0]) for r in rows)
    for name, status, detail in rows:
        print(f"{name.ljust(width)}  {status.ljust(6)}  {logs.REDACTOR.scrub(detail)}")
    return OK if all(r[1] == "ok" for r in rows) else FAILED


def _check_server(server: Server, provider: str) -> tuple[str, str, str]:
    try:
        connector = _connector(server)
        try:
            info = connector.describe()
            jobs = sum(1 for _ in connector.discover())
        finally:
            connector.close()
    except SeiPollerError as exc:
        return (server.name, "FAILED", f"{server.config.url}: {exc}")
    except Exception as exc:
        return (server.name, "FAILED", f"{server.config.url}: {type(exc).__name__}: {exc}")
    return (
        server.name,
        "ok",
        f"{info.get('version')} as {info.get('user')}, {jobs} jobs "
        f"({server.config.type} ← {provider})",
    )


def cmd_dead_letters(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.server:
        cfg.server(args.server)
    state = State(cfg.state_path)
    try:
        if args.action == "retry":
            n = state.retry_dead(args.server)
            print(f"{n} dead letter(s) queued again")
            return OK
        rows = state.dead_letters(args.server)
    finally:
        state.close()
    for r in rows:
        print(
            f"{r['server']}  {r['job']}#{r['number']}  attempts={r['attempts']}  "
            f"{logs.REDACTOR.scrub(r['last_error'] or '')}"
        )
    print(f"{len(rows)} dead letter(s)")
    return OK


def cmd_register(args: argparse.Namespace) -> int:
    cfg = _config(args)
    sender = Sender.from_config(cfg.sei)
    try:
        outcome, guid = sender.register(args.integration_id, args.name, args.type)
    finally:
        sender.close()
    if outcome.kind != "sent":
        print(
            f"sei-poller: registration failed: {logs.REDACTOR.scrub(outcome.detail)}",
            file=sys.stderr,
        )
        return FAILED
    if not guid:
        print(
            "sei-poller: SEI accepted the registration but its answer holds no GUID",
            file=sys.stderr,
        )
        return FAILED
    print(guid)
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo import run_demo

    return run_demo(args, _collect_and_deliver, cmd_status)


Command = Callable[[argparse.Namespace], int]
