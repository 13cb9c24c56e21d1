"""Bamboo requests per build: a 50-plan by 200-build backfill, an idle poll, a live poll,
next to a naive client in the same run.

Runs `sei-poller` (in this process, through its CLI) against the Bamboo stand-in seeded by
`seed_bulk` (the server caps pages at Bamboo's default 25) and the SEI stand-in, and counts
the requests the stand-in answered:

- backfill: `once` from an empty state with `backfill_since = "all"`, stages off and on;
- idle: the next `once`, nothing finished (a result running all the same);
- live: one result finished in each of 5 plans, then `once`.

The naive baseline is the way a first collector reads Bamboo (DevLake's, say): every poll
lists every result of every plan (`expand=results.result.vcsRevisions`, 100 asked, 25
given), and fetches the details (stages, changes, variables) of each result it has not
seen; with nothing incremental, an idle poll lists everything again.

    python -m benchmarks.bamboo [--plans 50] [--results 200]
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
from connectors.bamboo.standin import FakeBamboo, now_ms, seed_bulk
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei


def _kinds(fb: FakeBamboo) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in fb.requests:
        rel = r.path.split("/rest/api/latest/", 1)[-1].removesuffix(".json")
        if rel.startswith("result/") and rel.count("-") >= 2:
            out["one result"] += 1
        elif rel.startswith("result/"):
            out["result listing"] += 1
        else:
            out[rel.split("/", 1)[0]] += 1
    return dict(out)


class Naive:
    """Reads everything every poll; remembers only which results it has sent."""

    def __init__(self, fb: FakeBamboo) -> None:
        self.fb = fb
        self.s = requests.Session()
        self.s.headers.update({"Authorization": f"Bearer {fb.token}", "Accept": "application/json"})
        self.sent: set[str] = set()

    def _get(self, path: str, **params: Any) -> Any:
        r = self.s.get(f"{self.fb.url}rest/api/latest/{path}.json", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def poll(self) -> int:
        plans = []
        start = 0
        while True:
            page = self._get(
                "plan", expand="plans.plan", **{"max-result": 100, "start-index": start}
            )
            got = page["plans"].get("plan") or []
            if not got:
                break
            plans += [p["key"] for p in got]
            start += len(got)
        new = 0
        for key in plans:
            start = 0
            while True:
                page = self._get(
                    f"result/{key}",
                    expand="results.result.vcsRevisions",
                    **{"max-result": 100, "start-index": start},
                )
                got = page["results"].get("result") or []
                if not got:
                    break
                start += len(got)
                for r in got:
                    if r["buildResultKey"] in self.sent:
                        continue
                    self._get(
                        f"result/{r['buildResultKey']}",
                        expand="changes.change,variables,stages.stage.results.result",
                    )
                    self.sent.add(r["buildResultKey"])
                    new += 1
        return new


def measure(plans: int, results: int, stages: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, FakeBamboo() as fb, FakeSei() as sei:
        keys = seed_bulk(fb, plans=plans, results_per_plan=results)
        fb.trigger("BULK0-PLAN000")  # running: watched by every poll
        cfg = bulk_config(
            Path(d) / "config.toml", sei, type="bamboo", url=fb.url, token=fb.token, stages=stages
        )
        started = time.monotonic()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        seconds = time.monotonic() - started
        backfill = len(fb.requests)
        sent = len(set(sei.keys()))
        kinds_backfill = _kinds(fb)
        fb.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        idle = len(fb.requests)
        kinds_idle = _kinds(fb)
        for k in range(5):
            at = now_ms()
            fb.add_result(f"BULK{k % 5}-PLAN{k:03d}", started=at - 2000, completed=at)
        fb.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        live = len(fb.requests)
        kinds_live = _kinds(fb)
        fb.reset_requests()
        naive = Naive(fb)
        naive.poll()
        naive_backfill = len(fb.requests)
        fb.reset_requests()
        naive.poll()
        naive_idle = len(fb.requests)
        total = len(keys) + 5
        return {
            "stages": stages,
            "builds": len(keys),
            "sent": sent,
            "duplicates": len(sei.keys()) - len(set(sei.keys())),
            "backfill_requests": backfill,
            "requests_per_build": round(backfill / len(keys), 4),
            "backfill_seconds": round(seconds, 1),
            "backfill_kinds": kinds_backfill,
            "idle_requests": idle,
            "idle_kinds": kinds_idle,
            "live_requests_5_builds": live,
            "live_kinds": kinds_live,
            "naive_backfill_requests": naive_backfill,
            "naive_requests_per_build": round(naive_backfill / total, 4),
            "naive_idle_requests": naive_idle,
            "jobs": plans,
        }


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=50)
    ap.add_argument("--results", type=int, default=200)
    args = ap.parse_args()
    logs.configure("error", "json")
    rows = [measure(args.plans, args.results, stages) for stages in (False, True)]
    for row in rows:
        print(json.dumps(row))
    print()
    print(
        "| client | stages | builds sent (of) | backfill requests | per build | idle poll |"
        " live, 5 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| sei-poller | {'on' if r['stages'] else 'off'} | {r['sent']:,} ({r['builds']:,}) "
            f"| {r['backfill_requests']} | {r['requests_per_build']} | {r['idle_requests']} "
            f"| {r['live_requests_5_builds']} |"
        )
    n = rows[-1]
    print(
        f"| naive (lists everything each poll) | on | | {n['naive_backfill_requests']} "
        f"| {n['naive_requests_per_build']} | {n['naive_idle_requests']} | |"
    )
    ok = all(
        r["idle_requests"] <= int(str(r["jobs"]))
        and r["sent"] == r["builds"]
        and not r["duplicates"]
        for r in rows
    )
    print("\nidle poll ≤ one request per plan and every build sent once:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    run()
