"""The state database: atomic enqueue, watermark pruning, outbox transitions, file modes."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from poller.state import JobUpdate, State


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
