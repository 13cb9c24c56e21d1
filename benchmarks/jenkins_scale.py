"""Jenkins at enterprise size (issue 25): what an idle poll and a first poll cost at 2,000,
20,000 and 100,000 jobs, beside the 0.1.0 walk (one request per folder) in the same run.

The controller has the issue's shape: top folders of 10 folders of 10 jobs each (2,000 jobs
in 220 folders; 20,000 in 2,200; 100,000 in 11,000). One job in ten has a build inside
`backfill_since` (1 day old); the others' builds are 40 days old. Figures: requests, seconds
end to end (`sei-poller once`), and the bytes the stand-in serialised (its CPU: Jenkins
spends its own in building those answers).

    python -m benchmarks.jenkins_scale [--sizes 2000,20000,100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from connectors.jenkins.standin import FakeJenkins
from poller import logs
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import jenkins_server

DAY = 86_400_000


def build(jobs: int) -> FakeJenkins:
    fj = FakeJenkins().start()
    now = int(time.time() * 1000)
    for t in range(jobs // 100):
        for f in range(10):
            for j in range(10):
                age = DAY if j == 0 else 40 * DAY
                fj.add_build(f"bu{t:04d}/team{f}/job{j}", 1, timestamp=now - age, duration=1000)
    return fj


def naive_walk(fj: FakeJenkins) -> dict[str, Any]:
    """0.1.0's discovery: every container listed by a request of its own."""
    s = requests.Session()
    s.auth = (fj.username, fj.token)
    tree = "jobs[name,url,color,lastBuild[number],lastCompletedBuild[number],jobs[name]{0,1}]"
    todo, n, size, jobs = [fj.url], 0, 0, 0
    started = time.perf_counter()
    while todo:
        url = todo.pop()
        resp = s.get(url + "api/json", params={"tree": tree}, timeout=120)
        n, size = n + 1, size + len(resp.content)
        for item in resp.json()["jobs"]:
            if "jobs" in item:
                todo.append(item["url"])
            else:
                jobs += 1
    return {"requests": n, "seconds": time.perf_counter() - started, "bytes": size, "jobs": jobs}


def poll(fj: FakeJenkins, sei: FakeSei, config: Path) -> dict[str, Any]:
    fj.reset_requests()
    started = time.perf_counter()
    code = main(["-c", str(config), "--log-level", "error", "once"])
    seconds = time.perf_counter() - started
    reqs = list(fj.requests)
    return {
        "code": code,
        "requests": len(reqs),
        "tree_requests": sum(1 for r in reqs if r.query.get("tree", "").startswith("jobs[")),
        "seconds": seconds,
        "bytes": sum(r.size for r in reqs),
    }


def measure(jobs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    fj = build(jobs)
    built = time.perf_counter() - t0
    with FakeSei() as sei, tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "config.toml",
            sei_url=sei.url,
            servers=[jenkins_server(fj, backfill_since="30d", timeout=120)],
        )
        first = poll(fj, sei, config)
        idle = poll(fj, sei, config)
        naive = naive_walk(fj)
        sent = len(sei.received)
    fj.stop()
    return {
        "jobs": jobs,
        "built_s": built,
        "first": first,
        "idle": idle,
        "naive": naive,
        "sent": sent,
    }


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000,100000")
    args = ap.parse_args()
    logs.configure("error", "json")
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    print(
        "| jobs | folders | first poll: requests (tree) / s | idle poll: requests / s / MB |"
        " 0.1.0 walk: requests / s / MB | builds sent |"
    )
    print("|---:|---:|---|---|---|---:|")
    for r in rows:
        f, i, n = r["first"], r["idle"], r["naive"]
        print(
            f"| {r['jobs']:,} | {r['jobs'] // 10 + r['jobs'] // 100:,} "
            f"| {f['requests']:,} ({f['tree_requests']}) / {f['seconds']:.1f} "
            f"| {i['requests']} / {i['seconds']:.2f} / {i['bytes'] / 1e6:.1f} "
            f"| {n['requests']:,} / {n['seconds']:.1f} / {n['bytes'] / 1e6:.1f} | {r['sent']:,} |"
        )
    # At most 5 up to 20,000 jobs; beyond, one answer per `jobs_per_request` (10,000) jobs.
    ok = all(
        r["idle"]["requests"] <= max(5, r["jobs"] // 10_000 + 2) and r["idle"]["code"] == 0
        for r in rows
    )
    ok &= all(r["sent"] == r["jobs"] // 10 for r in rows)
    verdict = "PASS" if ok else "FAIL"
    print("\nidle poll within its budget, and each in-range build sent once:", verdict)


if __name__ == "__main__":
    main_()
