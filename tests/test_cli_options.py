"""Global options (-c/--config, --log-level, --log-format) go before or after the command."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.cli import _parser
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, Env

COMMANDS = ["run", "once", "backfill", "status", "check", "dead-letters", "register", "demo"]
REQUIRED = {"dead-letters": ["list"], "register": ["--integration-id", "1", "--name", "n"]}


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        t0 = int(time.time() * 1000) - DAY
        for n in range(1, 4):
            jenkins.add_build("team/api", n, timestamp=t0 + n, duration=10)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", *args], capture_output=True, text=True, timeout=120
    )


def _info_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if '"level": "info"' in line]


def test_once_help_lists_the_global_options() -> None:
    proc = _cli("once", "--help")
    assert proc.returncode == 0
    for option in ("-c PATH, --config PATH", "--log-level", "--log-format {json,console}"):
        assert option in proc.stdout
    assert "global options (before or after the command)" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_lists_the_global_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "-c PATH, --config PATH" in out and "--log-level" in out and "--log-format" in out


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("argv", "config", "level", "fmt"),
    [
        ([], None, "info", None),
        (["-c", "B"], "B", "info", None),  # after only
        (["--log-level", "warning"], None, "warning", None),
        (["--log-format", "console"], None, "info", "console"),
    ],
)
def test_after_the_command(
    command: str, argv: list[str], config: str | None, level: str, fmt: str | None
) -> None:
    args = _parser().parse_args([command, *REQUIRED.get(command, []), *argv])
    assert (args.config, args.log_level, args.log_format) == (config, level, fmt)


@pytest.mark.parametrize("command", COMMANDS)
def test_before_the_command_is_not_overwritten_by_defaults(command: str) -> None:
    argv = ["-c", "A", "--log-level", "error", "--log-format", "json", command]
    args = _parser().parse_args([*argv, *REQUIRED.get(command, [])])
    assert (args.config, args.log_level, args.log_format) == ("A", "error", "json")


@pytest.mark.parametrize("command", COMMANDS)
def test_given_on_both_sides_the_one_after_the_command_wins(command: str) -> None:
    before = ["-c", "A", "--log-level", "error", "--log-format", "json", command]
    after = ["--config", "B", "--log-level", "debug", "--log-format", "console"]
    args = _parser().parse_args([*before, *REQUIRED.get(command, []), *after])
    assert (args.config, args.log_level, args.log_format) == ("B", "debug", "console")


def test_config_after_the_command(env: Env) -> None:
    proc = _cli("once", "-c", str(env.config))
    assert proc.returncode == 0, proc.stderr
    assert env.sent("team/api") == [1, 2, 3]
    assert _info_lines(proc.stderr)  # the default level still applies


def test_log_level_and_config_after_the_command(env: Env) -> None:
    assert _cli("-c", str(env.config), "once").returncode == 0
    proc = _cli("status", "--log-level", "warning", "-c", str(env.config))
    assert proc.returncode == 0, proc.stderr
    assert "team/api" in proc.stdout and "0 pending, 3 sent, 0 dead" in proc.stdout


def test_log_level_before_the_command_survives_options_after_it(env: Env) -> None:
    proc = _cli("--log-level", "warning", "once", "-c", str(env.config), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"build_number"') == 3
    assert _info_lines(proc.stderr) == []


def test_both_sides_the_one_after_wins(env: Env) -> None:
    missing = str(env.dir / "missing.toml")
    proc = _cli(
        "-c",
        missing,
        "--log-level",
        "debug",
        "once",
        "--log-level",
        "warning",
        "-c",
        str(env.config),
    )
    assert proc.returncode == 0, proc.stderr
    assert _info_lines(proc.stderr) == [] and '"level": "debug"' not in proc.stderr
    proc = _cli("-c", str(env.config), "once", "-c", missing)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"sei-poller: {missing}: config file not found (set -c/--config or SEI_POLLER_CONFIG)\n"
    )


def test_log_format_after_the_command(env: Env) -> None:
    proc = _cli("once", "--dry-run", "--log-format", "console", "-c", str(env.config))
    assert proc.returncode == 0, proc.stderr
    assert "poll finished" in proc.stderr and '"event"' not in proc.stderr


def test_a_bad_choice_names_the_option_and_the_choices(env: Env) -> None:
    proc = _cli("status", "-c", str(env.config), "--log-format", "xml")
    assert proc.returncode == 2
    assert "argument --log-format: invalid choice: 'xml' (choose from json, console)" in (
        proc.stderr.replace("'json', 'console'", "json, console")
    )
    assert "Traceback" not in proc.stderr
