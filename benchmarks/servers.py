"""The stand-in servers, each in a process of its own so no measured process counts their memory
or shares their GIL.

    python -m benchmarks.servers jenkins --folders 3 --jobs-per-folder 10 --builds 100
    python -m benchmarks.servers sei --latency 0.02

Prints one JSON line (URL, credentials, pid), then answers commands read from stdin, one JSON
line each: ``count`` (Jenkins requests so far, by kind), ``reset``, ``add N`` (Jenkins: N new
finished builds, one per job round-robin), ``cpu`` (this process's CPU seconds), ``stats`` (SEI:
accepted POSTs, distinct keys, first/last arrival), ``latency S``, ``quit``. EOF on stdin also
stops the server, so a crashed runner leaves nothing behind.

``jenkins --build-every S`` also finishes one new build every S seconds by itself (round-robin
over the jobs), the steady trickle a long-running daemon sees; ``count`` reports ``added``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from connectors.jenkins.standin import FakeJenkins, seed_bulk
from poller.standins.sei import FakeSei

ROOT = Path(__file__).resolve().parent.parent

# What each Jenkins request was, from its path (the stand-in records every request).
KINDS = (
    ("wfapi", re.compile(r"/wfapi/describe/?$")),
    ("build", re.compile(r"/job/[^/]+/[0-9]+/api/json$")),
    ("crumb", re.compile(r"crumbIssuer")),
    ("whoami", re.compile(r"/me/api/json$")),
    ("job-or-folder", re.compile(r"/job/[^/]+/api/json$")),
    ("root", re.compile(r"^/?(api/json)?$")),
)


def _kind(path: str) -> str:
    for name, rx in KINDS:
        if rx.search(path):
            return name
    return "other"


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of a process from /proc (no psutil)."""
    with open(f"/proc/{pid or os.getpid()}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_kb(pid: int | None = None) -> int:
    """Current resident set size of a process, from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class CountingSei(FakeSei):
    """FakeSei that keeps counts and keys instead of every payload: 10^5 payloads stay cheap."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.accepted = 0
        self.rejected = 0
        self.unique: set[tuple[str, str, int]] = set()
        self.first: float | None = None
        self.last: float | None = None

    def _record(self, status: int, body: dict[str, Any] | None, accepted: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            if accepted and body is not None:
                self.accepted += 1
                self.unique.add(
                    (
                        str(body.get("instance_guid")),
                        str(body.get("job_full_name")),
                        int(body.get("build_number") or 0),
                    )
                )
                if self.first is None:
                    self.first = now
                self.last = now
            else:
                self.rejected += 1

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "accepted": self.accepted,
                "unique": len(self.unique),
                "rejected": self.rejected,
                "connections": self.connections,
                "first": self.first,
                "last": self.last,
            }

    def clear(self) -> None:
        with self._cond:
            self.accepted = self.rejected = 0
            self.unique.clear()
            self.first = self.last = None
            self.connections = 0


class _Feed:
    """New finished builds, one job after another, so every job keeps moving."""

    def __init__(self, fj: FakeJenkins, folders: int, jobs_per_folder: int) -> None:
        self.fj = fj
        self.jobs = [
            f"folder-{f:03d}/job-{j:03d}" for j in range(jobs_per_folder) for f in range(folders)
        ]
        self.added = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> int:
        with self._lock:
            for _ in range(n):
                self.fj.add_build(self.jobs[self.added % len(self.jobs)], duration=1000)
                self.added += 1
            return self.added

    def every(self, seconds: float, stop: threading.Event) -> None:
        """One build per `seconds` on a fixed schedule, so a slow add does not drift the rate."""
        due = time.monotonic() + seconds
        while not stop.wait(max(0.0, due - time.monotonic())):
            self.add(1)
            due += seconds


def _serve_jenkins(args: argparse.Namespace) -> None:
    fj = FakeJenkins()
    t0 = time.monotonic()
    seed_bulk(
        fj,
        folders=args.folders,
        jobs_per_folder=args.jobs_per_folder,
        builds_per_job=args.builds,
        pipeline_share=args.pipeline_share,
    )
    seeded = time.monotonic() - t0
    feed = _Feed(fj, args.folders, args.jobs_per_folder)
    fj.start()
    stop = threading.Event()
    if args.build_every:
        threading.Thread(
            target=feed.every, args=(args.build_every, stop), name="build-feed", daemon=True
        ).start()
    _hello(
        {
            "url": fj.url,
            "username": fj.username,
            "token": fj.token,
            "pid": os.getpid(),
            "seed_seconds": round(seeded, 2),
        }
    )

    def answer(cmd: str) -> dict[str, Any]:
        if cmd == "count":
            with fj._req_lock:
                reqs = list(fj.requests)
            kinds = Counter(_kind(r.path) for r in reqs)
            return {
                "requests": len(reqs),
                "by_kind": dict(kinds),
                "bytes": sum(r.size for r in reqs),
                "errors": sum(1 for r in reqs if r.status >= 400 and _kind(r.path) != "crumb"),
                "added": feed.added,
            }
        if cmd == "reset":
            fj.reset_requests()
            return {"ok": True}
        if cmd.startswith("add "):
            return {"added": feed.add(int(cmd.split()[1]))}
        raise ValueError(cmd)

    try:
        _loop(answer)
    finally:
        stop.set()
        fj.stop()


def _serve_sei(args: argparse.Namespace) -> None:
    sei = CountingSei(latency=args.latency).start()
    _hello({"url": sei.url, "api_key": sei.api_key, "pid": os.getpid()})

    def answer(cmd: str) -> dict[str, Any]:
        if cmd == "stats":
            return sei.stats()
        if cmd == "reset":
            sei.clear()
            return {"ok": True}
        if cmd.startswith("latency "):
            sei.latency = float(cmd.split()[1])
            return {"ok": True}
        raise ValueError(cmd)

    try:
        _loop(answer)
    finally:
        sei.stop()


def _hello(info: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def _loop(answer: Any) -> None:
    for line in sys.stdin:
        cmd = line.strip()
        if not cmd:
            continue
        if cmd == "quit":
            _hello({"ok": True})
            return
        if cmd == "cpu":
            out: dict[str, Any] = {"cpu": cpu_seconds(), "rss_kb": rss_kb()}
        else:
            try:
                out = answer(cmd)
            except Exception as exc:
                out = {"error": f"{type(exc).__name__}: {exc}"}
        _hello(out)


class Remote:
    """The runner's handle on one stand-in server process."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
                ),
            },
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"stand-in {argv[0]} did not start")
        self.info: dict[str, Any] = json.loads(line)
        self.pid = self.proc.pid
        self._lock = threading.Lock()

    def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        with self._lock:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
            out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        if "error" in out:
            raise RuntimeError(f"stand-in said: {out['error']}")
        return out

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def jenkins(
    folders: int,
    jobs_per_folder: int,
    builds: int,
    pipeline_share: float = 0.3,
    build_every: float = 0.0,
) -> Remote:
    return Remote(
        "jenkins",
        "--folders",
        str(folders),
        "--jobs-per-folder",
        str(jobs_per_folder),
        "--builds",
        str(builds),
        "--pipeline-share",
        str(pipeline_share),
        "--build-every",
        str(build_every),
    )


def sei(latency: float = 0.0) -> Remote:
    return Remote("sei", "--latency", str(latency))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=__doc__)
    sub = p.add_subparsers(dest="which", required=True)
    j = sub.add_parser("jenkins")
    j.add_argument("--folders", type=int, required=True)
    j.add_argument("--jobs-per-folder", type=int, required=True)
    j.add_argument("--builds", type=int, required=True)
    j.add_argument("--pipeline-share", type=float, default=0.3)
    j.add_argument("--build-every", type=float, default=0.0, help="seconds; 0: no feed")
    s = sub.add_parser("sei")
    s.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args(argv)
    (_serve_jenkins if args.which == "jenkins" else _serve_sei)(args)


if __name__ == "__main__":
    main()
