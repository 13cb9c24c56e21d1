"""Delivery across a WAN: SEI far away, behind a gateway that answers 429 past a limit.

    python -m benchmarks.wan            # 2,000 payloads per case, about 3 minutes
    python -m benchmarks.wan --quick    # 500 per case
    python -m benchmarks.wan --with-local   # and then the local hot path, in the same run

Each case runs twice in the same run: sei-poller 0.1's defaults (a fixed window of 2 POSTs,
`concurrency = 2, adaptive = false`) and today's (`adaptive`, ceiling 16). `once` drains an
outbox filled beforehand (nothing new to read), so the figures are delivery alone. The
receiver runs in this process: it only sleeps, so it takes no CPU from the poller. Reported:
builds/s at the receiver (first to last accepted POST) as a share of what the limit allows
(limit / latency; with no limit, the ceiling of 16 / latency), the 429s received and the
back-offs they caused, dead letters, and whether every build arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.run import enqueue, fresh, poller, write_config
from poller.standins.sei import FakeSei

WORK = Path("/tmp/sei-poller-wan")
CEILING = 16


@dataclass(frozen=True)
class Case:
    name: str
    latency: float
    limit: int | None
    drop_to: int | None = None  # the limit drops to this once half the builds arrived

    def allows(self) -> float:
        """Builds/s the gateway allows before the drop (the ceiling when unlimited)."""
        return (self.limit or CEILING) / self.latency


CASES = (
    Case("40 ms, limit 8", 0.040, 8),
    Case("150 ms, no limit", 0.150, None),
    Case("40 ms, limit 8 -> 2 half-way", 0.040, 8, 2),
)
VARIANTS = (("fixed 2 (0.1 default)", 2, False), ("adaptive, ceiling 16", CEILING, True))


class WanSei(FakeSei):
    """A far SEI: latency and an in-flight limit, accept times kept; counts, not payloads."""

    def __init__(self, case: Case, total: int, **kw: Any) -> None:
        super().__init__(latency=case.latency, **kw)
        self.max_inflight = case.limit
        self.case, self.total = case, total
        self.stamps: list[float] = []
        self.keys_seen: list[tuple[str, int]] = []
        self.refused_at: list[float] = []

    def _record(self, status: int, body: dict[str, Any] | None, accepted: bool = False) -> None:
        with self._cond:
            if status == 429:
                self.refused_at.append(time.monotonic())
            if accepted and body is not None:
                self.stamps.append(time.monotonic())
                self.keys_seen.append((body["job_full_name"], body["build_number"]))
                if self.case.drop_to and len(self.stamps) == self.total // 2:
                    self.max_inflight = self.case.drop_to
                self._cond.notify_all()


def measure(case: Case, label: str, concurrency: int, adaptive: bool, n: int) -> dict[str, Any]:
    with servers.jenkins(0, 0, 0) as jk, WanSei(case, n) as sei:
        remote = type("R", (), {"info": {"url": sei.url, "api_key": sei.api_key}})()
        cfg = write_config(fresh(WORK / f"{case.name}-{label}".replace(" ", "_")), jk, remote)
        text = cfg.read_text().replace(
            "concurrency = 4\n",
            f"concurrency = {concurrency}\nadaptive = {'true' if adaptive else 'false'}\n",
            1,  # [sei] concurrency, not the server's max_concurrency
        )
        cfg.write_text(text.replace('retry_window = "30s"', 'retry_window = "120s"'))
        enqueue(cfg.parent / "state.db", n)
        pr = poller(cfg, "--log-level", "info", "once")
        stamps = list(sei.stamps)
        keys = list(sei.keys_seen)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    rate = (len(stamps) - 1) / span if span else 0.0
    with sqlite3.connect(cfg.parent / "state.db") as db:
        dead = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'dead'").fetchone()[0]
    # The deliverer pauses at least a second (Retry-After) after a 429, so 429s less than
    # half a second apart are one overload: the back-offs, as the receiver saw them.
    refused = list(sei.refused_at)
    bursts = sum(1 for a, b in zip([-1e9, *refused], refused, strict=False) if b - a > 0.5)
    if case.drop_to:  # the share of what the limit allowed, before and after the drop
        half = n // 2
        allowed = half / (case.limit / case.latency) + (n - half) / (case.drop_to / case.latency)
        share = (span and allowed / span) or 0.0
    else:
        share = rate / case.allows()
    return {
        "case": case.name,
        "variant": label,
        "payloads": n,
        "rate": rate,
        "share_of_limit": share,
        "wall": pr.wall,
        "cpu": pr.cpu,
        "refused_429": len(refused),
        "backoffs": bursts,
        "dead": dead,
        "distinct": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "rc": pr.rc,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="500 payloads per case")
    p.add_argument(
        "--with-local",
        action="store_true",
        help="then the local hot path (benchmarks.hotpath), so both sets come from one run",
    )
    p.add_argument("--output", default=str(Path(__file__).with_name("wan-results.json")))
    args = p.parse_args(argv)
    n = 500 if args.quick else 2000
    results = []
    print(
        f"{'case':<32} {'variant':<24} {'builds/s':>8} {'of limit':>8} {'429s':>5}"
        f" {'dead':>4} {'all once':>8}"
    )
    for case in CASES:
        for label, concurrency, adaptive in VARIANTS:
            r = measure(case, label, concurrency, adaptive, n)
            results.append(r)
            ok = r["distinct"] == n and r["duplicates"] == 0
            print(
                f"{case.name:<32} {label:<24} {r['rate']:>8.0f} {r['share_of_limit']:>8.0%}"
                f" {r['refused_429']:>5} {r['backoffs']:>9} {r['dead']:>4}"
                f" {'yes' if ok else 'NO':>8}",
                flush=True,
            )
    Path(args.output).write_text(json.dumps(results, indent=2))
    met = all(
        r["share_of_limit"] >= 0.6 and r["distinct"] == n and r["dead"] == 0
        for r in results
        if r["variant"].startswith("adaptive") and not r["case"].endswith("half-way")
    )
    print(f"\ntarget ≥ 60 % of the limit in the first two cases: {'met' if met else 'MISSED'}")
    if args.with_local:
        from benchmarks import hotpath

        print("\nlocal hot path, same run:")
        met = hotpath.main() == 0 and met
    return 0 if met else 1


if __name__ == "__main__":
    threading.current_thread().name = "wan-bench"
    raise SystemExit(main())
