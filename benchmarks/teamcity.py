"""TeamCity requests per build: a 50-configuration by 200-build backfill, an idle poll, a live poll.

Runs `sei-poller` (in this process, through its CLI) against the TeamCity stand-in seeded by
`seed_bulk` (ids interleaved across configurations, so every configuration's ids have gaps)
and the SEI stand-in, and counts the requests the stand-in answered:

- backfill: `once` from an empty state with `backfill_since = "all"`, stages off and on;
- idle: the next `once`, nothing finished (a build running and one queued all the same);
- live: one build finished in each of 5 configurations, then `once`.

    python -m benchmarks.teamcity [--configs 50] [--builds 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.bulk import bulk_config
from connectors.teamcity.standin import FakeTeamCity, now_ms, seed_bulk
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei


def _kinds(tc: FakeTeamCity) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in tc.requests:
        if r.path.endswith("/builds"):
            server_wide = "buildType:" not in r.query.get("locator", "")
            out["server-wide query" if server_wide else "configuration listing"] += 1
        else:
            out[r.path.split("/app/rest/", 1)[-1].split("/", 1)[0]] += 1
    return dict(out)


def measure(configs: int, builds: int, stages: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, FakeTeamCity() as tc, FakeSei() as sei:
        ids = seed_bulk(tc, configs=configs, builds_per_config=builds)
        running = tc.queue_build("Bulk0_Config000")
        tc.start_build(running)
        tc.queue_build("Bulk1_Config001")
        cfg = bulk_config(
            Path(d) / "config.toml", sei, type="teamcity", url=tc.url, token=tc.token, stages=stages
        )
        started = time.monotonic()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        seconds = time.monotonic() - started
        backfill = len(tc.requests)
        sent = len(set(sei.keys()))
        kinds_backfill = _kinds(tc)
        tc.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        idle = len(tc.requests)
        kinds_idle = _kinds(tc)
        for k in range(5):
            bt = f"Bulk{k % 5}_Config{k:03d}"
            at = now_ms() // 1000 * 1000
            tc.add_build(
                bt,
                queued=at - 2000,
                started=at - 1000,
                finished=at,
                statistics={"buildStageDuration:buildStepRUNNER_264": 5},
            )
        tc.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        live = len(tc.requests)
        kinds_live = _kinds(tc)
        return {
            "stages": stages,
            "builds": len(ids),
            "sent": sent,
            "duplicates": len(sei.keys()) - len(set(sei.keys())),
            "backfill_requests": backfill,
            "requests_per_build": round(backfill / len(ids), 4),
            "backfill_seconds": round(seconds, 1),
            "backfill_kinds": kinds_backfill,
            "idle_requests": idle,
            "idle_kinds": kinds_idle,
            "live_requests_5_builds": live,
            "live_kinds": kinds_live,
        }


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=50)
    ap.add_argument("--builds", type=int, default=200)
    args = ap.parse_args()
    logs.configure("error", "json")
    rows = [measure(args.configs, args.builds, stages) for stages in (False, True)]
    for row in rows:
        print(json.dumps(row))
    print()
    print("| stages | builds sent (of) | backfill requests | per build | idle poll | live, 5 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {'on' if r['stages'] else 'off'} | {r['sent']:,} ({r['builds']:,}) "
            f"| {r['backfill_requests']} | {r['requests_per_build']} | {r['idle_requests']} "
            f"| {r['live_requests_5_builds']} |"
        )
    ok = all(
        r["idle_requests"] <= 3 and r["sent"] == r["builds"] and not r["duplicates"] for r in rows
    )
    print("\nidle poll ≤ 3 requests and every build sent once:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    run()
