"""A stand-in TeamCity and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.teamcity.standin import FakeTeamCity
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, write_config

GUID = "5b1f3c2a-9d4e-4f6a-8b7c-2e1d0a9f8c7b"
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass
class Env(PollerEnv):
    tc: FakeTeamCity
    sei: FakeSei
    dir: Path
    config: Path

    def sent(self, job: str | None = None) -> list[int]:
        return sorted(n for (j, n) in self.runs() if job is None or j == job)

    def write(self, **server: Any) -> None:
        base = {
            "name": "tc-main",
            "type": "teamcity",
            "url": self.tc.url,
            "token": self.tc.token,
            "instance_guid": GUID,
            "instance_name": "TeamCity-1",
            "backfill_since": "all",
            "timeout": 2,
        }
        base.update(server)
        base = {k: v for k, v in base.items() if v is not None}  # None: leave the key out
        write_config(self.config, sei_url=self.sei.url, servers=[base])

    def cursor(self) -> dict[str, Any] | None:
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT cursor FROM server_cursors").fetchone()
        return json.loads(row[0]) if row else None

    def common(self, job: str, build_id: int, bt: str) -> dict[str, Any]:
        """The payload fields every TeamCity build has, from config and identity."""
        return {
            "job_full_name": job,
            "qualified_name": job,
            "instance_name": "TeamCity-1",
            "instance_guid": GUID,
            "instance_url": self.tc.url,
            "build_number": build_id,
            "execution_id": execution_id(GUID, job, build_id),
            "web_url": f"{self.tc.url}viewLog.html?buildId={build_id}&buildTypeId={bt}",
            "ci": True,
            "cd": False,
        }


def tc_params(number: str, status: str, text: str, trigger: str, **more: str) -> list[dict]:
    """The `tc_*` parameters the connector adds after the build's own."""
    own = {
        "tc_build_number": number,
        "tc_result": status,
        "tc_status_text": text,
        "tc_trigger": trigger,
        **more,
    }
    return [{"type": "StringParameterValue", "name": k, "value": v} for k, v in own.items()]
