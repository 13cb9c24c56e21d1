"""The Buildbot connector against recorded responses of a real Buildbot 4.3 master.

A small HTTP server on 127.0.0.1 serves `tests/connectors/buildbot/fixtures/` and applies the
part of Buildbot's query language the connector uses (filters, `order`, `limit`, `offset`, `field`,
`property`), so paging, discovery and login run against real shapes and real HTTP.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import connectors.buildbot.connector as bbmod
from connectors.buildbot.connector import BuildbotConnector, Settings
from poller.config import ServerConfig
from poller.errors import ConnectorError, NotFound
from poller.model import Build, Cause, JobCursor, JobRef, Param, ServerSpec, Stage, Unfinished
from poller.payload import execution_id, iso_time, to_sei
from poller.registry import connector_class

FIX = Path(__file__).parent / "fixtures"
GUID = "7a4c2a47-3b39-4a55-9a55-6f0c2b5e1d10"
PAGING = ("order", "limit", "offset", "field", "property")
ANY_PATH = re.compile("/.*")


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


class FakeMaster:
    """Recorded data behind Buildbot's URL layout; counts and remembers every request."""

    def __init__(self) -> None:
        self.builders = load("builders.json")["builders"]
        self.builds = load("builds_with_properties.json")["builds"]
        self.steps = {3: load("steps.json")["steps"]}
        triggered = {b["buildid"] for b in load("change_builds.json")["builds"]}
        change = load("build_from_change_changes.json")["changes"]
        self.changes = {buildid: change for buildid in triggered}
        self.config = load("config.json")
        self.paths: list[str] = []
        self.login: tuple[str, str] | None = None
        self.sessions: set[str] = set()
        self.logins = 0
        # Requests (path?query prefixes) that answer 500 until removed: past the retries.
        self.broken: set[str] = set()

    # -- routing ----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        self.paths.append(request.full_path.rstrip("?"))
        path = request.path
        if any(request.full_path.startswith(b) for b in self.broken):
            return _json({"error": "database is locked"}, 500)
        if path == "/auth/login":
            return self._login(request)
        user = request.cookies.get("TWISTED_SESSION") in self.sessions
        if path == "/config":
            config = dict(self.config)
            if self.login:
                config = (
                    load("auth_logged_in_config.json")
                    if user
                    else {**load("auth_logged_in_config.json"), "user": {"anonymous": True}}
                )
            return _json(config)
        if self.login and not user:
            return _json(load("auth_anonymous_get_builders.json")["body"], 403)
        parts = path.removeprefix("/api/v2/").split("/")
        try:
            return self._api(parts, request)
        except LookupError:
            return _json(load("error_404_build.json"), 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)

    def _login(self, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        given = base64.b64decode(header.removeprefix("Basic ")).decode() if header else ""
        if not self.login or given != ":".join(self.login):
            return Response("Unauthorized", 401)
        self.logins += 1
        token = secrets.token_hex(8)
        self.sessions.add(token)
        resp = Response("", 302, headers={"Location": "/#/"})
        resp.set_cookie("TWISTED_SESSION", token, path="/")
        return resp

    def _api(self, parts: list[str], request: Request) -> Response:
        args = request.args
        match parts:
            case ["builders"]:
                return _json(_query("builders", self.builders, args))
            case ["builds"]:
                return _json(_query("builds", self.builds, args))
            case ["builders", bid, "builds"]:
                rows = [b for b in self.builds if b["builderid"] == int(bid)]
                return _json(_query("builds", rows, args))
            case ["builds", buildid, "steps"]:
                return _json(_query("steps", self.steps.get(int(buildid), []), args))
            case ["builds", buildid, "changes"]:
                return _json(_query("changes", self.changes.get(int(buildid), []), args))
        raise LookupError(parts)

    # -- shaping the recorded history --------------------------------------------------------

    def add_build(self, builder: str, *, complete: bool, results: int = 0) -> dict:
        """A new build of `builder`, copied from its newest one (Buildbot ids only grow)."""
        bid = next(b["builderid"] for b in self.builders if b["name"] == builder)
        newest = max((b for b in self.builds if b["builderid"] == bid), key=lambda b: b["number"])
        build = copy.deepcopy(newest)
        started = newest["started_at"] + 10
        build.update(
            buildid=max(b["buildid"] for b in self.builds) + 1,
            number=newest["number"] + 1,
            started_at=started,
            complete=complete,
            results=results if complete else None,
            complete_at=started + 5 if complete else None,
        )
        self.builds.append(build)
        return build

    def finish(self, build: dict, results: int = 0) -> None:
        build.update(complete=True, results=results, complete_at=build["started_at"] + 5)


def _query(key: str, rows: list[dict], args: Any) -> dict[str, Any]:
    """Buildbot's query language, the subset we use; 400s for what Buildbot refuses."""
    rows = [dict(r) for r in rows]
    fields = args.getlist("field")
    for name, values in args.lists():
        if name in PAGING:
            continue
        field, _, op = name.partition("__")
        if rows and field not in rows[0]:
            raise ValueError(f"unrecognized query parameter '{name}'")
        if fields and field not in fields:
            raise ValueError("cannot filter on un-selected fields")
        for value in values:
            rows = [r for r in rows if _match(r[field], op or "eq", value)]
    if order := args.get("order"):
        rows.sort(key=lambda r: r[order.lstrip("-")], reverse=order.startswith("-"))
    offset = int(args.get("offset", 0))
    limit = args.get("limit")
    rows = rows[offset : offset + int(limit)] if limit else rows[offset:]
    wanted = args.getlist("property")
    for r in rows:
        if "properties" in r:
            props = r["properties"]
            r["properties"] = (
                props if "*" in wanted else {k: props[k] for k in wanted if k in props}
            )
    if fields:
        rows = [{f: r[f] for f in fields if f in r} for r in rows]
    return {key: rows, "meta": {"total": len(rows)}}


def _match(have: Any, op: str, raw: str) -> bool:
    want: Any = (
        raw == "true" if isinstance(have, bool) else int(raw) if isinstance(have, int) else raw
    )
    if have is None:
        return op == "ne"
    return {
        "eq": have == want,
        "ne": have != want,
        "gt": have > want,
        "ge": have >= want,
        "lt": have < want,
        "le": have <= want,
    }[op]


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture()
def master(httpserver: HTTPServer) -> FakeMaster:
    fake = FakeMaster()
    httpserver.expect_request(ANY_PATH).respond_with_handler(fake)
    return fake


def _connector(httpserver: HTTPServer, **kw: Any) -> Iterator[BuildbotConnector]:
    settings = Settings(**kw.pop("settings", {}))
    spec = ServerSpec(
        name="bb",
        type="buildbot",
        url=httpserver.url_for("/"),
        settings=settings,
        max_concurrency=2,
        **kw,
    )
    conn = BuildbotConnector(spec)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture()
def bb(httpserver: HTTPServer, master: FakeMaster) -> Iterator[BuildbotConnector]:
    yield from _connector(httpserver)


def _jobs(conn: BuildbotConnector) -> dict[str, JobRef]:
    return {j.full_name: j for j in conn.discover()}


def _scan(
    conn: BuildbotConnector,
    job: str,
    cursor: JobCursor | None = None,
    skip: frozenset[int] = frozenset(),
) -> tuple[list[Build | Unfinished], list[int]]:
    """Discover, scan one builder; returns what it yielded and the numbers `wanted` saw."""
    asked: list[int] = []

    def wanted(n: int) -> bool:
        asked.append(n)
        return n not in skip

    ref = _jobs(conn)[job]
    return list(conn.scan(ref, cursor or JobCursor(), wanted)), asked


def _built(conn: BuildbotConnector, job: str) -> dict[int, Build]:
    items, _ = _scan(conn, job)
    return {b.number: b for b in items if isinstance(b, Build)}


# -- mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "number", "result"),
    [
        ("ok", 1, "SUCCESS"),  # 0 SUCCESS
        ("multi", 1, "UNSTABLE"),  # 1 WARNINGS
        ("fail", 1, "FAILURE"),  # 2 FAILURE
        ("exception", 1, "FAILURE"),  # 4 EXCEPTION
        ("slow", 1, "ABORTED"),  # 6 CANCELLED (stopped while running)
        ("slow", 3, "ABORTED"),  # the RETRY's re-run, stopped too
    ],
)
def test_each_result_code_maps_to_jenkins_vocabulary(
    bb: BuildbotConnector, job: str, number: int, result: str
) -> None:
    assert _built(bb, job)[number].result == result


def test_skipped_build_is_not_built(bb: BuildbotConnector, master: FakeMaster) -> None:
    """3 (SKIPPED) occurs only on steps in the recording; a build with it is NOT_BUILT."""
    master.finish(master.add_build("ok", complete=False), results=3)
    assert _built(bb, "ok")[3].result == "NOT_BUILT"


def test_retry_build_is_covered_but_never_sent(bb: BuildbotConnector) -> None:
    """slow #2 ended in RETRY; its request re-ran as #3, which is what SEI gets."""
    items, asked = _scan(bb, "slow")
    assert asked == [3, 2, 1]  # the core learns #2 is handled: no "vanished" warning, no wait
    assert [b.number for b in items if isinstance(b, Build)] == [3, 1]
    retried = load("buildrequest_retried_builds.json")["builds"]
    assert [(b["number"], b["results"]) for b in retried] == [(2, 5), (3, 6)]


def test_steps_become_stages(bb: BuildbotConnector) -> None:
    build = _built(bb, "multi")[1]
    t0 = 1795667178_000

    def stage(
        stepid: int, name: str, result: str, start: int, secs: int, state: str = "FINISHED"
    ) -> Stage:
        return Stage(str(stepid), name, name, result, state, t0 + start * 1000, secs * 1000)

    assert build.stages == (
        stage(3, "worker_preparation", "SUCCESS", 0, 1),
        stage(7, "get-version", "SUCCESS", 1, 0),
        stage(10, "build", "SUCCESS", 1, 1),
        stage(12, "lint", "FAILURE", 2, 0),  # a failed step in a WARNINGS build
        stage(13, "deploy", "NOT_BUILT", 2, 0, "SKIPPED"),  # doStepIf=False
        stage(15, "test", "SUCCESS", 2, 0),
    )


def test_no_stages_when_disabled(httpserver: HTTPServer, master: FakeMaster) -> None:
    for conn in _connector(httpserver, stages=False):
        assert _built(conn, "multi")[1].stages is None
        assert not any("/steps" in p for p in master.paths)


def test_forced_build_properties_owner_and_scm(bb: BuildbotConnector) -> None:
    build = _built(bb, "ok")[1]
    assert build == Build(
        job_full_name="ok",
        pipeline="ok",
        number=1,
        result="SUCCESS",
        start_ms=1795667178_000,
        duration_ms=1_000,
        url=f"{bb.base}#/builders/5/builds/1",
        user_id="tester <tester@example.invalid>",
        triggers=(Cause("ForceScheduler", "tester <tester@example.invalid>"),),
        params=(Param("ForceSchedulerParameter", "sleep", "5"),),
        commit_ids=("1111111111111111111111111111111111111111",),
        repo_url="https://example.invalid/repo.git",
        branch="main",
        stages=None,  # the recording holds steps of multi #1 only
        expects_stages=True,  # a Buildbot build's steps are its stages
    )


def test_force_without_revision_sends_no_commit(bb: BuildbotConnector) -> None:
    """`revision: ""` is what a force without a revision leaves: nothing to send."""
    build = _built(bb, "exception")[1]
    assert build.commit_ids == ()
    assert (build.repo_url, build.branch) == ("https://example.invalid/repo.git", "main")


def test_change_triggered_build(bb: BuildbotConnector) -> None:
    build = _built(bb, "ok")[2]
    assert build.user_id == "SCMTrigger"
    assert build.triggers == (Cause("Change", "SCMTrigger"),)
    assert build.commit_ids == ("4444444444444444444444444444444444444444",) * 2  # deduped later
    assert (build.branch, build.repo_url) == ("feature/x", "https://example.invalid/repo.git")
    assert build.params == ()


def test_got_revision_wins_over_requested_revision(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    build = master.add_build("ok", complete=True)
    build["properties"]["got_revision"] = ["a" * 40, "Git"]
    build["properties"]["revision"] = ["v1.2", "Build"]
    build["properties"]["branch"] = ["refs/heads/release", "Build"]
    got = _built(bb, "ok")[3]
    assert (got.commit_ids, got.branch) == (("a" * 40,), "release")


def test_scheduled_build_is_system(bb: BuildbotConnector, master: FakeMaster) -> None:
    build = master.add_build("ok", complete=True)
    props = build["properties"]
    for key in ("owner", "owners", "reason", "sleep"):
        props.pop(key, None)
    props["scheduler"] = ["nightly", "Scheduler"]
    got = _built(bb, "ok")[3]
    assert (got.user_id, got.triggers) == ("SYSTEM", (Cause("Scheduler", "nightly"),))


def test_secret_looking_force_parameters_are_not_sent(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    build = master.add_build("ok", complete=True)
    build["properties"]["deploy_token"] = ["s3cr3t", "Force Build Form"]
    build["properties"]["target"] = ["prod", "Force Build Form"]
    assert [p.name for p in _built(bb, "ok")[3].params] == ["target"]


def test_owner_is_the_login_on_a_master_with_auth(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    recorded = load("auth_logged_in_builds_with_owner.json")["builds"][0]
    build = master.add_build("ok", complete=True)
    build["properties"]["owner"] = recorded["properties"]["owner"]
    assert _built(bb, "ok")[3].user_id == "ci"


def test_whole_payload(bb: BuildbotConnector) -> None:
    """One build end to end through the core's pure `to_sei`, compared whole."""
    server = ServerConfig(
        name="bb", type="buildbot", instance_name="Buildbot", instance_guid=GUID, url=bb.base
    )
    payload = to_sei(_built(bb, "multi")[1], server)
    steps = [
        ("3", "worker_preparation", "SUCCESS", 0, 1),
        ("7", "get-version", "SUCCESS", 1, 0),
        ("10", "build", "SUCCESS", 1, 1),
        ("12", "lint", "FAILURE", 2, 0),
        ("13", "deploy", "NOT_BUILT", 2, 0),
        ("15", "test", "SUCCESS", 2, 0),
    ]
    assert payload == {
        "pipeline": "multi",
        "job_full_name": "multi",
        "qualified_name": "multi",
        "instance_name": "Buildbot",
        "instance_guid": GUID,
        "instance_url": bb.base,
        "build_number": 1,
        "start_time": 1795667178000,
        "duration": 2000,
        "result": "UNSTABLE",
        "user_id": "tester <tester@example.invalid>",
        "ci": True,
        "cd": False,
        "execution_id": execution_id(GUID, "multi", 1),
        "trigger_chain": [{"id": "tester <tester@example.invalid>", "type": "ForceScheduler"}],
        "job_run_params": [{"type": "ForceSchedulerParameter", "name": "sleep", "value": "5"}],
        "scm_commit_ids": ["3333333333333333333333333333333333333333"],
        "repo_url": "https://example.invalid/repo.git",
        "branch_name": "release/1.x",
        "job_run": {
            "stages": [
                {
                    "id": sid,
                    "displayName": name,
                    "displayDescription": name,
                    "result": result,
                    "state": "SKIPPED" if result == "NOT_BUILT" else "FINISHED",
                    "durationInMillis": secs * 1000,
                    "startTime": iso_time(1795667178000 + start * 1000),
                    "steps": [],
                }
                for sid, name, result, start, secs in steps
            ]
        },
        "web_url": f"{bb.base}#/builders/1/builds/1",
    }


# -- the scan contract --------------------------------------------------------------------------


def test_running_build_is_unfinished(bb: BuildbotConnector, master: FakeMaster) -> None:
    running = load("build_running.json")["builds"][0]
    slow = [b for b in master.builds if b["builderid"] == running["builderid"]]
    master.builds = [b for b in master.builds if b not in slow] + [running]
    items, asked = _scan(bb, "slow")
    assert items == [Unfinished(1)]
    assert asked == []  # never `wanted`: only finished builds are offered


def test_out_of_order_completion(bb: BuildbotConnector, master: FakeMaster) -> None:
    """#4 still runs while #5 finished: #5 is offered, #4 reported running, #3 is below."""
    four = master.add_build("fail", complete=False)
    master.add_build("fail", complete=True, results=2)
    items, asked = _scan(bb, "fail", JobCursor(watermark=1))
    assert [(type(i).__name__, i.number) for i in items] == [("Build", 3), ("Unfinished", 2)]
    assert asked == [3]
    master.finish(four, results=0)
    items, asked = _scan(bb, "fail", JobCursor(watermark=1), skip=frozenset({3}))
    assert asked == [3, 2]
    assert [(i.number, i.result) for i in items if isinstance(i, Build)] == [(2, "SUCCESS")]


def test_watermark_is_exclusive_and_pages_stay_small(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    for _ in range(5):
        master.add_build("ok", complete=True)
    master.paths.clear()
    ref = _jobs(bb)["ok"]
    assert ref.last_build == 7
    asked: list[int] = []
    items = list(bb.scan(ref, JobCursor(watermark=4), lambda n: asked.append(n) or True))
    assert asked == [7, 6, 5]
    assert [i.number for i in items] == [7, 6, 5]
    pages = [p for p in master.paths if p.startswith("/api/v2/builders/5/builds?")]
    assert pages == ["/api/v2/builders/5/builds?order=-number&limit=5&offset=0&property=%2A"]


def test_paging_through_a_long_history(
    bb: BuildbotConnector, master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bbmod, "PAGE", 3)
    for _ in range(8):
        master.add_build("ok", complete=True)
    items, asked = _scan(bb, "ok")
    assert asked == list(range(10, 0, -1))
    assert len({i.number for i in items}) == 10


def test_since_stops_at_older_builds(bb: BuildbotConnector) -> None:
    since = 1795667180 * 1000  # slow #3 started at ..184, #2 at ..181, #1 at ..179
    _, asked = _scan(bb, "slow", JobCursor(since_ms=since))
    assert asked == [3, 2]


def test_builder_gone_since_discovery(bb: BuildbotConnector) -> None:
    ghost = JobRef(full_name="ghost", pipeline="ghost", url=bb.base)
    with pytest.raises(NotFound):
        list(bb.scan(ghost, JobCursor(), lambda n: True))


# -- discovery ----------------------------------------------------------------------------------


def test_discover_reports_newest_and_newest_finished(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    master.add_build("multi", complete=False)
    jobs = _jobs(bb)
    summary = {n: (j.last_build, j.last_completed, j.pipeline, j.url) for n, j in jobs.items()}
    assert summary == {
        "multi": (3, 2, "multi", f"{bb.base}#/builders/1"),
        "slow": (3, 3, "slow", f"{bb.base}#/builders/2"),
        "exception": (1, 1, "exception", f"{bb.base}#/builders/3"),
        "fail": (1, 1, "fail", f"{bb.base}#/builders/4"),
        "ok": (2, 2, "ok", f"{bb.base}#/builders/5"),
    }


def test_idle_poll_costs_three_requests_and_follows_changes(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    _jobs(bb)
    master.paths.clear()
    _jobs(bb)
    assert len(master.paths) == 3  # builders, builds newer than the last seen, running builds
    running = master.add_build("ok", complete=False)
    assert (_jobs(bb)["ok"].last_build, _jobs(bb)["ok"].last_completed) == (3, 2)
    master.finish(running)
    master.add_build("fail", complete=True)
    jobs = _jobs(bb)
    assert (jobs["ok"].last_build, jobs["ok"].last_completed) == (3, 3)
    assert (jobs["fail"].last_build, jobs["fail"].last_completed) == (2, 2)


def test_first_poll_of_a_long_history(
    bb: BuildbotConnector, master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builders not among the newest builds cost one query each (two if one is running)."""
    monkeypatch.setattr(bbmod, "RECENT", 3)  # the 3 newest: slow #3, slow #2, multi #2
    master.add_build("ok", complete=False)  # now ok #3 running, slow #3, slow #2
    jobs = _jobs(bb)
    assert (jobs["ok"].last_build, jobs["ok"].last_completed) == (3, 2)
    assert (jobs["multi"].last_build, jobs["multi"].last_completed) == (2, 2)
    assert (jobs["slow"].last_build, jobs["slow"].last_completed) == (3, 3)
    per_builder = [p for p in master.paths if p.startswith("/api/v2/builders/")]
    assert len(per_builder) == 5  # multi, exception, fail once each; ok twice (it runs)


def test_a_failed_first_poll_is_redone_whole(
    bb: BuildbotConnector, master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder the failed bootstrap never reached must not read as "never built" after."""
    monkeypatch.setattr(bbmod, "RECENT", 3)
    master.broken.add("/api/v2/builders/4/builds")  # fail, not among the 3 newest builds
    with pytest.raises(ConnectorError, match="HTTP 500 from Buildbot: database is locked"):
        _jobs(bb)
    master.broken.clear()
    assert (_jobs(bb)["fail"].last_build, _jobs(bb)["fail"].last_completed) == (1, 1)


def test_a_build_seen_running_is_followed_even_after_a_failed_poll(
    bb: BuildbotConnector, master: FakeMaster
) -> None:
    _jobs(bb)
    running = master.add_build("ok", complete=False)
    master.broken.add("/api/v2/builds?complete=false")  # "newer builds" answers, this fails
    with pytest.raises(ConnectorError):
        _jobs(bb)
    assert any(p.startswith("/api/v2/builds?buildid__gt=") for p in master.paths)
    master.broken.clear()
    master.finish(running)
    assert (_jobs(bb)["ok"].last_build, _jobs(bb)["ok"].last_completed) == (3, 3)


# -- describe, login, errors ------------------------------------------------------------------


def test_describe_anonymous(bb: BuildbotConnector) -> None:
    assert bb.describe() == {"version": "Buildbot 4.3.0", "user": "anonymous"}


@pytest.fixture()
def guarded(httpserver: HTTPServer, master: FakeMaster) -> FakeMaster:
    master.login = ("ci", "s3cret")
    return master


def test_login_then_cookie(httpserver: HTTPServer, guarded: FakeMaster) -> None:
    for conn in _connector(httpserver, settings={"username": "ci", "password": "s3cret"}):
        assert conn.describe() == {"version": "Buildbot 4.3.0", "user": "ci"}
        assert len(_jobs(conn)) == 5
        assert guarded.logins == 1
        guarded.sessions.clear()  # the cookie expired
        assert _built(conn, "ok")[1].user_id == "tester <tester@example.invalid>"
        assert guarded.logins == 2


def test_basic_auth_goes_to_the_login_url_only(httpserver: HTTPServer, guarded: FakeMaster) -> None:
    seen: list[tuple[str, bool]] = []
    handler = guarded.__call__

    def spy(request: Request) -> Response:
        seen.append((request.path, "Authorization" in request.headers))
        return handler(request)

    httpserver.clear_all_handlers()
    httpserver.expect_request(ANY_PATH).respond_with_handler(spy)
    for conn in _connector(httpserver, settings={"username": "ci", "password": "s3cret"}):
        _jobs(conn)
    assert [p for p, auth in seen if auth] == ["/auth/login"]


def test_wrong_password(httpserver: HTTPServer, guarded: FakeMaster) -> None:
    for conn in _connector(httpserver, settings={"username": "ci", "password": "nope"}):
        with pytest.raises(ConnectorError, match="login refused") as err:
            conn.describe()
        assert err.value.status == 401
        assert "nope" not in str(err.value)


def test_anonymous_on_a_master_that_needs_login(
    httpserver: HTTPServer, guarded: FakeMaster
) -> None:
    for conn in _connector(httpserver):
        with pytest.raises(ConnectorError, match="needs username and password") as err:
            list(conn.discover())
        assert err.value.status == 403
        assert "you need to have role 'admins'" in str(err.value)


def test_redirects_are_refused_not_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_response(
        Response("", 301, headers={"Location": "https://elsewhere.example/api/v2/builders"})
    )
    for conn in _connector(httpserver):
        with pytest.raises(
            ConnectorError, match=re.escape("redirected to another host, elsewhere.example (from")
        ):
            list(conn.discover())


def test_html_instead_of_json(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data("<html>login</html>", 200)
    for conn in _connector(httpserver):
        with pytest.raises(ConnectorError, match="not JSON"):
            list(conn.discover())


def test_bad_query_names_buildbots_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_json(load("error_400_bad_query.json"), 400)
    for conn in _connector(httpserver):
        with pytest.raises(ConnectorError, match="unrecognized query parameter") as err:
            list(conn.discover())
        assert err.value.status == 400


def test_unreachable_master() -> None:
    spec = ServerSpec(name="bb", type="buildbot", url="http://127.0.0.1:9/", timeout=2)
    conn = BuildbotConnector(spec)
    with pytest.raises(
        ConnectorError, match=re.escape("cannot reach 127.0.0.1:9: connection refused")
    ):
        list(conn.discover())
    conn.close()


# -- settings, registration, boundaries -------------------------------------------------------


def test_settings() -> None:
    assert Settings().username is None
    assert Settings(username="ci", password="x").password.get_secret_value() == "x"
    with pytest.raises(ValidationError, match="both"):
        Settings(username="ci")
    with pytest.raises(ValidationError, match="Extra inputs"):
        Settings(token="x")


def test_registered_under_its_type() -> None:
    assert connector_class("buildbot") is BuildbotConnector
    assert BuildbotConnector.type == "buildbot"
