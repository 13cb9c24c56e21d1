"""Soak: `sei-poller run` for N minutes against a Jenkins that keeps finishing builds.

    python -m benchmarks.soak                      # 30 minutes, a build every second
    python -m benchmarks.soak --minutes 5 --build-every 0.5
    python -m benchmarks.soak --daemon-src /tmp/base   # the daemon from another checkout

The daemon runs as a subprocess (`python -m poller -c CONFIG run`, what systemd starts), with
`poll_interval = 1`, stages on and Prometheus metrics served (and scraped every sample, as a
Prometheus would). The stand-in Jenkins (300 jobs in 10 folders by default, one new finished
build every `--build-every` seconds, round-robin over the jobs) and the stand-in SEI run in
processes of their own (benchmarks/servers.py), so only the daemon is measured.

Every 10 s it samples the daemon's RSS (/proc/PID/status) and open file descriptors
(/proc/PID/fd). It prints the slope of RSS after the first minute (least squares, MB/min), the
growth after the first minute, peak RSS (VmHWM), the fd range after the first minute, and a
markdown table row for benchmarks/README.md. The samples go to a JSON file (`--out`, default
benchmarks/soak.json, git-ignored).

It is a benchmark, not a test: it prints PASS/FAIL against the target (growth after the first
minute <= 5 MB) and exits 0 either way, 1 only if the daemon died.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.servers import Remote, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
GUID = "5ca1ab1e-0000-4000-8000-000000000012"
WARMUP = 60.0  # seconds: start-up and the first backfill, left out of slope and growth
TARGET_MB = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(directory: Path, jenkins: Remote, sei: Remote, metrics_port: int | None) -> Path:
    path = directory / "config.toml"
    metrics = f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    path.write_text(
        textwrap.dedent(f"""\
        [sei]
        url = "{sei.info["url"]}"
        api_key = "{sei.info["api_key"]}"
        concurrency = 4
        retry_window = "30s"

        [state]
        path = "state.db"

        """)
        + metrics
        + textwrap.dedent(f"""
        [[servers]]
        name = "jenkins-soak"
        type = "jenkins"
        url = "{jenkins.info["url"]}"
        username = "{jenkins.info["username"]}"
        token = "{jenkins.info["token"]}"
        instance_guid = "{GUID}"
        instance_name = "Jenkins-1"
        backfill_since = "all"
        poll_interval = 1
        stages = true
        max_concurrency = 4
        timeout = 30
        """)
    )
    path.chmod(0o600)
    return path


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def scrape(port: int | None) -> bool:
    if not port:
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.status == 200 and b"sei_poller_builds_sent" in resp.read()
    except OSError:
        return False


def summarize(samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    late = [s for s in samples if s["t"] >= WARMUP]
    base = late[0] if late else samples[-1]
    end = samples[-1]
    points = [(s["t"] / 60, s["rss_kb"] / 1024) for s in late]
    wall = end["t"]
    return {
        "minutes": round(wall / 60, 1),
        "build_every_s": args.build_every,
        "jobs": args.folders * args.jobs_per_folder,
        "samples": len(samples),
        "rss_at_1min_mb": round(base["rss_kb"] / 1024, 1),
        "rss_end_mb": round(end["rss_kb"] / 1024, 1),
        "slope_mb_per_min": round(slope(points), 3),
        "growth_after_1min_mb": round((end["rss_kb"] - base["rss_kb"]) / 1024, 1),
        "max_growth_after_1min_mb": round(
            (max(s["rss_kb"] for s in late) - base["rss_kb"]) / 1024 if late else 0.0, 1
        ),
        "peak_rss_mb": round(end["hwm_kb"] / 1024, 1),
        "fd_min": min(s["fds"] for s in late or samples),
        "fd_max": max(s["fds"] for s in late or samples),
        "fd_max_first_minute": max(s["fds"] for s in samples if s["t"] < WARMUP),
        "fd_end": end["fds"],
        "builds_added": end["added"],
        "builds_delivered": end["delivered"],
        "daemon_cpu_pct": round(100 * end["cpu"] / wall, 1) if wall else 0.0,
        "scrapes_failed": sum(1 for s in samples if not s["scraped"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--build-every", type=float, default=1.0, help="seconds between new builds")
    p.add_argument("--folders", type=int, default=10)
    p.add_argument("--jobs-per-folder", type=int, default=30)
    p.add_argument("--builds", type=int, default=2, help="history seeded per job")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--no-metrics", action="store_true", help="no [metrics] listen, no scrapes")
    p.add_argument("--daemon-src", help="run the daemon from this checkout (PYTHONPATH)")
    p.add_argument("--label", default="", help="names the run in the printed table row")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "soak.json"))
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sei-soak-"))
    env = dict(os.environ)
    if args.daemon_src:
        src = str(Path(args.daemon_src).resolve())
        env["PYTHONPATH"] = os.pathsep.join(x for x in (src, env.get("PYTHONPATH")) if x)
    port = None if args.no_metrics else _free_port()
    samples: list[dict[str, Any]] = []
    with (
        servers.jenkins(
            args.folders, args.jobs_per_folder, args.builds, build_every=args.build_every
        ) as jenkins,
        servers.sei() as sei,
    ):
        cfg = write_config(work, jenkins, sei, port)
        log = (work / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "poller", "-c", str(cfg), "--log-format", "json", "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,
            env=env,
        )
        print(f"daemon pid {daemon.pid}, work dir {work}", file=sys.stderr, flush=True)
        started = time.monotonic()
        ends = started + args.minutes * 60
        died = False
        try:
            next_at = started + args.sample_every
            while True:
                time.sleep(max(0.0, next_at - time.monotonic()))
                if daemon.poll() is not None:
                    died = True
                    break
                t = time.monotonic() - started
                st = proc_status(daemon.pid)
                sample = {
                    "t": round(t, 1),
                    "rss_kb": st["VmRSS"],
                    "hwm_kb": st["VmHWM"],
                    "fds": open_fds(daemon.pid),
                    "cpu": round(cpu_seconds(daemon.pid), 2),
                    "scraped": scrape(port),
                    "added": jenkins.ask("count")["added"],
                    "delivered": sei.ask("stats")["unique"],
                }
                samples.append(sample)
                print(json.dumps(sample), file=sys.stderr, flush=True)
                if time.monotonic() >= ends:
                    break
                next_at += args.sample_every
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            log.close()
    if not samples:
        print(f"the daemon died at once; see {work / 'daemon.log'}", file=sys.stderr)
        return 1
    summary = summarize(samples, args)
    summary["label"] = args.label
    summary["daemon_exit"] = daemon.returncode
    Path(args.out).write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    verdict = "PASS" if summary["growth_after_1min_mb"] <= TARGET_MB else "FAIL"
    print(json.dumps(summary, indent=1))
    print(
        "| run | minutes | build every | RSS at 1 min | slope after 1 min | growth after 1 min"
        " | peak RSS | fds after 1 min, min-max | builds delivered |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.label or '-'} | {summary['minutes']} | {args.build_every} s"
        f" | {summary['rss_at_1min_mb']} MB | {summary['slope_mb_per_min']:+.3f} MB/min"
        f" | {summary['growth_after_1min_mb']:+.1f} MB ({verdict}, target ≤ {TARGET_MB:g} MB)"
        f" | {summary['peak_rss_mb']} MB | {summary['fd_min']}-{summary['fd_max']}"
        f" | {summary['builds_delivered']:,} ({summary['builds_added']:,} new) |"
    )
    if died:
        print(f"the daemon died (exit {daemon.returncode}); see {work / 'daemon.log'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
