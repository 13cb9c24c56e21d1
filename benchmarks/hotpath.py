"""The local hot path, against the floors a bare client sets, in one run.

    python -m benchmarks.hotpath          # 60 jobs x 150 builds, best of 3, about 1 minute

- read: `once --dry-run` (stages off) against a bare `requests` client that only GETs and
  parses the same pages (`benchmarks.naive pages`); whole processes, start-up included.
  Target: ≥ 80 % of the bare reader's builds/s.
- start-up: `sei-poller --version` and `--help`. Target: under 0.2 s.
- end to end: `once` from an empty state into SEI answering at once, POSTs/s at the
  receiver, against one bare serial `requests` client POSTing the same payloads.
  Target: at least that client's rate.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from benchmarks import servers
from benchmarks.run import fresh, naive, poller, post_rate, run, write_config

WORK = Path("/tmp/sei-poller-hotpath")
FOLDERS, JOBS, BUILDS = 6, 10, 150
REPEAT = 3


def _startup() -> dict[str, float]:
    out = {}
    for flag in ("--version", "--help"):
        walls = [run([sys.executable, "-m", "poller", flag]).wall for _ in range(5)]
        out[flag] = statistics.median(walls)
    return out


def main() -> int:
    total = FOLDERS * JOBS * BUILDS
    with servers.jenkins(FOLDERS, JOBS, BUILDS) as jk, servers.sei() as sei:
        cfg = write_config(fresh(WORK / "dry"), jk, sei, stages=False)
        out = WORK / "payloads.jsonl"
        bare, ours = [], []
        for _ in range(REPEAT):  # interleaved: a busy moment slows both, not one
            bare.append(naive("pages", jk).wall)
            ours.append(poller(cfg, "once", "--dry-run", "--output", str(out)).wall)
        read_share = min(bare) / min(ours)
        sent = sum(1 for _ in out.open())

        posts = []
        for _ in range(REPEAT):
            sei.ask("reset")
            p = run(
                [
                    *(sys.executable, "-m", "benchmarks.naive", "ceiling"),
                    *("--sei", sei.info["url"], "--api-key", sei.info["api_key"]),
                    *("--payloads", str(out), "--count", "3000"),
                ]
            )
            posts.append(p.json()["posts"] / p.json()["seconds"])
        e2e = []
        for _ in range(REPEAT):
            sei.ask("reset")
            poller(write_config(fresh(WORK / "e2e"), jk, sei, stages=False), "once")
            st = sei.ask("stats")
            e2e.append(post_rate(st))
            assert st["unique"] == sent, f"{st['unique']} of {sent} delivered"
    start = _startup()
    print(f"history: {FOLDERS * JOBS} jobs x {BUILDS} builds = {total:,}, {sent:,} finished")
    print(
        f"read: bare pages {total / min(bare):,.0f} builds/s, once --dry-run"
        f" {total / min(ours):,.0f} builds/s = {read_share:.0%} (target ≥ 80 %)"
    )
    print(
        f"end to end: one bare serial requests client {max(posts):,.0f} POST/s,"
        f" once {max(e2e):,.0f} POST/s at SEI = {max(e2e) / max(posts):.0%} (target ≥ 100 %)"
    )
    print(
        f"start-up: --version {start['--version']:.3f} s, --help {start['--help']:.3f} s"
        " (target < 0.2 s)"
    )
    met = read_share >= 0.8 and max(e2e) >= max(posts) and max(start.values()) < 0.2
    print("targets:", "met" if met else "MISSED", f"(load average {os.getloadavg()[0]:.2f})")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
