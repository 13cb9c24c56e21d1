"""Broken or hostile Jenkins answers: a clear error for that server, the others proceed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

import connectors.jenkins.connector
from connectors.jenkins.standin import FakeJenkins
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import DAY, GUID

T0 = int(time.time() * 1000) - DAY


@pytest.fixture()
def good() -> Iterator[tuple[FakeJenkins, FakeSei]]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        jenkins.add_build("team/api", 1, timestamp=T0, duration=10)
        yield jenkins, sei


def _run(tmp_path: Path, sei: FakeSei, good: FakeJenkins, bad_url: str) -> int:
    servers = [
        {
            "name": "good",
            "type": "jenkins",
            "url": good.url,
            "username": good.username,
            "token": good.token,
            "instance_guid": GUID,
            "instance_name": "good",
            "backfill_since": "all",
        },
        {
            "name": "bad",
            "type": "jenkins",
            "url": bad_url,
            "username": "u",
            "token": "t0ken-x",
            "instance_guid": GUID,
            "instance_name": "bad",
            "backfill_since": "all",
            "timeout": 2,
        },
    ]
    cfg = write_config(tmp_path / "c.toml", sei_url=sei.url, servers=servers)
    return main(["-c", str(cfg), "once"])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            lambda s: s.expect_request("/api/json").respond_with_data("<html>oops</html>"),
            "not JSON",
        ),
        (
            lambda s: s.expect_request("/api/json").respond_with_data('{"jobs": [{"name": "x"'),
            "not JSON",
        ),
        (
            lambda s: s.expect_request("/api/json").respond_with_data('{"jobs": []}' + " " * 5000),
            "larger than",
        ),
        (
            lambda s: s.expect_request("/api/json").respond_with_data(
                "", status=302, headers={"Location": "http://127.0.0.2:1/api/json"}
            ),
            "redirected to another host",
        ),
    ],
)
def test_bad_answers_fail_only_that_server(
    tmp_path: Path,
    good,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    answer,
    message: str,
) -> None:
    jenkins, sei = good
    monkeypatch.setattr(connectors.jenkins.connector, "MAX_BODY", 4096)
    answer(httpserver)
    assert _run(tmp_path, sei, jenkins, httpserver.url_for("/")) == 1
    assert [k[1] for k in sei.keys()] == ["team/api"]
    err = capsys.readouterr().err
    assert message in err and '"server": "bad"' in err
    assert "Traceback" not in err


def test_tls_error_is_reported(tmp_path: Path, good, httpserver: HTTPServer, capsys) -> None:
    jenkins, sei = good
    httpserver.expect_request("/api/json").respond_with_json({"jobs": []})
    assert _run(tmp_path, sei, jenkins, httpserver.url_for("/").replace("http:", "https:")) == 1
    assert len(sei.keys()) == 1
    err = capsys.readouterr().err
    assert "TLS: " in err and "does not speak TLS on that port" in err
