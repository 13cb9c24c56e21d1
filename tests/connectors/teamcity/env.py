"""A stand-in TeamCity and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.teamcity.standin import FakeTeamCity
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, identity, string_params

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

    def server(self) -> dict[str, Any]:
        return {
            "name": "tc-main",
            "type": "teamcity",
            "url": self.tc.url,
            "token": self.tc.token,
            "instance_guid": GUID,
            "instance_name": "TeamCity-1",
        }

    def common(self, job: str, build_id: int, bt: str) -> dict[str, Any]:
        """The payload fields every TeamCity build has, from config and identity."""
        url = self.tc.url
        web_url = f"{url}viewLog.html?buildId={build_id}&buildTypeId={bt}"
        return identity(GUID, "TeamCity-1", url, job, build_id, web_url=web_url)


def tc_params(number: str, status: str, text: str, trigger: str, **more: str) -> list[dict]:
    """The `tc_*` parameters the connector adds after the build's own."""
    own = {
        "tc_build_number": number,
        "tc_result": status,
        "tc_status_text": text,
        "tc_trigger": trigger,
        **more,
    }
    return string_params(own)
