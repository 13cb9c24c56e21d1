"""GoCD requests per run: a 50-pipeline by 200-instance backfill, an idle poll, a live poll,
against a naive client in the same run.

Runs `sei-poller` (in this process, through its CLI) against the GoCD stand-in seeded by
`seed_bulk` (two stages per pipeline, instance ids interleaved across pipelines) and the
SEI stand-in, and counts the requests the stand-in answered:

- backfill: `once` from an empty state with `backfill_since = "all"`;
- idle: the next `once`, nothing happened (one instance still building all the same);
- live: one instance finished in each of 5 pipelines, then `once`.

The naive client is what one writes from GoCD's API docs with `requests`: the dashboard,
then each pipeline's history following `_links.next` as GoCD gives it, then every stage's
instance for its job times; an idle poll asks each pipeline's newest history page whether
its counter moved. It sends the right `Accept` versions (without them it reads nothing).

    python -m benchmarks.gocd [--pipelines 50] [--instances 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from benchmarks.bulk import bulk_config
from connectors.gocd.standin import FakeGoCD, forced, now_ms, seed_bulk
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei


def _kinds(gocd: FakeGoCD) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in gocd.requests:
        parts = r.path.split("/go/api/", 1)[-1].split("/")
        if parts[0] == "stages":
            out["stage history" if parts[-1] == "history" else "stage instance"] += 1
        elif parts[0] == "pipelines":
            out["pipeline history" if parts[-1] == "history" else "pipeline instance"] += 1
        else:
            out[parts[0]] += 1
    return dict(out)


def _seed(gocd: FakeGoCD, pipelines: int, instances: int) -> int:
    seed_bulk(gocd, pipelines=pipelines, instances=instances)
    c = gocd.trigger("bulk-000", forced("alice"))
    gocd.begin("bulk-000", c, "build")  # still building through every poll
    return pipelines * instances


def measure(pipelines: int, instances: int, granularity: str, stages: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, FakeGoCD() as gocd, FakeSei() as sei:
        total = _seed(gocd, pipelines, instances)
        runs = total * (2 if granularity == "stage" else 1)
        cfg = bulk_config(
            Path(d) / "config.toml",
            sei,
            type="gocd",
            url=gocd.url,
            token=gocd.token,
            granularity=granularity,
            stages=stages,
        )
        started = time.monotonic()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        seconds = time.monotonic() - started
        backfill, kinds_backfill = len(gocd.requests), _kinds(gocd)
        sent = len(set(sei.keys()))
        gocd.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        idle, kinds_idle = len(gocd.requests), _kinds(gocd)
        for k in range(1, 6):
            gocd.run(f"bulk-{k % pipelines:03d}", forced("bob"), at=now_ms() - 600_000)
        gocd.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        live, kinds_live = len(gocd.requests), _kinds(gocd)
        return {
            "client": "sei-poller",
            "granularity": granularity,
            "stages": stages,
            "runs": runs,
            "sent": sent,
            "duplicates": len(sei.keys()) - len(set(sei.keys())),
            "backfill_requests": backfill,
            "requests_per_run": round(backfill / runs, 4),
            "backfill_seconds": round(seconds, 1),
            "backfill_kinds": kinds_backfill,
            "idle_requests": idle,
            "idle_kinds": kinds_idle,
            "live_requests_5_instances": live,
            "live_kinds": kinds_live,
        }


class Naive:
    """The client one writes from the API docs, one thing at a time."""

    def __init__(self, gocd: FakeGoCD) -> None:
        self.gocd = gocd
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {gocd.token}"
        self.seen: dict[str, int] = {}

    def get(self, url: str, version: int) -> Any:
        r = self.s.get(
            url, headers={"Accept": f"application/vnd.go.cd.v{version}+json"}, timeout=30
        )
        r.raise_for_status()
        return r.json()

    def poll(self) -> int:
        """Read what is new since the last poll; returns the instances read."""
        api = self.gocd.url + "api/"
        board = self.get(api + "dashboard", 4)
        read = 0
        for p in board["_embedded"]["pipelines"]:
            name = p["name"]
            url: str | None = f"{api}pipelines/{name}/history"
            newest = None
            while url:
                page = self.get(url, 1)
                fresh = [i for i in page["pipelines"] if i["counter"] > self.seen.get(name, 0)]
                for inst in fresh:
                    newest = max(newest or 0, inst["counter"])
                    for stage in inst["stages"]:
                        if stage.get("scheduled"):
                            self.get(
                                f"{api}stages/{name}/{inst['counter']}/{stage['name']}"
                                f"/{stage['counter']}",
                                3,
                            )
                    read += 1
                if len(fresh) < len(page["pipelines"]):
                    break  # down to what the last poll read
                url = (page.get("_links") or {}).get("next", {}).get("href")
            if newest is not None:
                self.seen[name] = max(self.seen.get(name, 0), newest)
        return read


def measure_naive(pipelines: int, instances: int) -> dict[str, Any]:
    with FakeGoCD() as gocd:
        total = _seed(gocd, pipelines, instances)
        naive = Naive(gocd)
        started = time.monotonic()
        naive.poll()
        seconds = time.monotonic() - started
        backfill = len(gocd.requests)
        gocd.reset_requests()
        naive.poll()
        idle = len(gocd.requests)
        for k in range(1, 6):
            gocd.run(f"bulk-{k % pipelines:03d}", forced("bob"), at=now_ms() - 600_000)
        gocd.reset_requests()
        naive.poll()
        live = len(gocd.requests)
        return {
            "client": "naive",
            "granularity": "pipeline",
            "stages": True,
            "runs": total,
            "backfill_requests": backfill,
            "requests_per_run": round(backfill / total, 4),
            "backfill_seconds": round(seconds, 1),
            "idle_requests": idle,
            "live_requests_5_instances": live,
        }


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipelines", type=int, default=50)
    ap.add_argument("--instances", type=int, default=200)
    args = ap.parse_args()
    logs.configure("error", "json")
    rows = [
        measure_naive(args.pipelines, args.instances),
        measure(args.pipelines, args.instances, "pipeline", True),
        measure(args.pipelines, args.instances, "pipeline", False),
        measure(args.pipelines, args.instances, "stage", True),
    ]
    for row in rows:
        print(json.dumps(row))
    print()
    print(
        "| client | granularity | stages | runs | backfill requests | per run | seconds"
        " | idle poll | live, 5 |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['client']} | {r['granularity']} | {'on' if r['stages'] else 'off'}"
            f" | {r['runs']:,} | {r['backfill_requests']:,} | {r['requests_per_run']}"
            f" | {r['backfill_seconds']} | {r['idle_requests']}"
            f" | {r['live_requests_5_instances']} |"
        )
    ours = rows[1:]
    ok = all(
        r["idle_requests"] == 1 and r["sent"] == r["runs"] and not r["duplicates"] for r in ours
    )
    print("\nidle poll = 1 request and every run sent once:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    run()
