"""The commands behind `sei-poller`: each assembles what it needs and does one thing.

`poller.cli` imports this module only once the arguments are parsed, so `--help` and
`--version` cost argparse alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from poller import logs, network, wiring
from poller.config import Server
from poller.errors import ConfigError, SeiPollerError
from poller.lock import DaemonLock
from poller.model import JobRef
from poller.oneshot import RunOptions, collect_and_deliver
from poller.sei import Sender
from poller.state import State
from poller.status import READINESS_DAYS, print_problems, print_readiness, print_table, readiness

OK, FAILED = 0, 1


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
    sender = Sender.from_config(cfg.sei, cfg.sei_network)
    deliverer = wiring.deliverer(cfg, state, sender, stop, metrics)
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
    now = time.time()
    state = State(cfg.state_path)
    try:
        data = state.status()
        counts = state.counts()
        oldest = state.oldest_pending_at()
        problems = state.problems()
        ready = state.readiness(now - READINESS_DAYS * 86400)
    finally:
        state.close()
    figures = {name: readiness(ready.get(name)) for name in data}
    for name, srv in data.items():
        srv["readiness"] = figures[name]
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
    print_readiness(figures)
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
    sender = Sender.from_config(cfg.sei, cfg.sei_network)
    outcome = sender.probe()
    sender.close()
    ok = outcome.kind == "sent"
    detail = outcome.detail if not ok else "reachable, API key accepted"
    rows.append(
        (
            "sei",
            "ok" if ok else "FAILED",
            [f"{cfg.sei.endpoint}: {detail}", _route(cfg.sei_network)],
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

    route = _route(server.spec.network)
    try:
        connector = wiring.connector(server)
        try:
            info = connector.describe()
            jobs = [j for j in connector.discover() if isinstance(j, JobRef)]
            scope = survey(connector, server, jobs)
        finally:
            connector.close()
    except SeiPollerError as exc:
        return (server.name, "FAILED", [f"{server.config.url}: {exc}", route])
    except Exception as exc:
        return (
            server.name,
            "FAILED",
            [f"{server.config.url}: {type(exc).__name__}: {exc}", route],
        )
    status, lines = report(server, scope)
    head = (
        f"{info.get('version')} as {info.get('user')}, {len(jobs)} jobs "
        f"({server.config.type} ← {provider})"
    )
    return (server.name, status, [head, *lines, route])


def _route(ep: network.Endpoint | None) -> str:
    """How requests go: `via direct; trusting the default CA bundle (certifi)`."""
    if ep is None:
        return "via direct; trusting the default CA bundle (certifi)"
    return f"via {ep.route}; trusting {ep.trust}"


def cmd_explain(args: argparse.Namespace) -> int:
    """Exit 0: the payload is complete; 1: findings (or no such job/build); 2: usage."""
    from poller.explain import run

    return run(wiring.config(args.config), args.server, args.job, args.build, as_json=args.json)


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
    sender = Sender.from_config(cfg.sei, cfg.sei_network)
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
