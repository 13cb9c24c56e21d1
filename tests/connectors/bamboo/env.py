"""A stand-in Bamboo and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.bamboo.standin import FakeBamboo
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, identity, string_params

GUID = "7c2e9a41-3b5d-4e8f-9a10-6d4c2b1e0f93"
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass
class Env(PollerEnv):
    bamboo: FakeBamboo
    sei: FakeSei
    dir: Path
    config: Path

    def server(self) -> dict[str, Any]:
        return {
            "name": "bamboo-main",
            "type": "bamboo",
            "url": self.bamboo.url,
            "token": self.bamboo.token,
            "instance_guid": GUID,
            "instance_name": "Bamboo-1",
        }

    def common(self, job: str, number: int, key: str | None = None) -> dict[str, Any]:
        """The payload fields every Bamboo plan result has, from config and identity."""
        url = self.bamboo.url
        web_url = f"{url}browse/{key or f'{job}-{number}'}"
        return identity(GUID, "Bamboo-1", url, job, number, web_url=web_url)


def own(state: str, key: str, reason: str, **more: str) -> list[dict[str, str]]:
    """The `bamboo_*` parameters the connector adds after the result's variables."""
    values = {"bamboo_result": state, "bamboo_result_key": key, "bamboo_reason": reason, **more}
    return string_params(values)
