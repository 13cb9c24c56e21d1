"""The GoCD stand-in against what GoCD was seen to send (`connectors/gocd/standin/data/`):
the same keys in the same order, auth on every path, versioned Accept headers, cursor
paging, the dashboard's ETag."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.gocd.standin import FakeGoCD, StageConfig, changes, commit, forced, git, now_ms
from connectors.gocd.standin.fixtures import read_json, versions
from connectors.gocd.standin.server import VERSIONS

T0 = now_ms() - 86_400_000
PATHS = {  # a path per API, and its version
    "api/dashboard": 4,
    "api/version": 1,
    "api/current_user": 1,
    "api/pipelines/app/history": 1,
    "api/pipelines/app/1": 1,
    "api/stages/app/1/build/1": 3,
    "api/stages/app/build/history": 3,
}


@pytest.fixture()
def gocd() -> Iterator[FakeGoCD]:
    with FakeGoCD() as g:
        g.add_pipeline(
            "app",
            "team",
            ["build", StageConfig("deploy", manual=True)],
            [git("https://github.com/acme/app")],
        )
        mod = commit("a" * 40, "alice <alice@example.com>", T0)
        g.run("app", changes((git("https://github.com/acme/app"), [mod])), at=T0)
        yield g


def get(g: FakeGoCD, path: str, version: int | None = 1, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {g.token}"}
    if version is not None:
        headers["Accept"] = f"application/vnd.go.cd.v{version}+json"
    headers.update(kw.pop("headers", {}))
    return requests.get(g.url + path, headers=headers, timeout=5, **kw)


def test_the_versions_served_are_gocds() -> None:
    v = versions()
    assert v["dashboard"] == "application/vnd.go.cd.v4+json"
    assert v["stage_instances"] == f"application/vnd.go.cd.v{VERSIONS['stage']}+json"
    assert v["pipeline_instance"] == f"application/vnd.go.cd.v{VERSIONS['instance']}+json"
    assert v["pipeline_operations"] == f"application/vnd.go.cd.v{VERSIONS['history']}+json"
    assert v["version"] == v["current_user"] == "application/vnd.go.cd.v1+json"


def test_history_instance_has_the_recorded_keys(gocd: FakeGoCD) -> None:
    recorded = read_json("api-docs/pipeline_history.extracted.json")
    page = get(gocd, "api/pipelines/app/history").json()
    assert list(page) == ["pipelines"]  # one page: no links
    inst = page["pipelines"][0]
    want = recorded["pipelines"][0]
    assert list(inst) == list(want)
    assert list(inst["build_cause"]) == list(want["build_cause"])
    rev, want_rev = (
        inst["build_cause"]["material_revisions"][0],
        want["build_cause"]["material_revisions"][0],
    )
    assert list(rev) == list(want_rev) and list(rev["material"]) == list(want_rev["material"])
    assert list(
        rev["modifications"][0] if rev["modifications"] else want_rev["modifications"][0]
    ) == list(want_rev["modifications"][0])
    ran, gated = inst["stages"]
    assert list(ran) == list(want["stages"][0])
    assert list(ran["jobs"][0]) == list(want["stages"][0]["jobs"][0])
    # a stage behind a gate, as the capture shows one (less its numeric `id`: v1 has none)
    captured = read_json("gocd-api/history-a-pipeline.json")["pipelines"][0]["stages"][5]
    assert set(gated) == set(captured) - {"id"}
    assert (gated["scheduled"], gated["jobs"], gated["approval_type"]) == (False, [], None)
    assert list(get(gocd, "api/pipelines/app/1").json()) == list(
        read_json("api-docs/pipeline_instance.extracted.json")
    )


def test_stage_instance_and_stage_history_have_the_recorded_keys(gocd: FakeGoCD) -> None:
    stage = get(gocd, "api/stages/app/1/build/1", 3).json()
    want = read_json("api-docs/stage_instance.extracted.json")
    assert list(stage) == list(want)
    assert list(stage["jobs"][0]) == list(want["jobs"][0])
    assert [t["state"] for t in stage["jobs"][0]["job_state_transitions"]] == [
        t["state"] for t in want["jobs"][0]["job_state_transitions"]
    ]
    history = get(gocd, "api/stages/app/build/history", 3).json()
    recorded = read_json("api-docs/stage_history.extracted.json")["stages"]
    uncancelled = next(s for s in recorded if "cancelled_by" not in s)
    assert list(history["stages"][0]) == list(uncancelled)
    gocd.run("app", forced("alice"), at=T0 + 60_000, results={"build": "Cancelled"})
    cancelled = get(gocd, "api/stages/app/build/history", 3).json()["stages"][0]
    assert list(cancelled) == list(recorded[0]) and cancelled["cancelled_by"] == "admin"


def test_dashboard_has_the_recorded_keys(gocd: FakeGoCD) -> None:
    board = get(gocd, "api/dashboard", 4).json()
    want = read_json("api-docs/dashboard.extracted.json")
    assert list(board) == list(want)
    assert list(board["_embedded"]) == list(want["_embedded"])
    p, wp = board["_embedded"]["pipelines"][0], want["_embedded"]["pipelines"][0]
    assert list(p) == list(wp)
    i, wi = p["_embedded"]["instances"][0], wp["_embedded"]["instances"][0]
    assert list(i) == list(wi)
    assert list(i["_embedded"]["stages"][0]) == list(wi["_embedded"]["stages"][0])
    assert list(board["_embedded"]["pipeline_groups"][0]) == list(
        want["_embedded"]["pipeline_groups"][0]
    )


def test_version_and_current_user_have_the_recorded_keys(gocd: FakeGoCD) -> None:
    assert list(get(gocd, "api/version").json()) == list(
        read_json("api-docs/version.extracted.json")
    )
    me = get(gocd, "api/current_user").json()
    assert list(me) == list(read_json("api-docs/current_user.extracted.json"))
    assert me["login_name"] == "sei-bot"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_auth_on_every_path(gocd: FakeGoCD, path: str) -> None:
    accept = {"Accept": f"application/vnd.go.cd.v{PATHS[path]}+json"}
    bare = requests.get(gocd.url + path, headers=accept, timeout=5)
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"] == 'Basic realm="GoCD"'
    assert bare.json() == {"message": "You are not authenticated!"}
    wrong = requests.get(
        gocd.url + path, headers={**accept, "Authorization": "Bearer nope"}, timeout=5
    )
    assert wrong.status_code == 401
    basic = base64.b64encode(f"{gocd.username}:{gocd.password}".encode()).decode()
    ok = requests.get(
        gocd.url + path, headers={**accept, "Authorization": f"Basic {basic}"}, timeout=5
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_wrong_or_missing_version_gets_the_html_404(gocd: FakeGoCD, path: str) -> None:
    for version in (None, PATHS[path] + 1):
        r = get(gocd, path, version)
        assert r.status_code == 404
        assert r.headers["Content-Type"].startswith("text/html")
        assert b"<html>" in r.content
    latest = get(gocd, path, None, headers={"Accept": "application/vnd.go.cd+json"})
    assert latest.status_code == 200
    assert latest.headers["Content-Type"].startswith(f"application/vnd.go.cd.v{PATHS[path]}+json")


def test_history_pages_by_id_newest_first(gocd: FakeGoCD) -> None:
    gocd.add_pipeline("other", "team", ["build"], [])
    for k in range(24):
        gocd.run("app", forced("alice"), at=T0 + (k + 1) * 60_000)
        gocd.run("other", forced("alice"), at=T0 + (k + 1) * 60_000 + 1000)
    page = get(gocd, "api/pipelines/app/history").json()
    assert [p["counter"] for p in page["pipelines"]] == list(range(25, 15, -1))  # 10 a page
    ids = {i.counter: i.id for i in gocd.instances if i.pipeline == "app"}
    assert page["_links"] == {
        "next": {"href": f"{gocd.url}api/pipelines/app/history?after={ids[16]}"},
    }
    nxt = get(gocd, f"api/pipelines/app/history?after={ids[16]}&page_size=100").json()
    assert [p["counter"] for p in nxt["pipelines"]] == list(range(15, 0, -1))
    assert "next" not in nxt["_links"] and nxt["_links"]["previous"]["href"].endswith(
        f"before={ids[15]}"
    )
    back = get(gocd, f"api/pipelines/app/history?before={ids[15]}&page_size=10").json()
    assert [p["counter"] for p in back["pipelines"]] == list(range(25, 15, -1))
    for bad in ("9", "101", "x"):
        r = get(gocd, f"api/pipelines/app/history?page_size={bad}")
        assert r.status_code == 422 and "between 10 and 100" in r.json()["message"]


def test_dashboard_etag_moves_with_any_stage_of_any_instance(gocd: FakeGoCD) -> None:
    first = get(gocd, "api/dashboard", 4)
    etag = first.headers["ETag"]
    assert get(gocd, "api/dashboard", 4, headers={"If-None-Match": etag}).status_code == 304
    gocd.approve("app", 1, "deploy", "bob")  # an old instance's gate
    moved = get(gocd, "api/dashboard", 4, headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    gocd.loading = True
    assert get(gocd, "api/dashboard", 4).status_code == 202


def test_only_the_latest_run_of_each_stage_shows_in_history(gocd: FakeGoCD) -> None:
    gocd.rerun("app", 1, "build", "bob")
    gocd.run_stage("app", 1, "build", "Failed")
    inst = get(gocd, "api/pipelines/app/1").json()
    assert (inst["stages"][0]["counter"], inst["stages"][0]["result"]) == ("2", "Failed")
    runs = get(gocd, "api/stages/app/build/history", 3).json()["stages"]
    assert [(s["pipeline_counter"], s["counter"]) for s in runs] == [(1, "2"), (1, "1")]


def test_a_lost_agent_leaves_a_rescheduled_job_run(gocd: FakeGoCD) -> None:
    c = gocd.trigger("app", forced("alice"))
    gocd.begin("app", c, "build")
    gocd.lose_agent("app", c, "build", "build")
    stage = get(gocd, f"api/stages/app/{c}/build/1", 3).json()
    assert [(j["name"], j["state"]) for j in stage["jobs"]] == [
        ("build", "Rescheduled"),
        ("build", "Scheduled"),
    ]
    history = get(gocd, f"api/pipelines/app/{c}").json()
    assert [j["state"] for j in history["stages"][0]["jobs"]] == ["Scheduled"]


def test_deleted_and_renamed_pipelines_answer_404(gocd: FakeGoCD) -> None:
    gocd.rename_pipeline("app", "app2")
    r = get(gocd, "api/pipelines/app/history")
    assert r.status_code == 404 and r.json()["message"] == "Pipeline with name 'app' was not found!"
    assert get(gocd, "api/pipelines/app2/history").json()["pipelines"] == []
