"""A stand-in GoCD and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.gocd.standin import FakeGoCD
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, write_config

GUID = "3d6f0b1e-8a2c-4c5e-9f1a-7b6c5d4e3f2a"
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
GEN = 10**12


@dataclass
class Env(PollerEnv):
    gocd: FakeGoCD
    sei: FakeSei
    dir: Path
    config: Path

    def sent(self, job: str | None = None) -> list[int]:
        return sorted(n for (j, n) in self.runs() if job is None or j == job)

    def write(self, **server: Any) -> None:
        base = {
            "name": "gocd-main",
            "type": "gocd",
            "url": self.gocd.url,
            "token": self.gocd.token,
            "instance_guid": GUID,
            "instance_name": "GoCD-1",
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

    def job_cursor(self, job: str) -> dict[str, Any] | None:
        with sqlite3.connect(self.dir / "state.db") as db:
            row = db.execute("SELECT cursor FROM jobs WHERE job = ?", (job,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def common(self, job: str, number: int, qualified: str | None = None) -> dict[str, Any]:
        """The payload fields every GoCD run has, from config and identity."""
        return {
            "job_full_name": job,
            "qualified_name": qualified or job,
            "instance_name": "GoCD-1",
            "instance_guid": GUID,
            "instance_url": self.gocd.url,
            "build_number": number,
            "execution_id": execution_id(GUID, job, number),
            "ci": True,
            "cd": False,
        }


def params(**values: Any) -> list[dict[str, Any]]:
    """The `gocd_*` parameters, in the connector's order, those given."""
    order = (
        "label",
        "counter",
        "stage_counter",
        "natural_order",
        "result",
        "approved_by",
        "cancelled_by",
        "rerun_of_counter",
        "trigger",
        "comment",
        "waiting",
    )
    return [
        {"type": "StringParameterValue", "name": f"gocd_{k}", "value": str(values[k])}
        for k in order
        if values.get(k) is not None
    ]
