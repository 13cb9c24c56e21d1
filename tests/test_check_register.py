"""`check` proves every server and SEI without sending a payload; `register` prints a GUID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from connectors.jenkins.standin import FakeJenkins
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import GUID, Env


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins(context_path="/ci") as jenkins, FakeSei() as sei:
        jenkins.add_build("team/api", 1, timestamp=1_700_000_000_000, duration=1)
        jenkins.add_build("team/web", 1, timestamp=1_700_000_000_000, duration=1)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def test_check_passes_with_good_credentials(env: Env, capsys) -> None:
    assert env.run("check") == 0
    out = capsys.readouterr().out
    assert "jenkins-main  ok" in out
    assert "Jenkins 2." in out and "as sei-bot" in out and "2 jobs" in out
    assert "sei" in out and "API key accepted" in out
    assert env.sei.received == []  # nothing stored: the probe is an empty body SEI rejects


def test_check_fails_with_bad_jenkins_token(env: Env, capsys) -> None:
    env.write(token="wrong")
    assert env.run("check") == 1
    out = capsys.readouterr().out
    assert "jenkins-main  FAILED" in out and "refused the credentials (HTTP 401)" in out
    assert "wrong" not in out


def test_check_passes_against_a_jenkins_that_denies_anonymous_read(env: Env, capsys) -> None:
    """Every request `check` sends carries the credentials: none is refused as anonymous.

    python-jenkins' get_version() goes out before the library resolves auth, so against a
    secured Jenkins it drew a 403 and `check` blamed good credentials.
    """
    env.jenkins.reset_requests()
    assert env.run("check") == 0
    out = capsys.readouterr().out
    assert "jenkins-main  ok      Jenkins 2.440.3 as sei-bot, 2 jobs" in out
    assert "refused" not in out
    assert env.jenkins.requests and all(r.status == 200 for r in env.jenkins.requests)


def test_check_without_credentials_is_refused_clearly(env: Env, capsys) -> None:
    """No username/token against a secured Jenkins: the 403 is reported as refused credentials."""
    server = {
        "name": "jenkins-main",
        "type": "jenkins",
        "url": env.jenkins.url,
        "instance_guid": GUID,
        "instance_name": "n",
    }
    cfg = write_config(env.config, sei_url=env.sei.url, servers=[server])
    assert main(["-c", str(cfg), "check"]) == 1
    out = capsys.readouterr().out
    assert "jenkins-main  FAILED" in out and "refused the credentials (HTTP 403)" in out


def test_check_fails_with_bad_sei_key(env: Env, capsys) -> None:
    env.sei.refuse_key(True)
    assert env.run("check") == 1
    out = capsys.readouterr().out
    assert "sei" in out and "FAILED" in out and "HTTP 401" in out


def test_check_fails_when_jenkins_is_down(env: Env, capsys) -> None:
    env.write(url="http://127.0.0.1:9/")
    assert env.run("check") == 1
    assert "cannot reach 127.0.0.1:9: connection refused" in capsys.readouterr().out


def test_register_prints_the_guid(env: Env, capsys) -> None:
    assert env.run("register", "--integration-id", "4711", "--name", "Jenkins prod") == 0
    guid = capsys.readouterr().out.strip()
    assert env.sei.registered[0]["integration_id"] == "4711"
    assert env.sei.registered[0]["name"] == "Jenkins prod"
    assert env.sei.registered[0]["type"] == "jenkins"
    assert guid == env.sei.registered[0]["guid"]


def _register(httpserver: HTTPServer, tmp_path: Path, *extra: str) -> int:
    """`register` against a recorded-answer SEI, with a config whose server is never reached."""
    server = {
        "name": "j",
        "type": "jenkins",
        "url": "http://127.0.0.1:9/",
        "instance_guid": "3b0c5b9e-6f1a-4c2d-9e8f-7a6b5c4d3e2f",
        "instance_name": "n",
    }
    cfg = write_config(tmp_path / "c.toml", sei_url=httpserver.url_for("/"), servers=[server])
    return main(["-c", str(cfg), "register", "--integration-id", "1", "--name", "n", *extra])


def test_register_reads_a_guid_inside_an_object(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    httpserver.expect_request("/v1/custom-cicd", method="POST").respond_with_json(
        {"id": "0b0e7c1e-93b4-4c49-9a8d-5d1f6f5c2a11", "name": "x"}
    )
    assert _register(httpserver, tmp_path, "--type", "custom") == 0
    assert capsys.readouterr().out.strip() == "0b0e7c1e-93b4-4c49-9a8d-5d1f6f5c2a11"


def test_register_failure_exits_1_with_status_and_body(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    httpserver.expect_request("/v1/custom-cicd").respond_with_data(
        '{"error":"integration 1 not found"}', status=404
    )
    assert _register(httpserver, tmp_path) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "integration 1 not found" in err


def test_check_reports_a_server_that_is_not_jenkins(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    """A 200 without an X-Jenkins header (not Jenkins, or a proxy eating it): said so, no crash."""
    httpserver.expect_request("/me/api/json").respond_with_json({"id": "sei-bot"})
    server = {
        "name": "j",
        "type": "jenkins",
        "url": httpserver.url_for("/"),
        "username": "sei-bot",
        "token": "t0ken-x",
        "instance_guid": GUID,
        "instance_name": "n",
    }
    cfg = write_config(tmp_path / "c.toml", sei_url=httpserver.url_for("/sei/"), servers=[server])
    assert main(["-c", str(cfg), "check"]) == 1
    out = capsys.readouterr().out
    assert "j       FAILED" in out and "no X-Jenkins header" in out
