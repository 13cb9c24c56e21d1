"""payload.to_sei is pure: a Build in, a dict out, no server, no database, no clock."""

from __future__ import annotations

import pytest

from poller.config import ServerConfig
from poller.model import Artifact, Build, Cause, Param, Stage, Step
from poller.payload import execution_id, iso_time, normalize_repo_url, strip_userinfo, to_sei

SERVER = ServerConfig(
    name="jenkins-1",
    type="jenkins",
    instance_name="Jenkins-1",
    instance_guid="666ba79b-3f3d-4236-ac04-4686ce526705",
    url="https://bot:tok@jenkins.example.com/",
    cd_jobs=("deploy/**",),
    project_name="Acme",
)


def _build(**kw) -> Build:
    base = dict(
        job_full_name="team/api",
        pipeline="api",
        number=42,
        result="SUCCESS",
        start_ms=1_700_000_000_000,
        duration_ms=61_000,
    )
    base.update(kw)
    return Build(**base)


def test_minimal_build_has_required_fields_and_nothing_invented() -> None:
    p = to_sei(_build(), SERVER)
    assert p == {
        "pipeline": "api",
        "job_full_name": "team/api",
        "qualified_name": "team/api",
        "instance_name": "Jenkins-1",
        "instance_guid": SERVER.instance_guid,
        "instance_url": "https://jenkins.example.com/",
        "build_number": 42,
        "start_time": 1_700_000_000_000,
        "duration": 61_000,
        "result": "SUCCESS",
        "user_id": "SYSTEM",
        "ci": True,
        "cd": False,
        "execution_id": execution_id(SERVER.instance_guid, "team/api", 42),
        "project_name": "Acme",
    }


def test_cd_jobs_glob_marks_deployments() -> None:
    p = to_sei(_build(job_full_name="deploy/prod/web"), SERVER)
    assert (p["ci"], p["cd"]) == (False, True)


def test_full_build() -> None:
    build = _build(
        url="https://jenkins.example.com/job/team/job/api/42/",
        user_id="alice",
        triggers=(Cause("UpstreamCause", "team/build", 7), Cause("UserIdCause", "alice")),
        params=(Param("StringParameterValue", "version", "1.2"),),
        commit_ids=("abc", "def", "abc"),
        repo_url="https://ci:ghp_x@github.com/acme/api",
        branch="main",
        stages=(
            Stage(
                "6",
                "Build",
                "Build",
                "SUCCESS",
                "FINISHED",
                1_700_000_001_000,
                5000,
                (Step("7", "Shell Script", "make", "SUCCESS", "FINISHED", None, 4000),),
            ),
        ),
        artifacts=(
            Artifact(
                "app.jar", "https://jenkins.example.com/job/team/job/api/42/artifact/app.jar", "42"
            ),
        ),
    )
    p = to_sei(build, SERVER)
    assert p["trigger_chain"] == [
        {"id": "team/build", "type": "UpstreamCause", "job_run_number": 7},
        {"id": "alice", "type": "UserIdCause"},
    ]
    assert p["job_run_params"] == [
        {"type": "StringParameterValue", "name": "version", "value": "1.2"}
    ]
    assert p["scm_commit_ids"] == ["abc", "def"]
    assert p["repo_url"] == "https://github.com/acme/api.git"
    assert p["branch_name"] == "main"
    assert p["web_url"] == "https://jenkins.example.com/job/team/job/api/42/"
    assert p["job_run"] == {
        "stages": [
            {
                "id": "6",
                "displayName": "Build",
                "displayDescription": "Build",
                "result": "SUCCESS",
                "state": "FINISHED",
                "durationInMillis": 5000,
                "startTime": "2023-11-14T22:13:21.000+0000",
                "steps": [
                    {
                        "id": "7",
                        "displayName": "Shell Script",
                        "displayDescription": "make",
                        "result": "SUCCESS",
                        "state": "FINISHED",
                        "durationInMillis": 4000,
                    }
                ],
            }
        ]
    }
    assert p["artifacts"] == [
        {
            "input": False,
            "output": True,
            "type": "file",
            "location": "https://jenkins.example.com/job/team/job/api/42/artifact/app.jar",
            "name": "app.jar",
            "qualifier": "42",
        }
    ]


def test_execution_id_is_stable_and_unique() -> None:
    a = execution_id("g", "team/api", 1)
    assert a == execution_id("g", "team/api", 1)
    assert a != execution_id("g", "team/api", 2)
    assert a != execution_id("g", "team/ap", 1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://github.com/acme/api.git", "https://github.com/acme/api.git"),
        ("https://github.com/acme/api", "https://github.com/acme/api.git"),
        ("https://user:ghp_secret@github.com/acme/api/", "https://github.com/acme/api.git"),
        ("git@github.com:acme/api.git", "git@github.com:acme/api.git"),
        ("git@github.com:acme/api", "git@github.com:acme/api.git"),
        (
            "ssh://git@gitlab.example.com:2222/grp/sub/repo.git",
            "git@gitlab.example.com:grp/sub/repo.git",
        ),
        ("http://gitea.local:3000/o/r", "http://gitea.local:3000/o/r.git"),
        ("", None),
        ("file:///srv/repo", None),
    ],
)
def test_repo_url_normalised_for_sei(raw: str, expected: str | None) -> None:
    assert normalize_repo_url(raw) == expected


def test_strip_userinfo_and_iso_time() -> None:
    assert strip_userinfo("https://a:b@h/x?y=1") == "https://h/x?y=1"
    assert strip_userinfo("https://h/x") == "https://h/x"
    assert iso_time(0) == "1970-01-01T00:00:00.000+0000"
    assert iso_time(1_700_000_000_123) == "2023-11-14T22:13:20.123+0000"


def test_reported_names_replace_the_job_name_but_globs_match_the_jobs_own() -> None:
    """A connector asked for other names (Jenkins' `naming = "plugin"`) reports the job under
    them; `cd_jobs` globs, like include/exclude, still match the job's own full name."""
    b = _build(
        job_full_name="deploy/prod/web",
        pipeline="web",
        report_full_name="deploy/jobs/prod/jobs/web",
        report_qualified_name="deploy/prod/web",
    )
    p = to_sei(b, SERVER)
    assert (p["job_full_name"], p["qualified_name"], p["pipeline"]) == (
        "deploy/jobs/prod/jobs/web",
        "deploy/prod/web",
        "web",
    )
    assert (p["cd"], p["ci"]) == (True, False)
    assert p["execution_id"] == execution_id(SERVER.instance_guid, "deploy/jobs/prod/jobs/web", 42)
