"""The Bamboo stand-in behaves like Bamboo where a poller depends on it.

Each behaviour is checked over real HTTP with `requests`, and shapes are compared with the
recorded answers in `connectors/bamboo/standin/data/` (DevLake's Bamboo 9, Expedia's
Bamboo, a Bamboo 3 capture).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests

from connectors.bamboo.standin import FakeBamboo, now_ms, seed_demo
from connectors.bamboo.standin.fixtures import (
    DEPLOY_RESULTS,
    JOB_RESULTS,
    PLAN,
    PLAN_RESULTS,
    STAGED_RESULT,
    read_json,
    row_urls,
    rows,
)

T0 = (now_ms() - 86_400_000) // 1000 * 1000
FULL = "vcsRevisions,changes.change.files,variables,artifacts,labels,stages.stage.results.result"


@pytest.fixture()
def fb() -> Iterator[FakeBamboo]:
    with FakeBamboo(context_path="/bamboo") as server:
        yield server


def get(
    fb: FakeBamboo, path: str, auth: str = "bearer", accept: str = "json", **params: str
) -> requests.Response:
    headers = {"Accept": "application/json"} if accept == "json" else {}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {fb.token}"
    elif auth == "basic":
        raw = f"{fb.username}:{fb.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif auth:
        headers["Authorization"] = auth
    return requests.get(
        f"{fb.url}rest/api/latest/{path}", params=params or None, headers=headers, timeout=5
    )


def numbers(resp: requests.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [r["buildNumber"] for r in resp.json()["results"]["result"]]


def test_every_path_needs_credentials(fb: FakeBamboo) -> None:
    fb.add_plan("A-B")
    for path in ("info", "plan", "result/A-B", "no/such/thing", "deploy/project/all"):
        r = get(fb, path, auth="")
        assert r.status_code == 401, path
        assert r.json() == {
            "message": "Client must be authenticated to access this resource.",
            "status-code": 401,
        }
    assert get(fb, "info", auth="Bearer wrong").status_code == 401
    assert (
        get(fb, "info", auth="Basic " + base64.b64encode(b"sei-bot:nope").decode()).status_code
        == 401
    )
    assert get(fb, "info").status_code == 200
    assert get(fb, "info", auth="basic").status_code == 200
    assert get(fb, "currentUser").json()["name"] == "sei-bot"


def test_xml_unless_json_is_asked_for(fb: FakeBamboo) -> None:
    fb.add_plan("A-B")
    fb.add_result("A-B", started=T0, completed=T0 + 1000)
    xml = get(fb, "result/A-B", accept="")
    assert xml.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(xml.content)  # noqa: S314 - our own stand-in's answer
    assert root.tag == "results" and root.find("results/result") is not None
    as_json = requests.get(
        f"{fb.url}rest/api/latest/result/A-B.json",
        headers={"Authorization": f"Bearer {fb.token}"},
        timeout=5,
    )
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert as_json.json()["results"]["result"][0]["buildNumber"] == 1
    assert get(fb, "result/A-B.xml").headers["Content-Type"].startswith("application/xml")
    missing = get(fb, "result/A-B-9", accept="")
    assert missing.status_code == 404 and missing.content.startswith(b"<?xml")


def test_paging_default_25_a_cap_and_the_singular_spelling(fb: FakeBamboo) -> None:
    fb.add_plan("P-Q")
    for k in range(60):
        fb.add_result("P-Q", started=T0 + k, completed=T0 + k + 1)
    assert numbers(get(fb, "result/P-Q")) == list(range(60, 35, -1))  # 25, newest first
    assert numbers(get(fb, "result/P-Q", **{"max-result": "5"})) == [60, 59, 58, 57, 56]
    # asked for 100, got the server's cap; `size` counts the answer, not the collection
    capped = get(fb, "result/P-Q", **{"max-result": "100", "start-index": "50"}).json()
    assert [r["buildNumber"] for r in capped["results"]["result"]] == list(range(10, 0, -1))
    assert capped["results"]["size"] == 10
    full = get(fb, "result/P-Q", **{"max-result": "100"}).json()["results"]
    assert (full["size"], full["max-result"], full["start-index"]) == (25, 25, 0)
    # `max-results` (plural) is no parameter: the default page comes back
    assert len(numbers(get(fb, "result/P-Q", **{"max-results": "100"}))) == 25
    assert numbers(get(fb, "result/P-Q", **{"start-index": "60"})) == []
    fb.max_page = 10
    assert len(numbers(get(fb, "result/P-Q", **{"max-result": "50"}))) == 10


def test_running_results_only_with_include_all_states(fb: FakeBamboo) -> None:
    fb.add_plan("P-Q")
    fb.add_result("P-Q", started=T0, completed=T0 + 1)
    fb.trigger("P-Q")
    fb.trigger("P-Q", queued=True)
    assert numbers(get(fb, "result/P-Q")) == [1]
    everything = get(fb, "result/P-Q", includeAllStates="true", expand="results.result").json()
    assert [(r["buildNumber"], r["lifeCycleState"]) for r in everything["results"]["result"]] == [
        (3, "Queued"),
        (2, "InProgress"),
        (1, "Finished"),
    ]


def test_results_in_the_recorded_shapes(fb: FakeBamboo) -> None:
    seed_demo(fb)
    short = get(fb, "result/SHOP-API").json()["results"]["result"][0]
    assert "buildReason" not in short and "buildStartedTime" not in short  # not expanded
    listed = get(fb, "result/SHOP-API", expand="results.result.vcsRevisions").json()
    row = listed["results"]["result"][0]
    recorded = rows(PLAN_RESULTS)[0]
    assert [k for k in row if k in recorded] == list(recorded)  # every recorded key, in order
    assert (
        row["vcsRevisions"]["vcsRevision"][0].keys()
        == recorded["vcsRevisions"]["vcsRevision"][0].keys()
    )
    assert "variable" not in row["variables"]  # not expanded
    one = get(fb, "result/SHOP-API-1", expand=FULL).json()
    assert one["variables"]["variable"][0] == {"name": "target", "value": "staging"}
    assert one["changes"]["size"] == 0
    stage = one["stages"]["stage"][0]
    flyte = read_json(STAGED_RESULT)["stages"]["stage"][1]
    assert [k for k in stage if k != "results"] == list(flyte)
    job = stage["results"]["result"][0]
    assert set(job) <= set(rows(JOB_RESULTS)[0]) | {"buildCompletedDate"}
    assert job["parent"]["href"].endswith("/result/SHOP-API-1")
    plan = get(fb, "plan", expand="plans.plan").json()["plans"]["plan"][0]
    assert list(plan) == list(rows(PLAN)[0])
    assert "expand=results.result.vcsRevisions" in row_urls(PLAN_RESULTS)[0]


def test_a_continuable_result_and_a_stopped_one(fb: FakeBamboo) -> None:
    fb.add_plan("G-A", stages=[("Build", False, ["Compile"]), ("Ship", True, ["Go"])])
    fb.add_result("G-A", started=T0, completed=T0 + 1000)
    held = get(fb, "result/G-A-1", expand="stages").json()
    recorded = read_json(STAGED_RESULT)
    assert (held["finished"], held["continuable"], held["state"]) == (
        recorded["finished"],
        recorded["continuable"],
        recorded["state"],
    )
    assert [(s["lifeCycleState"], s["state"], s["manual"]) for s in held["stages"]["stage"]] == [
        ("Finished", "Successful", False),
        ("NotBuilt", "Unknown", True),
    ]
    name = fb.continue_stage("G-A", 1, user="bob")
    running = get(fb, "result/G-A-1").json()
    assert running["lifeCycleState"] == "InProgress"
    assert f"Manual run from the stage: <b>{name}</b> by" in running["buildReason"]
    fb.finish("G-A", 1)
    assert get(fb, "result/G-A-1").json()["continuable"] is False
    n = fb.trigger("G-A")
    fb.stop_result("G-A", n)
    stopped = get(fb, f"result/G-A-{n}").json()
    assert (stopped["lifeCycleState"], stopped["state"], stopped["finished"]) == (
        "Finished",
        "Unknown",
        True,
    )


def test_a_restart_reruns_the_same_result(fb: FakeBamboo) -> None:
    fb.add_plan("R-A")
    fb.add_result("R-A", "Failed", started=T0, completed=T0 + 1000)
    first = get(fb, "result/R-A-1").json()
    assert first["restartable"] is True
    recorded = rows("devlake/_raw_bamboo_api_plan_build.csv")[0]
    assert (first["state"], first["restartable"]) == (recorded["state"], recorded["restartable"])
    fb.restart("R-A", 1, at=T0 + 5000)
    assert get(fb, "result/R-A-1").json()["lifeCycleState"] == "InProgress"
    fb.finish("R-A", 1, at=T0 + 9000)
    again = get(fb, "result/R-A-1").json()
    assert (again["buildNumber"], again["state"]) == (1, "Successful")
    assert again["buildCompletedTime"] != first["buildCompletedTime"]


def test_plan_branches_number_from_one_and_can_disappear(fb: FakeBamboo) -> None:
    fb.add_plan("B-M", "Main")
    fb.add_result("B-M", started=T0, completed=T0 + 1)
    fb.add_result("B-M", started=T0, completed=T0 + 1)
    key = fb.add_branch("B-M", "feature/x")
    fb.add_result(key, started=T0, completed=T0 + 1)
    assert numbers(get(fb, f"result/{key}")) == [1]
    plan = get(fb, "plan", expand="plans.plan").json()["plans"]["plan"][0]
    assert plan["branches"] == {"size": 1, "start-index": 0, "max-result": 1}
    branches = get(fb, "plan/B-M/branch").json()["branches"]["branch"]
    assert [(b["key"], b["shortName"]) for b in branches] == [(key, "feature-x")]
    assert branches[0]["latestCurrentlyActive"]["number"] == 1
    search = get(fb, f"search/jobs/{key}").json()["searchResults"][0]["searchEntity"]
    assert search["branchName"] == "feature/x"
    fb.delete_plan(key)
    gone = get(fb, f"result/{key}")
    assert gone.status_code == 404 and gone.json()["status-code"] == 404
    assert get(fb, "plan/B-M/branch").json()["branches"]["branch"] == []


def test_deployments_in_the_recorded_shape(fb: FakeBamboo) -> None:
    seed_demo(fb)
    env = fb.environment("Shop API", "staging")
    listing = get(fb, f"deploy/environment/{env.id}/results").json()
    d = listing["results"][0]
    recorded = rows(DEPLOY_RESULTS)[0]
    assert list(d) == list(recorded)
    assert list(d["deploymentVersion"]["items"][0]) == list(
        recorded["deploymentVersion"]["items"][0]
    )
    assert d["key"]["key"] == f"{env.project.id}-{env.id}-{d['id']}"
    assert isinstance(d["startedDate"], int)  # epoch ms, unlike plan results
    assert d["reasonSummary"].startswith("Child of <a href=")
    assert get(fb, f"deploy/result/{d['id']}").json() == d
    projects = get(fb, "deploy/project/all").json()
    assert [(p["name"], [e["name"] for e in p["environments"]]) for p in projects] == [
        ("Shop API", ["staging", "production"])
    ]
    assert "max-result=100&start-index=0" in row_urls(DEPLOY_RESULTS)[0]


def test_faults_apply_to_bamboo_paths(fb: FakeBamboo) -> None:
    fb.add_plan("F-A")
    fb.faults.fail(r"/result/F-A$", status=503, times=1)
    failed = get(fb, "result/F-A")
    assert failed.status_code == 503
    assert failed.json() == {"message": "injected fault", "status-code": 503}
    assert get(fb, "result/F-A").status_code == 200
