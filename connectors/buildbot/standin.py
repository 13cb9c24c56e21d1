"""Buildbot's stand-in is the real thing: a master and two workers on 127.0.0.1, for the
connector's end-to-end tests.

Buildbot is not one of our dependencies (it brings Twisted, SQLAlchemy, ...), so it lives in
its own virtualenv, installed once from PyPI with pinned versions and reused while the pins
do not change: `$SEI_POLLER_BUILDBOT_VENV`, else `.buildbot-venv/` at the repository root.
When the install is impossible (no network, no PyPI) the tests skip with the reason, unless
`SEI_POLLER_REQUIRE_BUILDBOT=1` (set it in CI) turns that into a failure.

The master's config is written by this module: loopback ports, deterministic worker choice,
no quarantine, optional login. Processes run with `--nodaemon` under `subprocess.Popen`, so
the Popen PID is the process to stop; `close()` stops exactly those, even after a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[2]  # the checkout (an editable install's source)
CONSTRAINTS = Path(__file__).with_name("constraints-buildbot.txt")
PACKAGES = ("buildbot==4.3.0", "buildbot-worker==4.3.0", "buildbot-www==4.3.0")
WORKERS = ("w1", "w2")
WORKER_PASS = "worker-pass"
INSTALL_TIMEOUT = 600.0
T = TypeVar("T")


class Unavailable(Exception):
    """Buildbot could not be installed here; the message says why."""


def venv_dir() -> Path:
    return Path(os.environ.get("SEI_POLLER_BUILDBOT_VENV") or REPO / ".buildbot-venv")


def _stamp() -> str:
    """What the venv was built from: a change of pins or Python means a fresh install."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes())
    digest.update(" ".join(PACKAGES).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two test processes installing into one venv at once would corrupt it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_installed() -> Path:
    """The venv's `bin/`, installing Buildbot into it first if the pins changed."""
    venv = venv_dir()
    stamp_file = venv / ".sei-poller-stamp"
    with _locked(venv.with_name(venv.name + ".lock")):
        if (
            stamp_file.is_file()
            and stamp_file.read_text() == _stamp()
            and (venv / "bin" / "buildbot").exists()
        ):
            return venv / "bin"
        if (venv / "bin").exists() and not (venv / "bin" / "python").exists():
            shutil.rmtree(venv)  # a half-created venv from an interrupted run
        steps = []
        if not (venv / "bin" / "python").exists():
            steps.append([sys.executable, "-m", "venv", str(venv)])
        steps.append(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-c",
                str(CONSTRAINTS),
                *PACKAGES,
            ]
        )
        for cmd in steps:
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Unavailable(f"installing Buildbot failed: {exc}") from None
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                raise Unavailable(
                    f"installing Buildbot into {venv} failed (no network or no PyPI?): {tail}"
                )
        stamp_file.write_text(_stamp())
    return venv / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The master's config. Everything run-dependent comes from the environment, so the text is
# fixed and readable. Builders, in the order the tests use them:
#   ok        one step, forced or triggered by a change     → SUCCESS
#   fail      a failing step with haltOnFailure             → FAILURE (later step never runs)
#   multi     success, warnings, skipped step               → WARNINGS (UNSTABLE)
#   exception a step that raises                            → EXCEPTION (FAILURE)
#   slow      waits for its gate file, on w1 or w2          → stopped (ABORTED), out of order
#   flaky     sleeps on its first run, quick on its re-run  → RETRY, then SUCCESS
MASTER_CFG = textwrap.dedent('''\
    # -*- python -*-
    import os
    from buildbot.plugins import schedulers, steps, util, worker

    env = os.environ
    WEB = int(env["BB_WEB_PORT"])
    c = BuildmasterConfig = {}
    c["title"] = "sei-poller test master"
    c["buildbotURL"] = f"http://127.0.0.1:{WEB}/"
    c["buildbotNetUsageData"] = None
    c["collapseRequests"] = False  # otherwise queued requests of one builder merge into one build
    c["db"] = {"db_url": "sqlite:///state.sqlite"}
    c["protocols"] = {"pb": {"port": f"tcp:{env['BB_PB_PORT']}:interface=127.0.0.1"}}


    class Worker(worker.Worker):
        # An EXCEPTION build puts its worker in quarantine for 10 s and more: too slow here.
        quarantine_timeout = quarantine_initial_timeout = 0


    c["workers"] = [Worker(name, env["BB_WORKER_PASS"], max_builds=4) for name in ("w1", "w2")]


    def prefer(*names):
        """Pick the first free worker in this order, not a random one: runs are repeatable."""
        def pick(_builder, candidates, _request):
            ranked = sorted(candidates, key=lambda wfb: names.index(wfb.worker.workername))
            return ranked[0] if ranked else None
        return pick


    def sh(name, command, **kw):
        return steps.ShellCommand(name=name, command=command, logEnviron=False, **kw)


    class Boom(steps.BuildStep):
        name = "boom"

        async def run(self):
            raise RuntimeError("deliberate")


    SCRATCH = env["BB_SCRATCH"]
    # `slow` runs until the file named by its `gate` property exists ("open" always does), so
    # a test decides when a build ends instead of racing a sleep.
    GATE = f'touch "{SCRATCH}/$0.started"; until [ -e "{SCRATCH}/$0" ]; do sleep 0.1; done'
    # `flaky` sleeps on its first run (the test stops its worker then: RETRY), not after.
    FLAKY = (f'if [ -e {SCRATCH}/flaky-ran ]; then echo second run; '
             f'else touch {SCRATCH}/flaky-ran; exec sleep 30; fi')

    factories = {
        "ok": [sh("hello", ["echo", "hello"])],
        "fail": [sh("compile", ["sh", "-c", "echo compiling; exit 1"], haltOnFailure=True),
                 sh("never-runs", ["true"])],
        "multi": [
            steps.SetPropertyFromCommand(name="get-version", command=["echo", "1.2.3"],
                                         property="version", logEnviron=False),
            sh("build", ["echo", "building"]),
            sh("lint", ["sh", "-c", "echo warning; exit 1"], flunkOnFailure=False,
               warnOnFailure=True),
            sh("deploy", ["true"], doStepIf=False),
            sh("test", ["echo", "ok"]),
        ],
        "exception": [Boom()],
        "slow": [sh("wait", ["sh", "-c", GATE, util.Property("gate", default="open")])],
        "flaky": [sh("maybe-sleep", ["sh", "-c", FLAKY])],
    }
    workers = {"slow": ["w1", "w2"], "flaky": ["w2", "w1"]}
    c["builders"] = [
        util.BuilderConfig(name=name, factory=util.BuildFactory(factory),
                           workernames=workers.get(name, ["w1"]),
                           nextWorker=prefer(*workers.get(name, ["w1"])))
        for name, factory in factories.items()
    ]
    c["schedulers"] = [
        schedulers.ForceScheduler(
            name="force", builderNames=list(factories),
            codebases=[util.CodebaseParameter(
                "", label="source",
                branch=util.StringParameter(name="branch", default="main"),
                revision=util.StringParameter(name="revision", default=""),
                repository=util.StringParameter(name="repository", default=""),
                project=util.StringParameter(name="project", default=""),
            )],
            properties=[util.StringParameter(name="gate", default="open")],
        ),
        schedulers.AnyBranchScheduler(name="on-change", treeStableTimer=None,
                                      builderNames=["ok"]),
    ]
    c["www"] = {
        "port": f"tcp:{WEB}:interface=127.0.0.1",
        "plugins": {},
        "change_hook_dialects": {"base": True},
    }
    if env.get("BB_AUTH_USER"):
        c["www"]["auth"] = util.UserPasswordAuth({env["BB_AUTH_USER"]: env["BB_AUTH_PASS"]})
        c["www"]["authz"] = util.Authz(
            allowRules=[util.AnyEndpointMatcher(role="admins", defaultDeny=True)],
            roleMatchers=[util.RolesFromUsername(roles=["admins"],
                                                 usernames=[env["BB_AUTH_USER"]])],
        )
''')


class Buildbot:
    """One master and workers w1, w2 in `workdir`; `close()` stops what `start()` started."""

    def __init__(
        self, bin_dir: Path, workdir: Path, *, auth: tuple[str, str] | None = None
    ) -> None:
        self.bin = bin_dir
        self.workdir = workdir
        self.auth = auth
        self.web_port, self.pb_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.web_port}/"
        self.scratch = workdir / "scratch"
        # A minimal environment: nothing of the host leaks into builds or their logs.
        self.env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "BB_WEB_PORT": str(self.web_port),
            "BB_PB_PORT": str(self.pb_port),
            "BB_WORKER_PASS": WORKER_PASS,
            "BB_SCRATCH": str(self.scratch),
        }
        if auth:
            self.env.update(BB_AUTH_USER=auth[0], BB_AUTH_PASS=auth[1])
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.http = requests.Session()

    # -- lifecycle ------------------------------------------------------------------------

    def _run(self, *cmd: str | Path) -> None:
        subprocess.run(
            [str(c) for c in cmd],
            check=True,
            env=self.env,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _spawn(self, name: str, *cmd: str | Path) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.out").open("ab")
        try:
            return subprocess.Popen(
                [str(c) for c in cmd],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            log.close()

    def start(self) -> Buildbot:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.open_gate("open")
        master = self.workdir / "master"
        self._run(self.bin / "buildbot", "create-master", "-r", master)
        (master / "master.cfg").write_text(MASTER_CFG)
        for name in WORKERS:
            self._run(
                self.bin / "buildbot-worker",
                "create-worker",
                self.workdir / name,
                f"127.0.0.1:{self.pb_port}",
                name,
                WORKER_PASS,
            )
        self.master = self._spawn("master", self.bin / "buildbot", "start", "--nodaemon", master)
        for name in WORKERS:
            self.start_worker(name, wait=False)
        self._wait_up(WORKERS, timeout=90)
        return self

    def start_worker(self, name: str, *, wait: bool = True) -> None:
        self.workers[name] = self._spawn(
            name, self.bin / "buildbot-worker", "start", "--nodaemon", self.workdir / name
        )
        if wait:
            self._wait_up([name], timeout=60)

    def stop_worker(self, name: str) -> None:
        """SIGTERM one worker and wait: its running build ends as RETRY on the master."""
        proc = self.workers.pop(name)
        _terminate(proc)

    def _wait_up(self, names: Any, timeout: float) -> None:
        def connected() -> bool:
            for proc in [self.master, *self.workers.values()]:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"a Buildbot process exited early; see {self.workdir}/*.out "
                        f"and {self.workdir}/master/twistd.log"
                    )
            try:
                if self.auth and not self.http.cookies:
                    self.login()
                workers = self.get("workers")["workers"]
            except (requests.RequestException, RuntimeError):
                return False
            up = {w["name"] for w in workers if w.get("connected_to")}
            return set(names) <= up

        wait(connected, timeout, f"Buildbot workers {list(names)} to connect")

    def close(self) -> None:
        """Stop the workers, then the master: SIGTERM, a bounded wait, SIGKILL if need be."""
        for name in list(self.workers):
            _terminate(self.workers.pop(name))
        if self.master is not None:
            _terminate(self.master)
            self.master = None
        self.http.close()

    # -- the REST API, as a test drives it --------------------------------------------------

    def login(self) -> None:
        assert self.auth
        resp = self.http.get(
            self.url + "auth/login", auth=self.auth, allow_redirects=False, timeout=10
        )
        if resp.status_code not in (200, 302):
            raise RuntimeError(f"login failed: {resp.status_code}")

    def get(self, path: str, **params: Any) -> Any:
        """GET the API as a test reads the truth: a transport failure is tried again twice.

        The master occasionally sends one client a gzip body without its gzip header while
        other clients (the poller behind `FaultProxy`) drop their connections mid-answer; that
        is the master's fault, not the test's finding (the poller retries it next poll).
        """
        for attempt in range(3):
            try:
                resp = self.http.get(self.url + "api/v2/" + path, params=params, timeout=10)
                break
            except requests.RequestException:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def rpc(self, path: str, method: str, **params: Any) -> Any:
        resp = self.http.post(
            self.url + "api/v2/" + path,
            timeout=10,
            json={"jsonrpc": "2.0", "method": method, "id": 1, "params": params},
        )
        if resp.status_code != 200 or "error" in resp.json():
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()["result"]

    def force(self, builder: str, **params: Any) -> int:
        """Force one build; returns its build request id (the build's id is not known yet)."""
        params.setdefault("username", "tester <tester@example.invalid>")
        params.setdefault("reason", f"test {builder}")
        _bsid, requests_by_builder = self.rpc(
            "forceschedulers/force", "force", builderNames=[builder], **params
        )
        return int(next(iter(requests_by_builder.values())))

    def builds_of(self, brid: int) -> list[dict[str, Any]]:
        return list(self.get(f"buildrequests/{brid}/builds")["builds"])

    def running_build(self, brid: int, timeout: float = 30) -> dict[str, Any]:
        return wait(
            lambda: next((b for b in self.builds_of(brid) if not b["complete"]), None),
            timeout,
            f"a running build for request {brid}",
        )

    def finished(self, brid: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until the request is complete; its builds (a RETRY leaves two)."""
        wait(
            lambda: self.get(f"buildrequests/{brid}")["buildrequests"][0]["complete"],
            timeout,
            f"build request {brid} to complete",
        )
        return self.builds_of(brid)

    def at_gate(self, name: str, timeout: float = 30) -> None:
        """Wait until a `slow` build forced with `gate=name` runs its command.

        Stopped before that, Buildbot records the step as FAILURE, EXCEPTION or CANCELLED
        depending on timing; stopped while the command runs, it is always CANCELLED.
        """
        started = self.scratch / f"{name}.started"
        wait(started.exists, timeout, f"a slow build to wait at gate {name!r}")

    def stop_build(self, buildid: int, reason: str) -> None:
        self.rpc(f"builds/{buildid}", "stop", reason=reason)

    def post_change(self, **fields: str) -> None:
        resp = self.http.post(self.url + "change_hook/base", data=fields, timeout=10)
        if resp.status_code != 200:
            raise RuntimeError(f"change hook: {resp.status_code} {resp.text[:200]}")

    def open_gate(self, name: str) -> None:
        """Let `slow` builds forced with `gate=name` finish."""
        (self.scratch / name).touch()

    def build(self, builder: str, number: int, timeout: float = 60) -> dict[str, Any]:
        """Wait until build `number` of `builder` exists and is finished; return it."""
        bid = self.builder_ids()[builder]

        def done() -> dict[str, Any] | None:
            found = self.get(f"builders/{bid}/builds", number=number)["builds"]
            return found[0] if found and found[0]["complete"] else None

        return wait(done, timeout, f"{builder} #{number} to finish")

    def builder_ids(self) -> dict[str, int]:
        return {b["name"]: b["builderid"] for b in self.get("builders")["builders"]}


def wait(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
