"""Jenkins requests per build with stages on, on a live poll: per-build describe vs runs.

    python -m benchmarks.live_stages

20 pipeline jobs with 5 builds each are read once (first sight); then each job gets 3 new
builds and a second `once` reads them. That poll is measured twice in the same run: with
Pipeline Stage View's `wfapi/runs` (today) and with the per-build `describe` 0.1 made (the
connector's batching switched off in-process).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from connectors.jenkins.connector import JenkinsConnector
from connectors.jenkins.standin import FakeJenkins
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import GUID

JOBS, FIRST, NEW = 20, 5, 3


def poll(batched: bool) -> dict[str, float]:
    original = JenkinsConnector._recent_stages
    if not batched:
        JenkinsConnector._recent_stages = lambda self, job, batch, stop: {}  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp, FakeJenkins() as jk, FakeSei() as sei:
            t0 = int(time.time() * 1000) - 86_400_000
            for j in range(JOBS):
                jk.add_job(f"team/p{j}", "pipeline")
                for n in range(1, FIRST + 1):
                    jk.add_build(f"team/p{j}", n, timestamp=t0 + n, duration=10)
            cfg = write_config(
                Path(tmp) / "config.toml",
                sei_url=sei.url,
                servers=[
                    {
                        "name": "j",
                        "type": "jenkins",
                        "url": jk.url,
                        "username": jk.username,
                        "token": jk.token,
                        "instance_guid": GUID,
                        "instance_name": "J",
                        "backfill_since": "all",
                    }
                ],
            )
            assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
            for j in range(JOBS):
                for n in range(FIRST + 1, FIRST + NEW + 1):
                    jk.add_build(f"team/p{j}", n, timestamp=t0 + n * 1000, duration=10)
            jk.reset_requests()
            assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
            assert len(sei.runs()) == JOBS * (FIRST + NEW)
            new = JOBS * NEW
            return {
                "all": jk.count(".*") / new,
                "wfapi": jk.count(r"/wfapi/") / new,
            }
    finally:
        JenkinsConnector._recent_stages = original  # type: ignore[method-assign]


def main_() -> None:
    before, after = poll(batched=False), poll(batched=True)
    print(f"live poll: {JOBS} pipeline jobs x {NEW} new builds, stages on")
    for label, r in (("per-build describe (0.1)", before), ("wfapi/runs (today)", after)):
        print(f"  {label:<26} {r['all']:.2f} requests/build, wfapi {r['wfapi']:.2f}")


if __name__ == "__main__":
    main_()
