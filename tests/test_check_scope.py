"""`check` says, per server, what it will poll: jobs matched, builds inside backfill_since."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

import poller.scope
from connectors.jenkins.standin import FakeJenkins
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.buildbot.test_unit import ANY_PATH, FakeMaster
from tests.connectors.jenkins.env import DAY, GUID, Env

NOW = int(time.time() * 1000)
SINCE = re.compile(r"since \d{4}-\d\d-\d\d \d\d:\d\d UTC")
COUNT_TREE = "builds[number,timestamp]{0,100}"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        yield Env(jenkins, sei, tmp_path, tmp_path / "config.toml")


def _count_requests(jenkins: FakeJenkins) -> list[str]:
    return sorted(r.path for r in jenkins.requests if r.query.get("tree") == COUNT_TREE)


def _server_lines(out: str) -> list[str]:
    """The check's lines for the server, the name and status column stripped."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("jenkins-main"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        block.append(line)
    route = block.pop(next(i for i, line in enumerate(block) if line.strip().startswith("via ")))
    assert route.strip() == "via direct; trusting the default CA bundle (certifi)"
    return [line[len("jenkins-main") :].strip() for line in block]


def test_check_says_which_jobs_and_how_many_builds(env: Env) -> None:
    """Run as an operator does; the count is what `once` then actually sends."""
    for days in (20, 15, 6, 3, 1):
        env.jenkins.add_build("team/api", timestamp=NOW - days * DAY)
    env.jenkins.add_build("team/deploy-prod", timestamp=NOW - 2 * DAY)
    env.jenkins.add_build("team/deploy-prod", timestamp=NOW - DAY)
    env.jenkins.add_job("team/never")
    env.jenkins.add_build("team/old-stuff", timestamp=NOW - DAY)
    env.jenkins.add_build("legacy/thing", timestamp=NOW - DAY)
    env.write(
        include="team/**",
        exclude=["team/old-*", "tema/typo"],
        cd_jobs="**/deploy-*",
        backfill_since="10d",
    )
    env.jenkins.reset_requests()
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "check", "-c", str(env.config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _server_lines(proc.stdout)
    assert lines[0].startswith("ok      Jenkins 2.440.3 as sei-bot, 5 jobs (jenkins ← sei-poller")
    assert [SINCE.sub("since …", line) for line in lines[1:]] == [
        'polls 3 of 5 jobs (include ["team/**"], exclude ["team/old-*", "tema/typo"]); '
        'cd_jobs ["**/deploy-*"] makes 1 of them deployments',
        'exclude "tema/typo" matches no job',
        'backfill_since "10d" (since …): 5 builds (counted exactly, one request per job)',
    ]
    # one small request per polled job that has builds; none for the rest
    assert _count_requests(env.jenkins) == [
        "/job/team/job/api/api/json",
        "/job/team/job/deploy-prod/api/json",
    ]
    assert env.sei.received == []
    assert env.once() == 0
    assert len(env.runs()) == 5


def test_a_job_with_more_builds_than_one_request_reads_is_a_range(env: Env, capsys) -> None:
    for n in range(1, 131):
        env.jenkins.add_build("team/web", n, timestamp=NOW - DAY + n)
    for n in range(1, 21):
        env.jenkins.delete_build("team/web", n)  # retention: 110 builds left
    env.write(backfill_since="all")
    assert env.run("check") == 0
    line = _server_lines(capsys.readouterr().out)[-1]
    assert line == (
        'backfill_since "all" (all history): 100 to 130 builds (counted, one request per job; '
        "1 job with more than 100 builds in the window: the rest bounded by build numbers)"
    )


def test_many_jobs_are_sampled_and_the_estimate_says_so(
    env: Env, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller.scope, "SAMPLE", 2)
    for i, job in enumerate(["a", "b", "c", "d"], start=1):
        for _ in range(i):
            env.jenkins.add_build(f"team/{job}", timestamp=NOW - DAY)
    env.write(backfill_since="30d")
    env.jenkins.reset_requests()
    assert env.run("check") == 0
    line = SINCE.sub("since …", _server_lines(capsys.readouterr().out)[-1])
    # an even sample of the 4 jobs (sorted): team/a (1 build) and team/c (3), scaled up twice over
    assert line == (
        'backfill_since "30d" (since …): about 8 builds (an estimate: counted 2 of the 4 jobs '
        "with builds, an even sample, one request per job, and scaled up)"
    )
    assert _count_requests(env.jenkins) == ["/job/team/job/a/api/json", "/job/team/job/c/api/json"]


def test_nothing_matched_is_a_warning(env: Env, capsys) -> None:
    env.jenkins.add_build("team/api", timestamp=NOW - DAY)
    env.write(include=["nothing/**"])
    assert env.run("check") == 0
    lines = _server_lines(capsys.readouterr().out)
    assert lines[0].startswith("WARN    Jenkins 2.440.3 as sei-bot, 1 jobs")
    assert lines[1:] == [
        'polls 0 of 1 job (include ["nothing/**"], exclude [])',
        'include "nothing/**" matches no job',
        'backfill_since "all" (all history): no builds',
        "nothing to poll: no job matches include/exclude",
    ]


def test_a_job_whose_builds_cannot_be_read_fails_the_check(env: Env, capsys) -> None:
    env.jenkins.add_build("team/api", timestamp=NOW - DAY)
    env.jenkins.add_build("team/web", timestamp=NOW - DAY)
    env.jenkins.fail(r"^/job/team/job/web/api/json", 403)
    env.write()
    assert env.run("check") == 1
    lines = _server_lines(capsys.readouterr().out)
    assert lines[0].startswith("FAILED  Jenkins")
    assert (
        lines[-2]
        == 'backfill_since "all" (all history): 1 build (counted exactly, one request per job; '
        "not counting 1 job that could not be read)"
    )
    assert lines[-1].startswith("cannot read the builds of 1 job: team/web: HTTP 403")


def test_check_on_buildbot_counts_through_scan(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    """Buildbot has no `recent_builds`: its ordinary scan counts, asking for nothing."""
    master = FakeMaster()
    httpserver.expect_request(ANY_PATH).respond_with_handler(master)
    with FakeSei() as sei:
        server = {
            "name": "bb",
            "type": "buildbot",
            "url": httpserver.url_for("/"),
            "instance_guid": GUID,
            "instance_name": "Buildbot",
            "include": "*",
            "exclude": "fail",
            "backfill_since": "all",
        }
        config = write_config(tmp_path / "config.toml", sei_url=sei.url, servers=[server])
        assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    lines = [line.split("  ", 1)[-1].strip() for line in out.splitlines() if "bb" in line[:4]]
    lines += [line.strip() for line in out.splitlines() if line.startswith(" ")]
    assert lines[0].startswith("ok      Buildbot 4.3.0 as anonymous, 5 jobs (buildbot ←")
    assert lines[1:] == [
        'polls 4 of 5 jobs (include ["*"], exclude ["fail"])',
        'backfill_since "all" (all history): 8 builds (counted exactly, reading up to 100 '
        "builds per job)",
        "via direct; trusting the default CA bundle (certifi)",  # the server's route
        "via direct; trusting the default CA bundle (certifi)",  # SEI's
    ]
    # no build's steps or changes were fetched: the scan was asked for nothing
    assert not [p for p in master.paths if "/steps" in p or "/changes" in p]
