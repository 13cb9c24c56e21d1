"""Shared fixtures: real servers on 127.0.0.1, real SQLite files in tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import connectors.kit.http
from poller import logs
from poller.cli import main
from poller.payload import execution_id
from poller.standins.sei import FakeSei

# What routes and trusts requests (`poller.network`): the host's settings stay out of tests,
# and the tests that need one set it.
NETWORK_ENV = (
    *(f"{p}_proxy" for p in ("http", "https", "all", "no")),
    *(f"{p}_PROXY" for p in ("HTTP", "HTTPS", "ALL", "NO")),
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture(autouse=True)
def _quiet_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    logs.configure("info", "json")
    yield


@pytest.fixture(autouse=True)
def _no_host_network_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def fast_retries() -> Iterator[None]:
    """The same GET retries, without the pauses between them: a fake clock for urllib3."""
    real = connectors.kit.http.GET_RETRY
    connectors.kit.http.GET_RETRY = real.new(backoff_factor=0, backoff_jitter=0)
    try:
        yield
    finally:
        connectors.kit.http.GET_RETRY = real


@pytest.fixture(autouse=True)
def no_retry_pauses() -> Iterator[None]:
    """GETs retried in this process retry as they would, without the real pauses between
    tries (a fake clock for urllib3's backoff): a poll's logic, not its waiting, is tested.
    Child processes (`run`, chaos) keep the real pauses."""
    with fast_retries():
        yield


def write_config(
    path: Path,
    *,
    sei_url: str,
    servers: list[dict],
    api_key: str = "sei-secret-key",
    extra: str = "",
    state: str = "state.db",
    sei: dict[str, Any] | None = None,
) -> Path:
    """A config file like an operator writes it, from simple server dicts."""
    blocks = []
    for s in servers:
        lines = ["[[servers]]"]
        for k, v in s.items():
            lines.append(f"{k} = {_toml(v)}")
        blocks.append("\n".join(lines))
    sei_lines = "\n        ".join(f"{k} = {_toml(v)}" for k, v in (sei or {}).items())
    text = (
        textwrap.dedent(f"""
        [sei]
        url = "{sei_url}"
        api_key = "{api_key}"
        concurrency = 4
        retry_window = "5s"
        {sei_lines}

        [state]
        path = "{state}"
        {extra}
    """)
        + "\n\n".join(blocks)
        + "\n"
    )
    path.write_text(text)
    path.chmod(0o600)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether `predicate` came true within `timeout` seconds (a daemon works on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class PollerEnv:
    """What the stand-in test environments share: `sei-poller` runs on ``config``, and the
    runs ``sei`` accepted. Subclasses are dataclasses holding the CI stand-in as well."""

    sei: FakeSei
    config: Path
    dir: Path

    def server(self) -> dict[str, Any]:
        """The CI system's own server keys, for `write`."""
        raise NotImplementedError

    def write(self, **server: Any) -> None:
        """The config: one server, `server()` with `server` on top (None leaves a key out)."""
        keys = {"backfill_since": "all", "timeout": 2, **self.server(), **server}
        kept = {k: v for k, v in keys.items() if v is not None}
        write_config(self.config, sei_url=self.sei.url, servers=[kept])

    def sent(self, job: str | None = None) -> list[int]:
        """Build numbers SEI accepted, of `job` or of all jobs."""
        return sorted(n for (j, n) in self.runs() if job is None or j == job)

    def cursor(self) -> dict[str, Any] | None:
        """The server cursor the state file holds."""
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT cursor FROM server_cursors").fetchone()
        return json.loads(row[0]) if row else None

    def job_cursor(self, job: str) -> dict[str, Any] | None:
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT cursor FROM jobs WHERE job = ?", (job,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def run(self, *args: str) -> int:
        return main(["-c", str(self.config), *args])

    def start(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`sei-poller run` in its own process (a signal is then a real one); what it logs
        goes to `daemon.log` beside the config, never to a pipe nobody reads."""
        with open(self.dir / "daemon.log", "a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "poller", "-c", str(self.config), "run"],
                env={**os.environ, **(extra_env or {})},
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )

    @contextlib.contextmanager
    def daemon(self) -> Iterator[subprocess.Popen[str]]:
        """`start`, then SIGTERM on the way out, which the daemon answers with exit 0."""
        proc = self.start()
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0

    def once(self, *args: str) -> int:
        return self.run("once", *args)

    def runs(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Accepted runs by (job_full_name, build_number)."""
        return {(k[1], k[2]): v for k, v in self.sei.runs().items()}


def identity(
    guid: str, instance: str, url: str, job: str, number: int, **more: Any
) -> dict[str, Any]:
    """The payload fields a build owes to config and identity, which tests seldom vary;
    `more` adds or replaces some (`web_url`, `qualified_name`)."""
    return {
        "job_full_name": job,
        "qualified_name": job,
        "instance_name": instance,
        "instance_guid": guid,
        "instance_url": url,
        "build_number": number,
        "execution_id": execution_id(guid, job, number),
        "ci": True,
        "cd": False,
        **more,
    }


def string_params(values: Mapping[str, object]) -> list[dict[str, str]]:
    """Parameters as the payload lists them, in the given order."""
    return [{"type": "StringParameterValue", "name": k, "value": str(v)} for k, v in values.items()]


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml(str(k))} = {_toml(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
