"""`once`, `--dry-run`, `status` and `dead-letters` as an operator runs them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import DAY, Env, json_lines

T0 = int(time.time() * 1000) - DAY


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        for n in range(1, 6):
            jenkins.add_build("team/api", n, timestamp=T0 + n, duration=10)
        e = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dry_run_writes_json_lines_and_changes_nothing(env: Env, capsys) -> None:
    out = env.dir / "payloads.jsonl"
    assert env.once("--dry-run", "--output", str(out)) == 0
    payloads = json_lines(out.read_text())
    assert sorted(p["build_number"] for p in payloads) == [1, 2, 3, 4, 5]
    assert not (env.dir / "state.db").exists()
    assert env.sei.attempts == []
    # With a state database: it is read (what is handled is not repeated), never written.
    assert env.once() == 0
    env.jenkins.add_build("team/api", 6, timestamp=T0 + 6, duration=10)
    before = _digest(env.dir / "state.db")
    capsys.readouterr()
    assert env.once("--dry-run") == 0
    printed = json_lines(capsys.readouterr().out)
    assert [p["build_number"] for p in printed] == [6]
    assert _digest(env.dir / "state.db") == before
    assert len(env.sei.received) == 5


def test_rejected_payload_is_dead_lettered_and_exit_1(env: Env, capsys) -> None:
    env.sei.reject("team/api", 3, status=400, body='{"payload":"bad"}')
    assert env.once() == 1
    assert sorted(k[2] for k in env.sei.keys()) == [1, 2, 4, 5]
    capsys.readouterr()
    assert env.run("dead-letters", "list") == 0
    listing = capsys.readouterr().out
    assert "team/api#3" in listing and '{"payload":"bad"}' in listing
    assert env.run("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    job = status["servers"]["jenkins-main"]["jobs"]["team/api"]
    assert (job["sent"], job["dead"], job["pending"], job["watermark"]) == (4, 1, 0, 5)
    env.sei.reject("team/api", 3, status=202)
    assert env.run("dead-letters", "retry") == 0
    assert env.once() == 0
    assert sorted(k[2] for k in env.sei.keys()) == [1, 2, 3, 4, 5]


def test_refused_key_keeps_everything_pending_and_exit_1(env: Env, capsys) -> None:
    env.sei.refuse_key(True)
    assert env.once() == 1
    assert "refused the API key" in capsys.readouterr().err
    assert env.run("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["totals"] == {"pending": 5, "sent": 0, "dead": 0}
    env.sei.refuse_key(False)
    assert env.once() == 0
    assert len(env.sei.received) == 5


def test_status_table(env: Env, capsys) -> None:
    assert env.once() == 0
    capsys.readouterr()
    assert env.run("status") == 0
    out = capsys.readouterr().out
    assert "jenkins-main" in out and "team/api" in out and "poll ok" in out
    assert "0 pending, 5 sent, 0 dead" in out


def test_unknown_server_is_a_usage_error(env: Env, capsys) -> None:
    assert env.once("--server", "nope") == 2
    assert "--server: no server named 'nope'" in capsys.readouterr().err


def test_unwritable_output_is_a_usage_error(env: Env, capsys) -> None:
    assert env.once("--dry-run", "--output", str(env.dir / "no" / "such" / "dir.jsonl")) == 2
    assert "--output: cannot write" in capsys.readouterr().err
