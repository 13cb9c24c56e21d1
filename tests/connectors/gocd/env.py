"""A stand-in GoCD and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.gocd.standin import FakeGoCD
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, identity, string_params

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

    def server(self) -> dict[str, Any]:
        return {
            "name": "gocd-main",
            "type": "gocd",
            "url": self.gocd.url,
            "token": self.gocd.token,
            "instance_guid": GUID,
            "instance_name": "GoCD-1",
        }

    def common(self, job: str, number: int, qualified: str | None = None) -> dict[str, Any]:
        """The payload fields every GoCD run has, from config and identity."""
        named = qualified or job
        return identity(GUID, "GoCD-1", self.gocd.url, job, number, qualified_name=named)


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
    return string_params({f"gocd_{k}": values[k] for k in order if values.get(k) is not None})
