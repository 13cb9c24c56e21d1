"""A stand-in Buildkite and SEI on 127.0.0.1, a config pointing at them, and `sei-poller` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.buildkite.standin import FakeBuildkite
from poller.standins.sei import FakeSei
from tests.conftest import PollerEnv, identity, string_params

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

    def server(self) -> dict[str, Any]:
        return {
            "name": "bk-main",
            "type": "buildkite",
            "url": self.bk.url,  # without /v2: the connector adds it
            "organization": self.bk.org,
            "token": self.bk.token,
            "instance_guid": GUID,
            "instance_name": "Buildkite-1",
            "backfill_since": "30d",
        }

    def common(self, slug: str, n: int) -> dict[str, Any]:
        """The payload fields every Buildkite build has, from config and identity."""
        job = f"{self.bk.org}/{slug}"
        web_url = f"https://buildkite.com/{self.bk.org}/{slug}/builds/{n}"
        return identity(GUID, "Buildkite-1", self.bk.url, job, n, web_url=web_url)


def bk_params(build: dict[str, Any], **more: str) -> list[dict[str, str]]:
    """The `bk_*` parameters the connector adds after the build's env and meta-data."""
    own = {
        "bk_result": build["state"],
        "bk_source": build["source"],
        "bk_message": build["message"],
        **more,
        "bk_build_id": build["id"],
    }
    return string_params(own)
