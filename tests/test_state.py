"""The state database: atomic enqueue, watermark pruning, outbox transitions, file modes."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path

import pytest

from poller.quality import Facts
from poller.state import SCHEMA_VERSION, JobUpdate, State, lookup


def test_enqueue_is_idempotent_and_moves_the_watermark(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    assert st.enqueue("srv", "a/b", [(11, "{}"), (12, "{}")], JobUpdate(9, 5, 12, 12)) == 2
    js = st.job("srv", "a/b")
    assert (js.watermark, js.floor, js.ledger) == (9, 5, frozenset({11, 12}))
    assert st.enqueue("srv", "a/b", [(11, "{}")]) == 0  # already handled
    st.enqueue("srv", "a/b", [(10, "{}")], JobUpdate(12, 5, 12, 12))
    assert st.job("srv", "a/b").ledger == frozenset()  # pruned at or below the watermark
    assert st.counts() == {"pending": 3, "sent": 0, "dead": 0}


def test_outbox_transitions(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    st.enqueue("srv", "j", [(1, '{"n":1}'), (2, '{"n":2}'), (3, '{"n":3}')])
    items = st.due(10)
    assert [i.number for i in items] == [1, 2, 3]
    st.sent(items[0].id)
    st.retry_later(items[1].id, 60, "HTTP 503")
    st.dead(items[2].id, "HTTP 400: bad")
    assert [i.number for i in st.due(10)] == []
    assert st.next_due_at() > time.time() + 50
    assert st.counts() == {"pending": 1, "sent": 1, "dead": 1}
    assert [d["number"] for d in st.dead_letters()] == [3]
    assert st.retry_dead() == 1
    assert [i.number for i in st.due(10)] == [3]
    status = st.status()["srv"]["jobs"]["j"]
    assert (status["pending"], status["sent"], status["dead"]) == (2, 1, 0)


def test_sent_rows_drop_their_payload(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    st.enqueue("srv", "j", [(1, '{"big":"payload"}')])
    st.sent(st.due(1)[0].id)
    row = st.db.execute("SELECT payload, status FROM outbox").fetchone()
    assert row == (None, "sent")


def test_database_files_are_owner_only(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    st.enqueue("srv", "j", [(1, "{}")])
    st.close()
    State(tmp_path / "s.db").close()
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_reset_job_forgets_a_recreated_job(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    st.enqueue("srv", "j", [(50, "{}")], JobUpdate(50, 1, 50, 50))
    st.sent(st.due(1)[0].id)
    st.reset_job("srv", "j")
    assert st.job("srv", "j").watermark is None
    assert st.enqueue("srv", "j", [(50, "{}")]) == 1


# -- upgrades: a state file written by an older release is upgraded in place ---------------

# The tables as releases with schema 1 and 2 created them (frozen here on purpose).
_V1 = """
CREATE TABLE jobs (
    server TEXT NOT NULL, job TEXT NOT NULL,
    watermark INTEGER, floor INTEGER, last_build INTEGER, last_completed INTEGER,
    cursor TEXT, covered_ms INTEGER, last_scan_at REAL, last_error TEXT,
    PRIMARY KEY (server, job)
);
CREATE TABLE ledger (
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (server, job, number)
) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    payload TEXT, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, sent_at REAL,
    UNIQUE (server, job, number)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE servers (
    server TEXT PRIMARY KEY, last_poll_at REAL, last_ok_at REAL,
    last_outcome TEXT, last_error TEXT, last_duration REAL
);
"""
_V2_OUTBOX = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    payload TEXT, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, sent_at REAL,
    lease_owner TEXT, lease_until REAL,
    UNIQUE (server, job, number)
);
CREATE TABLE problems (
    server TEXT NOT NULL, kind TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    url TEXT, error TEXT, first_at REAL NOT NULL, last_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1, retry_at REAL,
    PRIMARY KEY (server, kind, job, number)
);
"""


def _old_state(path: Path, version: int) -> None:
    ddl = _V1 if version == 1 else _V1.split("CREATE TABLE outbox")[0] + _V2_OUTBOX
    ddl += "" if version == 1 else _V1[_V1.index("CREATE INDEX") :]
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(ddl)
        db.execute(f"PRAGMA user_version = {version}")
        db.execute("INSERT INTO jobs (server, job, watermark, floor) VALUES ('srv', 'j', 2, 1)")
        db.execute("INSERT INTO ledger VALUES ('srv', 'j', 4)")
        db.execute(
            "INSERT INTO outbox (server, job, number, payload, status, next_attempt_at,"
            " created_at, sent_at) VALUES ('srv', 'j', 1, NULL, 'sent', ?, ?, ?),"
            " ('srv', 'j', 4, '{\"n\":4}', 'pending', ?, ?, NULL)",
            [now, now, now, now, now],
        )
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_state_file_is_upgraded_and_keeps_its_rows(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    _old_state(path, version)
    st = State(path)
    assert st.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    columns = {r[1] for r in st.db.execute("PRAGMA table_info(outbox)")}
    assert {"lease_owner", "lease_until", "has_commits", "repo_parsed", "expects_stages"} <= (
        columns
    )
    assert "has_stages" in columns
    js = st.job("srv", "j")
    assert (js.watermark, js.floor, js.ledger) == (2, 1, frozenset({4}))
    assert [(i.number, i.payload) for i in st.due(10)] == [(4, '{"n":4}')]
    # The sent row has no facts: counted as sent, not judged.
    assert st.readiness(0)["srv"] == {
        "sent": 1,
        "known": 0,
        "lead_time_ready": 0,
        "without_commits": 0,
        "repo_unparsed": 0,
        "pipeline": 0,
        "pipeline_with_stages": 0,
    }
    # New rows carry their facts, and the upgraded file opens again without upgrading twice.
    st.enqueue("srv", "j", [(5, "{}", Facts(commits=True, repo=False, pipeline=True, stages=True))])
    st.sent(next(i.id for i in st.due(10) if i.number == 5))
    st.close()
    st = State(path)
    assert st.readiness(0)["srv"] == {
        "sent": 2,
        "known": 1,
        "lead_time_ready": 0,
        "without_commits": 0,
        "repo_unparsed": 1,
        "pipeline": 1,
        "pipeline_with_stages": 1,
    }
    st.close()


def test_lookup_reads_without_creating_or_upgrading(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert lookup(missing, "srv", "j", 1) is None
    assert not missing.exists()
    path = tmp_path / "old.db"
    _old_state(path, 1)
    row = lookup(path, "srv", "j", 1)
    assert row is not None and row["status"] == "sent" and row["sent_at"] is not None
    assert lookup(path, "srv", "j", 2) is None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # left as it was
    db.close()
