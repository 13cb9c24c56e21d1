"""``FakeJenkins``: the stand-in controller, its editable model, its faults and its request log."""

from __future__ import annotations

import copy
import re
import ssl
import time
from typing import Any, NamedTuple

from poller.standins.http import Standin

from .builds import _add_interrupted, _make_build
from .model import _Container, _Explicit, _Item, _Job, _Lazy, _Root
from .names import _WF_STATUS, CONTAINER_CLASSES, RESULTS, _now_ms, _sha
from .server import _Handler


class Finished(NamedTuple):
    """When a build became finished in the stand-in, and with which result."""

    at: float  # time.time(), taken before any request could see the build finished
    result: str


class FakeJenkins(Standin):
    """A Jenkins controller on 127.0.0.1 with an editable model of folders, jobs and builds.

    The port is bound at construction, so ``url`` (and every build's ``url``) is final before
    ``start()``. Mutators (``add_*``, ``finish_build``, ``delete_*``, ``recreate_job``) may be
    called from any thread while the server answers: they and every answer hold one lock, so
    an answer sees the model before or after a change, never halfway. Usable as a context
    manager (``with FakeJenkins() as fj: ...``).
    """

    #: Size of every git ``BuildData.buildsByBranchName`` map (besides the built branch):
    #: large enough that fetching it by mistake shows up in ``Recorded.size``.
    build_data_branches: int = 40
    thread_prefix = "fake-jenkins"

    def __init__(
        self,
        *,
        context_path: str = "",
        username: str = "sei-bot",
        token: str = "jenkins-secret-token",
        require_auth: bool = True,
        version: str = "2.440.3",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(context_path, _Handler, tls)
        self.username = username
        self.token = token
        self.require_auth = require_auth
        self.version = version
        self._queue_id = 100
        self._finished: dict[tuple[str, int], Finished] = {}
        self._bulk_seeded: dict[str, float] = {}  # job full name -> when seed_bulk made it
        self._session = _sha(id(self), time.time())[:8]
        self._root = _Root(self)

    # -- model -------------------------------------------------------------------------------
    def _find(self, full_name: str) -> _Item | None:
        item: _Item = self._root
        for seg in full_name.strip("/").split("/"):
            if not isinstance(item, _Container):
                return None
            nxt = item.children.get(seg)
            if nxt is None:
                return None
            item = nxt
        return item

    def _container(self, full_name: str) -> _Container:
        """The container at ``full_name``, creating plain folders on the way."""
        if not full_name:
            return self._root
        item: _Container = self._root
        for seg in full_name.split("/"):
            nxt = item.children.get(seg)
            if nxt is None:
                nxt = _Container(self, item, seg, "folder")
                item.put(nxt)
            if not isinstance(nxt, _Container):
                raise ValueError(f"{nxt.full_name!r} is a job, not a folder")
            item = nxt
        return item

    def add_folder(self, full_name: str, kind: str = "folder") -> None:
        """Add a container: ``folder``, ``multibranch`` (branch jobs inside) or ``org``."""
        if kind not in CONTAINER_CLASSES:
            raise ValueError(f"unknown folder kind {kind!r}")
        with self._lock:
            parent_name, _, name = full_name.strip("/").rpartition("/")
            parent = self._container(parent_name)
            existing = parent.children.get(name)
            if existing is not None:
                if existing.kind != kind:
                    raise ValueError(f"{full_name!r} already exists as a {existing.kind}")
                return
            parent.put(_Container(self, parent, name, kind))

    def add_job(self, full_name: str, kind: str | None = None) -> None:
        """Add a ``freestyle``, ``pipeline`` or ``maven`` job; parents become folders if missing.

        ``kind`` defaults to ``pipeline`` inside a multibranch project, else ``freestyle``.
        Branch jobs are named as Jenkins names them, encoded: ``svc/feature%2Fx``.
        """
        with self._lock:
            self._job(full_name, kind)

    def _job(self, full_name: str, kind: str | None = None) -> _Job:
        parent_name, _, name = full_name.strip("/").rpartition("/")
        parent = self._container(parent_name)
        existing = parent.children.get(name)
        if isinstance(existing, _Job) and kind in (None, existing.kind):
            return existing
        if existing is not None:
            raise ValueError(f"{full_name!r} already exists as a {existing.kind}")
        if kind is None:
            kind = "pipeline" if parent.kind == "multibranch" else "freestyle"
        if kind not in ("freestyle", "pipeline", "maven"):
            raise ValueError(f"unknown job kind {kind!r}")
        job = _Job(self, parent, name, kind)
        parent.put(job)
        return job

    def _existing_job(self, full_name: str) -> _Job:
        item = self._find(full_name)
        if not isinstance(item, _Job):
            raise KeyError(f"no job {full_name!r}")
        return item

    def add_build(
        self,
        job: str,
        number: int | None = None,
        *,
        result: str | None = "SUCCESS",
        building: bool = False,
        timestamp: int | None = None,
        duration: int = 60000,
        causes: list[dict[str, Any]] | None = None,
        parameters: list[dict[str, Any]] | None = None,
        git: dict[str, Any] | list[dict[str, Any]] | None = None,
        change_ids: list[str] | None = None,
        artifacts: list[str] | None = None,
        stages: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add a build and return its stored JSON dict (edits to it show in later answers).

        A missing job is created (freestyle, or pipeline inside a multibranch project).
        ``git`` may be a list for several ``BuildData`` actions (e.g. a shared library's
        checkout next to the project's). ``stages`` are wfapi stage dicts; pipelines without
        them get stages generated from the build's state at answer time.
        """
        if result is not None and result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS} or None")
        with self._lock:
            j = self._job(job)
            n = j.next_number if number is None else number
            if n in j.runs:
                raise ValueError(f"{job} #{n} already exists")
            if timestamp is None:
                timestamp = _now_ms() - (5_000 if building else duration + 5_000)
            done: list[int] = []
            for m in reversed(j.nums):
                if not j.runs[m].building:
                    done.append(j.runs[m].duration)
                    if len(done) == 3:
                        break
            estimated = sum(done) // len(done) if done else -1
            self._queue_id += 1
            gits = [] if git is None else [git] if isinstance(git, dict) else list(git)
            data = _make_build(
                j,
                n,
                result=result,
                building=building,
                timestamp=timestamp,
                duration=duration,
                causes=causes,
                parameters=parameters,
                gits=gits,
                change_ids=change_ids,
                artifacts=artifacts,
                estimated=estimated,
                queue_id=self._queue_id,
                lazy_map=False,
            )
            key = (j.full_name, n)
            if building or result is None:
                self._finished.pop(key, None)
            else:
                self._finished[key] = Finished(time.time(), result)
            j.add(_Explicit(data, copy.deepcopy(stages)))
            return data

    def finish_build(
        self, job: str, number: int, result: str = "SUCCESS", duration: int = 60000
    ) -> None:
        """Complete a running build, as Jenkins does when the executor finishes."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}")
        with self._lock:
            j = self._existing_job(job)
            rec = j.runs[number]
            key = (j.full_name, number)
            before = self.finished(j.full_name, number)
            at = before.at if before is not None and not rec.building else time.time()
            self._finished[key] = Finished(at, result)
            if isinstance(rec, _Explicit):
                rec.data.update(
                    building=False,
                    inProgress=False,
                    result=result,
                    duration=duration,
                    executor=None,
                )
                if result == "ABORTED":
                    _add_interrupted(rec.data["actions"])
                final = _WF_STATUS[result]
                for stage in rec.stages or ():
                    for node in (stage, *stage.get("stageFlowNodes", ())):
                        if node.get("status") == "IN_PROGRESS":
                            node["status"] = final
            else:
                rec.building = False
                rec.result = result
                rec.duration = duration

    def delete_build(self, job: str, number: int) -> None:
        """Discard a build (retention): its URLs answer 404 from now on."""
        with self._lock:
            self._existing_job(job).remove(number)

    def delete_job(self, full_name: str) -> None:
        """Delete a job or a whole folder (like a multibranch branch going away)."""
        with self._lock:
            item = self._find(full_name)
            if item is None or item.parent is None:
                raise KeyError(f"no item {full_name!r}")
            item.parent.remove(item.name)

    def recreate_job(self, full_name: str, kind: str | None = None) -> None:
        """Delete the job if it exists and add it again, empty (numbers restart at 1).

        Atomic: a request sees the old job or the new one, never none (call ``delete_job``
        then ``add_job`` for a window in which it is gone).
        """
        with self._lock:
            item = self._find(full_name)
            if isinstance(item, _Container):
                raise ValueError(f"{full_name!r} is a {item.kind}, not a job")
            if item is not None and item.parent is not None:
                item.parent.remove(item.name)
            self._job(full_name, kind)

    def finished(self, job: str, number: int) -> Finished | None:
        """When build ``job`` #``number`` became finished, and its result; None if it has not.

        Recorded by ``add_build`` (a build added finished) and ``finish_build``; ``seed_bulk``
        builds count as finished when they were seeded. Kept after the build or job is deleted;
        a new build with the same job and number replaces it.
        """
        key = (job.strip("/"), number)
        with self._lock:
            got = self._finished.get(key)
            if got is not None:
                return got
            seeded = self._bulk_seeded.get(key[0])
            if seeded is None:
                return None
            item = self._find(key[0])
            rec = item.runs.get(number) if isinstance(item, _Job) else None
            if isinstance(rec, _Lazy) and not rec.building and rec.result is not None:
                return Finished(seeded, rec.result)
            return None

    def finished_at(self, job: str, number: int) -> float | None:
        """``time.time()`` when the build became finished (see :meth:`finished`), else None."""
        got = self.finished(job, number)
        return None if got is None else got.at

    def final_result(self, job: str, number: int) -> str | None:
        """The result the build finished with (see :meth:`finished`), else None."""
        got = self.finished(job, number)
        return None if got is None else got.result

    # -- faults and recording ----------------------------------------------------------------
    def fail(
        self,
        path_regex: str,
        status: int = 500,
        times: int | None = None,
        *,
        query: str | None = None,
    ) -> None:
        """Answer ``status`` (HTML body) to requests whose path ``re.search``-matches.

        The path is matched as sent (percent-encoded, no query). ``times=None``: forever.
        ``query``: a regex the decoded query string must match as well.
        """
        self.faults.fail(path_regex, status, times, query)

    def delay(self, path_regex: str, seconds: float) -> None:
        """Sleep ``seconds`` before answering matching requests (timeout tests)."""
        self.faults.delay(path_regex, seconds)

    def flaky(self, rate: float, *, seed: int, status: int = 500, path_regex: str = ".*") -> None:
        """Fail each matching request with ``status`` with probability ``rate``.

        Draws come from ``random.Random(seed)``, one per matching request, so the n-th matching
        request fares the same in every run (see :mod:`.faults`).
        """
        self.faults.flaky(rate, seed=seed, status=status, path_regex=path_regex)

    def break_path(self, path_regex: str, status: int = 500) -> None:
        """Answer ``status`` to every matching request until ``heal`` or ``clear_faults``."""
        self.faults.break_path(path_regex, status)

    def hang(self, path_regex: str, seconds: float, times: int | None = None) -> None:
        """Accept matching requests and send nothing for ``seconds``, then close: no answer."""
        self.faults.hang(path_regex, seconds, times)

    def reset(self, path_regex: str, times: int | None = None) -> None:
        """Send the headers and half the body of matching answers, then reset the connection."""
        self.faults.reset(path_regex, times)

    def heal(self, path_regex: str) -> int:
        """Remove every fault added with exactly this ``path_regex``; returns how many."""
        return self.faults.heal(path_regex)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.faults.clear()

    def count(self, path_regex: str = ".*") -> int:
        """How many recorded requests have a path matching ``path_regex`` (``re.search``)."""
        rx = re.compile(path_regex)
        with self._req_lock:
            return sum(1 for r in self.requests if rx.search(r.path))

    # -- serving -----------------------------------------------------------------------------
