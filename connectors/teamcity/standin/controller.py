"""``FakeTeamCity``: the stand-in server, its editable model, its faults and its request log."""

from __future__ import annotations

import itertools
import ssl
import time
from typing import Any

from poller.standins.http import Standin

from .fixtures import server_template
from .model import ROOT, Build, BuildType, Project, User, VcsRoot, tc_time
from .server import _Handler


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeTeamCity(Standin):
    """A TeamCity server on 127.0.0.1 with an editable model.

    Builds get ids from one server-wide sequence when they are queued, as on TeamCity, so a
    build configuration's ids have gaps, and builds may start and finish in any order.
    Mutators may be called from any thread while the server answers; they and every answer
    hold one lock. Usable as a context manager.

    Auth: ``token`` as ``Authorization: Bearer``, or ``username`` + ``password`` as HTTP basic,
    on every path; anything else is 401. ``tz`` is the server's zone in its dates
    (``+0300`` like the Ignite server the fixtures come from).
    """

    thread_prefix = "fake-teamcity"

    def __init__(
        self,
        *,
        context_path: str = "",
        token: str = "tc-secret-token",
        username: str = "sei-bot",
        password: str = "tc-secret-password",
        version: str = "2023.11.1 (build 147412)",
        tz: str = "+0000",
        default_lookup_limit: int = 5000,
        settings_permission: bool = True,
        lookup_limit_next_href: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(context_path, _Handler, tls)
        self.token, self.username, self.password = token, username, password
        self.version, self.tz = version, tz
        self.default_lookup_limit = default_lookup_limit
        self.settings_permission = settings_permission
        self.lookup_limit_next_href = lookup_limit_next_href
        self.started_ms = now_ms()
        self.projects: dict[str, Project] = {
            ROOT: Project(
                ROOT, "<Root project>", None, "_Root", description="Contains all other projects"
            )
        }
        self.build_types: dict[str, BuildType] = {}  # by internal id: survives renames
        self.vcs_roots: dict[str, VcsRoot] = {}
        self.users: dict[str, User] = {}
        self.builds: dict[int, Build] = {}
        self._ids = itertools.count(1)
        self._bt_ids = itertools.count(1)
        self._project_ids = itertools.count(1)
        self._instance_ids = itertools.count(1)
        self._change_ids = itertools.count(1000)
        self.add_user(username, "SEI poller")

    # -- requests (lifecycle and request log: Standin) ---------------------------------------
    def count(self, pattern: str = "") -> int:
        with self._req_lock:
            return sum(1 for r in self.requests if pattern in r.path)

    # -- model: configuration ----------------------------------------------------------------
    def add_user(self, username: str, name: str | None = None) -> None:
        with self._lock:
            if username not in self.users:
                self.users[username] = User(len(self.users) + 1, username, name or username.title())

    def add_project(
        self,
        project_id: str,
        name: str | None = None,
        parent: str = ROOT,
        *,
        archived: bool = False,
    ) -> None:
        with self._lock:
            if parent not in self.projects:
                self.add_project(parent)
            if project_id not in self.projects:
                self.projects[project_id] = Project(
                    project_id,
                    name or project_id,
                    parent,
                    f"project{next(self._project_ids)}",
                    archived=archived,
                )

    def add_vcs_root(
        self,
        root_id: str,
        url: str,
        *,
        name: str | None = None,
        branch: str = "refs/heads/main",
        vcs: str = "jetbrains.git",
    ) -> str:
        with self._lock:
            self.vcs_roots[root_id] = VcsRoot(
                root_id, name or f"{url}#{branch}", url, branch, vcs, str(next(self._instance_ids))
            )
            return root_id

    def add_build_type(
        self,
        bt_id: str,
        name: str | None = None,
        project: str = ROOT,
        *,
        steps: list[dict[str, Any]] | None = None,
        vcs_roots: list[str] | None = None,
        type: str = "regular",
        paused: bool = False,
    ) -> BuildType:
        with self._lock:
            if project not in self.projects:
                self.add_project(project)
            bt = BuildType(
                f"bt{next(self._bt_ids)}",
                bt_id,
                name or bt_id,
                project,
                type=type,
                paused=paused,
                steps=list(steps or []),
                vcs_roots=list(vcs_roots or []),
            )
            self.build_types[bt.internal_id] = bt
            return bt

    def build_type_by_id(self, bt_id: str) -> BuildType:
        for bt in self.build_types.values():
            if bt.id == bt_id or bt.internal_id == bt_id:
                return bt
        raise LookupError(f"No build type or template is found by id '{bt_id}'.")

    def rename_build_type(
        self,
        bt_id: str,
        *,
        new_id: str | None = None,
        name: str | None = None,
        project: str | None = None,
    ) -> None:
        """Change the external id, the name or the project; builds follow (by reference)."""
        with self._lock:
            bt = self.build_type_by_id(bt_id)
            if new_id is not None:
                bt.id = new_id
            if name is not None:
                bt.name = name
            if project is not None:
                self.add_project(project)
                bt.project = project

    # -- model: builds -----------------------------------------------------------------------
    def skip_ids(self, n: int) -> None:
        """Hand out `n` ids elsewhere (other servers' builds, deleted queue items): a gap."""
        with self._lock:
            for _ in range(n):
                next(self._ids)

    def queue_build(
        self,
        bt_id: str,
        *,
        at: int | None = None,
        triggered: dict[str, Any] | None = None,
        branch: str | None = None,
        default_branch: bool | None = None,
        personal: bool = False,
        owner: str | None = None,
        composite: bool = False,
        properties: list[dict[str, Any]] | None = None,
        revisions: list[tuple[str, str, str | None]] | None = None,
        changes: list[dict[str, Any]] | None = None,
        snapshot_deps: list[int] | None = None,
    ) -> int:
        """Queue a build: it gets its id now, and its number when it starts."""
        with self._lock:
            bt = self.build_type_by_id(bt_id)
            build_id = next(self._ids)
            for u in (
                (triggered or {}).get("user"),
                owner,
                *(c.get("username") for c in changes or []),
            ):
                if u:
                    self.add_user(u)
            default = default_branch if default_branch is not None else (branch is not None)
            b = Build(
                build_id,
                bt,
                None,
                "queued",
                now_ms() if at is None else at,
                branch=branch,
                default_branch=default if branch is not None else None,
                personal=personal,
                owner=owner,
                composite=composite,
                triggered=dict(triggered or {"type": "user", "user": self.username}),
                properties=list(properties or []),
                revisions=list(revisions or []),
                changes=[{"id": next(self._change_ids), **c} for c in changes or []],
                snapshot_deps=list(snapshot_deps or []),
            )
            self.builds[build_id] = b
            return build_id

    def start_build(
        self, build_id: int, *, at: int | None = None, number: str | None = None
    ) -> None:
        with self._lock:
            b = self.builds[build_id]
            if b.state != "queued":
                raise ValueError(f"build {build_id} is {b.state}, not queued")
            b.bt.counter += 1
            b.number = number if number is not None else str(b.bt.counter)
            b.state = "running"
            b.start_ms = now_ms() if at is None else at

    def finish_build(
        self,
        build_id: int,
        status: str = "SUCCESS",
        *,
        at: int | None = None,
        status_text: str | None = None,
        statistics: dict[str, int] | None = None,
        artifacts: list[dict[str, Any]] | None = None,
        tests: dict[str, int] | None = None,
        failed_to_start: bool = False,
    ) -> None:
        """Finish a running build (or, with `failed_to_start`, a queued one that never ran)."""
        with self._lock:
            b = self.builds[build_id]
            when = now_ms() if at is None else at
            if failed_to_start:
                if b.state == "queued":
                    b.bt.counter += 1
                    b.number = str(b.bt.counter)
                    b.start_ms = when  # GUESS: SBuild.getStartDate() is never null
                    b.agent = None
                b.failed_to_start = True
            elif b.state != "running":
                raise ValueError(f"build {build_id} is {b.state}, not running")
            b.state = "finished"
            b.finish_ms = when
            b.status = "UNKNOWN" if b.canceled else status
            b.status_text = status_text or (
                b.status_text if b.canceled else ("Success" if status == "SUCCESS" else "Failure")
            )
            b.statistics = dict(statistics or {})
            b.artifacts = list(artifacts or [])
            b.tests = tests

    def cancel_build(
        self, build_id: int, *, at: int | None = None, user: str | None = None, text: str = ""
    ) -> None:
        """Cancel a build. A queued one is finished at once (never started); a running one
        stays `running` with status UNKNOWN until :meth:`finish_build` (the agent stopping),
        as `TestClientCancelBuild.json` shows."""
        with self._lock:
            b = self.builds[build_id]
            when = now_ms() if at is None else at
            b.canceled = {"at": when, "text": text, "user": user or self.username}
            if b.state == "queued":
                # Never started, yet TeamCity's finished builds all have a start date (its
                # API's SBuild.getStartDate() is not nullable): the moment it left the queue.
                b.state, b.finish_ms, b.status = "finished", when, "UNKNOWN"
                b.start_ms = when
                b.status_text = "Canceled"
                b.agent = None
            elif b.state == "running":
                b.status = "UNKNOWN"
                b.status_text = "Canceled (Step 1/1)"

    def add_build(
        self,
        bt_id: str,
        status: str = "SUCCESS",
        *,
        queued: int,
        started: int | None = None,
        finished: int | None = None,
        number: str | None = None,
        **kw: Any,
    ) -> int:
        """Queue, start and finish a build in one call, at the given times (epoch ms)."""
        finish_kw = {
            k: kw.pop(k) for k in ("status_text", "statistics", "artifacts", "tests") if k in kw
        }
        build_id = self.queue_build(bt_id, at=queued, **kw)
        self.start_build(build_id, at=started if started is not None else queued, number=number)
        self.finish_build(
            build_id, status, at=finished if finished is not None else queued, **finish_kw
        )
        return build_id

    def delete_build(self, build_id: int) -> None:
        with self._lock:
            self.builds.pop(build_id, None)

    # -- answers -----------------------------------------------------------------------------
    def server_entity(self) -> dict[str, Any]:
        """`/app/rest/server`, keys as `server.extracted.json` has them."""
        template = server_template()
        major, _, rest = self.version.partition(".")
        minor = rest.split(" ", 1)[0].split(".")[0]
        build = self.version.rsplit("build ", 1)[-1].rstrip(")")
        values = {
            "version": self.version,
            "versionMajor": int(major) if major.isdigit() else 0,
            "versionMinor": int(minor) if minor.isdigit() else 0,
            "startTime": tc_time(self.started_ms, self.tz),
            "currentTime": tc_time(now_ms(), self.tz),
            "buildNumber": build,
            "buildDate": tc_time(self.started_ms, self.tz),
            "internalId": "stand-in-" + self.url,
            "webUrl": self.url.rstrip("/"),
        }
        return {k: values.get(k, v) for k, v in template.items()}
