"""The operator's kit (issue 23): the metrics people look for, health endpoints, alert rules
tested with promtool, and a dashboard whose every expression names a metric the daemon
really exposes (checked against a live scrape of a daemon on the stand-ins)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.jenkins.standin import FakeJenkins
from connectors.teamcity.standin import FakeTeamCity
from poller.health import Readiness
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import jenkins_server

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "sei-poller-rules.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "sei-poller-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "sei-poller.json"
# Series Prometheus makes itself, not the daemon.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "time", "deriv",
    "absent", "unless", "on", "and", "or", "le", "job", "server", "status", "outcome",
    "instance", "without", "ignoring", "group_left", "label_values",
}  # fmt: skip


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("SEI_POLLER_REQUIRE_PROMTOOL") == "1":
        pytest.fail("promtool not installed (Debian: apt-get install prometheus)")
    pytest.skip("promtool not installed (Debian: apt-get install prometheus)")


def test_the_rules_are_valid_and_every_alert_is_tested() -> None:
    promtool = _promtool()
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", RULES.read_text(), re.M))
    tests_text = RULE_TESTS.read_text()
    for alert in alerts:  # each fires in a test and stays quiet in another
        end = r"(?=\n\s+- eval_time|\n\s+- interval|\n\n|\Z)"
        cases = re.findall(rf"alertname: {alert}\n\s+exp_alerts:(.*?){end}", tests_text, re.S)
        assert any("exp_labels" in c for c in cases), f"{alert} never fires in a test"
        assert any(c.strip().startswith("[]") for c in cases), f"{alert} never stays quiet"
        assert f"docs/operations.md#{alert.lower()}" in RULES.read_text()
        assert f"### {alert}" in (ROOT / "docs" / "operations.md").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def daemon(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`sei-poller run` with metrics on, against a Jenkins and a TeamCity stand-in."""
    port = _free_port()
    jenkins = FakeJenkins().start()
    jenkins.add_job("app", "freestyle")
    for n in (1, 2):
        jenkins.add_build("app", n, timestamp=int(time.time() * 1000) - 60_000)
    tc = FakeTeamCity().start()
    tc.add_build_type("Ops_Build", "Build", "Ops")
    now = int(time.time() * 1000)
    tc.add_build("Ops_Build", queued=now - 60_000, finished=now - 50_000)
    sei = FakeSei().start()
    teamcity = {
        "name": "tc-main",
        "type": "teamcity",
        "url": tc.url,
        "token": tc.token,
        "instance_guid": "5b1f3c2a-9d4e-4f6a-8b7c-2e1d0a9f8c7b",
        "instance_name": "TeamCity-1",
        "backfill_since": "all",
        "poll_interval": 1,
        "timeout": 1,
    }
    config = write_config(
        tmp_path / "config.toml",
        sei_url=sei.url,
        servers=[jenkins_server(jenkins, poll_interval=1), teamcity],
        extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller", "-c", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield {"url": url, "sei": sei, "tc": tc, "jenkins": jenkins, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        for s in (jenkins, tc, sei):
            s.stop()


def _wait(probe: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except requests.RequestException:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def _families(scrape: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))


def _named(expr: str) -> set[str]:
    """The metric names an expression reads (not functions, keywords or label names)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.isdigit()}


def _base(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", name)


def test_what_the_daemon_exposes_and_what_the_rules_and_dashboard_read(
    daemon: dict[str, Any],
) -> None:
    url, sei = daemon["url"], daemon["sei"]
    assert _wait(lambda: len(sei.received) >= 3)
    assert requests.get(url + "/healthz", timeout=5).status_code == 200
    ready = _wait(lambda: (r := requests.get(url + "/readyz", timeout=5)).ok and r)
    assert ready.json() == {"ready": True, "behind": []}
    scrape = requests.get(url + "/metrics", timeout=5).text
    for sample in (
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "python_info",
        'sei_poller_build_info{version="',
        'sei_poller_parked_builds{server="tc-main"} 0.0',
        'sei_poller_dead_letters{server="jenkins-main"} 0.0',
        'sei_poller_owed_builds{server="tc-main"} 0.0',
        'sei_poller_last_delivery_timestamp_seconds{server="jenkins-main"}',
        'sei_poller_server_oldest_pending_age_seconds{server="tc-main"}',
        'sei_poller_polls_total{outcome="ok",server="tc-main"}',
        "sei_poller_state_database_bytes",
        "sei_poller_state_filesystem_avail_bytes",
    ):
        assert sample in scrape, sample
    exposed = {_base(f) for f in _families(scrape)} | PROMETHEUS_OWN
    rule_exprs = re.findall(r"expr: \|?\s*\n?((?:.+\n)+?)\s+(?:for|labels):", RULES.read_text())
    dash = json.loads(DASHBOARD.read_text())
    dash_exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    dash_exprs.append(dash["templating"]["list"][1]["query"]["query"])
    assert len(rule_exprs) == 11 and len(dash_exprs) > 20
    unknown = {
        name: expr
        for expr in rule_exprs + dash_exprs
        for name in _named(expr)
        if _base(name) not in exposed
    }
    assert unknown == {}, f"expressions read metrics the daemon does not expose: {unknown}"
    promtool = shutil.which("promtool")
    if promtool:  # the exposition is what Prometheus's own linter wants
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_readyz_names_the_server_that_stopped_answering(daemon: dict[str, Any]) -> None:
    url, sei = daemon["url"], daemon["sei"]
    assert _wait(lambda: len(sei.received) >= 3)
    _wait(lambda: requests.get(url + "/readyz", timeout=5).ok)
    daemon["tc"].faults.fail(".*", 503)  # TeamCity goes down; Jenkins goes on
    body = _wait(
        lambda: (r := requests.get(url + "/readyz", timeout=5)).status_code == 503 and r.json(),
        timeout=30,
    )
    assert body["ready"] is False
    assert [b.get("server") for b in body["behind"]] == ["tc-main"]
    assert body["behind"][0]["since"].endswith("Z")
    daemon["tc"].faults.clear()
    assert _wait(lambda: requests.get(url + "/readyz", timeout=5).ok, timeout=30)


class _State:
    def __init__(self, oldest: float | None) -> None:
        self.oldest = oldest

    def oldest_pending_at(self) -> float | None:
        return self.oldest


def test_readyz_says_sei_is_behind_when_nothing_was_accepted_since_the_oldest_pending() -> None:
    now = time.time()
    ready = Readiness(_State(now - 900), {"jenkins-main": 60.0})
    ready.polled("jenkins-main", reached=True)
    ok, body = ready()
    assert not ok and body["behind"][0]["sei"] == "nothing accepted"
    ready.accepted()
    assert ready()[0]  # accepted since: taking payloads, just many of them
    assert Readiness(_State(now - 60), {"jenkins-main": 60.0})()[0]  # young: not behind yet


def test_readyz_before_the_first_poll_and_with_a_state_that_fails() -> None:
    class Broken:
        def oldest_pending_at(self) -> float:
            raise OSError("disk gone")

    ok, body = Readiness(Broken(), {"a": 60.0})()
    assert not ok and body["behind"] == [{"state": "OSError"}]
    fresh = Readiness(_State(None), {"a": 60.0})
    assert fresh()[0]  # just started: the first poll has three intervals to succeed
    fresh.started -= 200
    ok, body = fresh()
    assert not ok and body["behind"] == [{"server": "a", "since": None, "reached": None}]
