"""The state database: per-job watermarks, the ledger of handled builds, and the outbox.

The only module that touches SQLite. Every write that must not be torn (a build's outbox
row, its ledger row and its job's watermark) happens in one transaction, so a crash or
`kill -9` at any moment loses nothing; at worst the builds in flight are sent again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

SCHEMA_VERSION = 1
PENDING, SENT, DEAD = "pending", "sent", "dead"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    server TEXT NOT NULL, job TEXT NOT NULL,
    watermark INTEGER, floor INTEGER, last_build INTEGER, last_completed INTEGER,
    cursor TEXT, covered_ms INTEGER, last_scan_at REAL, last_error TEXT,
    PRIMARY KEY (server, job)
);
CREATE TABLE IF NOT EXISTS ledger (
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (server, job, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    payload TEXT, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, sent_at REAL,
    UNIQUE (server, job, number)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS servers (
    server TEXT PRIMARY KEY, last_poll_at REAL, last_ok_at REAL,
    last_outcome TEXT, last_error TEXT, last_duration REAL
);
"""


@dataclass
class JobState:
    watermark: int | None = None
    floor: int | None = None
    last_build: int | None = None
    last_completed: int | None = None
    cursor: str | None = None
    covered_ms: int | None = None
    ledger: frozenset[int] = frozenset()


@dataclass(frozen=True)
class JobUpdate:
    """Where a completed scan leaves a job; applied with the scan's last outbox rows.

    `covered_ms`: every build started at or after this is handled (0: the whole history),
    so a backfill run again after an interruption skips the jobs it already finished.
    """

    watermark: int | None
    floor: int | None
    last_build: int | None
    last_completed: int | None
    cursor: str | None = None
    covered_ms: int | None = None
    prune: bool = True


@dataclass(frozen=True)
class Item:
    id: int
    server: str
    job: str
    number: int
    payload: str
    attempts: int


class _Handle:
    """One thread's connection, held only by that thread's `threading.local` slot.

    A sqlite3 connection is in a reference cycle with its own statement cache, so dropping it
    frees it only at some later full garbage collection, its file descriptors and page cache
    held until then. This closes it as soon as the slot goes, which happens in the thread
    itself as it ends.
    """

    __slots__ = ("__weakref__", "db")
    # Bound here, not looked up in the module: `__del__` may run as the interpreter exits,
    # when module globals may already be gone.
    _not_owner = sqlite3.ProgrammingError

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        try:
            self.db.conn.close()
        except self._not_owner:
            return  # sqlite3 lets only the owning thread close a connection

    def __del__(self) -> None:
        self.close()


class State:
    """One connection per thread: pollers and the deliverer share the file, not a handle."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # Weak: a thread's connection is closed as the thread ends (see _Handle), so the scan
        # threads each poll starts, and each metrics scrape's thread, leave nothing open.
        self._all: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = self.db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer sei-poller (schema {version})")
        with db.conn:
            db.conn.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                # Only then: the pragma rewrites the file header even with the same value, and
                # a dry run must leave the database as it found it.
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._tighten_modes()

    @property
    def db(self) -> Database:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            # Deferred transactions opened by DML and committed by `with conn:` blocks.
            conn = sqlite3.connect(self.path, timeout=30)
            db = Database(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            handle = self._local.handle = _Handle(db)
            with self._lock:
                self._all.add(handle)
        return handle.db

    def _tighten_modes(self) -> None:
        """The database and its WAL hold payloads: owner-only, whatever the umask."""
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                os.chmod(p, 0o600)

    def close(self) -> None:
        with self._lock:
            for handle in list(self._all):
                handle.close()  # another live thread's cannot be: it closes as that thread ends
            self._all.clear()
        self._local = threading.local()

    # -- jobs and ledger ------------------------------------------------------------------

    def job(self, server: str, job: str) -> JobState:
        row = self.db.execute(
            "SELECT watermark, floor, last_build, last_completed, cursor, covered_ms FROM jobs"
            " WHERE server = ? AND job = ?",
            [server, job],
        ).fetchone()
        if row is None:
            return JobState()
        ledger = frozenset(
            r[0]
            for r in self.db.execute(
                "SELECT number FROM ledger WHERE server = ? AND job = ?", [server, job]
            )
        )
        return JobState(*row, ledger=ledger)

    def known_jobs(self, server: str) -> dict[str, JobState]:
        """Every job of a server, ledger excluded: what the idle check needs, in one query."""
        rows = self.db.execute(
            "SELECT job, watermark, floor, last_build, last_completed, cursor, covered_ms"
            " FROM jobs WHERE server = ?",
            [server],
        )
        return {r[0]: JobState(*r[1:]) for r in rows}

    def enqueue(
        self,
        server: str,
        job: str,
        items: Iterable[tuple[int, str]],
        update: JobUpdate | None = None,
        *,
        now: float | None = None,
    ) -> int:
        """Add builds to the outbox and ledger, and move the watermark, in one transaction."""
        now = time.time() if now is None else now
        rows = list(items)
        db = self.db
        with db.conn:
            before = db.conn.total_changes
            db.conn.executemany(
                "INSERT OR IGNORE INTO outbox (server, job, number, payload, status,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(server, job, n, p, now, now) for n, p in rows],
            )
            added = db.conn.total_changes - before
            db.conn.executemany(
                "INSERT OR IGNORE INTO ledger (server, job, number) VALUES (?, ?, ?)",
                [(server, job, n) for n, _ in rows],
            )
            if update is not None:
                self._apply(server, job, update, now)
        return added

    def _apply(self, server: str, job: str, u: JobUpdate, now: float) -> None:
        self.db.conn.execute(
            "INSERT INTO jobs (server, job, watermark, floor, last_build, last_completed,"
            " cursor, covered_ms, last_scan_at, last_error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (server, job) DO UPDATE SET watermark = excluded.watermark,"
            " floor = excluded.floor, last_build = excluded.last_build,"
            " last_completed = excluded.last_completed, cursor = excluded.cursor,"
            " covered_ms = excluded.covered_ms, last_scan_at = excluded.last_scan_at,"
            " last_error = NULL",
            [
                server,
                job,
                u.watermark,
                u.floor,
                u.last_build,
                u.last_completed,
                u.cursor,
                u.covered_ms,
                now,
            ],
        )
        if u.watermark is not None and u.prune:
            self.db.conn.execute(
                "DELETE FROM ledger WHERE server = ? AND job = ? AND number <= ?",
                [server, job, u.watermark],
            )

    def job_failed(self, server: str, job: str, error: str) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO jobs (server, job, last_error) VALUES (?, ?, ?)"
                " ON CONFLICT (server, job) DO UPDATE SET last_error = excluded.last_error",
                [server, job, error[:500]],
            )

    def reset_job(self, server: str, job: str) -> None:
        """Forget a job whose numbers restarted (recreated): it is backfilled like a new one."""
        with self.db.conn:
            for table in ("jobs", "ledger"):
                self.db.conn.execute(
                    f"DELETE FROM {table} WHERE server = ? AND job = ?",
                    [server, job],
                )
            self.db.conn.execute(
                "DELETE FROM outbox WHERE server = ? AND job = ? AND status != 'pending'",
                [server, job],
            )

    def polled(self, server: str, ok: bool, duration: float, error: str | None = None) -> None:
        now = time.time()
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO servers (server, last_poll_at, last_ok_at, last_outcome, last_error,"
                " last_duration) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server) DO UPDATE SET"
                " last_poll_at = excluded.last_poll_at,"
                " last_ok_at = COALESCE(excluded.last_ok_at, servers.last_ok_at),"
                " last_outcome = excluded.last_outcome, last_error = excluded.last_error,"
                " last_duration = excluded.last_duration",
                [
                    server,
                    now,
                    now if ok else None,
                    "ok" if ok else "failed",
                    (error or "")[:500] or None,
                    duration,
                ],
            )

    # -- outbox -----------------------------------------------------------------------------

    def due(self, limit: int, *, now: float | None = None) -> list[Item]:
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT id, server, job, number, payload, attempts FROM outbox"
            " WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            [now, limit],
        ).fetchall()
        return [Item(*r) for r in rows]

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return row[0]

    def sent(self, item_id: int) -> None:
        """SEI has it: drop the payload, keep the row for `status` counts."""
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE outbox SET status = 'sent', payload = NULL, attempts = attempts + 1,"
                " sent_at = ?, last_error = NULL WHERE id = ?",
                [time.time(), item_id],
            )

    def retry_later(self, item_id: int, delay: float, error: str) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                [time.time() + delay, error[:1000], item_id],
            )

    def dead(self, item_id: int, error: str) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                [error[:2000], item_id],
            )

    def dead_letters(self, server: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, server, job, number, attempts, last_error, created_at FROM outbox"
            " WHERE status = 'dead'" + (" AND server = ?" if server else "") + " ORDER BY id"
        )
        return list(self.db.query(sql, [server] if server else []))

    def retry_dead(self, server: str | None = None) -> int:
        with self.db.conn:
            cur = self.db.conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE status = 'dead'" + (" AND server = ?" if server else ""),
                [time.time(), server] if server else [time.time()],
            )
        return cur.rowcount

    # -- reporting -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        out = {PENDING: 0, SENT: 0, DEAD: 0}
        out.update({s: c for s, c in rows})
        return out

    def oldest_pending_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return row[0]

    def status(self) -> dict[str, Any]:
        """Per server and job: watermark, pending / sent / dead, last poll, oldest pending."""
        servers = {r["server"]: dict(r, jobs={}) for r in self.db.query("SELECT * FROM servers")}
        for r in self.db.query(
            "SELECT server, job, watermark, last_scan_at, last_error FROM jobs ORDER BY server, job"
        ):
            srv = servers.setdefault(r["server"], {"server": r["server"], "jobs": {}})
            srv["jobs"][r["job"]] = {
                "watermark": r["watermark"],
                "last_scan_at": r["last_scan_at"],
                "last_error": r["last_error"],
                PENDING: 0,
                SENT: 0,
                DEAD: 0,
                "oldest_pending_at": None,
            }
        for r in self.db.query(
            "SELECT server, job, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"
            " GROUP BY server, job, status"
        ):
            srv = servers.setdefault(r["server"], {"server": r["server"], "jobs": {}})
            job = srv["jobs"].setdefault(
                r["job"],
                {
                    "watermark": None,
                    "last_scan_at": None,
                    "last_error": None,
                    PENDING: 0,
                    SENT: 0,
                    DEAD: 0,
                    "oldest_pending_at": None,
                },
            )
            job[r["status"]] = r["n"]
            if r["status"] == PENDING:
                job["oldest_pending_at"] = r["oldest"]
        return servers
