"""Stages on live polls: one `wfapi/runs` for a job's few new builds, not one per build."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, Env

T0 = int(time.time() * 1000) - DAY


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins(context_path="/jenkins") as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        jenkins.add_job("team/pipe", "pipeline")
        for n in range(1, 6):
            jenkins.add_build("team/pipe", n, timestamp=T0 + n, duration=10)
        yield e


def _new_builds(env: Env, numbers: range) -> None:
    for n in numbers:
        env.jenkins.add_build("team/pipe", n, timestamp=T0 + n * 1000, duration=10)


def test_a_live_poll_reads_new_builds_stages_in_one_request(env: Env) -> None:
    assert env.once() == 0  # first sight: one describe per build (runs holds only 10)
    first = {k: v["job_run"] for k, v in env.runs().items()}
    assert env.jenkins.count(r"/wfapi/describe$") == 5
    env.jenkins.reset_requests()
    _new_builds(env, range(6, 9))
    assert env.once() == 0
    assert env.jenkins.count(r"/wfapi/runs$") == 1
    assert env.jenkins.count(r"/wfapi/describe$") == 0
    [runs] = [r for r in env.jenkins.requests if r.path.endswith("/wfapi/runs")]
    assert runs.query == {"since": "#5", "fullStages": "true"}
    got = env.runs()
    assert sorted(n for _, n in got) == list(range(1, 9))
    for n in range(6, 9):  # the same stages, with their steps, as a describe would give
        stages = got[("team/pipe", n)]["job_run"]["stages"]
        assert stages and all(s["steps"] for s in stages)
        assert [s["displayName"] for s in stages] == [
            s["displayName"] for s in first[("team/pipe", 1)]["stages"]
        ]


def test_more_new_builds_than_one_run_list_falls_back_to_describe(env: Env) -> None:
    assert env.once() == 0
    env.jenkins.reset_requests()
    _new_builds(env, range(6, 18))  # 12 new: beyond the 10 runs the list holds
    assert env.once() == 0
    assert env.jenkins.count(r"/wfapi/runs$") == 0
    assert env.jenkins.count(r"/wfapi/describe$") == 12


def test_a_failing_run_list_falls_back_to_each_builds_describe(env: Env) -> None:
    assert env.once() == 0
    _new_builds(env, range(6, 8))
    env.jenkins.fail(r"/wfapi/runs$", 500)
    env.jenkins.reset_requests()
    assert env.once() == 0
    assert env.jenkins.count(r"/wfapi/describe$") == 2
    assert env.runs()[("team/pipe", 7)]["job_run"]["stages"]
