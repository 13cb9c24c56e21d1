"""A stand-in Buildkite and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.buildkite.standin import FakeBuildkite
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, write_config

GUID = "7c2e9a41-3b5d-4e8f-9a6c-1d2b3c4e5f60"
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass
class Env(PollerEnv):
    bk: FakeBuildkite
    sei: FakeSei
    dir: Path
    config: Path

    def sent(self, job: str | None = None) -> list[int]:
        return sorted(n for (j, n) in self.runs() if job is None or j == job)

    def write(self, **server: Any) -> None:
        base = {
            "name": "bk-main",
            "type": "buildkite",
            "url": self.bk.url,  # without /v2: the connector adds it
            "organization": self.bk.org,
            "token": self.bk.token,
            "instance_guid": GUID,
            "instance_name": "Buildkite-1",
            "backfill_since": "30d",
            "timeout": 2,
        }
        base.update(server)
        base = {k: v for k, v in base.items() if v is not None}  # None: leave the key out
        write_config(self.config, sei_url=self.sei.url, servers=[base])

    def cursor(self) -> dict[str, Any] | None:
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT cursor FROM server_cursors").fetchone()
        return json.loads(row[0]) if row else None

    def common(self, slug: str, n: int) -> dict[str, Any]:
        """The payload fields every Buildkite build has, from config and identity."""
        job = f"{self.bk.org}/{slug}"
        return {
            "job_full_name": job,
            "qualified_name": job,
            "instance_name": "Buildkite-1",
            "instance_guid": GUID,
            "instance_url": self.bk.url,
            "build_number": n,
            "execution_id": execution_id(GUID, job, n),
            "web_url": f"https://buildkite.com/{self.bk.org}/{slug}/builds/{n}",
            "ci": True,
            "cd": False,
        }


def bk_params(build: dict[str, Any], **more: str) -> list[dict[str, str]]:
    """The `bk_*` parameters the connector adds after the build's env and meta-data."""
    own = {
        "bk_result": build["state"],
        "bk_source": build["source"],
        "bk_message": build["message"],
        **more,
        "bk_build_id": build["id"],
    }
    return [{"type": "StringParameterValue", "name": k, "value": v} for k, v in own.items()]
