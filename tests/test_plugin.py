"""A connector in its own distribution, outside this repository, found through the
`sei_poller.connectors` entry point (issue 22): the wheel is built here, installed by pip
into a throwaway directory, and `sei-poller once` polls with it in a fresh process."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from pytest_httpserver import HTTPServer

from poller.standins.sei import FakeSei
from tests.conftest import write_config

# The whole connector an author writes for a CI system whose API lists finished builds at
# `<url>api/builds` as [{"job", "number", "result", "start", "duration"}]: the toolkit does
# the HTTP (route, trust, retries, one-line errors), the core does everything else.
TINY = """
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from connectors.base import Services
from connectors.kit.http import Client, json_answer
from poller.model import Build, JobCursor, JobRef, ServerSpec


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TinyConnector:
    type: ClassVar[str] = "tiny"
    Settings: ClassVar[type[BaseModel]] = Settings
    sequential: ClassVar[bool] = True

    def __init__(self, spec: ServerSpec, services: Services) -> None:
        self.spec = spec
        self.http = Client(spec, "Tiny", limit=1 << 20, on_request=services.on_request)

    def _builds(self) -> list[dict[str, Any]]:
        url = self.spec.url + "api/builds"
        resp, body = self.http.get(url)
        return json_answer(body, resp, url, "Tiny")

    def discover(self):
        newest: dict[str, int] = {}
        for b in self._builds():
            newest[b["job"]] = max(newest.get(b["job"], 0), b["number"])
        for job, last in sorted(newest.items()):
            # A sequential connector says its newest build: None would mean "never built".
            yield JobRef(job, job, self.spec.url + job, last_build=last, last_completed=last)

    def scan(self, job: JobRef, cursor: JobCursor, wanted):
        builds = [b for b in self._builds() if b["job"] == job.full_name]
        for b in sorted(builds, key=lambda b: -b["number"]):
            if cursor.watermark is not None and b["number"] <= cursor.watermark:
                return
            if wanted(b["number"]):
                yield Build(job.full_name, job.full_name, b["number"], b["result"],
                            b["start"], b["duration"])

    def describe(self) -> dict[str, Any]:
        return {"version": "Tiny 1.0", "user": "anyone"}

    def close(self) -> None:
        self.http.close()
"""


def _wheel(folder: Path) -> Path:
    """`sei_poller_tiny-0.1-py3-none-any.whl`, as a build backend would write it."""
    dist = "sei_poller_tiny-0.1.dist-info"
    files = {
        "sei_poller_tiny/__init__.py": textwrap.dedent(TINY).encode(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: sei-poller-tiny\nVersion: 0.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[sei_poller.connectors]\n"
        b"tiny = sei_poller_tiny:TinyConnector\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / "sei_poller_tiny-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def test_a_connector_from_its_own_distribution_polls(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(_wheel(tmp_path))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    assert (site / "sei_poller_tiny-0.1.dist-info" / "entry_points.txt").is_file()
    httpserver.expect_request("/api/builds").respond_with_json(
        [
            {"job": "hello", "number": n, "result": "SUCCESS", "start": 1_700_000_000_000,
             "duration": 1000}
            for n in (1, 2)
        ]
    )  # fmt: skip
    with FakeSei() as sei:
        config = write_config(
            tmp_path / "config.toml",
            sei_url=sei.url,
            servers=[
                {
                    "name": "tiny-1",
                    "type": "tiny",
                    "url": httpserver.url_for("/"),
                    "instance_guid": "9d3c2b1a-0f1e-4d2c-8b7a-6f5e4d3c2b1a",
                    "instance_name": "Tiny",
                    "backfill_since": "all",
                }
            ],
        )
        env = {**os.environ, "PYTHONPATH": str(site)}
        run = subprocess.run(
            [sys.executable, "-m", "poller", "-c", str(config), "once"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert sorted((r["job_full_name"], r["build_number"]) for r in sei.received) == [
            ("hello", 1),
            ("hello", 2),
        ]
        check = subprocess.run(
            [sys.executable, "-m", "poller", "-c", str(config), "check"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert "Tiny 1.0 as anyone, 1 jobs (tiny ← sei-poller-tiny 0.1)" in check.stdout
        # Without the distribution on the path, the config names a connector nobody installed.
        bare = subprocess.run(
            [sys.executable, "-m", "poller", "-c", str(config), "once"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bare.returncode == 2
        assert 'no connector "tiny" installed' in bare.stderr


def test_a_claim_without_its_methods_is_refused_by_name(tmp_path: Path) -> None:
    """A connector that says it has a capability (subclassing its protocol) and lacks a
    method of it is refused when loaded, with one line naming what it lacks."""
    from connectors.base import ServerCursor, missing

    class Half(ServerCursor):
        type = "half"
        Settings = object
        sequential = False

        def discover(self):  # type: ignore[no-untyped-def]
            return iter(())

        def describe(self):  # type: ignore[no-untyped-def]
            return {}

        def close(self) -> None:
            pass

    assert missing(Half) == ["scan (Connector)", "discover_since (ServerCursor)"]
