"""Lead-time readiness in `status`: what the builds SEI accepted in the last 7 days carried.

A seeded history with a known share of builds lacking commit ids, one repository SEI's parser
cannot name, a pipeline build without stages, a build sent too long ago to count and one
sent by a release that did not record these facts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from poller.state import State
from tests.connectors.jenkins.env import DAY, Env

NOW = int(time.time() * 1000)
T0 = NOW - 2 * DAY
GIT = {"branch": "refs/remotes/origin/main", "remote": "https://github.com/acme/api.git"}


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _seed(env: Env) -> None:
    j = env.jenkins
    for n in range(1, 7):  # 6 builds with a commit and a repository SEI names
        j.add_build("team/api", n, timestamp=T0 + n, duration=10, git=GIT)
    for n in (7, 8):  # 2 with no SCM at all: no commit, no repository
        j.add_build("team/api", n, timestamp=T0 + n, duration=10)
    for n in (1, 2):  # 2 whose repository URL has no org/ part
        remote = {**GIT, "remote": "https://git.example.com/legacy"}
        j.add_build("team/legacy", n, timestamp=T0 + n, duration=10, git=remote)
    j.add_job("svc", "pipeline")
    for n in (1, 2, 3):  # 3 pipeline builds with stages, 1 without
        j.add_build("svc", n, timestamp=T0 + n, duration=10, git=GIT)
    j.add_build("svc", 4, timestamp=T0 + 4, duration=10, git=GIT, stages=[])
    assert env.once() == 0
    assert len(env.runs()) == 14


def test_readiness_figures_on_a_seeded_history(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(env)
    db = env.dir / "state.db"
    # One build sent 8 days ago falls out of the window...
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE outbox SET sent_at = ? WHERE job = 'team/api' AND number = 1",
            [time.time() - 8 * 86400],
        )
    # ...and one sent by an older release carries no facts: counted as sent, not judged.
    st = State(db)
    st.enqueue("jenkins-main", "team/old", [(1, "{}")])
    st.sent(st.due(10)[0].id)
    st.close()

    capsys.readouterr()
    assert env.run("status", "--json") == 0
    figures = json.loads(capsys.readouterr().out)["servers"]["jenkins-main"]["readiness"]
    assert figures == {
        "window_days": 7,
        "sent": 14,  # 15 sent, one of them 8 days ago
        "counted": 13,
        "lead_time_ready": 9,  # team/api 2-6 and svc 1-4: 13 less 2 without SCM, 2 legacy
        "lead_time_ready_share": 0.6923,
        "without_commits": 2,
        "repo_unparsed": 4,  # the two without SCM, the two legacy
        "pipeline": 4,
        "pipeline_with_stages": 3,
        "stages_share": 0.75,
    }
    assert env.run("status") == 0
    out = capsys.readouterr().out
    assert (
        "lead-time readiness, builds SEI accepted in the last 7 days:\n"
        "  jenkins-main  9 of 13 (69%) carry commit ids and a repo URL SEI parses"
        " (2 without commit ids, 4 without a repo URL SEI parses);"
        " stages on 3 of 4 pipeline builds (75%); 1 sent by an older release, not counted\n"
    ) in out


def test_nothing_sent_yet(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.jenkins.add_build("team/api", 1, timestamp=T0, duration=10, git=GIT)
    env.sei.refuse_key()
    assert env.once() == 1  # the key is refused: everything stays pending
    capsys.readouterr()
    assert env.run("status", "--json") == 0
    figures = json.loads(capsys.readouterr().out)["servers"]["jenkins-main"]["readiness"]
    assert figures["sent"] == 0 and figures["lead_time_ready_share"] is None
    assert env.run("status") == 0
    assert "  jenkins-main  nothing sent\n" in capsys.readouterr().out
