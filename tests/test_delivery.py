"""Delivery against a real SEI stand-in on 127.0.0.1: nothing lost, dead letters only for 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from poller.deliver import Deliverer
from poller.sei import Sender
from poller.standins.sei import FakeSei
from poller.state import State

GUID = "666ba79b-3f3d-4236-ac04-4686ce526705"


@pytest.fixture()
def sei() -> Iterator[FakeSei]:
    with FakeSei() as fake:
        yield fake


def _payload(n: int) -> str:
    return json.dumps(
        {
            "pipeline": "api",
            "job_full_name": "team/api",
            "qualified_name": "team/api",
            "instance_name": "J",
            "instance_guid": GUID,
            "result": "SUCCESS",
            "build_number": n,
            "start_time": 1,
            "duration": 1,
        }
    )


def _setup(
    tmp_path: Path, sei: FakeSei, n: int, key: str = "sei-secret-key"
) -> tuple[State, Deliverer]:
    state = State(tmp_path / "state.db")
    state.enqueue("srv", "team/api", [(i, _payload(i)) for i in range(1, n + 1)])
    return state, Deliverer(state, Sender(sei.url, key, concurrency=4), 4)


def test_bursts_and_rate_limits_lose_nothing(tmp_path: Path, sei: FakeSei) -> None:
    state, deliverer = _setup(tmp_path, sei, 40)
    sei.script((503, None), (503, None), (503, None), (429, {"Retry-After": "1"}), (500, None))
    sei.reject("team/api", 7, status=400, body='{"error":"bad build"}')
    report = deliverer.drain(retry_window=30)
    deliverer.close()
    assert sorted(k[2] for k in set(sei.keys())) == [n for n in range(1, 41) if n != 7]
    assert report.dead == 1
    assert [d["number"] for d in state.dead_letters()] == [7]
    assert "bad build" in state.dead_letters()[0]["last_error"]
    assert state.counts() == {"pending": 0, "sent": 39, "dead": 1}
    statuses = [s for s, _ in sei.attempts]
    assert statuses.count(503) == 3 and statuses.count(429) == 1


def test_refused_key_stops_the_cycle_and_keeps_everything(tmp_path: Path, sei: FakeSei) -> None:
    state, deliverer = _setup(tmp_path, sei, 20)
    sei.refuse_key(True)
    report = deliverer.pass_once()
    assert report.halted
    assert len(sei.attempts) <= 4  # the in-flight few, then it stopped
    assert state.counts() == {"pending": 20, "sent": 0, "dead": 0}
    sei.refuse_key(False)
    report = deliverer.drain(retry_window=10)
    deliverer.close()
    assert report.dead == 0 and report.halted is None
    assert state.counts() == {"pending": 0, "sent": 20, "dead": 0}


def test_unreachable_sei_leaves_everything_pending(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    state.enqueue("srv", "j", [(1, _payload(1))])
    deliverer = Deliverer(
        state, Sender("http://127.0.0.1:9/v1/custom-cicd", "k", connect_timeout=1), 1
    )
    report = deliverer.drain(retry_window=2)
    deliverer.close()
    assert report.sent == 0
    assert state.counts()["pending"] == 1
    assert "connection failed" in state.db.execute("SELECT last_error FROM outbox").fetchone()[0]


def test_wrong_key_is_rejected_by_headers(tmp_path: Path, sei: FakeSei) -> None:
    state, deliverer = _setup(tmp_path, sei, 1, key="wrong")
    assert deliverer.pass_once().halted
    deliverer.close()
    assert state.counts()["dead"] == 0
