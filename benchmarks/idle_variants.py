"""Idle-poll cost of 5,000 jobs in 50 folders by what is running, beside `run.py`'s idle phase.

`seed_bulk` leaves builds running in 7 % of the jobs. Here the same controller is measured
three ways: nothing running; only newest builds running (5 % of jobs); and as seeded, with 2 %
of jobs holding a build that runs below a newer finished one. Only that last kind costs a
request per job: when such a build finishes, nothing in the folder listing changes.

    python -m benchmarks.idle_variants
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests

from connectors.jenkins.standin import FakeJenkins, seed_bulk
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei

VARIANTS = (
    ("nothing running", "all"),
    ("newest build running in 5 % of jobs", "out-of-order"),
    ("as seeded: + a build running below a finished one in 2 % of jobs", "none"),
)


def _finish(fj: FakeJenkins, which: str) -> None:
    tree = "jobs[jobs[fullName,lastBuild[number],builds[number,building]{0,3}]]"
    data = requests.get(
        fj.url + "api/json", params={"tree": tree}, auth=(fj.username, fj.token), timeout=60
    ).json()
    for folder in data["jobs"]:
        for job in folder["jobs"]:
            newest = job["lastBuild"]["number"]
            for b in job["builds"]:
                out_of_order = b["number"] < newest
                if b["building"] and (which == "all" or (which == "out-of-order" and out_of_order)):
                    fj.finish_build(job["fullName"], b["number"])


def measure(label: str, finish: str) -> int:
    with tempfile.TemporaryDirectory() as d, FakeJenkins() as fj, FakeSei() as sei:
        seed_bulk(fj, folders=50, jobs_per_folder=100, builds_per_job=10)
        if finish != "none":
            _finish(fj, finish)
        cfg = Path(d) / "config.toml"
        cfg.write_text(f"""
[sei]
url = "{sei.url}"
api_key = "{sei.api_key}"
concurrency = 4
[state]
path = "state.db"
[[servers]]
name = "bulk"
type = "jenkins"
url = "{fj.url}"
username = "{fj.username}"
token = "{fj.token}"
instance_guid = "666ba79b-3f3d-4236-ac04-4686ce526705"
instance_name = "bulk"
backfill_since = "all"
stages = false
""")
        cfg.chmod(0o600)
        main(["-c", str(cfg), "--log-level", "error", "once"])
        fj.reset_requests()
        main(["-c", str(cfg), "--log-level", "error", "once"])
        count = len(fj.requests)
        print(f"{label}: {count} Jenkins requests")
        return count


if __name__ == "__main__":
    logs.configure("error", "json")
    for label, finish in VARIANTS:
        measure(label, finish)
