"""Payload rules (issue 24): project, themes, deployments and change failures per job.

The pure rules first, then mistakes as one line each, then end to end: a Jenkins with
several teams and a TeamCity, through `once` and `run`, `check` and `explain`."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.jenkins.standin import FakeJenkins
from connectors.teamcity.standin import FakeTeamCity
from poller.cli import main
from poller.rules import Rule, apply, cfr, legacy, render
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import jenkins_server

NOW = int(time.time() * 1000)

# The example, as an operator writes it.
RULES = """
[[defaults.rules]]
jobs = ["**"]
themes = ["ci"]
"""
SERVER_RULES = """
[[servers.rules]]
jobs = ["platform/**"]
project_name = "{1}"
themes = ["platform", "backend"]

[[servers.rules]]
jobs = ["**/deploy-*", "**/release-*"]
cd = true
cfr_status = "result"
project_name = "Delivery"
"""


# -- the rules alone ------------------------------------------------------------------------


def test_the_last_matching_rule_that_sets_a_field_wins() -> None:
    rules = [
        *legacy(["**/deploy-*"], "Acme"),
        Rule(jobs=("**",), themes=("ci",), where="defaults.rules[0]"),
        Rule(jobs=("platform/**",), project_name="{1}", themes=("platform",), where="rules[0]"),
        Rule(jobs=("**/deploy-*",), cfr_status="result", project_name="Delivery", where="rules[1]"),
    ]
    api = apply(rules, "platform/api")
    assert (api.project_name, api.themes, api.cd, api.cfr_status) == (
        "platform",
        ("platform",),
        None,
        None,
    )
    deploy = apply(rules, "platform/svc/deploy-prod")
    assert (deploy.project_name, deploy.themes, deploy.cd, deploy.cfr_status) == (
        "Delivery",
        ("platform",),
        True,
        "result",
    )
    assert deploy.decided_by == {
        "project_name": "rules[1]",
        "cd": "cd_jobs",
        "themes": "rules[0]",
        "cfr_status": "rules[1]",
    }
    other = apply(rules, "web/site")
    assert (other.project_name, other.themes) == ("Acme", ("ci",))  # the old key, literally


def test_templates_take_segments_and_a_missing_one_leaves_the_field_unset() -> None:
    assert render("{1}", "platform/api/deploy") == "platform"
    assert render("{1}-{2}", "platform/api/deploy") == "platform-api"
    assert render("{name}", "platform/api/deploy") == "deploy"
    assert render("{3}", "platform/api") is None
    assert render("team {1}", "platform") == "team platform"
    assert apply([Rule(jobs=("**",), project_name="{2}")], "top").project_name is None


@pytest.mark.parametrize(
    ("status", "result", "sent"),
    [("result", "SUCCESS", False), ("result", "FAILURE", True), ("result", "ABORTED", True),
     (True, "SUCCESS", True), (False, "FAILURE", False), (None, "FAILURE", None)],
)  # fmt: skip
def test_cfr_status(status: Any, result: str, sent: bool | None) -> None:
    assert cfr(status, result) == sent


# -- mistakes: one line each ---------------------------------------------------------------


def _config(tmp_path: Path, rules: str, defaults: str = "") -> Path:
    path = write_config(
        tmp_path / "config.toml",
        sei_url="http://127.0.0.1:9/",
        servers=[jenkins_server(FakeJenkins())],
    )
    text = path.read_text()
    if defaults:
        text = text.replace("[[servers]]", textwrap.dedent(defaults) + "\n[[servers]]", 1)
    path.write_text(text + textwrap.dedent(rules))
    return path


@pytest.mark.parametrize(
    ("rules", "defaults", "line"),
    [
        (
            '[[servers.rules]]\njobs = ["**"]\ncfr_status = "maybe"\n',
            "",
            'servers[0] (jenkins-main).rules[0].cfr_status: expected true, false, or "result",'
            ' got "maybe"',
        ),
        (
            '[[servers.rules]]\njobs = ["**"]\n\n[[servers.rules]]\njobs = ["x"]\nproject = "P"\n',
            "",
            "servers[0] (jenkins-main).rules[1].project: unknown key (did you mean"
            ' "project_name"?)',
        ),
        (
            '[[servers.rules]]\nthemes = ["a"]\n',
            "",
            "servers[0] (jenkins-main).rules[0].jobs: missing required key; expected a glob or a"
            ' list of globs over job full names, like ["team/**"]',
        ),
        (
            "",
            '[[defaults.rules]]\njobs = ["**"]\nthemes = "ci"\n',
            'defaults.rules[0].themes: expected a list of themes in quotes, like ["platform",'
            ' "backend"], got "ci"',
        ),
        (
            '[[servers.rules]]\njobs = ["**"]\ncd = "yes"\n',
            "",
            'servers[0] (jenkins-main).rules[0].cd: expected true or false, got "yes"',
        ),
    ],
)
def test_a_mistake_in_a_rule_is_one_line_naming_server_position_and_key(
    tmp_path: Path, rules: str, defaults: str, line: str, capsys: Any
) -> None:
    path = _config(tmp_path, rules, defaults)
    assert main(["-c", str(path), "status"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"sei-poller: {path}: {line}"]


# -- end to end ----------------------------------------------------------------------------


def _teams(jenkins: FakeJenkins) -> None:
    for job in ("platform/api", "platform/svc/deploy-prod", "web/site", "web/release-2"):
        jenkins.add_job(job, "freestyle")
    jenkins.add_build("platform/api", 1, result="SUCCESS", timestamp=NOW - 60_000)
    jenkins.add_build("platform/svc/deploy-prod", 1, result="FAILURE", timestamp=NOW - 60_000)
    jenkins.add_build("platform/svc/deploy-prod", 2, result="SUCCESS", timestamp=NOW - 30_000)
    jenkins.add_build("web/site", 1, result="SUCCESS", timestamp=NOW - 60_000)
    jenkins.add_build("web/release-2", 1, result="ABORTED", timestamp=NOW - 60_000)


def _fields(payload: dict[str, Any]) -> tuple[Any, ...]:
    return (
        payload.get("project_name"),
        payload.get("themes"),
        payload["cd"],
        payload["ci"],
        payload.get("cfr_status"),
    )


EXPECTED = {
    ("platform/api", 1): ("platform", ["platform", "backend"], False, True, None),
    ("platform/svc/deploy-prod", 1): ("Delivery", ["platform", "backend"], True, False, True),
    ("platform/svc/deploy-prod", 2): ("Delivery", ["platform", "backend"], True, False, False),
    ("web/site", 1): (None, ["ci"], False, True, None),
    ("web/release-2", 1): ("Delivery", ["ci"], True, False, True),
}


def test_a_jenkins_with_several_teams_end_to_end(tmp_path: Path, capsys: Any) -> None:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        _teams(jenkins)
        path = write_config(
            tmp_path / "config.toml", sei_url=sei.url, servers=[jenkins_server(jenkins)]
        )
        text = path.read_text().replace("[[servers]]", RULES + "\n[[servers]]", 1)
        path.write_text(text + SERVER_RULES)
        assert main(["-c", str(path), "once"]) == 0
        got = {(p["job_full_name"], p["build_number"]): _fields(p) for p in sei.received}
        assert got == EXPECTED
        capsys.readouterr()
        assert main(["-c", str(path), "explain", "jenkins-main", "platform/svc/deploy-prod", "1"])
        out = capsys.readouterr().out
        assert "rules matching platform/svc/deploy-prod (3), the last one wins:" in out
        assert '  defaults.rules[0] ["**"]: themes = ["ci"]' in out
        rule = '  rules[1] ["**/deploy-*", "**/release-*"]: project_name = "Delivery", cd = true,'
        assert rule in out
        # Rules changed later: SEI keeps the first write, so nothing already sent goes again.
        path.write_text(
            path.read_text().replace('project_name = "Delivery"', 'project_name = "D2"')
        )
        jenkins.add_build("web/release-2", 2, result="SUCCESS", timestamp=NOW)
        assert main(["-c", str(path), "once"]) == 0
        assert len(sei.received) == len(EXPECTED) + 1
        assert sei.received[-1]["project_name"] == "D2"


def test_check_names_idle_rules_and_old_keys_a_rule_overrides(tmp_path: Path, capsys: Any) -> None:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        _teams(jenkins)
        path = write_config(
            tmp_path / "config.toml",
            sei_url=sei.url,
            servers=[jenkins_server(jenkins, cd_jobs=["**/deploy-*"], project_name="Acme")],
        )
        mobile = '\n[[servers.rules]]\njobs = ["mobile/**"]\nthemes = ["mobile"]\n'
        path.write_text(path.read_text() + SERVER_RULES + mobile)
        assert main(["-c", str(path), "check"]) == 0
        out = capsys.readouterr().out
        assert 'rules[2] ["mobile/**"] matches no job' in out
        assert "project_name and rules[0], rules[1] all set project_name: where a rule" in out
        assert "cd_jobs and rules[1] all set cd: where a rule matches a job" in out


def test_teamcity_and_the_daemon_follow_the_same_rules(tmp_path: Path) -> None:
    with FakeTeamCity() as tc, FakeSei() as sei:
        tc.add_project("Acme", "Acme")
        tc.add_build_type("Acme_Build", "Build", "Acme")
        tc.add_build_type("Acme_Deploy", "Deploy", "Acme")
        tc.add_build("Acme_Build", queued=NOW - 60_000, finished=NOW - 50_000)
        deploy = tc.add_build("Acme_Deploy", "FAILURE", queued=NOW - 60_000, finished=NOW - 5_000)
        server = {
            "name": "tc",
            "type": "teamcity",
            "url": tc.url,
            "token": tc.token,
            "instance_guid": "5b1f3c2a-9d4e-4f6a-8b7c-2e1d0a9f8c7b",
            "instance_name": "TeamCity",
            "backfill_since": "all",
            "poll_interval": 1,
        }
        path = write_config(tmp_path / "config.toml", sei_url=sei.url, servers=[server])
        path.write_text(
            path.read_text()
            + textwrap.dedent("""
            [[servers.rules]]
            jobs = ["*/**"]
            project_name = "{1}"
            themes = ["teamcity"]

            [[servers.rules]]
            jobs = ["**/*_Deploy"]
            cd = true
            cfr_status = "result"
        """)
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "-c", str(path), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while len(sei.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        got = {(p["job_full_name"], p["build_number"]): _fields(p) for p in sei.received}
        assert got[("Acme/Acme_Deploy", deploy)] == ("Acme", ["teamcity"], True, False, True)
        build = next(k for k in got if k[0] == "Acme/Acme_Build")
        assert got[build] == ("Acme", ["teamcity"], False, True, None)
