"""The TeamCity stand-in behaves like TeamCity where a poller depends on it.

Each behaviour is checked over real HTTP with `requests`, and shapes are compared with the
recorded answers in `connectors/teamcity/standin/data/` (three real servers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests

from connectors.teamcity.standin import FakeTeamCity, now_ms
from connectors.teamcity.standin.fixtures import read_json, read_text, xml_to_json

T0 = (now_ms() - 86_400_000) // 1000 * 1000
ANY = "defaultFilter:false,state:any,branch:default:any,personal:any,canceled:any,failedToStart:any"


@pytest.fixture()
def tc() -> Iterator[FakeTeamCity]:
    with FakeTeamCity(context_path="/teamcity") as server:
        yield server


def get(tc: FakeTeamCity, path: str, auth: str = "bearer", **params: str) -> requests.Response:
    headers = {"Accept": "application/json"}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {tc.token}"
    elif auth == "basic":
        raw = f"{tc.username}:{tc.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif auth:
        headers["Authorization"] = auth
    return requests.get(tc.url + path, params=params or None, headers=headers, timeout=5)


def ids(resp: requests.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [b["id"] for b in resp.json().get("build", [])]


def test_every_path_needs_credentials(tc: FakeTeamCity) -> None:
    tc.add_build_type("A_B", "B", "A")
    for path in ("app/rest/server", "app/rest/builds", "app/rest/no/such/thing", "", "login.html"):
        r = get(tc, path, auth="")
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == 'Basic realm="TeamCity"'
    assert get(tc, "app/rest/server", auth="Bearer wrong").status_code == 401
    assert get(tc, "guestAuth/app/rest/server").status_code == 401  # no guest access
    assert get(tc, "app/rest/server").status_code == 200
    assert get(tc, "app/rest/server", auth="basic").status_code == 200
    assert get(tc, "httpAuth/app/rest/server", auth="basic").status_code == 200
    assert get(tc, "httpAuth/app/rest/server").status_code == 401  # basic only there


def test_unknown_locator_dimension_is_refused_with_teamcitys_words(tc: FakeTeamCity) -> None:
    r = get(tc, "app/rest/builds", locator="cancelled:true")
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[0] == "Responding with error, status code: 400 (Bad Request)."
    assert lines[1].startswith(
        "Details: jetbrains.buildServer.server.rest.errors.LocatorProcessException: Error"
        " processing locator 'cancelled:true': Locator dimension [cancelled] is unknown."
        " Supported dimensions are: [id, taskId, project, affectedProject, buildType, branch,"
    )
    assert "canceled" in lines[1] and "lookupLimit" in lines[1]
    assert lines[2] == "Invalid request. Check locator is specified correctly."
    # known to TeamCity, not implemented here: refused too, never silently ignored
    r = get(tc, "app/rest/builds", locator="agent:(id:1)")
    assert r.status_code == 400 and "does not implement" in r.text


def test_an_unencoded_plus_in_a_date_is_a_bad_request(tc: FakeTeamCity) -> None:
    url = tc.url + "app/rest/builds?locator=finishDate:(date:20240101T000000+0000,condition:after)"
    r = requests.get(
        url,
        headers={"Authorization": f"Bearer {tc.token}", "Accept": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400 and "Could not parse date" in r.text
    ok = get(
        tc, "app/rest/builds", locator="finishDate:(date:20240101T000000+0000,condition:after)"
    )
    assert ok.status_code == 200  # requests sends `+` as %2B


def test_default_filter_hides_what_teamcity_hides(tc: FakeTeamCity) -> None:
    tc.add_build_type("F_B", "B", "F")
    normal = tc.add_build("F_B", queued=T0, finished=T0 + 1000)
    canceled = tc.queue_build("F_B", at=T0 + 2000)
    tc.cancel_build(canceled, at=T0 + 3000)
    fts = tc.queue_build("F_B", at=T0 + 4000)
    tc.finish_build(fts, at=T0 + 5000, failed_to_start=True)
    personal = tc.add_build("F_B", queued=T0 + 6000, finished=T0 + 7000, personal=True)
    branch = tc.add_build(
        "F_B", queued=T0 + 8000, finished=T0 + 9000, branch="f", default_branch=False
    )
    running = tc.queue_build("F_B", at=T0 + 10_000)
    tc.start_build(running, at=T0 + 10_000)
    queued = tc.queue_build("F_B", at=T0 + 11_000)
    assert ids(get(tc, "app/rest/builds")) == [normal]
    assert ids(get(tc, "app/rest/builds", locator="buildType:(id:F_B)")) == [normal]
    everything = ids(get(tc, "app/rest/builds", locator=ANY))
    # queued first, then running, then finished newest-started first
    assert everything == [queued, running, branch, personal, fts, canceled, normal]
    finished = ids(get(tc, "app/rest/builds", locator=ANY.replace("state:any", "state:finished")))
    assert finished == [branch, personal, fts, canceled, normal]
    # naming a dimension overrides its default only
    assert ids(get(tc, "app/rest/builds", locator="canceled:any")) == [canceled, normal]


def test_lookup_limit_silently_cuts_a_filtered_query(tc: FakeTeamCity) -> None:
    assert tc.default_lookup_limit == 5000  # rest.request.builds.defaultLookupLimit
    tc.add_build_type("L_Old", "Old", "L")
    tc.add_build_type("L_New", "New", "L")
    old = tc.add_build("L_Old", queued=T0, finished=T0 + 1000, number="legacy-1")
    with tc._lock:
        for n in range(5000):
            tc.add_build("L_New", queued=T0 + 10_000 + n, finished=T0 + 20_000 + n)
    when = "finishDate:(date:20000101T000000+0000,condition:after),number:legacy-1"
    assert ids(get(tc, "app/rest/builds", locator=f"{when},buildType:(id:L_Old)")) == [old]
    # over the whole server, the old build is past the first 5,000 looked at: not found,
    # and nothing says so (no nextHref, no error)
    page = get(tc, "app/rest/builds", locator=f"{when},state:finished,count:10")
    assert page.json()["count"] == 0 and "nextHref" not in page.json()
    found = ids(get(tc, "app/rest/builds", locator=f"{when},state:finished,count:10"))
    assert old not in found
    deep = ids(
        get(tc, "app/rest/builds", locator=f"{when},state:finished,lookupLimit:6000,count:10")
    )
    assert old in deep


def test_ids_are_handed_out_at_queue_time_and_lists_are_not_in_id_order(tc: FakeTeamCity) -> None:
    tc.add_build_type("O_B", "B", "O")
    first = tc.queue_build("O_B", at=T0)
    second = tc.queue_build("O_B", at=T0 + 1000)
    assert second == first + 1
    tc.start_build(second, at=T0 + 2000)
    tc.start_build(first, at=T0 + 3000)
    tc.finish_build(second, at=T0 + 4000)
    tc.finish_build(first, at=T0 + 5000)
    assert ids(get(tc, "app/rest/builds")) == [first, second]  # newest start first
    assert tc.builds[second].number == "1" and tc.builds[first].number == "2"


def test_paging_gives_next_href_keeping_fields(tc: FakeTeamCity) -> None:
    tc.add_build_type("P_B", "B", "P")
    for n in range(5):
        tc.add_build("P_B", queued=T0 + n * 1000, finished=T0 + n * 1000)
    page = get(tc, "app/rest/builds", locator="count:2", fields="count,nextHref,build(id)").json()
    assert page["count"] == 2
    nxt = page["nextHref"]
    assert nxt.startswith("/app/rest/builds?locator=count%3A2%2Cstart%3A2")  # no context path
    assert "fields=" in nxt
    second = requests.get(
        tc.url + nxt.lstrip("/"),
        headers={"Authorization": f"Bearer {tc.token}", "Accept": "application/json"},
        timeout=5,
    ).json()
    assert set(second) == {"count", "nextHref", "build"} and set(second["build"][0]) == {"id"}


def test_canceled_while_running_stays_running_until_the_agent_stops(tc: FakeTeamCity) -> None:
    tc.add_build_type("C_B", "B", "C")
    b = tc.queue_build("C_B", at=T0)
    tc.start_build(b, at=T0 + 1000)
    tc.cancel_build(b, at=T0 + 2000, text="Cancelling via curl")
    live = get(tc, f"app/rest/builds/id:{b}").json()
    recorded = read_json("icelander/TestClientCancelBuild.json")
    assert (live["state"], live["status"]) == (recorded["state"], recorded["status"])
    assert live["statusText"] == recorded["statusText"] and "finishDate" not in live
    assert set(live["canceledInfo"]) == set(recorded["canceledInfo"])
    assert ids(get(tc, "app/rest/builds", locator=ANY.replace("state:any", "state:finished"))) == []


def test_shapes_match_the_recorded_answers(tc: FakeTeamCity) -> None:
    tc.add_build_type("S_B", "B", "S")
    root = tc.add_vcs_root("S_R", "https://github.com/acme/s.git")
    b = tc.add_build(
        "S_B",
        queued=T0,
        finished=T0 + 1000,
        branch="refs/heads/main",
        default_branch=True,
        revisions=[(root, "a" * 40, "refs/heads/main")],
    )
    everything = get(tc, f"app/rest/builds/id:{b}", fields="*").json()
    recorded = read_json("icelander/TestClientGetBuilds.extracted.json")["build"][0]
    wanted = {k for k in recorded if not isinstance(recorded[k], dict | list)}
    wanted -= {
        "limitedChangesCount",
        "artifactsDirectory",
        "settingsHash",
        "currentSettingsHash",
        "modificationId",
        "chainModificationId",
        "usedByOtherBuilds",
    }
    assert wanted <= set(everything)
    default = get(tc, f"app/rest/builds/id:{b}").json()
    ignite = xml_to_json("ignite-tcbot/build.xml")
    missing = (
        set(ignite)
        - set(default)
        - {
            "artifact-dependencies",
            "relatedIssues",
            "problemOccurrences",
            "testOccurrences",
            "statistics",
        }
    )
    assert missing == set(), missing
    server = get(tc, "app/rest/server").json()
    assert set(server) == set(read_json("pyteamcity/server.extracted.json"))
    assert get(tc, f"app/rest/builds/id:{b}/artifacts/children/").json() == read_json(
        "pyteamcity/build_496513_artifacts.extracted.json"
    )
    denied = get(tc, f"app/rest/builds/id:{b}/resulting-properties")
    assert denied.status_code == 403 and "VIEW_BUILD_RUNTIME_DATA" in denied.text
    assert "VIEW_BUILD_RUNTIME_DATA" in read_text(
        "pyteamcity/build_496513_resulting-properties.extracted.txt"
    )


def test_statistics_and_steps_resolve_like_the_ignite_build(tc: FakeTeamCity) -> None:
    recorded = xml_to_json("ignite-tcbot/statistics.xml")["property"]
    stats = {p["name"]: int(p["value"]) for p in recorded}
    steps = xml_to_json("ignite-tcbot/IgniteTests24Java8_ActivateDeactivateCluster.xml")["steps"][
        "step"
    ]
    tc.add_build_type(
        "I_B", "B", "I", steps=[{k: s[k] for k in ("id", "name", "type")} for s in steps]
    )
    b = tc.add_build("I_B", queued=T0, started=T0, finished=T0 + 2_499_107, statistics=stats)
    got = get(tc, f"app/rest/builds/id:{b}/statistics").json()["property"]
    assert {p["name"] for p in got} == set(stats)
    step_ids = [s["id"] for s in get(tc, "app/rest/buildTypes/id:I_B/steps").json()["step"]]
    assert all(f"buildStageDuration:buildStep{i}" in stats for i in step_ids)


def test_password_parameters_come_without_a_value(tc: FakeTeamCity) -> None:
    tc.add_build_type("W_B", "B", "W")
    b = tc.add_build(
        "W_B",
        queued=T0,
        finished=T0 + 1000,
        properties=[{"name": "pw", "value": "hunter2", "type": "password display='hidden'"}],
    )
    props = get(tc, f"app/rest/builds/id:{b}", fields="properties(property(name,value,type))")
    assert props.json()["properties"]["property"] == [
        {"name": "pw", "type": {"rawValue": "password display='hidden'"}}
    ]
    assert "hunter2" not in props.text


def test_faults_apply(tc: FakeTeamCity) -> None:
    tc.faults.fail(r"/app/rest/server$", status=503, times=1)
    assert get(tc, "app/rest/server").status_code == 503
    assert get(tc, "app/rest/server").status_code == 200
    assert [r.status for r in tc.requests] == [503, 200]
    assert tc.requests[0].fault == "fail"
