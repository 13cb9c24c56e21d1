"""sei-poller against a naive python-jenkins loop, in the same run, on this machine.

    python -m benchmarks.run            # default sizes: about 6 minutes on 2 cores
    python -m benchmarks.run --quick    # small sizes: about a minute, for a smoke check
    python -m benchmarks.run --full     # adds the end-to-end RSS run at 600 builds per job
    python -m benchmarks.run --profile  # adds a py-spy (GIL samples) profile of `once`

Every measured program runs as a subprocess of its own (sei-poller through its CLI, the naive
loop through ``benchmarks.naive``); the stand-in Jenkins and SEI run in two more processes
(``benchmarks.servers``), so timings, CPU and peak RSS (from ``os.wait4``) belong to the program
measured. Prints a table and writes the same figures to ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.servers import Remote

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
GUID = "666ba79b-3f3d-4236-ac04-4686ce526705"


@dataclass(frozen=True)
class Sizes:
    # Reading / end-to-end comparison against the naive loop.
    cmp_folders: int = 3
    cmp_jobs: int = 30
    cmp_builds: int = 100
    ceiling_posts: int = 3000
    # Peak RSS: J jobs (folders x jobs) with each history length.
    rss_folders: int = 10
    rss_jobs: int = 30
    rss_builds: tuple[int, ...] = (100, 600)
    rss_e2e_builds: tuple[int, ...] = (100,)
    # Idle poll.
    idle_folders: int = 50
    idle_jobs: int = 100
    idle_builds: tuple[int, ...] = (10, 1000)
    # Delivery against a slow receiver.
    latency: float = 0.020
    concurrencies: tuple[int, ...] = (2, 4, 8)
    per_worker: int = 200  # payloads enqueued per unit of concurrency
    fast_posts: int = 3000  # delivery at latency 0, to compare with the ceiling
    repeat: int = 2  # comparison runs: best of this many, each side


DEFAULT = Sizes()
QUICK = Sizes(
    cmp_folders=2,
    cmp_jobs=10,
    cmp_builds=50,
    ceiling_posts=1000,
    rss_folders=3,
    rss_jobs=10,
    rss_builds=(100, 600),
    rss_e2e_builds=(100,),
    idle_folders=50,
    idle_jobs=10,
    idle_builds=(10, 200),
    per_worker=60,
    fast_posts=600,
    repeat=1,
)


# -- running and measuring a subprocess --------------------------------------------------------


@dataclass
class Proc:
    argv: list[str]
    rc: int
    wall: float
    cpu: float
    maxrss_mb: float
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run(argv: list[str], *, timeout: float = 1800) -> Proc:
    """Run to completion; its own CPU time and peak RSS come from wait4, not from a sampler."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(
            argv,
            proc.returncode,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            out.read(),
            err.read(),
        )


@contextlib.contextmanager
def cpu_of(**remotes: Remote) -> Iterator[dict[str, float]]:
    """CPU seconds each stand-in process spent inside the block."""
    before = {k: r.cpu() for k, r in remotes.items()}
    out: dict[str, float] = {}
    yield out
    out.update({k: r.cpu() - before[k] for k, r in remotes.items()})


# How sei-poller is started; a prototype can be measured by pointing this at a wrapper script.
POLLER = [sys.executable, "-m", "poller"]


def poller(cfg: Path, *args: str, profile: Path | None = None) -> Proc:
    argv = [*POLLER, "-c", str(cfg), "--log-level", "warning", "--log-format", "json", *args]
    if profile is not None:
        argv = [
            pyspy() or "py-spy",
            "record",
            "--gil",
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(profile),
            "--",
            *argv,
        ]
    p = run(argv)
    if p.rc not in (0, 1) or (p.rc == 1 and "interrupted" in p.stderr):
        raise RuntimeError(f"sei-poller {' '.join(args)} exited {p.rc}: {p.stderr[-2000:]}")
    return p


def naive(mode: str, jenkins: Remote, sei: Remote | None = None, *extra: str) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.naive",
        mode,
        "--jenkins",
        jenkins.info["url"],
        "--user",
        jenkins.info["username"],
        "--token",
        jenkins.info["token"],
        *extra,
    ]
    if sei is not None:
        argv += ["--sei", sei.info["url"], "--api-key", sei.info["api_key"]]
    p = run(argv)
    if p.rc != 0:
        raise RuntimeError(f"naive {mode} exited {p.rc}: {p.stderr[-2000:]}")
    return p


def pyspy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), None
    )


def write_config(
    directory: Path,
    jenkins: Remote,
    sei: Remote,
    *,
    concurrency: int = 4,
    max_concurrency: int = 4,
    stages: bool = False,
    backfill_since: str = "all",
    state: str = "state.db",
) -> Path:
    """A config like an operator writes it (see README "Configuration")."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [sei]
        url = "{sei.info["url"]}"
        api_key = "{sei.info["api_key"]}"
        concurrency = {concurrency}
        retry_window = "30s"

        [state]
        path = "{state}"

        [[servers]]
        name = "jenkins-bench"
        type = "jenkins"
        url = "{jenkins.info["url"]}"
        username = "{jenkins.info["username"]}"
        token = "{jenkins.info["token"]}"
        instance_guid = "{GUID}"
        instance_name = "Jenkins-1"
        backfill_since = "{backfill_since}"
        stages = {"true" if stages else "false"}
        max_concurrency = {max_concurrency}
        timeout = 60
        """)
    )
    path.chmod(0o600)
    return path


def fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


# -- the report ------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    metric: str
    naive: Any = None
    poller: Any = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kw: Any) -> Row:
        row = Row(*args, **kw)
        self.rows.append(row)
        return row

    def print_table(self) -> None:
        head = ("metric", "naive", "sei-poller", "ratio", "target", "", "note")
        cells = [head] + [
            (
                r.metric,
                _fmt(r.naive),
                _fmt(r.poller),
                "" if r.ratio is None else f"{r.ratio:.1f}x",
                r.target,
                "" if r.ok is None else ("PASS" if r.ok else "FAIL"),
                r.note,
            )
            for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]

        def line(c: tuple[str, ...]) -> str:
            left = [c[0].ljust(widths[0])] + [
                x.rjust(w) for x, w in zip(c[1:4], widths[1:4], strict=True)
            ]
            right = [c[4].ljust(widths[4]), c[5].ljust(widths[5]), c[6]]
            return ("  " + "  ".join(left + right)).rstrip()

        print(line(head))
        last = None
        for r, c in zip(self.rows, cells[1:], strict=True):
            if r.section != last:
                print(f"{r.section}")
                last = r.section
            print(line(c))
        checks = [r for r in self.rows if r.ok is not None]
        failed = [f"{r.section}: {r.metric}" for r in checks if not r.ok]
        print(f"\n{len(checks) - len(failed)} of {len(checks)} targets met")
        for f in failed:
            print(f"  FAIL {f}")
        for n in self.notes:
            print(textwrap.fill(n, 100, initial_indent="- ", subsequent_indent="  "))


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}" if v < 1 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- 1. reading, transforming and delivering a history: both sides on the same controller ------


@dataclass
class Measured:
    """One run of one side: the process, what the stand-ins saw, their CPU meanwhile."""

    proc: Proc
    requests: dict[str, Any] = field(default_factory=dict)
    sei: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.proc.wall

    def summary(self) -> dict[str, Any]:
        p = self.proc
        return {
            "wall": p.wall,
            "cpu": p.cpu,
            "maxrss_mb": p.maxrss_mb,
            "rc": p.rc,
            "jenkins_requests": self.requests,
            "sei": self.sei,
            **{f"{k}_cpu": v for k, v in self.cpu.items()},
            **self.extra,
        }


def measure(jk: Remote, sei: Remote | None, fn: Any) -> Measured:
    jk.ask("reset")
    if sei is not None:
        sei.ask("reset")
    remotes = {"jenkins": jk, **({"sei": sei} if sei is not None else {})}
    with cpu_of(**remotes) as c:
        proc = fn()
    return Measured(proc, jk.ask("count"), sei.ask("stats") if sei is not None else {}, c)


def best(runs: list[Measured]) -> Measured:
    """Best of the repetitions: the machine is shared, interference only ever slows a run."""
    return min(runs, key=lambda m: m.wall)


def post_rate(st: dict[str, Any]) -> float:
    """POSTs per second at the receiver, first to last accepted."""
    span = (st["last"] - st["first"]) if st.get("first") is not None else 0
    return (st["accepted"] - 1) / span if span > 0 else 0.0


def bench_compare(s: Sizes, rep: Report, work: Path, profile: bool) -> None:
    jobs = s.cmp_folders * s.cmp_jobs
    total = jobs * s.cmp_builds
    history = f"{jobs} jobs x {s.cmp_builds} builds = {total:,} builds"
    log(f"compare: {history}, best of {s.repeat}")
    d: dict[str, Any] = {"builds": total, "jobs": jobs, "repeat": s.repeat}
    rep.data["compare"] = d
    # The fixed cost of one run (interpreter, imports, config, discovery): an empty controller.
    with servers.jenkins(0, 0, 0) as empty, servers.sei() as sei0:
        cfg0 = write_config(fresh(work / "empty"), empty, sei0)
        fixed_p = min(
            poller(cfg0, "once", "--dry-run", "--output", os.devnull).wall for _ in range(3)
        )
        fixed_n = min(naive("read", empty).wall for _ in range(3))
    d["fixed_seconds"] = {"naive": fixed_n, "poller": fixed_p}

    with servers.jenkins(s.cmp_folders, s.cmp_jobs, s.cmp_builds) as jk, servers.sei() as sei:
        # 1. Reading and transforming: stages off, then on.
        for stages in (False, True):
            key = f"stages {'on' if stages else 'off'}"
            tag = f"read + transform, {history}, {key}"
            out = work / f"dry-{key.replace(' ', '-')}.jsonl"
            cfg = write_config(fresh(work / f"dry-{int(stages)}"), jk, sei, stages=stages)
            flags = ["--stages"] if stages else []
            nvs, prs = [], []
            for _ in range(s.repeat if not stages else 1):
                nvs.append(measure(jk, None, lambda f=flags: naive("read", jk, None, *f)))
                prs.append(
                    measure(
                        jk,
                        None,
                        lambda c=cfg, o=out: poller(c, "once", "--dry-run", "--output", str(o)),
                    )
                )
            nv, pr = best(nvs), best(prs)
            lines = out.read_text().splitlines()
            pipelines = sum(1 for ln in lines if '"job_run"' in ln)
            n_payloads = nv.proc.json()["payloads"]
            d[key] = {
                "naive": nv.summary(),
                "poller": pr.summary(),
                "payloads": {
                    "naive": n_payloads,
                    "poller": len(lines),
                    "poller_with_stages": pipelines,
                },
                "all_walls": {"naive": [m.wall for m in nvs], "poller": [m.wall for m in prs]},
            }
            n_rate, p_rate = total / nv.wall, total / pr.wall
            rep.add(
                tag,
                "builds/s (wall, incl. start-up)",
                n_rate,
                p_rate,
                p_rate / n_rate,
                "" if stages else "≥ 10x",
                None if stages else p_rate / n_rate >= 10,
            )
            n_net, p_net = total / (nv.wall - fixed_n), total / (pr.wall - fixed_p)
            rep.add(
                tag,
                "builds/s without the fixed start-up",
                n_net,
                p_net,
                p_net / n_net,
                note=f"start-up: naive {fixed_n:.2f}s, sei-poller {fixed_p:.2f}s",
            )
            rep.add(tag, "payloads", n_payloads, len(lines))
            rep.add(
                tag,
                "Jenkins requests",
                nv.requests["requests"],
                pr.requests["requests"],
                note=_kinds(pr.requests),
            )
            rpb_n, rpb_p = nv.requests["requests"] / total, pr.requests["requests"] / total
            limit = 1.05 if stages else 0.05
            rep.add(
                tag, "Jenkins requests / build", rpb_n, rpb_p, None, f"≤ {limit}", rpb_p <= limit
            )
            if stages:
                wf = pr.requests["by_kind"].get("wfapi", 0)
                worst = (pr.requests["requests"] - wf) / total + wf / max(1, pipelines)
                rep.add(tag, "wfapi requests / pipeline build", None, wf / max(1, pipelines))
                rep.add(
                    tag,
                    "requests / build if every job were a pipeline",
                    None,
                    worst,
                    None,
                    "≤ 1.05",
                    worst <= 1.05,
                )
            rep.add(
                tag,
                "CPU s: client / Jenkins stand-in",
                f"{nv.proc.cpu:.1f} / {nv.cpu['jenkins']:.1f}",
                f"{pr.proc.cpu:.1f} / {pr.cpu['jenkins']:.1f}",
            )
            # The naive loop is serial: its wall time is its CPU plus the stand-in's plus any
            # stall. A Nagle / delayed-ACK stall would show here as ~40 ms per request.
            stall = (nv.wall - nv.proc.cpu - nv.cpu["jenkins"]) / nv.requests["requests"]
            rep.add(
                tag,
                "naive: wall not spent on CPU, per request",
                f"{1000 * stall:.2f} ms",
                None,
                None,
                "no 40 ms stalls",
                stall < 0.005,
            )
            if n_payloads != len(lines):
                rep.notes.append(
                    f"{tag}: naive made {n_payloads} payloads, sei-poller {len(lines)}"
                )
        payloads = work / "dry-stages-off.jsonl"
        expected = d["stages off"]["payloads"]["poller"]

        # 2. The ceiling: one client posting ready payloads to the same receiver, serially.
        ceil: dict[str, Any] = {}
        for client in ("requests", "http.client"):
            m = measure(
                jk,
                sei,
                lambda c=client: run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.naive",
                        "ceiling",
                        "--sei",
                        sei.info["url"],
                        "--api-key",
                        sei.info["api_key"],
                        "--payloads",
                        str(payloads),
                        "--count",
                        str(s.ceiling_posts),
                        "--client",
                        c,
                    ]
                ),
            )
            j = m.proc.json()
            ceil[client] = {
                "posts_per_s": j["posts"] / j["seconds"],
                "posts": j["posts"],
                "client_cpu_ms_per_post": 1000 * m.proc.cpu / j["posts"],
                "sei_cpu_ms_per_post": 1000 * m.cpu["sei"] / j["posts"],
            }
        d["ceiling"] = ceil
        ceiling = ceil["requests"]["posts_per_s"]

        # 3. End to end: naive read + post serially; `once` and `backfill` from an empty state.
        conc = 4
        runs: dict[str, list[Measured]] = {"naive": [], "once": [], "backfill": []}
        for i in range(s.repeat):
            runs["naive"].append(measure(jk, sei, lambda: naive("e2e", jk, sei)))
            for cmd in ("once", "backfill"):
                cfg = write_config(fresh(work / f"e2e-{cmd}-{i}"), jk, sei, concurrency=conc)
                args = ["--since", "all"] if cmd == "backfill" else []
                runs[cmd].append(measure(jk, sei, lambda c=cfg, k=cmd, a=args: poller(c, k, *a)))
        nv = best(runs["naive"])
        d["e2e naive"] = {**nv.summary(), "all_walls": [m.wall for m in runs["naive"]]}
        for cmd in ("once", "backfill"):
            pr = best(runs[cmd])
            recv = post_rate(pr.sei)
            d[f"e2e {cmd}"] = {
                **pr.summary(),
                "concurrency": conc,
                "post_rate_at_sei": recv,
                "all_walls": [m.wall for m in runs[cmd]],
            }
            sec = f"end to end: sei-poller {cmd} vs naive read + post, SEI latency 0"
            n_rate, p_rate = nv.sei["accepted"] / nv.wall, pr.sei["accepted"] / pr.wall
            rep.add(
                sec,
                "builds delivered / s (wall)",
                n_rate,
                p_rate,
                p_rate / n_rate,
                "≥ 2x",
                p_rate / n_rate >= 2,
            )
            ok = all(m.sei["unique"] == m.sei["accepted"] == expected for m in runs[cmd])
            rep.add(
                sec,
                "delivered, each build once",
                nv.sei["unique"],
                pr.sei["unique"],
                None,
                f"= {expected:,}",
                ok,
            )
            rep.add(
                sec,
                "Jenkins requests / build",
                nv.requests["requests"] / total,
                pr.requests["requests"] / total,
                None,
                "≤ 0.05",
                pr.requests["requests"] / total <= 0.05,
            )
            rep.add(
                sec,
                f"POST/s at SEI; vs {conc} x ceiling ({conc * ceiling:,.0f}/s)",
                post_rate(nv.sei),
                recv,
                None,
                note=f"{recv / ceiling:.0%} of 1 x ceiling, {recv / (conc * ceiling):.0%} "
                f"of {conc} x",
            )
            rep.add(
                sec,
                "CPU % of a core: client / Jenkins / SEI",
                _pct(nv.proc.cpu, nv.cpu["jenkins"], nv.cpu["sei"], nv.wall),
                _pct(pr.proc.cpu, pr.cpu["jenkins"], pr.cpu["sei"], pr.wall),
            )
        reqs = nv.requests["requests"] + nv.sei["accepted"]
        stall = (nv.wall - nv.proc.cpu - nv.cpu["jenkins"] - nv.cpu["sei"]) / reqs
        rep.add(
            "end to end: naive",
            "wall not spent on CPU, per request (GET or POST)",
            f"{1000 * stall:.2f} ms",
            None,
            None,
            "no 40 ms stalls",
            stall < 0.005,
        )
        sec = "SEI ceiling: one client, serial POSTs, keep-alive"
        rep.add(
            sec,
            "POST/s with requests.Session (as sei-poller)",
            None,
            ceiling,
            note=f"client CPU {ceil['requests']['client_cpu_ms_per_post']:.2f} ms/POST",
        )
        rep.add(
            sec,
            "POST/s with http.client (what the receiver takes)",
            None,
            ceil["http.client"]["posts_per_s"],
            note=f"client CPU {ceil['http.client']['client_cpu_ms_per_post']:.2f} ms/POST, "
            f"SEI stand-in {ceil['http.client']['sei_cpu_ms_per_post']:.2f} ms/POST",
        )

        if profile:
            if not pyspy():
                rep.notes.append("--profile: py-spy not found (pip install py-spy); skipped")
            else:
                cfg = write_config(fresh(work / "e2e-profile"), jk, sei, concurrency=conc)
                raw = work / "once.pyspy.txt"
                sei.ask("reset")
                poller(cfg, "once", profile=raw)
                d["profile"] = summarize_profile(raw)


def _kinds(req: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(req.get("by_kind", {}).items()))


def _pct(client: float, jenkins: float, sei: float, wall: float) -> str:
    return f"{100 * client / wall:.0f} / {100 * jenkins / wall:.0f} / {100 * sei / wall:.0f}"


BUCKETS = (
    ("POST to SEI (Sender.post: requests)", "Sender.post"),
    ("outbox bookkeeping (poller/state.py, SQLite)", "poller/state.py"),
    ("payload: to_sei + json.dumps", "_encode ("),
    ("Jenkins GET + JSON parse (get_json)", "get_json"),
    ("mapping Jenkins JSON (JenkinsConnector._build)", "JenkinsConnector._build"),
    ("other work in pool threads (submit / wait / notify)", "concurrent/futures"),
    ("start-up (imports, config)", "_find_and_load"),
)


def summarize_profile(raw: Path) -> dict[str, Any]:
    """GIL-held samples of `once`: where the one core the process can use goes."""
    total = 0
    buckets: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        selfs[frames[-1]] += count
        for name, needle in BUCKETS:
            if needle in stack:
                buckets[name] += count
                break
        else:
            buckets["other"] += count
    return {
        "gil_samples": total,
        "buckets": {k: round(v / total, 3) for k, v in buckets.most_common()},
        "top_self": [(k, round(v / total, 3)) for k, v in selfs.most_common(12)],
    }


# -- 2. delivery against a receiver answering in 20 ms ----------------------------------------

TEMPLATE = {
    "pipeline": "job-001",
    "instance_name": "Jenkins-1",
    "instance_guid": GUID,
    "instance_url": "http://127.0.0.1:8080/",
    "start_time": 1795646228722,
    "duration": 599910,
    "result": "SUCCESS",
    "user_id": "SCMTrigger",
    "ci": True,
    "cd": False,
    "trigger_chain": [{"id": "SCMTrigger", "type": "SCMTriggerCause"}],
    "scm_commit_ids": [
        "e474eb2c620d459f3e2d2d8d11e04f86792a168c",
        "0f4577508cefb9dac6dd5f438641f69170b8691a",
    ],
    "repo_url": "https://git.example.com/folder-009/job-001.git",
    "branch_name": "main",
}


def enqueue(db: Path, n: int) -> None:
    """N pending payloads in a state database, as a poll would leave them."""
    from poller.state import State

    state = State(db)
    try:
        for start in range(0, n, 500):
            rows = []
            for i in range(start, min(n, start + 500)):
                job = f"folder-{i % 7:03d}/job-{i % 50:03d}"
                p = {
                    **TEMPLATE,
                    "job_full_name": job,
                    "qualified_name": job,
                    "build_number": i,
                    "execution_id": f"00000000-0000-5000-8000-{i:012d}",
                    "web_url": f"http://127.0.0.1:8080/job/x/{i}/",
                }
                rows.append((i, json.dumps(p, separators=(",", ":"))))
            state.enqueue("jenkins-bench", f"bench-{start}", rows)
    finally:
        state.close()


def bench_delivery(s: Sizes, rep: Report, work: Path) -> None:
    log(f"delivery: receiver latency {s.latency * 1000:.0f} ms, concurrency {s.concurrencies}")
    d: dict[str, Any] = {}
    rep.data["delivery"] = d
    sec = f"delivery, SEI answering in {s.latency * 1000:.0f} ms"
    with servers.jenkins(0, 0, 0) as jk, servers.sei(s.latency) as sei:
        runs = [(c, s.latency, s.per_worker * c) for c in s.concurrencies]
        runs.append((4, 0.0, s.fast_posts))
        for conc, latency, n in runs:
            sei.ask(f"latency {latency}")
            sei.ask("reset")
            cfg = write_config(fresh(work / f"deliver-{conc}-{latency}"), jk, sei, concurrency=conc)
            enqueue(cfg.parent / "state.db", n)
            with cpu_of(sei=sei) as c:
                pr = poller(cfg, "once")
            st = sei.ask("stats")
            span = (st["last"] - st["first"]) if st["first"] is not None else 0
            at_sei = (st["accepted"] - 1) / span if span > 0 else 0.0
            wall_rate = st["accepted"] / pr.wall
            key = f"c={conc} latency={latency}"
            d[key] = {
                "payloads": n,
                "wall": pr.wall,
                "cpu": pr.cpu,
                "sei_cpu": c["sei"],
                "sei": st,
                "rate_at_sei": at_sei,
                "rate_wall": wall_rate,
                "rc": pr.rc,
            }
            if latency:
                need = 35 * conc
                rep.add(
                    sec,
                    f"concurrency {conc}: payloads/s at SEI (wall)",
                    None,
                    f"{at_sei:,.0f} ({wall_rate:,.0f})",
                    at_sei / need,
                    f"≥ {need}",
                    at_sei >= need and st["unique"] == n,
                    note=f"ideal {conc / latency:,.0f}/s",
                )
            else:
                d["fast"] = key
                ceiling = rep.data.get("compare", {}).get("ceiling", {}).get("requests", {})
                vs = (
                    f"; {at_sei / ceiling['posts_per_s']:.0%} of 1 x ceiling, "
                    f"{at_sei / (conc * ceiling['posts_per_s']):.0%} of {conc} x"
                    if ceiling
                    else ""
                )
                rep.add(
                    "delivery, SEI latency 0 (sei-poller's own cost per POST)",
                    f"concurrency {conc}: payloads/s at SEI (wall)",
                    None,
                    f"{at_sei:,.0f} ({wall_rate:,.0f})",
                    note=f"CPU % poller / SEI: {100 * pr.cpu / pr.wall:.0f} / "
                    f"{100 * c['sei'] / pr.wall:.0f}; poller CPU {1000 * pr.cpu / n:.2f} ms/POST"
                    + vs,
                )


# -- 3. peak RSS and history length ------------------------------------------------------------


def bench_rss(s: Sizes, rep: Report, work: Path) -> None:
    jobs = s.rss_folders * s.rss_jobs
    d: dict[str, Any] = {"jobs": jobs}
    rep.data["rss"] = d
    sec = f"peak RSS, J={jobs} jobs"
    for builds in s.rss_builds:
        log(f"rss: {jobs} jobs x {builds} builds")
        with servers.jenkins(s.rss_folders, s.rss_jobs, builds) as jk, servers.sei() as sei:
            cfg = write_config(fresh(work / f"rss-dry-{builds}"), jk, sei)
            pr = poller(cfg, "once", "--dry-run", "--output", os.devnull)
            d[f"dry-run B={builds}"] = {
                "maxrss_mb": pr.maxrss_mb,
                "wall": pr.wall,
                "builds": jobs * builds,
                "rc": pr.rc,
            }
            rep.add(
                sec,
                f"once --dry-run, B={builds} ({jobs * builds:,} builds)",
                None,
                f"{pr.maxrss_mb:.0f} MB in {pr.wall:.0f}s",
                None,
                "≤ 150 MB",
                pr.maxrss_mb <= 150,
            )
            if builds in s.rss_e2e_builds:
                cfg = write_config(fresh(work / f"rss-e2e-{builds}"), jk, sei, concurrency=4)
                pr = poller(cfg, "once")
                st = sei.ask("stats")
                d[f"once B={builds}"] = {
                    "maxrss_mb": pr.maxrss_mb,
                    "wall": pr.wall,
                    "delivered": st["unique"],
                    "rc": pr.rc,
                }
                rep.add(
                    sec,
                    f"once (delivering {st['unique']:,}), B={builds}",
                    None,
                    f"{pr.maxrss_mb:.0f} MB in {pr.wall:.0f}s",
                    None,
                    "≤ 150 MB",
                    pr.maxrss_mb <= 150,
                )
    dry = [d[f"dry-run B={b}"]["maxrss_mb"] for b in s.rss_builds]
    growth = max(dry) / min(dry)
    rep.add(
        sec,
        f"dry-run growth B={s.rss_builds[0]} → B={s.rss_builds[-1]}",
        None,
        f"{growth:.2f}x",
        None,
        "flat (≤ 1.2x)",
        growth <= 1.2,
    )
    e2e = [d[f"once B={b}"]["maxrss_mb"] for b in s.rss_e2e_builds]
    if len(e2e) > 1:
        growth = max(e2e) / min(e2e)
        rep.add(
            sec,
            f"once growth B={s.rss_e2e_builds[0]} → B={s.rss_e2e_builds[-1]}",
            None,
            f"{growth:.2f}x",
            None,
            "flat (≤ 1.2x)",
            growth <= 1.2,
        )


# -- 4. idle poll ----------------------------------------------------------------------------


def bench_idle(s: Sizes, rep: Report, work: Path) -> None:
    jobs = s.idle_folders * s.idle_jobs
    d: dict[str, Any] = {"jobs": jobs, "folders": s.idle_folders}
    rep.data["idle"] = d
    sec = f"idle poll: a second once, {jobs:,} jobs in {s.idle_folders} folders"
    for builds in s.idle_builds:
        # The first `once` reads every job. Its backfill_since reaches back about two builds
        # per job (seed_bulk spreads B builds over 30 days), so the builds still running are
        # seen whatever the history length, and delivering the history does not dominate.
        since = f"{max(1, 2 * 30 * 24 * 60 // builds)}m"
        log(f"idle: {jobs} jobs x {builds} builds (first once with backfill_since {since})")
        with servers.jenkins(s.idle_folders, s.idle_jobs, builds) as jk, servers.sei() as sei:
            cfg = write_config(
                fresh(work / f"idle-{builds}"), jk, sei, concurrency=4, backfill_since=since
            )
            first = measure(jk, sei, lambda c=cfg: poller(c, "once"))
            second = measure(jk, sei, lambda c=cfg: poller(c, "once"))
            running = _running_jobs(cfg.parent / "state.db")
            d[f"B={builds}"] = {
                "backfill_since": since,
                "first": first.summary(),
                "second": second.summary(),
                "running": running,
            }
            r2 = second.requests
            rep.add(
                sec,
                f"B={builds}: Jenkins requests",
                None,
                r2["requests"],
                None,
                "≤ 60",
                r2["requests"] <= 60,
                note=f"{_kinds(r2)}; {second.wall:.1f}s",
            )
            rep.add(
                sec,
                f"B={builds}: jobs with a build running",
                None,
                f"{running['newest']} + {running['below']}",
                note="newest build running + a build running below a finished one",
            )
            rep.add(
                sec,
                f"B={builds}: the first once (for scale)",
                None,
                f"{first.requests['requests']:,} req",
                note=f"{first.sei['unique']:,} builds delivered, {first.wall:.0f}s",
            )
    counts = [d[f"B={b}"]["second"]["jenkins_requests"]["requests"] for b in s.idle_builds]
    rep.add(
        sec,
        "equal for every history length",
        None,
        " = ".join(map(str, counts)),
        None,
        "equal",
        len(set(counts)) == 1,
    )


def _running_jobs(db: Path) -> dict[str, int]:
    """Jobs whose watermark stops below their newest build, from the state database."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        below, newest = conn.execute(
            "SELECT SUM(watermark < last_completed),"
            " SUM(watermark >= last_completed AND watermark < last_build) FROM jobs"
        ).fetchone()
    return {"below": below or 0, "newest": newest or 0}


# -- main ------------------------------------------------------------------------------------

PHASES = ("compare", "delivery", "idle", "rss")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument(
        "--full", action="store_true", help="also the end-to-end RSS run at the longest history"
    )
    p.add_argument("--profile", action="store_true", help="py-spy profile of `once` (GIL samples)")
    p.add_argument("--only", help=f"comma-separated phases: {', '.join(PHASES)}")
    p.add_argument("--output", default=str(RESULTS), help="JSON results (default: %(default)s)")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    if args.full:
        sizes = Sizes(**{**asdict(sizes), "rss_e2e_builds": sizes.rss_builds})
    phases = args.only.split(",") if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    rep = Report()
    load_before = _loadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sei-bench-") as tmp:
        work = Path(tmp)
        for phase in phases:
            {
                "compare": lambda: bench_compare(sizes, rep, work, args.profile),
                "delivery": lambda: bench_delivery(sizes, rep, work),
                "idle": lambda: bench_idle(sizes, rep, work),
                "rss": lambda: bench_rss(sizes, rep, work),
            }[phase]()
    elapsed = time.perf_counter() - started
    machine = {**_machine(), "loadavg_before": load_before, "loadavg_after": _loadavg()}
    if load_before > 0.5:
        rep.notes.append(
            f"the machine was busy before the run (1-minute load {load_before:.2f} on "
            f"{os.cpu_count()} cores): other work competed for the CPU, figures may be low"
        )
    print(
        f"\nsei-poller benchmarks ({'quick' if args.quick else 'default'} sizes"
        f"{', full' if args.full else ''}); {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}; {elapsed:.0f}s\n"
    )
    rep.print_table()
    prof = rep.data.get("compare", {}).get("profile")
    if prof:
        print("\nwhere `once` spends the GIL (py-spy --gil samples):")
        for k, v in prof["buckets"].items():
            print(f"  {v:6.1%}  {k}")
        print("  top functions (self):")
        for k, v in prof["top_self"][:8]:
            print(f"  {v:6.1%}  {k}")
    out = {
        "machine": machine,
        "mode": "quick" if args.quick else "default",
        "full": args.full,
        "seconds": round(elapsed, 1),
        "sizes": asdict(sizes),
        "checks": [asdict(r) for r in rep.rows],
        "data": rep.data,
        "notes": rep.notes,
    }
    Path(args.output).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.output}")
    checks = [r for r in rep.rows if r.ok is not None]
    return 0 if all(r.ok for r in checks) else 1


def _loadavg() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


if __name__ == "__main__":
    sys.exit(main())
