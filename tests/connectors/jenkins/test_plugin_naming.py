"""`naming = "plugin"`: stand-in Jenkins → sei-poller once → stand-in SEI, exact payloads.

The names are the ones SEI's Jenkins plugin sent for the same builds: the job's directory
path under `$JENKINS_HOME/jobs` (`jobs/` between folder levels, `branches/` before a
multibranch branch, mangled by branch-api's NameMangler, `modules/` before a Maven module),
the same path without those segments, the leaf (or multibranch project) as `pipeline`, and
the `branches/<x>` segment as `branch_name`. The mangled names are worked out from the rule
in test_jenkins_names.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.jenkins.standin import FakeJenkins
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, GUID, Env

NOW = int(time.time() * 1000)
T0 = NOW - 2 * DAY
UPSTREAM = "hudson.model.Cause$UpstreamCause"
BRANCH_EVENT = "jenkins.branch.BranchEventCause"
USER = "hudson.model.Cause$UserIdCause"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins(context_path="/jenkins") as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write(naming="plugin", cd_jobs=["deploy/**"])
        yield e


def _common(env: Env, name: str, qualified: str, number: int, url_path: str) -> dict:
    return {
        "job_full_name": name,
        "qualified_name": qualified,
        "instance_name": "Jenkins-1",
        "instance_guid": GUID,
        "instance_url": env.jenkins.url,
        "build_number": number,
        "start_time": T0,
        "duration": 1000,
        "result": "SUCCESS",
        "execution_id": execution_id(GUID, name, number),
        "web_url": f"{env.jenkins.url}{url_path}{number}/",
    }


def _upstream(project: str, number: int) -> dict:
    url = "".join(f"job/{seg.replace('%', '%25')}/" for seg in project.split("/"))
    return {
        "_class": UPSTREAM,
        "upstreamProject": project,
        "upstreamBuild": number,
        "upstreamUrl": url,
    }


def test_exact_payloads_with_plugin_naming(env: Env) -> None:
    j = env.jenkins
    # Folders three deep, a freestyle job.
    j.add_folder("A/B/C")
    j.add_job("A/B/C/app", "freestyle")
    j.add_build(
        "A/B/C/app",
        1,
        timestamp=T0,
        duration=1000,
        causes=[{"_class": USER, "userId": "alice"}],
        git={
            "sha": "a" * 40,
            "branch": "refs/remotes/origin/main",
            "remote": "https://github.com/acme/app",
        },
    )
    # A multibranch project in a folder: one plain branch, one whose name is mangled.
    j.add_folder("A/svc", "multibranch")
    for branch, number in (("main", 1), ("feature%2Fx", 3)):
        j.add_build(
            f"A/svc/{branch}",
            number,
            timestamp=T0,
            duration=1000,
            causes=[{"_class": BRANCH_EVENT}],
            git={"sha": "b" * 40, "branch": branch, "remote": "git@github.com:acme/svc.git"},
            stages=[],
        )
    # An organisation folder: its repositories' directories are mangled too.
    j.add_folder("acme", "org")
    j.add_folder("acme/my_repo", "multibranch")
    j.add_build("acme/my_repo/main", 2, timestamp=T0, duration=1000, causes=[], stages=[])
    # An upstream chain across folders: a deploy started by the mangled branch's build.
    j.add_job("deploy/prod/release", "pipeline")
    j.add_build(
        "deploy/prod/release",
        9,
        timestamp=T0,
        duration=1000,
        causes=[_upstream("A/svc/feature%2Fx", 3)],
        stages=[],
    )
    # A Maven job, and a job its module's build started.
    j.add_job("libs/core", "maven")
    j.add_build("libs/core", 4, timestamp=T0, duration=1000, causes=[])
    j.add_build(
        "libs/integration",
        5,
        timestamp=T0,
        duration=1000,
        causes=[_upstream("libs/core/com.acme$core-api", 4)],
    )

    assert env.once() == 0
    runs = env.runs()
    assert runs[("A/jobs/B/jobs/C/jobs/app", 1)] == {
        **_common(env, "A/jobs/B/jobs/C/jobs/app", "A/B/C/app", 1, "job/A/job/B/job/C/job/app/"),
        "pipeline": "app",
        "user_id": "alice",
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": "alice", "type": "UserIdCause"}],
        "scm_commit_ids": ["a" * 40],
        "repo_url": "https://github.com/acme/app.git",
        # no branch_name: the plugin names a branch only for a multibranch branch job
    }
    svc = {
        "pipeline": "svc",
        "user_id": "SCMTrigger",
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": "SCMTrigger", "type": "BranchEventCause"}],
        "scm_commit_ids": ["b" * 40],
        "repo_url": "git@github.com:acme/svc.git",
    }
    assert runs[("A/jobs/svc/branches/main", 1)] == {
        **_common(env, "A/jobs/svc/branches/main", "A/svc/main", 1, "job/A/job/svc/job/main/"),
        **svc,
        "branch_name": "main",
    }
    mangled = "A/jobs/svc/branches/feature-x.1ttbu8"
    assert runs[(mangled, 3)] == {
        **_common(env, mangled, "A/svc/feature-x.1ttbu8", 3, "job/A/job/svc/job/feature%252Fx/"),
        **svc,
        "branch_name": "feature-x.1ttbu8",
    }
    org = "acme/jobs/my-repo.ctrlp4/branches/main"
    assert runs[(org, 2)] == {
        **_common(env, org, "acme/my-repo.ctrlp4/main", 2, "job/acme/job/my_repo/job/main/"),
        "pipeline": "my-repo.ctrlp4",
        "user_id": "SYSTEM",
        "ci": True,
        "cd": False,
        "branch_name": "main",
    }
    assert runs[("deploy/jobs/prod/jobs/release", 9)] == {
        **_common(
            env,
            "deploy/jobs/prod/jobs/release",
            "deploy/prod/release",
            9,
            "job/deploy/job/prod/job/release/",
        ),
        "pipeline": "release",
        "user_id": "SCMTrigger",  # the root of the chain: the branch build's push event
        "ci": False,  # cd_jobs globs match Jenkins' own names, whatever the naming
        "cd": True,
        "trigger_chain": [{"id": mangled, "type": "UpstreamCause", "job_run_number": 3}],
    }
    assert runs[("libs/jobs/core", 4)] == {
        **_common(env, "libs/jobs/core", "libs/core", 4, "job/libs/job/core/"),
        "pipeline": "core",
        "user_id": "SYSTEM",
        "ci": True,
        "cd": False,
    }
    module = "libs/jobs/core/modules/com.acme$core-api"
    assert runs[("libs/jobs/integration", 5)] == {
        **_common(env, "libs/jobs/integration", "libs/integration", 5, "job/libs/job/integration/"),
        "pipeline": "integration",
        "user_id": "SYSTEM",  # the module's build is not served: the chain ends there
        "ci": True,
        "cd": False,
        "trigger_chain": [{"id": module, "type": "UpstreamCause", "job_run_number": 4}],
    }
    assert len(runs) == 7
    # State and globs keep Jenkins' names: the ledger is keyed on them.
    assert env.watermark("A/svc/feature%2Fx") == 3
    assert env.watermark("A/jobs/svc/branches/feature-x.1ttbu8") is None


def test_an_upstream_discovery_could_not_list_is_looked_up(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A parent discovery did not see is asked what it is (one small request): the name must
    be right the first time, since SEI keeps the first write; a lookup that fails parks the
    build instead of guessing, and a parent that is gone is taken for a plain folder."""
    j = env.jenkins
    j.add_folder("outer/tools", "multibranch")
    j.add_build("outer/tools/feature%2Fz", 1, timestamp=T0, duration=1000, stages=[])
    j.fail(r"/job/outer/api/json$", 403, query=r"^tree=jobs")  # its listing is refused
    up = _upstream("outer/tools/feature%2Fz", 1)
    j.add_build("deploy-a", 1, timestamp=T0, duration=1000, causes=[up])
    j.add_build("deploy-b", 1, timestamp=T0, duration=1000, causes=[_upstream("gone/old/job", 7)])
    assert env.once() == 1  # the folder that cannot be listed fails the poll
    runs = env.runs()
    assert runs[("deploy-a", 1)]["trigger_chain"] == [
        {
            "id": "outer/jobs/tools/branches/feature-z.a5ue6t",
            "type": "UpstreamCause",
            "job_run_number": 1,
        }
    ]
    assert runs[("deploy-b", 1)]["trigger_chain"] == [
        {"id": "gone/jobs/old/jobs/job", "type": "UpstreamCause", "job_run_number": 7}
    ]
    lookups = [r.path for r in j.requests if r.query.get("tree") == "name"]
    assert sorted(lookups) == [
        "/jenkins/job/gone/api/json",
        "/jenkins/job/gone/job/old/api/json",
        "/jenkins/job/outer/job/tools/api/json",
    ]

    j.add_folder("other/inner")
    j.fail(r"/job/other/api/json$", 403, query=r"^tree=jobs")
    j.fail(r"/job/other/job/inner/api/json$", 403, query=r"^tree=name")
    j.add_build("deploy-a", 2, timestamp=T0, duration=1000, causes=[_upstream("other/inner/x", 1)])
    assert env.once() == 1
    assert ("deploy-a", 2) not in env.runs()  # parked, not sent under a guessed name
    capsys.readouterr()
    assert env.run("status", "--json") == 0
    parked = json.loads(capsys.readouterr().out)["parked_builds"]
    assert [(p["job"], p["number"]) for p in parked] == [("deploy-a", 2)]
    assert "HTTP 403" in parked[0]["error"]


def test_naming_is_checked_when_the_config_loads(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write(naming="plugins")
    assert env.once() == 2
    err = capsys.readouterr().err
    assert 'servers[0] (jenkins-main).naming: expected "jenkins"' in err
    assert 'or "plugin"' in err and '"plugins"' in err


def test_naming_is_a_jenkins_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from poller.cli import main
    from tests.conftest import write_config

    server = {
        "name": "bb",
        "type": "buildbot",
        "url": "http://127.0.0.1:9/",
        "instance_guid": GUID,
        "instance_name": "Buildbot-1",
        "naming": "plugin",
    }
    config = write_config(tmp_path / "c.toml", sei_url="http://127.0.0.1:9/", servers=[server])
    assert main(["-c", str(config), "status"]) == 2
    assert 'servers[0] (bb).naming: unknown key for a "buildbot" server' in capsys.readouterr().err


def _plugin_sent(env: Env, name: str, number: int) -> None:
    """A run as SEI's plugin sent it: its names, no stages, no execution_id."""
    body = {
        "pipeline": "svc",
        "job_full_name": name,
        "qualified_name": name.replace("/jobs/", "/").replace("/branches/", "/"),
        "instance_name": "Jenkins-1",
        "instance_guid": GUID,
        "instance_url": env.jenkins.url,
        "build_number": number,
        "start_time": T0 + number,
        "duration": 1000,
        "result": "SUCCESS",
        "user_id": "SCMTrigger",
        "branch_name": "feature-x.1ttbu8",
    }
    headers = {"Authorization": "ApiKey sei-secret-key", "Content-Type": "application/json"}
    assert requests.post(env.sei.url, json=body, headers=headers, timeout=5).status_code == 202


def test_switching_from_the_plugin_keeps_one_history(env: Env) -> None:
    """The plugin sent #1, #2 and #4 and lost #3; with the plugin's GUID and names, a backfill
    fills in #3 under the same job, and SEI keeps the plugin's runs (first write wins)."""
    j = env.jenkins
    j.add_folder("A/svc", "multibranch")
    for n in (1, 2, 3, 4):
        j.add_build("A/svc/feature%2Fx", n, timestamp=T0 + n, duration=1000, stages=[])
    name = "A/jobs/svc/branches/feature-x.1ttbu8"
    for n in (1, 2, 4):
        _plugin_sent(env, name, n)
    assert env.once() == 0
    runs = env.runs()
    assert sorted(runs) == [(name, 1), (name, 2), (name, 3), (name, 4)]  # one job, no gap
    assert ["execution_id" in runs[(name, n)] for n in (1, 2, 3, 4)] == [False, False, True, False]
    assert len(env.sei.keys()) == 7  # three resent and ignored, one new
