"""`sei-poller`: wires config, connectors, state, delivery and the scheduler together.

Every mistake an operator can make ends here as one line on stderr and exit 2; a run in
which something failed exits 1; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import structlog

from poller import __version__, logs, wiring
from poller.config import Server
from poller.deliver import Deliverer
from poller.errors import ConfigError, SeiPollerError
from poller.lock import DaemonLock
from poller.oneshot import RunOptions, collect_and_deliver
from poller.sei import Sender
from poller.state import State, state_error
from poller.status import print_problems, print_table

log = structlog.get_logger()
OK, FAILED, USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # one line per problem, each one ours
        print("\n".join(f"sei-poller: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return USAGE
    except SeiPollerError as exc:
        print(f"sei-poller: {logs.REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("sei-poller: interrupted", file=sys.stderr)
        return FAILED
    except sqlite3.DatabaseError as exc:  # the file went bad under a running command
        print(f"sei-poller: {state_error(State.last_path or Path('?'), exc)}", file=sys.stderr)
        return USAGE
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
        parents=[_global_options(after_command=False)],
    )
    p.add_argument("--version", action="version", version=f"sei-poller {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every command takes the global options too, so `sei-poller once -c config.toml` works.
    common = [_global_options(after_command=True)]

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=common)

    command("run", "daemon: poll every server, deliver continuously").set_defaults(func=cmd_run)

    once = command("once", "poll each server once, deliver what is due, exit")
    once.add_argument("--server")
    _dry_run_args(once)
    once.set_defaults(func=cmd_once)

    bf = command("backfill", "read history back to --since, deliver, exit")
    bf.add_argument("--server")
    bf.add_argument("--since", help="'all', an ISO date, or a duration like 90d")
    bf.add_argument("--job", help="glob over job full names")
    _dry_run_args(bf)
    bf.set_defaults(func=cmd_backfill)

    st = command("status", "per server and job: watermark, pending / sent / dead")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    command(
        "check", "validate config, reach every CI server and SEI, show what each server will poll"
    ).set_defaults(func=cmd_check)

    dl = command("dead-letters", "list or retry payloads SEI rejected")
    dl.add_argument("action", choices=["list", "retry"])
    dl.add_argument("--server")
    dl.set_defaults(func=cmd_dead_letters)

    reg = command("register", "create a CI/CD instance in SEI and print its GUID")
    reg.add_argument("--integration-id", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--type", default="jenkins")
    reg.set_defaults(func=cmd_register)

    demo = command("demo", "`once` against built-in Jenkins and SEI stand-ins")
    demo.add_argument("--keep", help="keep the demo's config and state in this directory")
    demo.add_argument(
        "--ci", choices=["jenkins", "teamcity"], default="jenkins", help="default: jenkins"
    )
    demo.set_defaults(func=cmd_demo)
    return p


def _global_options(*, after_command: bool) -> argparse.ArgumentParser:
    """-c/--config, --log-level, --log-format: accepted before the command and after it.

    The copy every command gets has SUPPRESS defaults: an option not given after the command
    then leaves the value given before it (or the main parser's default) alone, instead of
    overwriting it with a default. Given on both sides, the one after the command wins.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=default(None),
        help="config file (default: $SEI_POLLER_CONFIG, else /etc/sei-poller/config.toml)",
    )
    g.add_argument(
        "--log-level",
        default=default("info"),
        choices=["debug", "info", "warning", "error"],
        help="default: info",
    )
    g.add_argument(
        "--log-format",
        default=default(None),
        choices=["json", "console"],
        help="default: console on a terminal, else json",
    )
    return p


def _dry_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="write payloads as JSON lines; change no state"
    )
    p.add_argument("--output", help="with --dry-run: write to this file instead of stdout")


def _options(args: argparse.Namespace, *, backfill: bool) -> RunOptions:
    return RunOptions(
        config=args.config,
        backfill=backfill,
        server=args.server,
        since=getattr(args, "since", None),
        job=getattr(args, "job", None),
        dry_run=args.dry_run,
        output=args.output,
    )


def cmd_once(args: argparse.Namespace) -> int:
    return collect_and_deliver(_options(args, backfill=False))


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.since is not None:
        from poller.timeparse import parse_since

        try:
            parse_since(args.since)
        except ValueError as exc:
            raise ConfigError(str(exc), where="--since") from None
    return collect_and_deliver(_options(args, backfill=True))


def cmd_run(args: argparse.Namespace) -> int:
    from poller.scheduler import Daemon

    cfg = wiring.config(args.config)
    lock = DaemonLock(cfg.state_path).acquire()
    state = State(cfg.state_path)
    stop = threading.Event()
    metrics = wiring.metrics(cfg, state)
    sender = Sender.from_config(cfg.sei)
    deliverer = Deliverer(
        state,
        sender,
        cfg.sei.concurrency,
        stop=stop,
        on_outcome=metrics.outcome if metrics else None,
    )
    connectors = {s.name: wiring.connector(s, metrics) for s in cfg.servers}
    with wiring.signals(stop):
        code = Daemon(cfg, state, deliverer, connectors, stop, metrics).run()
    state.close()
    lock.release()
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
    cfg = wiring.config(args.config)
    if not cfg.state_path.exists():
        raise SeiPollerError(f"no state database yet at {cfg.state_path} (nothing has run)")
    state = State(cfg.state_path)
    try:
        data = state.status()
        counts = state.counts()
        oldest = state.oldest_pending_at()
        problems = state.problems()
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
                    "parked_builds": [p for p in problems if p["kind"] == "build"],
                    "failing_folders": [p for p in problems if p["kind"] == "container"],
                },
                indent=2,
                sort_keys=True,
            )
        )
        return OK
    print_table(data, counts, oldest, now)
    print_problems(problems, now)
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    """Config, every CI server (and what it will poll), SEI; exit 0 only if all pass.

    WARN (a server on which nothing matches include/exclude) is shown, not failed.
    """
    from poller.registry import origin

    cfg = wiring.config(args.config)
    rows: list[tuple[str, str, list[str]]] = [("config", "ok", [str(cfg.path)])]
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
            [f"{cfg.sei.endpoint}: {outcome.detail if not ok else 'reachable, API key accepted'}"],
        )
    )
    width = max(len(r[0]) for r in rows)
    for name, status, lines in rows:
        first, *rest = lines
        print(f"{name.ljust(width)}  {status.ljust(6)}  {logs.REDACTOR.scrub(first)}")
        for line in rest:
            print(f"{'':{width}}  {'':6}  {logs.REDACTOR.scrub(line)}")
    return OK if all(r[1] in ("ok", "WARN") for r in rows) else FAILED


def _check_server(server: Server, provider: str) -> tuple[str, str, list[str]]:
    """Reach the server, then say what it will poll: jobs matched, builds in the window."""
    from poller.scope import report, survey

    try:
        connector = wiring.connector(server)
        try:
            info = connector.describe()
            jobs = list(connector.discover())
            scope = survey(connector, server, jobs)
        finally:
            connector.close()
    except SeiPollerError as exc:
        return (server.name, "FAILED", [f"{server.config.url}: {exc}"])
    except Exception as exc:
        return (server.name, "FAILED", [f"{server.config.url}: {type(exc).__name__}: {exc}"])
    status, lines = report(server, scope)
    head = (
        f"{info.get('version')} as {info.get('user')}, {len(jobs)} jobs "
        f"({server.config.type} ← {provider})"
    )
    return (server.name, status, [head, *lines])


def cmd_dead_letters(args: argparse.Namespace) -> int:
    cfg = wiring.config(args.config)
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
    cfg = wiring.config(args.config)
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

    return run_demo(args, collect_and_deliver, cmd_status)
