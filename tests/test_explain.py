"""`sei-poller explain SERVER JOB BUILD`: the payload one build gets, and what keeps SEI from
using it, against the stand-in Jenkins and a Buildbot master serving recorded answers."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from connectors.jenkins.standin import FakeJenkins
from poller.payload import execution_id
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.buildbot.test_unit import ANY_PATH, FakeMaster
from tests.connectors.jenkins.env import DAY, GUID, Env

NOW = int(time.time() * 1000)
T0 = NOW - 2 * DAY
USER = "hudson.model.Cause$UserIdCause"
GIT = {
    "sha": "a" * 40,
    "branch": "refs/remotes/origin/main",
    "remote": "https://github.com/acme/api",
}


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins(context_path="/jenkins") as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _explain(
    env: Env, capsys: pytest.CaptureFixture[str], job: str, number: str | int, *more: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = env.run("explain", "jenkins-main", job, str(number), *more)
    out, err = capsys.readouterr()
    return code, out, _own(err)


def _own(err: str) -> str:
    """Our stderr lines, without the JSON log lines."""
    return "\n".join(line for line in err.splitlines() if not line.startswith("{"))


def _json(env: Env, capsys: pytest.CaptureFixture[str], job: str, number: int) -> dict[str, Any]:
    code, out, _ = _explain(env, capsys, job, number, "--json")
    data = json.loads(out)
    assert code == (1 if data["findings"] else 0)
    return data


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def _codes(data: dict[str, Any]) -> list[str]:
    return [f["code"] for f in data["findings"]]


def test_complete_build_shows_what_once_would_send_and_exits_0(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.jenkins.add_build(
        "team/api",
        7,
        timestamp=T0,
        duration=61_000,
        causes=[{"_class": USER, "userId": "alice"}],
        git=GIT,
        change_ids=["b" * 40],
    )
    code, out, err = _explain(env, capsys, "team/api", 7)
    assert (code, err) == (0, "")
    url = f"{env.jenkins.url}job/team/job/api/7/"
    expected = {
        "pipeline": "api",
        "job_full_name": "team/api",
        "qualified_name": "team/api",
        "instance_name": "Jenkins-1",
        "instance_guid": GUID,
        "instance_url": env.jenkins.url,
        "build_number": 7,
        "start_time": T0,
        "duration": 61_000,
        "result": "SUCCESS",
        "user_id": "alice",
        "ci": True,
        "cd": False,
        "execution_id": execution_id(GUID, "team/api", 7),
        "trigger_chain": [{"id": "alice", "type": "UserIdCause"}],
        "scm_commit_ids": ["a" * 40, "b" * 40],
        "repo_url": "https://github.com/acme/api.git",
        "branch_name": "main",
        "web_url": url,
    }
    lines = out.splitlines()
    assert lines[0] == f"jenkins-main  team/api #7  {url}"
    assert lines[1] == "payload, exactly as `once` would send it (nothing was sent or written):"
    assert json.loads("\n".join(lines[2:-1])) == expected
    assert lines[-1] == "complete: SEI can use all of it, lead time included"
    # Nothing was sent or written: no state file, SEI never asked.
    assert not (env.dir / "state.db").exists()
    assert env.sei.attempts == []
    assert {r.method for r in env.jenkins.requests} == {"GET"}
    # And it is what `once` sends.
    assert env.once() == 0
    assert env.runs()[("team/api", 7)] == expected


def test_json_output(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.jenkins.add_build("team/api", 1, timestamp=T0, duration=10)
    data = _json(env, capsys, "team/api", 1)
    assert set(data) == {
        "server",
        "job",
        "build",
        "url",
        "payload",
        "rules",
        "connector_deployment",
        "findings",
        "complete",
    }
    assert data["rules"] == [] and data["connector_deployment"] is None
    assert (data["server"], data["job"], data["build"], data["complete"]) == (
        "jenkins-main",
        "team/api",
        1,
        False,
    )
    assert data["payload"]["job_full_name"] == "team/api"
    assert data["findings"] == [
        {
            "code": "no-commits",
            "message": "no scm_commit_ids: the server named no commit for this build, so SEI"
            " cannot link it to commits and lead time leaves it out",
        },
        {
            "code": "no-repo-url",
            "message": "no repo_url: the server named no repository for this build, so SEI"
            " cannot tell whose commits these are",
        },
    ]


def test_repo_urls_sei_will_not_match(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    j = env.jenkins
    j.add_build(
        "one-segment",
        1,
        timestamp=T0,
        duration=10,
        git={**GIT, "remote": "https://git.example.com/api"},
    )
    j.add_build("local-path", 1, timestamp=T0, duration=10, git={**GIT, "remote": "/srv/git/api"})
    j.add_build(
        "scp", 1, timestamp=T0, duration=10, git={**GIT, "remote": "git@git.example.com:api"}
    )
    one = _json(env, capsys, "one-segment", 1)
    assert one["payload"]["repo_url"] == "https://git.example.com/api.git"
    assert one["findings"] == [
        {
            "code": "repo-url-unparsed",
            "message": "repo_url 'https://git.example.com/api.git' has no org/repo path: SEI's"
            " repo parser only matches https://host/org/repo.git or git@host:org/repo.git, so"
            " lead time cannot find the repository",
        }
    ]
    local = _json(env, capsys, "local-path", 1)
    assert "repo_url" not in local["payload"]
    assert local["findings"] == [
        {
            "code": "repo-url-unparsed",
            "message": "repo_url left out: '/srv/git/api' is not an http(s), ssh or scp-style git"
            " URL, and SEI's repo parser only matches https://host/org/repo.git or"
            " git@host:org/repo.git",
        }
    ]
    assert _json(env, capsys, "scp", 1)["findings"] == []  # git@host:path.git is matched


def test_system_user_for_a_build_a_person_started(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    j = env.jenkins
    j.add_build("anon", 1, timestamp=T0, duration=10, git=GIT, causes=[{"_class": USER}])
    data = _json(env, capsys, "anon", 1)
    assert data["payload"]["user_id"] == "SYSTEM"
    assert data["findings"] == [
        {
            "code": "system-user",
            "message": "user_id is SYSTEM although a person started this build: its UserIdCause"
            " names no user (started anonymously, or by a user since deleted)",
        }
    ]


def test_pipeline_build_without_stages(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    j = env.jenkins
    j.add_job("p", "pipeline")
    j.add_build("p", 1, timestamp=T0, duration=10, git=GIT, stages=[])
    j.add_build("p", 2, timestamp=T0, duration=10, git=GIT)  # stages generated by the stand-in
    assert _codes(_json(env, capsys, "p", 2)) == []
    data = _json(env, capsys, "p", 1)
    assert data["findings"] == [
        {
            "code": "no-stages",
            "message": "a pipeline build without stages: the server reported none for it (the"
            " plugin or API that reports stages is missing, or the run never reached a stage)",
        }
    ]
    env.write(stages=False)
    data = _json(env, capsys, "p", 2)
    assert data["findings"][0]["message"] == (
        "a pipeline build without stages: stages = false in this server's config"
    )
    assert env.jenkins.count("wfapi") == 2  # one per explain while stages were on


def test_running_build_has_no_payload(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.jenkins.add_build("slow", 3, result=None, building=True, timestamp=T0)
    code, out, _ = _explain(env, capsys, "slow", 3)
    assert code == 1
    assert out.splitlines()[1:] == [
        "no payload: nothing would be sent for this build now",
        "findings (1):",
        "  running  still running: nothing is sent until it finishes (SEI keeps the first write,"
        " so a run sent half-done would stay half-done)",
    ]


def test_already_sent_build_says_when(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.jenkins.add_build("team/api", 1, timestamp=T0, duration=10, git=GIT)
    assert env.once() == 0
    before = _dump(env.dir / "state.db")
    data = _json(env, capsys, "team/api", 1)
    [finding] = data["findings"]
    assert finding["code"] == "already-sent"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert finding["message"].startswith(f"already sent, on {day} ")
    assert finding["message"].endswith(
        " UTC: SEI keeps that first write, so this payload would change nothing"
    )
    assert _dump(env.dir / "state.db") == before  # read, not written
    assert len(env.sei.attempts) == 1  # the once, not the explain


def test_build_outside_backfill_since(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(backfill_since="30d")
    old = NOW - 60 * DAY
    env.jenkins.add_build("team/api", 1, timestamp=old, duration=10, git=GIT)
    env.jenkins.add_build("team/api", 2, timestamp=T0, duration=10, git=GIT)
    assert env.once() == 0  # sends #2 only
    data = _json(env, capsys, "team/api", 1)
    started = time.strftime("%Y-%m-%d", time.gmtime(old / 1000))
    bound = time.strftime("%Y-%m-%d", time.gmtime(NOW / 1000 - 30 * 86400))
    assert data["findings"] == [
        {
            "code": "outside-window",
            "message": f"started {started}, before backfill_since '30d' ({bound}): a poll does"
            f" not read it; `sei-poller backfill --since {started}` sends it",
        }
    ]


def test_excluded_job_and_broken_build(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(exclude=["scratch/**"], give_up_after="2h")
    j = env.jenkins
    j.add_build("scratch/x", 1, timestamp=T0, duration=10, git=GIT)
    assert _codes(_json(env, capsys, "scratch/x", 1)) == ["not-polled"]
    j.add_job("p", "pipeline")
    j.add_build("p", 4, timestamp=T0, duration=10, git=GIT)
    j.fail(r"/job/p/4/wfapi/describe$", 500)
    data = _json(env, capsys, "p", 4)
    assert _codes(data) == ["broken"]
    assert data["findings"][0]["message"].startswith("its details keep failing (HTTP 500")
    assert data["findings"][0]["message"].endswith(
        "it is parked and retried; after give_up_after (2h) it is sent as shown, without them"
    )
    assert "job_run" not in data["payload"]


def test_missing_build_job_server_and_bad_arguments(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.jenkins.add_build("team/api", 1, timestamp=T0, duration=10)
    code, out, err = _explain(env, capsys, "team/api", 99)
    assert (code, out) == (1, "")
    assert err == (
        f"sei-poller: team/api #99: no such build: {env.jenkins.url}job/team/job/api/99/api/json"
    )
    code, out, err = _explain(env, capsys, "team/apl", 1)
    assert (code, out) == (1, "")
    assert err == (
        f"sei-poller: no job 'team/apl' on jenkins-main: {env.jenkins.url}; did you mean"
        " 'team/api'?"
    )
    capsys.readouterr()
    assert env.run("explain", "nope", "team/api", "1") == 2
    assert "explain SERVER: no server named 'nope' (configured: jenkins-main)" in _own(
        capsys.readouterr().err
    )
    for args in (("team/api", "seven"), ("team/api",)):
        with pytest.raises(SystemExit) as exit_:
            env.run("explain", "jenkins-main", *args)
        assert exit_.value.code == 2
    assert "invalid int value: 'seven'" in capsys.readouterr().err


# -- any connector: Buildbot, through its ordinary scan ------------------------------------


@pytest.fixture()
def bb(httpserver: HTTPServer, tmp_path: Path) -> Iterator[tuple[FakeMaster, Path, str]]:
    master = FakeMaster()
    httpserver.expect_request(ANY_PATH).respond_with_handler(master)
    config = tmp_path / "config.toml"
    server = {
        "name": "bb",
        "type": "buildbot",
        "url": httpserver.url_for("/"),
        "instance_guid": GUID,
        "instance_name": "Buildbot-1",
        "backfill_since": "all",
    }
    write_config(config, sei_url="http://127.0.0.1:9/sei", servers=[server])
    yield master, config, httpserver.url_for("/")


def _bb(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from poller.cli import main

    capsys.readouterr()
    code = main(["-c", str(config), "explain", "bb", *args])
    out, err = capsys.readouterr()
    return code, out, _own(err)


def test_buildbot_builds_are_explained_through_scan(
    bb: tuple[FakeMaster, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    master, config, url = bb
    # The recorded build's repository has no org/ part: a genuine finding.
    code, out, _ = _bb(config, capsys, "multi", "1", "--json")
    data = json.loads(out)
    assert code == 1
    assert data["payload"]["job_full_name"] == "multi"
    assert data["payload"]["scm_commit_ids"] == ["3" * 40]
    stages = [s["displayName"] for s in data["payload"]["job_run"]["stages"]]
    assert stages == ["worker_preparation", "get-version", "build", "lint", "deploy", "test"]
    assert _codes(data) == ["repo-url-unparsed"]
    build = next(b for b in master.builds if b["buildid"] == 3)
    build["properties"]["repository"] = ["https://example.invalid/acme/repo.git", "Build"]
    code, out, _ = _bb(config, capsys, "multi", "1")
    assert code == 0
    assert out.splitlines()[-1] == "complete: SEI can use all of it, lead time included"
    # A RETRY build is finished but never sent; a build that is not there is named so.
    code, out, err = _bb(config, capsys, "slow", "2")
    assert (code, out) == (1, "")
    assert err.startswith("sei-poller: slow #2 is finished, but the connector sends nothing")
    code, out, err = _bb(config, capsys, "ok", "9")
    assert (code, out) == (1, "")
    assert err == f"sei-poller: ok #9: no such build: {url}#/builders/5"


def test_an_unreadable_state_file_leaves_the_rest_of_the_answer(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    (env.dir / "state.db").write_bytes(b"this is not SQLite, and explain must not repair it")
    env.jenkins.add_build("team/api", 1, timestamp=T0, duration=10, git=GIT)
    data = _json(env, capsys, "team/api", 1)
    assert data["payload"]["job_full_name"] == "team/api"
    [finding] = data["findings"]
    assert finding["code"] == "state-unreadable"
    assert finding["message"].startswith(
        "whether it was sent already is unknown: the state database could not be read ("
    )
    assert (env.dir / "state.db").read_bytes().startswith(b"this is not SQLite")
