"""`sei-poller`: wires config, connectors, state, delivery and the scheduler together.

Every mistake an operator can make ends here as one line on stderr and exit 2; a run in
which something failed exits 1; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from poller import __version__
from poller.errors import ConfigError, SeiPollerError

OK, FAILED, USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Only now the weight: structlog, pydantic, requests, SQLite (see poller.commands).
    from poller import logs

    logs.configure(args.log_level, args.log_format)
    try:
        command = getattr(importlib.import_module("poller.commands"), args.func)
        return int(command(args) or 0)
    except ConfigError as exc:  # one line per problem, each one ours
        print("\n".join(f"sei-poller: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return USAGE
    except SeiPollerError as exc:
        print(f"sei-poller: {logs.REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("sei-poller: interrupted", file=sys.stderr)
        return FAILED
    except Exception as exc:
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """A state file gone bad under a running command is the operator's; anything else is a
    bug: one line for the operator, the traceback in debug logs."""
    import sqlite3
    from pathlib import Path

    import structlog

    from poller import logs
    from poller.state import State, state_error

    if isinstance(exc, sqlite3.DatabaseError):
        print(f"sei-poller: {state_error(State.last_path or Path('?'), exc)}", file=sys.stderr)
        return USAGE
    structlog.get_logger().debug("internal error", exc_info=True)
    message = logs.REDACTOR.scrub(f"{type(exc).__name__}: {exc}")
    print(f"sei-poller: internal error: {message} (--log-level debug shows more)", file=sys.stderr)
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

    command("run", "daemon: poll every server, deliver continuously").set_defaults(func="cmd_run")

    once = command("once", "poll each server once, deliver what is due, exit")
    once.add_argument("--server")
    _dry_run_args(once)
    once.set_defaults(func="cmd_once")

    bf = command("backfill", "read history back to --since, deliver, exit")
    bf.add_argument("--server")
    bf.add_argument("--since", help="'all', an ISO date, or a duration like 90d")
    bf.add_argument("--job", help="glob over job full names")
    _dry_run_args(bf)
    bf.set_defaults(func="cmd_backfill")

    st = command("status", "per server and job: watermark, pending / sent / dead")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func="cmd_status")

    command(
        "check", "validate config, reach every CI server and SEI, show what each server will poll"
    ).set_defaults(func="cmd_check")

    ex = command(
        "explain",
        "show the payload one build would get and what keeps SEI from using it; send nothing",
    )
    ex.add_argument("server", metavar="SERVER", help="a server's name in the config")
    ex.add_argument("job", metavar="JOB", help="the job's full name, as include/exclude see it")
    ex.add_argument("build", metavar="BUILD", type=int, help="the build number")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func="cmd_explain")

    dl = command("dead-letters", "list or retry payloads SEI rejected")
    dl.add_argument("action", choices=["list", "retry"])
    dl.add_argument("--server")
    dl.set_defaults(func="cmd_dead_letters")

    reg = command("register", "create a CI/CD instance in SEI and print its GUID")
    reg.add_argument("--integration-id", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--type", default="jenkins")
    reg.set_defaults(func="cmd_register")

    demo = command("demo", "`once` against built-in Jenkins and SEI stand-ins")
    demo.add_argument("--keep", help="keep the demo's config and state in this directory")
    demo.add_argument(
        "--ci",
        choices=["jenkins", "teamcity", "buildkite", "bamboo", "gocd"],
        default="jenkins",
        help="default: jenkins",
    )
    demo.set_defaults(func="cmd_demo")
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
