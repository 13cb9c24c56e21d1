"""FakeJenkins answers like Jenkins' JSON API, so tests and benchmarks built on it mean something.

Every test talks HTTP to a real server on 127.0.0.1, with ``requests`` or python-jenkins.
Shapes are checked against the recorded responses shipped in ``connectors/jenkins/standin/data``.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any
from urllib.parse import quote_plus

import jenkins
import pytest
import requests

from connectors.jenkins.standin import FakeJenkins, TreeError, parse_tree, seed_bulk, seed_demo

USER, TOKEN = "sei-bot", "jenkins-secret-token"
NOW = 1_750_000_000_000
DATA = resources.files("connectors.jenkins.standin") / "data"


def recorded(rel: str) -> Any:
    return json.loads((DATA / rel).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo() -> Iterator[FakeJenkins]:
    """The demo controller under /jenkins, plus a freestyle job with 250 builds."""
    with FakeJenkins(context_path="/jenkins") as fj:
        seed_demo(fj, now_ms=NOW)
        for n in range(1, 251):
            fj.add_build("big/history", n, timestamp=NOW - (300 - n) * 60_000, duration=1000)
        yield fj


@pytest.fixture
def fj() -> Iterator[FakeJenkins]:
    """A fresh, empty controller (for tests that change the model or inject faults)."""
    with FakeJenkins() as fake:
        yield fake


@pytest.fixture(scope="module")
def http_() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.auth = (USER, TOKEN)
        yield s


def get(
    s: requests.Session, fj: FakeJenkins, path: str, tree: str | None = None, **params: str
) -> Any:
    if tree is not None:
        params["tree"] = tree
    resp = s.get(fj.url + path, params=params, timeout=5)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()


# -- default (no tree) shapes ------------------------------------------------------------------


def test_root_lists_top_level_items_like_jenkins(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """Root jobs are {_class,name,url[,color]}, sorted; folders carry no color; X-Jenkins set."""
    resp = http_.get(demo.url + "api/json", timeout=5)
    assert resp.headers["X-Jenkins"] == "2.440.3"
    root = resp.json()
    assert root["_class"] == "hudson.model.Hudson"
    assert set(recorded("api4jenkins/jenkins.json")) <= set(root) | {"description"}
    names = [j["name"] for j in root["jobs"]]
    assert names == ["big", "nightly-cleanup", "svc", "team"]
    by_name = {j["name"]: j for j in root["jobs"]}
    assert by_name["nightly-cleanup"] == {
        "_class": "hudson.model.FreeStyleProject",
        "name": "nightly-cleanup",
        "url": demo.url + "job/nightly-cleanup/",
        "color": "red",
    }
    assert set(by_name["svc"]) == {"_class", "name", "url"}
    assert by_name["svc"]["_class"].endswith("WorkflowMultiBranchProject")


def test_job_default_output_caps_builds_and_hides_all_builds(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """Without tree: builds are the 100 newest as {_class,number,url}; allBuilds never appears."""
    job = get(http_, demo, "job/big/job/history/api/json")
    assert job["_class"] == "hudson.model.FreeStyleProject"
    assert "allBuilds" not in job
    assert [b["number"] for b in job["builds"]] == list(range(250, 150, -1))
    assert job["builds"][0] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 250,
        "url": demo.url + "job/big/job/history/250/",
    }
    assert job["firstBuild"]["number"] == 1
    assert job["lastBuild"]["number"] == job["lastCompletedBuild"]["number"] == 250
    assert job["lastFailedBuild"] is None
    assert job["nextBuildNumber"] == 251
    assert job["fullName"] == "big/history"
    assert job["fullDisplayName"] == "big » history"
    pipeline = get(http_, demo, "job/team/job/deploy/api/json")
    assert set(recorded("api4jenkins/pipeline.json")) <= set(pipeline)
    assert pipeline["color"] == "red_anime"  # #5 runs, #4 failed
    assert pipeline["lastBuild"]["number"] == 5
    assert pipeline["lastCompletedBuild"]["number"] == 4


def test_folder_default_output(demo: FakeJenkins, http_: requests.Session) -> None:
    """A folder answers with its children as {_class,name,url,color} and the recorded fields."""
    folder = get(http_, demo, "job/team/api/json")
    assert folder["_class"] == "com.cloudbees.hudson.plugins.folder.Folder"
    assert set(recorded("api4jenkins/folder.json")) <= set(folder)
    assert [j["name"] for j in folder["jobs"]] == ["api", "deploy", "docs"]
    docs = folder["jobs"][2]
    assert docs == {
        "_class": "hudson.model.FreeStyleProject",
        "name": "docs",
        "url": demo.url + "job/team/job/docs/",
        "color": "notbuilt",
    }
    mb = get(http_, demo, "job/svc/api/json")
    assert set(recorded("api4jenkins/mbranch.json")) <= set(mb)


def test_build_default_output_has_every_recorded_key_in_order(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """Freestyle and pipeline builds carry the recorded builds' keys, in Jenkins' order."""
    for path, rel in (
        ("job/team/job/api/2/api/json", "api4jenkins/freestylebuild.json"),
        ("job/team/job/deploy/4/api/json", "api4jenkins/workflowrun.json"),
    ):
        build = get(http_, demo, path)
        want = list(recorded(rel))
        assert [k for k in build if k in want] == want
        assert "inProgress" in build
    api2 = get(http_, demo, "job/team/job/api/2/api/json")
    assert api2["result"] == "FAILURE"
    assert api2["id"] == "2"
    assert api2["fullDisplayName"] == "team » api #2"
    assert api2["url"] == demo.url + "job/team/job/api/2/"
    assert {} in api2["actions"]  # actions with nothing exported serialise as {}
    data = next(a for a in api2["actions"] if a.get("_class", "").endswith("BuildData"))
    assert len(data["buildsByBranchName"]) > 30  # the bloat a poller must never request
    assert data["lastBuiltRevision"]["branch"][0]["name"] == "refs/remotes/origin/main"


# -- tree --------------------------------------------------------------------------------------


def test_tree_keeps_only_named_fields_and_class(demo: FakeJenkins, http_: requests.Session) -> None:
    """tree picks fields; _class is always there; named objects without [...] keep only _class."""
    job = get(http_, demo, "job/team/job/api/api/json", "name,builds[number]{0,2},lastBuild,nope")
    assert job == {
        "_class": "hudson.model.FreeStyleProject",
        "name": "api",
        "builds": [
            {"_class": "hudson.model.FreeStyleBuild", "number": 6},
            {"_class": "hudson.model.FreeStyleBuild", "number": 5},
        ],
        "lastBuild": {"_class": "hudson.model.FreeStyleBuild"},
    }


def test_tree_ranges(demo: FakeJenkins, http_: requests.Session) -> None:
    """{M,N}, {M,}, {,N} and {N} slice the array they follow; newest build first."""

    def numbers(tree: str) -> list[int]:
        return [
            b["number"] for b in get(http_, demo, "job/big/job/history/api/json", tree)["builds"]
        ]

    assert numbers("builds[number]{3,6}") == [247, 246, 245]
    assert numbers("builds[number]{98,}") == [152, 151]
    assert numbers("builds[number]{,2}") == [250, 249]
    assert numbers("builds[number]{4}") == [246]
    assert numbers("builds[number]{0,500}") == list(range(250, 150, -1))  # still capped at 100


def test_all_builds_pages_past_the_cap_only_when_named(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """allBuilds{100,200} reaches builds 150..51; builds alone never lists them."""
    page = get(http_, demo, "job/big/job/history/api/json", "allBuilds[number,result]{100,200}")
    assert list(page) == ["_class", "allBuilds"]
    assert [b["number"] for b in page["allBuilds"]] == list(range(150, 50, -1))
    assert page["allBuilds"][0] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 150,
        "result": "SUCCESS",
    }
    whole = get(http_, demo, "job/big/job/history/api/json", "allBuilds[number]")
    assert len(whole["allBuilds"]) == 250
    assert "allBuilds" not in get(http_, demo, "job/big/job/history/api/json", "builds[number]")


def test_nested_jobs_tree_and_nested_ranges(demo: FakeJenkins, http_: requests.Session) -> None:
    """jobs[...jobs[...]] walks folders; each level has its own range; deepest = _class only."""
    root = get(http_, demo, "api/json", "jobs[name,jobs[name,lastBuild[number]]{0,1}]{2,4}")
    assert root["jobs"] == [
        {
            "_class": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
            "name": "svc",
            "jobs": [
                {
                    "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                    "name": "feature%2Fx",
                    "lastBuild": {
                        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                        "number": 3,
                    },
                }
            ],
        },
        {
            "_class": "com.cloudbees.hudson.plugins.folder.Folder",
            "name": "team",
            "jobs": [
                {
                    "_class": "hudson.model.FreeStyleProject",
                    "name": "api",
                    "lastBuild": {"_class": "hudson.model.FreeStyleBuild", "number": 6},
                }
            ],
        },
    ]
    shallow = get(http_, demo, "api/json", "jobs[name,jobs]")
    team = next(j for j in shallow["jobs"] if j["name"] == "team")
    assert team["jobs"] == [
        {"_class": "hudson.model.FreeStyleProject"},
        {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob"},
        {"_class": "hudson.model.FreeStyleProject"},
    ]


def test_tree_wildcards(demo: FakeJenkins, http_: requests.Session) -> None:
    """* takes every field at its level; deeper objects shrink to what the next level asks for."""
    build = get(http_, demo, "job/team/job/api/3/api/json", "actions[*],artifacts[*]")
    assert build["artifacts"] == [
        {
            "displayPath": "api-1.4.3.jar",
            "fileName": "api-1.4.3.jar",
            "relativePath": "build/libs/api-1.4.3.jar",
        }
    ]
    causes = next(a for a in build["actions"] if "causes" in a)["causes"]
    assert causes == [{"_class": "hudson.model.Cause$UserIdCause"}]  # nested: _class only
    git = next(a for a in build["actions"] if a.get("_class", "").endswith("BuildData"))
    assert git["remoteUrls"] == ["https://ci-bot:ghp_secret@github.com/acme/api"]
    assert git["lastBuiltRevision"] == {}  # declared type, so no _class; no fields asked
    assert git["buildsByBranchName"]["refs/remotes/origin/main"] == {
        "_class": "hudson.plugins.git.util.Build"
    }
    deep = get(http_, demo, "job/team/job/api/3/api/json", "actions[causes[*]]")
    cause = next(a for a in deep["actions"] if "causes" in a)["causes"][0]
    assert cause["userId"] == "bob" and cause["shortDescription"] == "Started by user Bob Builder"


def test_recommended_build_tree_skips_build_data_bloat(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """One tree serves freestyle and pipeline builds: absent fields are simply omitted."""
    tree = (
        "number,result,building,timestamp,duration,"
        "actions[causes[_class,userId,upstreamProject,upstreamBuild,upstreamUrl],"
        "parameters[_class,name,value],lastBuiltRevision[SHA1,branch[name]],remoteUrls],"
        "changeSet[kind,items[commitId]],changeSets[kind,items[commitId]],artifacts[relativePath]"
    )
    deploy = get(http_, demo, "job/team/job/deploy/3/api/json", tree)
    assert "changeSet" not in deploy and deploy["changeSets"][0]["kind"] == "git"
    upstream = next(a for a in deploy["actions"] if "causes" in a)["causes"][0]
    assert upstream == {
        "_class": "hudson.model.Cause$UpstreamCause",
        "upstreamBuild": 5,
        "upstreamProject": "team/api",
        "upstreamUrl": "job/team/job/api/",
    }
    remotes = [a["remoteUrls"] for a in deploy["actions"] if "remoteUrls" in a]
    assert remotes == [
        ["https://github.com/acme/jenkins-shared-lib.git"],
        ["https://github.com/acme/deploy.git"],
    ]
    api = get(http_, demo, "job/team/job/api/1/api/json", tree)
    assert "changeSets" not in api and len(api["changeSet"]["items"]) == 2
    params = next(a for a in api["actions"] if "parameters" in a)["parameters"]
    assert {"_class": "hudson.model.PasswordParameterValue", "name": "DEPLOY_TOKEN"} in params
    assert "buildsByBranchName" not in json.dumps(api)
    slim = http_.get(demo.url + "job/team/job/api/1/api/json", params={"tree": tree}, timeout=5)
    fat = http_.get(demo.url + "job/team/job/api/1/api/json", timeout=5)
    assert len(fat.content) > 5 * len(slim.content)


def test_invalid_tree_is_rejected(demo: FakeJenkins, http_: requests.Session) -> None:
    """Stapler's grammar: a dangling comma, empty brackets or a bad range is refused."""
    for bad in ("jobs[name", "a,", "a[]", "a{x}", "", "{0,1}"):
        resp = http_.get(demo.url + "api/json", params={"tree": bad}, timeout=5)
        assert resp.status_code == 400, bad
        with pytest.raises(TreeError):
            parse_tree(bad)
    assert parse_tree("a[b,c[d]{1,2}],e{3}").children["e"].lo == 3


# -- addressing --------------------------------------------------------------------------------


def test_branch_job_urls_are_double_encoded(demo: FakeJenkins, http_: requests.Session) -> None:
    """Branch feature/x is job feature%2Fx at job/feature%252Fx/; segments decode exactly once."""
    job = get(http_, demo, "job/svc/job/feature%252Fx/api/json", "name,fullName,displayName,url")
    assert job == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "displayName": "feature/x",
        "fullName": "svc/feature%2Fx",
        "name": "feature%2Fx",
        "url": demo.url + "job/svc/job/feature%252Fx/",
    }
    build = get(http_, demo, "job/svc/job/feature%252Fx/2/api/json", "result,fullDisplayName,url")
    assert build["result"] == "NOT_BUILT"
    assert build["fullDisplayName"] == "svc » feature/x #2"
    assert build["url"] == demo.url + "job/svc/job/feature%252Fx/2/"
    assert http_.get(demo.url + "job/svc/job/feature%2Fx/api/json", timeout=5).status_code == 404
    views = get(http_, demo, "view/all/job/svc/job/main/api/json", "name")
    assert views["name"] == "main"


def test_context_path_and_unknown_paths(demo: FakeJenkins, http_: requests.Session) -> None:
    """Everything lives under the context path; anything else is a Jetty-style 404 page."""
    assert demo.url.endswith("/jenkins/")
    base = demo.url.removesuffix("jenkins/")
    for url in (
        base + "api/json",
        demo.url + "job/nope/api/json",
        demo.url + "job/team/job/api/99/api/json",
        demo.url + "job/team/job/api/nothing",
    ):
        resp = http_.get(url, timeout=5)
        assert resp.status_code == 404, url
        assert "HTTP ERROR 404" in resp.text
        assert resp.headers["X-Jenkins"] == "2.440.3"


def test_permalinks(demo: FakeJenkins, http_: requests.Session) -> None:
    """lastBuild includes the running build; lastCompletedBuild skips it."""
    last = get(http_, demo, "job/team/job/deploy/lastBuild/api/json", "number,building,result")
    assert last == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        "number": 5,
        "building": True,
        "result": None,
    }
    done = get(http_, demo, "job/team/job/deploy/lastCompletedBuild/api/json", "number,result")
    assert (done["number"], done["result"]) == (4, "FAILURE")
    resp = http_.get(demo.url + "job/team/job/docs/lastBuild/api/json", timeout=5)
    assert resp.status_code == 404


# -- auth --------------------------------------------------------------------------------------


ANONYMOUS_PATHS = [
    "",
    "api/json",
    "whoAmI/api/json",
    "crumbIssuer/api/json",
    "me/api/json",
    "queue/api/json",
    "login",
    "job/team/",
    "job/team/job/api/api/json?tree=builds[number]{0,5}",
    "job/team/job/api/1/api/json",
    "job/team/job/api/lastBuild/api/json",
    "job/team/job/deploy/1/wfapi/describe",
    "job/team/job/deploy/wfapi/runs",
    "job/svc/job/feature%252Fx/1/consoleText",
    "view/all/job/team/api/json",
    "job/no-such-job/api/json",
]


@pytest.mark.parametrize("path", ANONYMOUS_PATHS)
def test_every_path_refuses_anonymous_like_secured_jenkins(demo: FakeJenkins, path: str) -> None:
    """No credentials: Jenkins' 403 for a missing Overall/Read, on every path, dashboard too."""
    resp = requests.get(demo.url + path, timeout=5)
    assert resp.status_code == 403
    h = resp.raw.headers  # urllib3's: repeated headers stay separate
    assert h["X-Jenkins"] == "2.440.3" and h["X-Hudson"] == "1.395" and h["X-Jenkins-Session"]
    assert h["X-You-Are-Authenticated-As"] == "anonymous"
    assert h["X-You-Are-In-Group-Disabled"].startswith("JENKINS-39402: ")
    assert h["X-Required-Permission"] == "hudson.model.Hudson.Read"
    assert h.getlist("X-Permission-Implied-By") == [
        "hudson.security.Permission.GenericRead",
        "hudson.model.Hudson.Administer",
    ]
    assert h["Content-Type"] == "text/html;charset=UTF-8"
    assert "WWW-Authenticate" not in h
    sent = resp.request.path_url
    login = "/jenkins/login?from=" + quote_plus(sent, safe="*")
    assert resp.text.startswith(
        f"<html><head><meta http-equiv='refresh' content='1;url={login}'/>"
        f"<script>window.location.replace('{login}');</script></head>"
    )
    assert "\nAuthentication required\n<!--\nYou are authenticated as: anonymous\n" in resp.text
    assert "Permission you need to have (but didn't): hudson.model.Hudson.Read\n" in resp.text
    assert resp.text.rstrip().endswith("-->\n\n</body></html>")


def test_auth(demo: FakeJenkins) -> None:
    """Anonymous (or a non-Basic scheme): 403; wrong or malformed Basic credentials: 401."""
    for method in ("HEAD", "POST"):
        resp = requests.request(method, demo.url + "api/json", timeout=5)
        assert resp.status_code == 403
    bearer = {"Authorization": "Bearer " + TOKEN}
    assert requests.get(demo.url + "api/json", headers=bearer, timeout=5).status_code == 403
    for path in ("", "api/json", "job/team/job/api/1/api/json"):
        wrong = requests.get(demo.url + path, auth=(USER, "nope"), timeout=5)
        assert wrong.status_code == 401 and wrong.headers["X-Jenkins"] == "2.440.3"
        assert wrong.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'
        assert f"Invalid password/token for user: {USER}" in wrong.text
    malformed = {"Authorization": "Basic bm8tY29sb24="}  # "no-colon"
    resp = requests.get(demo.url + "api/json", headers=malformed, timeout=5)
    assert resp.status_code == 401 and "Malformed HTTP basic Authorization header" in resp.text
    assert requests.get(demo.url + "api/json", auth=(USER, TOKEN), timeout=5).status_code == 200
    assert requests.get(demo.url, auth=(USER, TOKEN), timeout=5).status_code == 200


def test_outside_the_context_path_is_not_jenkins(demo: FakeJenkins) -> None:
    """Outside /jenkins the servlet container answers 404, before any security check."""
    root = demo.url.removesuffix("jenkins/")
    assert requests.get(root + "api/json", timeout=5).status_code == 404


def test_open_controller_without_auth() -> None:
    """require_auth=False: anonymous may read; wrong credentials are still refused."""
    with FakeJenkins(require_auth=False) as open_fj:
        assert requests.get(open_fj.url + "api/json", timeout=5).status_code == 200
        assert requests.get(open_fj.url, timeout=5).status_code == 200
        wrong = requests.get(open_fj.url + "api/json", auth=(USER, "nope"), timeout=5)
        assert wrong.status_code == 401


# -- wfapi -------------------------------------------------------------------------------------


def test_wfapi_describe_with_and_without_full_stages(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """Stages always; their steps (stageFlowNodes) only with fullStages=true."""
    plain = get(http_, demo, "job/team/job/deploy/4/wfapi/describe")
    assert set(recorded("jenkins-rest/workflow.json")) <= set(plain)
    assert plain["status"] == "FAILED"
    assert plain["_links"]["self"]["href"] == "/jenkins/job/team/job/deploy/4/wfapi/describe"
    assert [s["name"] for s in plain["stages"]] == ["Checkout", "Build", "Deploy"]
    assert all("stageFlowNodes" not in s for s in plain["stages"])
    failed = plain["stages"][-1]
    assert failed["status"] == "FAILED"
    assert failed["error"] == {
        "message": "script returned exit code 1",
        "type": "hudson.AbortException",
    }
    full = get(http_, demo, "job/team/job/deploy/4/wfapi/describe", fullStages="true")
    steps = [n for s in full["stages"] for n in s["stageFlowNodes"]]
    recorded_step = recorded("jenkins-rest/pipeline-node.json")["stageFlowNodes"][0]
    for step in steps:
        assert set(recorded_step) | {"execNode", "pauseDurationMillis"} <= set(step)
        assert step["_links"]["log"]["href"].endswith(f"/execution/node/{step['id']}/wfapi/log")
    assert steps[0]["parentNodes"] == [full["stages"][0]["id"]]
    node = get(
        http_,
        demo,
        f"job/team/job/deploy/4/execution/node/{full['stages'][1]['id']}/wfapi/describe",
    )
    assert node["name"] == "Build" and node["stageFlowNodes"]


def test_wfapi_generated_stages_follow_the_result(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    """Pipelines added without stages get 3 stages shaped like the recorded ones."""
    ok = get(http_, demo, "job/svc/job/main/2/wfapi/describe", fullStages="true")
    assert [s["name"] for s in ok["stages"]] == ["Declarative: Checkout SCM", "build", "test"]
    assert {s["status"] for s in ok["stages"]} == {"SUCCESS"}
    assert (
        ok["stages"][0]["stageFlowNodes"][0]["parameterDescription"]
        == "git@github.com:acme/svc.git"
    )
    failed = get(http_, demo, "job/svc/job/main/3/wfapi/describe")
    assert [s["status"] for s in failed["stages"]] == ["SUCCESS", "SUCCESS", "FAILED"]
    skipped = get(http_, demo, "job/svc/job/feature%252Fx/2/wfapi/describe")
    assert skipped["status"] == "NOT_EXECUTED"
    assert {s["status"] for s in skipped["stages"]} == {"NOT_EXECUTED"}
    running = get(http_, demo, "job/team/job/deploy/5/wfapi/describe")
    assert running["status"] == "IN_PROGRESS"


def test_wfapi_404_for_freestyle_and_missing_builds(
    demo: FakeJenkins, http_: requests.Session
) -> None:
    for path in ("job/team/job/api/2/wfapi/describe", "job/team/job/deploy/77/wfapi/describe"):
        assert http_.get(demo.url + path, timeout=5).status_code == 404


# -- python-jenkins ----------------------------------------------------------------------------


def test_python_jenkins_calls_a_naive_script_makes(demo: FakeJenkins) -> None:
    """get_version, get_whoami, get_all_jobs, get_job_info(fetch_all_builds), get_build_info."""
    server = jenkins.Jenkins(demo.url, username=USER, password=TOKEN, timeout=5)
    with pytest.raises(jenkins.JenkinsException):
        server.get_version()  # sent before python-jenkins resolves auth: anonymous, 403
    assert demo.requests[-1].status == 403
    me = server.get_whoami()
    assert me["id"] == USER and me["_class"] == "hudson.model.User"
    assert server.get_version() == "2.440.3"  # now the session carries the credentials
    names = {j["fullname"] for j in server.get_all_jobs()}
    assert {"team/api", "team/deploy", "svc/main", "svc/feature%2Fx", "nightly-cleanup"} <= names
    info = server.get_job_info("big/history", fetch_all_builds=True)
    assert [b["number"] for b in info["builds"]] == list(range(250, 0, -1))
    branch = server.get_job_info("svc/feature%2Fx")
    assert branch["displayName"] == "feature/x"
    build = server.get_build_info("team/api", 4)
    assert build["result"] == "UNSTABLE" and build["number"] == 4
    with pytest.raises(jenkins.JenkinsException):
        server.get_build_info("team/api", 99)
    assert server.get_build_stages("team/api", 4) is None  # freestyle: wfapi 404
    assert server.get_build_stages("team/deploy", 1)["status"] == "SUCCESS"


def test_python_jenkins_nesting_deeper_than_its_tree(fj: FakeJenkins) -> None:
    """Folders nested deeper than one request's tree come back as {_class}; it asks again."""
    fj.add_build("a/b/c/d/e/f/g/h/i/j/k/l/job", 1)
    server = jenkins.Jenkins(fj.url, username=USER, password=TOKEN, timeout=5)
    names = [j["fullname"] for j in server.get_all_jobs()]
    assert names[-1] == "a/b/c/d/e/f/g/h/i/j/k/l/job"
    assert fj.count(r"crumbIssuer") == 1  # 404: python-jenkins then sends no crumb
    assert fj.count(r"^/(job/[^/]+/)*api/json$") == 2  # root, then once below the 10th level


# -- model changes, faults, recording ----------------------------------------------------------


def test_model_changes_show_up(fj: FakeJenkins) -> None:
    """Running builds, finishing, deleting builds and jobs, editing the returned dict."""
    s = requests.Session()
    s.auth = (USER, TOKEN)
    fj.add_build("app", 1, result="SUCCESS")
    running = fj.add_build("app", 2, building=True)
    assert running["result"] is None and running["building"] is True
    job = get(s, fj, "job/app/api/json", "color,lastBuild[number],lastCompletedBuild[number]")
    assert job["color"] == "blue_anime"
    assert job["lastCompletedBuild"]["number"] == 1
    fj.finish_build("app", 2, "ABORTED", duration=5000)
    build = get(s, fj, "job/app/2/api/json")
    assert (build["result"], build["building"], build["duration"]) == ("ABORTED", False, 5000)
    assert any(a.get("_class") == "jenkins.model.InterruptedBuildAction" for a in build["actions"])
    assert get(s, fj, "job/app/api/json", "color")["color"] == "aborted"
    running["description"] = "edited"
    assert get(s, fj, "job/app/2/api/json", "description")["description"] == "edited"
    fj.delete_build("app", 1)
    assert s.get(fj.url + "job/app/1/api/json", timeout=5).status_code == 404
    assert get(s, fj, "job/app/api/json", "firstBuild[number]")["firstBuild"]["number"] == 2
    fj.add_folder("org", "org")
    fj.add_folder("org/repo", "multibranch")
    fj.add_build("org/repo/PR-7", 1)
    pr = get(s, fj, "job/org/job/repo/job/PR-7/api/json", "_class")
    assert pr["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    fj.delete_job("org/repo/PR-7")
    assert s.get(fj.url + "job/org/job/repo/job/PR-7/api/json", timeout=5).status_code == 404


def test_pipeline_builds_link_neighbours(fj: FakeJenkins) -> None:
    """previousBuild/nextBuild are kept right as builds come and go."""
    fj.add_job("p", "pipeline")
    first = fj.add_build("p", 1)
    fj.add_build("p", 2)
    assert first["nextBuild"] == {"number": 2, "url": fj.url + "job/p/2/"}
    fj.delete_build("p", 2)
    assert first["nextBuild"] is None


def test_fault_injection_and_delay(fj: FakeJenkins) -> None:
    """fail(times=N) answers N errors then recovers; delay() makes clients time out."""
    fj.add_build("app", 1)
    s = requests.Session()
    s.auth = (USER, TOKEN)
    fj.fail(r"/job/app/api/json$", 503, times=2)
    codes = [s.get(fj.url + "job/app/api/json", timeout=5).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    fj.fail(r"/job/app/1/", 500)
    assert s.get(fj.url + "job/app/1/api/json", timeout=5).status_code == 500
    assert s.get(fj.url + "job/app/1/api/json", timeout=5).status_code == 500
    fj.clear_faults()
    assert s.get(fj.url + "job/app/1/api/json", timeout=5).status_code == 200
    fj.delay(r"/api/json", 0.5)
    with pytest.raises(requests.Timeout):
        s.get(fj.url + "api/json", timeout=0.1)
    fj.clear_faults()
    assert s.get(fj.url + "api/json", timeout=5).status_code == 200


def test_requests_are_recorded(fj: FakeJenkins) -> None:
    """Every answer is recorded (path as sent, decoded query, status, body size)."""
    fj.add_build("svc/feature%2Fx", 1)
    s = requests.Session()
    s.auth = (USER, TOKEN)
    s.get(
        fj.url + "job/svc/job/feature%252Fx/api/json",
        params={"tree": "builds[number]{0,5}"},
        timeout=5,
    )
    requests.get(fj.url + "api/json", timeout=5)
    last = fj.requests[-2]
    assert last.method == "GET"
    assert last.path == "/job/svc/job/feature%252Fx/api/json"
    assert last.query == {"tree": "builds[number]{0,5}"}
    assert last.status == 200 and last.size > 0
    assert fj.requests[-1].status == 403
    assert fj.count(r"feature%252Fx") == 1
    assert fj.count() == 2
    fj.reset_requests()
    assert fj.count() == 0 and fj.requests == []


def test_keep_alive_connection_serves_many_requests(fj: FakeJenkins) -> None:
    """HTTP/1.1 keep-alive with Content-Length: one connection, many answers."""
    fj.add_build("app", 1)
    host, port = fj.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    auth = {"Authorization": requests.auth._basic_auth_str(USER, TOKEN)}
    for _ in range(20):
        conn.request("GET", "/job/app/1/api/json?tree=number", headers=auth)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["number"] == 1
    conn.close()


def test_model_may_change_while_serving(fj: FakeJenkins) -> None:
    """Adding builds from another thread never yields a broken answer."""
    fj.add_build("app", 1)
    stop = threading.Event()

    def writer() -> None:
        n = 2
        while not stop.is_set() and n < 400:
            fj.add_build("app", n)
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    s = requests.Session()
    s.auth = (USER, TOKEN)
    try:
        for _ in range(40):
            page = get(s, fj, "job/app/api/json", "builds[number,actions[causes[userId]]]{0,20}")
            numbers = [b["number"] for b in page["builds"]]
            assert numbers == sorted(numbers, reverse=True)
    finally:
        stop.set()
        t.join()


# -- seeds -------------------------------------------------------------------------------------


def test_seed_demo_covers_results_and_causes(demo: FakeJenkins, http_: requests.Session) -> None:
    """Every result, a running build, and user/upstream/timer/branch causes are present."""
    sub = "allBuilds[result,building,actions[causes[_class]]]"
    tree = f"jobs[fullName,{sub},jobs[fullName,{sub}]]"
    root = get(http_, demo, "api/json", tree)
    builds = []
    for item in root["jobs"]:
        for job in [item, *item.get("jobs", [])]:
            builds += job.get("allBuilds", [])
    results = {b["result"] for b in builds}
    assert {"SUCCESS", "FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT", None} <= results
    assert any(b["building"] for b in builds)
    causes = {c["_class"] for b in builds for a in b["actions"] for c in a.get("causes", [])}
    assert {
        "hudson.model.Cause$UserIdCause",
        "hudson.model.Cause$UpstreamCause",
        "hudson.triggers.TimerTrigger$TimerTriggerCause",
        "jenkins.branch.BranchEventCause",
        "jenkins.branch.BranchIndexingCause",
    } <= causes
    api = get(http_, demo, "job/team/job/api/1/api/json", "timestamp")
    assert NOW - 8 * 86_400_000 < api["timestamp"] < NOW


def test_seed_bulk_is_compact_and_serves_pages(fj: FakeJenkins) -> None:
    """Generated builds answer like added ones: pages, running builds, full build JSON, stages."""
    seed_bulk(fj, folders=2, jobs_per_folder=5, builds_per_job=150, now_ms=NOW)
    s = requests.Session()
    s.auth = (USER, TOKEN)
    root = get(s, fj, "api/json", "jobs[name,jobs[name,color]]")
    assert [f["name"] for f in root["jobs"]] == ["folder-000", "folder-001"]
    assert len(root["jobs"][0]["jobs"]) == 5
    assert root["jobs"][0]["jobs"][0]["color"].endswith("_anime")  # every 20th job is running
    page = get(
        s, fj, "job/folder-000/job/job-001/api/json", "allBuilds[number,result,building]{100,160}"
    )
    assert [b["number"] for b in page["allBuilds"]] == list(range(50, 0, -1))
    assert (
        get(s, fj, "job/folder-000/job/job-001/api/json", "builds[number]")["builds"][-1]["number"]
        == 51
    )
    build = get(s, fj, "job/folder-000/job/job-001/7/api/json")
    assert build["fullDisplayName"] == "folder-000 » job-001 #7"
    assert (
        build["actions"][0]["causes"][0]["_class"]
        == "hudson.triggers.TimerTrigger$TimerTriggerCause"
    )
    data = next(a for a in build["actions"] if a.get("_class", "").endswith("BuildData"))
    assert len(data["buildsByBranchName"]) > 30
    pipelines = [
        j["name"]
        for j in get(s, fj, "job/folder-001/api/json", "jobs[name,_class]")["jobs"]
        if j["_class"].endswith("WorkflowJob")
    ]
    assert pipelines  # a pipeline_share of jobs are pipelines
    stages = get(s, fj, f"job/folder-001/job/{pipelines[0]}/3/wfapi/describe", fullStages="true")
    assert len(stages["stages"]) == 3 and stages["stages"][0]["stageFlowNodes"]
