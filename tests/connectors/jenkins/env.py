"""A stand-in Jenkins and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, write_config

GUID = "666ba79b-3f3d-4236-ac04-4686ce526705"
DAY = 86_400_000


def jenkins_server(jenkins: FakeJenkins, **more: Any) -> dict[str, Any]:
    """The `[[servers]]` entry for the stand-in Jenkins, ``more`` added or overriding."""
    return {
        "name": "jenkins-main",
        "type": "jenkins",
        "url": jenkins.url,
        "username": jenkins.username,
        "token": jenkins.token,
        "instance_guid": GUID,
        "instance_name": "Jenkins-1",
        "backfill_since": "all",
        "timeout": 2,
        **more,
    }


@dataclass
class Env(PollerEnv):
    jenkins: FakeJenkins
    sei: FakeSei
    dir: Path
    config: Path

    def watermark(self, job: str) -> int | None:
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT watermark FROM jobs WHERE job = ?", [job]).fetchone()
        return row[0] if row else None

    def write(self, **server: Any) -> None:
        servers = [jenkins_server(self.jenkins, **server)]
        write_config(self.config, sei_url=self.sei.url, servers=servers)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
