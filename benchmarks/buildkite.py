"""Buildkite requests per build: a 50-pipeline by 200-build backfill within 200 requests a
minute, an idle poll, a live poll.

Runs `sei-poller` (in this process, through its CLI) against the Buildkite stand-in (its
rate limit at Buildkite's 200 requests a minute per organisation) and the SEI stand-in, and
counts the requests the stand-in answered and the 429s it had to give:

- backfill: `once` from an empty state with `backfill_since = "all"`;
- idle: the next `once`, nothing finished (a build running all the same);
- live: one build finished in each of 5 pipelines, then `once`.

    python -m benchmarks.buildkite [--pipelines 50] [--builds 200] [--limit 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.bulk import bulk_config
from connectors.buildkite.standin import FakeBuildkite, now_ms
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei

DAY = 86_400_000


def _kinds(bk: FakeBuildkite) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in bk.requests:
        tail = r.path.split(f"/organizations/{bk.org}", 1)[-1]
        if tail == "/builds":
            out["org-wide builds"] += 1
        elif tail.endswith("/builds"):
            out["pipeline listing"] += 1
        else:
            out[tail or r.path] += 1
    return dict(out)


def seed(bk: FakeBuildkite, pipelines: int, builds: int) -> int:
    start = now_ms() - 300 * DAY
    for p in range(pipelines):
        slug = f"service-{p:03d}"
        bk.add_pipeline(slug, repository=f"git@github.com:acme/{slug}.git", created=start)
        for n in range(builds):
            t = start + (n * pipelines + p) * 60_000
            jobs = [
                bk.job("Build", started=t, finished=t + 30_000),
                bk.job("Test", started=t + 30_000, finished=t + 90_000),
            ]
            bk.add_build(slug, created=t, started=t, finished=t + 90_000, jobs=jobs)
    return pipelines * builds


def measure(pipelines: int, builds: int, limit: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as d,
        FakeBuildkite(limit=limit, window=60.0) as bk,
        FakeSei() as sei,
    ):
        total = seed(bk, pipelines, builds)
        bk.add_build("service-000", state="running", created=now_ms(), started=now_ms())
        cfg = bulk_config(
            Path(d) / "config.toml",
            sei,
            type="buildkite",
            url=bk.url,
            organization=bk.org,
            token=bk.token,
        )
        started = time.monotonic()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        seconds = time.monotonic() - started
        backfill, kinds_backfill = len(bk.requests), _kinds(bk)
        sent = len(set(sei.keys()))
        bk.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        idle, kinds_idle = len(bk.requests), _kinds(bk)
        for k in range(5):
            at = now_ms()
            bk.add_build(f"service-{k:03d}", created=at - 2000, started=at - 1000, finished=at)
        bk.reset_requests()
        assert main(["-c", str(cfg), "--log-level", "error", "once"]) == 0
        live, kinds_live = len(bk.requests), _kinds(bk)
        return {
            "builds": total,
            "sent": sent,
            "duplicates": len(sei.keys()) - len(set(sei.keys())),
            "rate_limit": f"{limit}/min",
            "throttled_429": bk.throttled,
            "backfill_requests": backfill,
            "requests_per_build": round(backfill / total, 4),
            "backfill_seconds": round(seconds, 1),
            "backfill_kinds": kinds_backfill,
            "idle_requests": idle,
            "idle_kinds": kinds_idle,
            "live_requests_5_builds": live,
            "live_kinds": kinds_live,
        }


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipelines", type=int, default=50)
    ap.add_argument("--builds", type=int, default=200)
    ap.add_argument("--limit", type=int, default=200)
    args = ap.parse_args()
    logs.configure("error", "json")
    r = measure(args.pipelines, args.builds, args.limit)
    print(json.dumps(r))
    print()
    print(
        "| builds sent (of) | backfill requests | per build | 429s | wall time | idle | live, 5 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {r['sent']:,} ({r['builds']:,}) | {r['backfill_requests']} "
        f"| {r['requests_per_build']} | {r['throttled_429']} | {r['backfill_seconds']} s "
        f"| {r['idle_requests']} | {r['live_requests_5_builds']} |"
    )
    ok = (
        r["idle_requests"] == 1
        and r["sent"] == r["builds"]
        and not r["duplicates"]
        and r["throttled_429"] == 0
    )
    print("\nidle poll = 1 request, no 429, every build sent once:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    run()
