"""The state database: per-job watermarks, the ledger of handled builds, and the outbox.

The only module that touches SQLite. Every write that must not be torn (a build's outbox
row, its ledger row and its job's watermark) happens in one transaction, so a crash or
`kill -9` at any moment loses nothing; at worst the builds in flight are sent again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlite_utils import Database

from poller.errors import ConfigError

SCHEMA_VERSION = 3
PENDING, SENT, DEAD = "pending", "sent", "dead"
BUILD, CONTAINER = "build", "container"
# What `readiness()` counts per server, in the order its query selects them.
READINESS_KEYS = (
    "sent",
    "known",
    "lead_time_ready",
    "without_commits",
    "repo_unparsed",
    "pipeline",
    "pipeline_with_stages",
)

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
    lease_owner TEXT, lease_until REAL,
    has_commits INTEGER, repo_parsed INTEGER, expects_stages INTEGER, has_stages INTEGER,
    UNIQUE (server, job, number)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS problems (
    server TEXT NOT NULL, kind TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    url TEXT, error TEXT, first_at REAL NOT NULL, last_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1, retry_at REAL,
    PRIMARY KEY (server, kind, job, number)
);
CREATE TABLE IF NOT EXISTS servers (
    server TEXT PRIMARY KEY, last_poll_at REAL, last_ok_at REAL,
    last_outcome TEXT, last_error TEXT, last_duration REAL
);
"""
# Added after schema 2 without a version bump, created on open when missing: a table older
# releases never read, so a file stays usable by them. One opaque cursor per server, for
# connectors that ask their server "what finished since" once per poll (`server_cursor`).
_SERVER_CURSORS = """
CREATE TABLE IF NOT EXISTS server_cursors (
    server TEXT PRIMARY KEY, cursor TEXT NOT NULL, saved_at REAL NOT NULL
)
"""
# Added the same way, later: builds a server-wide query named for a job whose scan then
# failed. The server cursor moves past them, so they are recorded here, handed to the job's
# next scan (`JobRef.changed`) and settled when a scan that was handed them completes.
_OWED = """
CREATE TABLE IF NOT EXISTS owed (
    server TEXT NOT NULL, job TEXT NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (server, job, number)
) WITHOUT ROWID
"""
# When the table is first made: releases before it could move a server cursor past builds
# of a job whose scan failed, and still mark the job's history covered. Forget what they
# said was covered, so `backfill --since` reads those jobs again and sends what they lost.
_FORGET_COVERED = (
    "UPDATE jobs SET covered_ms = NULL WHERE server IN (SELECT server FROM server_cursors)"
)
# Upgrades from older schemas, by the version they upgrade from; a file several versions
# behind runs each in turn. They run in the same transaction as `_SCHEMA`, which creates the
# tables new in a version.
_MIGRATIONS = {
    1: "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;"
    " ALTER TABLE outbox ADD COLUMN lease_until REAL;",
    # 3: what `status` reports of sent builds after their payloads are dropped (NULL for
    # rows enqueued before: unknown, left out of the figures).
    2: "ALTER TABLE outbox ADD COLUMN has_commits INTEGER;"
    " ALTER TABLE outbox ADD COLUMN repo_parsed INTEGER;"
    " ALTER TABLE outbox ADD COLUMN expects_stages INTEGER;"
    " ALTER TABLE outbox ADD COLUMN has_stages INTEGER;",
}


class StateError(ConfigError):
    """The state file is the operator's to fix (corrupt, unreadable, newer): exit 2."""


@dataclass(frozen=True)
class Parked:
    """A finished build the server keeps failing to describe, waiting for a retry."""

    first_at: float
    attempts: int
    retry_at: float


@dataclass
class JobState:
    watermark: int | None = None
    floor: int | None = None
    last_build: int | None = None
    last_completed: int | None = None
    cursor: str | None = None
    covered_ms: int | None = None
    ledger: frozenset[int] = frozenset()
    failed: bool = False  # its last scan failed (`known_jobs` only)


def _job_state(row: Sequence[Any], **more: Any) -> JobState:
    """A `jobs` row (watermark, floor, last_build, last_completed, cursor, covered_ms)."""
    return JobState(*row, **more)


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
    vanished: tuple[int, ...] = ()  # parked builds the server no longer has: unparked
    settled: tuple[int, ...] = ()  # owed builds this scan was handed: owed no more


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

    last_path: ClassVar[Path | None] = None  # for the CLI's message when SQLite fails later

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        State.last_path = self.path
        self._local = threading.local()
        # Weak: a thread's connection is closed as the thread ends (see _Handle), so the scan
        # threads each poll starts, and each metrics scrape's thread, leave nothing open.
        self._all: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._lock = threading.Lock()
        # Who holds an outbox lease: this process, told apart from a later one with its pid.
        self.owner = process_token(os.getpid()) or str(os.getpid())
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise state_error(self.path, exc) from None
        except OSError as exc:
            raise StateError(
                f"cannot create the state database: {exc.strerror}; check [state] path and"
                " that the directory is writable by this user",
                where=str(self.path),
            ) from None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = self.db
        # Reading the schema fails at once on a file that is not SQLite, before any write.
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"written by a newer sei-poller (schema {version}, this one knows"
                f" {SCHEMA_VERSION}): upgrade sei-poller, or point [state] path at a new file",
                where=str(self.path),
            )
        if version < SCHEMA_VERSION:
            with self._write() as conn:
                # Again under the write lock: another process may have upgraded it meanwhile.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION and _has_table(conn, "outbox"):
                    for step in range(version, SCHEMA_VERSION):
                        for stmt in _MIGRATIONS.get(step, "").split(";"):
                            if stmt.strip():
                                conn.execute(stmt)
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if not _has_table(db.conn, "server_cursors"):
            with self._write() as conn:
                conn.execute(_SERVER_CURSORS)
        if not _has_table(db.conn, "owed"):
            with self._write() as conn:
                if not _has_table(conn, "owed"):  # another process may have made it meanwhile
                    conn.execute(_OWED)
                    conn.execute(_FORGET_COVERED)
        self._tighten_modes()
        self.release_stale_leases()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`).

        Two processes may share the file; a deferred transaction that read first could not
        upgrade to a write once the other committed, and would fail instead of waiting.
        """
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    @property
    def db(self) -> Database:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            # Writes go through `_write()` (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self.path, timeout=30)
            db = Database(conn)
            db.execute("PRAGMA busy_timeout=30000")
            _use_wal(db.conn)
            db.execute("PRAGMA synchronous=NORMAL")
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
        ledger = frozenset(
            r[0]
            for r in self.db.execute(
                "SELECT number FROM ledger WHERE server = ? AND job = ?", [server, job]
            )
        )
        return _job_state(row or (), ledger=ledger)

    def known_jobs(self, server: str) -> dict[str, JobState]:
        """Every job of a server, ledger excluded: what the idle check needs, in one query."""
        rows = self.db.execute(
            "SELECT job, watermark, floor, last_build, last_completed, cursor, covered_ms,"
            " last_error IS NOT NULL FROM jobs WHERE server = ?",
            [server],
        )
        return {r[0]: _job_state(r[1:7], failed=bool(r[7])) for r in rows}

    def server_cursor(self, server: str) -> str | None:
        row = self.db.execute(
            "SELECT cursor FROM server_cursors WHERE server = ?", [server]
        ).fetchone()
        return row[0] if row else None

    def save_server_cursor(self, server: str, cursor: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO server_cursors (server, cursor, saved_at) VALUES (?, ?, ?)"
                " ON CONFLICT (server) DO UPDATE SET cursor = excluded.cursor,"
                " saved_at = excluded.saved_at",
                [server, cursor, time.time()],
            )

    def enqueue(
        self,
        server: str,
        job: str,
        items: Iterable[Row],
        update: JobUpdate | None = None,
        *,
        now: float | None = None,
    ) -> int:
        """Add builds to the outbox and ledger, and move the watermark, in one transaction.

        Each item is `(number, payload)` or `(number, payload, facts)`; `facts` (four
        booleans: commits, repo URL parsed, expects stages, has stages) outlive the payload,
        which is dropped once SEI has it, so `status` can tell what SEI got.
        """
        now = time.time() if now is None else now
        rows = [(r[0], r[1], _flags(r[2] if len(r) > 2 else None)) for r in items]
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (server, job, number, payload, status,"
                " next_attempt_at, created_at, has_commits, repo_parsed, expects_stages,"
                " has_stages) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                [(server, job, n, p, now, now, *f) for n, p, f in rows],
            )
            added = conn.total_changes - before
            conn.executemany(
                "INSERT OR IGNORE INTO ledger (server, job, number) VALUES (?, ?, ?)",
                [(server, job, n) for n, _, _ in rows],
            )
            conn.executemany(
                "DELETE FROM problems WHERE server = ? AND kind = 'build' AND job = ?"
                " AND number = ?",
                [(server, job, n) for n, _, _ in rows],
            )
            if update is not None:
                self._apply(server, job, update, now)
        return added

    def _apply(self, server: str, job: str, u: JobUpdate, now: float) -> None:
        self.db.conn.execute(
            "INSERT INTO jobs (server, job, watermark, floor, last_build, last_completed,"
            " cursor, covered_ms, last_scan_at, last_error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
            # Never backwards: another process on the same file may have moved it further.
            " ON CONFLICT (server, job) DO UPDATE SET watermark = CASE"
            " WHEN jobs.watermark IS NULL OR excluded.watermark > jobs.watermark"
            " THEN excluded.watermark ELSE jobs.watermark END,"
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
        if u.vanished:
            self.db.conn.executemany(
                "DELETE FROM problems WHERE server = ? AND kind = 'build' AND job = ?"
                " AND number = ?",
                [(server, job, n) for n in u.vanished],
            )
        if u.settled:
            self.db.conn.executemany(
                "DELETE FROM owed WHERE server = ? AND job = ? AND number = ?",
                [(server, job, n) for n in u.settled],
            )

    def job_failed(self, server: str, job: str, error: str, owed: Iterable[int] = ()) -> None:
        """A scan that did not complete; `owed`: builds it was told of and did not handle."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (server, job, last_error) VALUES (?, ?, ?)"
                " ON CONFLICT (server, job) DO UPDATE SET last_error = excluded.last_error",
                [server, job, error[:500]],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO owed (server, job, number) VALUES (?, ?, ?)",
                [(server, job, n) for n in owed],
            )

    def owed(self, server: str) -> dict[str, set[int]]:
        """Builds each job owes since a scan of it failed (see `_OWED`)."""
        out: dict[str, set[int]] = {}
        for job, n in self.db.execute(
            "SELECT job, number FROM owed WHERE server = ?", [server]
        ).fetchall():
            out.setdefault(job, set()).add(n)
        return out

    def parked_due(self, server: str, now: float) -> dict[str, set[int]]:
        """Parked builds whose next try is due, by job."""
        out: dict[str, set[int]] = {}
        for job, n in self.db.execute(
            "SELECT job, number FROM problems WHERE server = ? AND kind = 'build'"
            " AND COALESCE(retry_at, 0) <= ?",
            [server, now],
        ).fetchall():
            out.setdefault(job, set()).add(n)
        return out

    def reset_job(self, server: str, job: str) -> None:
        """Forget a job whose numbers restarted (recreated): it is backfilled like a new one."""
        with self._write() as conn:
            for table in ("jobs", "ledger", "problems", "owed"):
                conn.execute(
                    f"DELETE FROM {table} WHERE server = ? AND job = ?",
                    [server, job],
                )
            conn.execute(
                "DELETE FROM outbox WHERE server = ? AND job = ? AND status != 'pending'",
                [server, job],
            )

    def polled(self, server: str, ok: bool, duration: float, error: str | None = None) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(
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
        """Rows due now that no live process has claimed; a read, for reports and tests."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT id, server, job, number, payload, attempts FROM outbox"
            " WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)"
            " ORDER BY next_attempt_at, id LIMIT ?",
            [now, now, self.owner, limit],
        ).fetchall()
        return [Item(*r) for r in rows]

    def claim(self, limit: int, lease: float, *, now: float | None = None) -> list[Item]:
        """Take up to `limit` due rows for this process alone, for `lease` seconds.

        Two processes on one file (`backfill` next to `run`, two `once`) each post only
        what they claimed; a row whose lease ran out (its holder died mid-POST) is free
        again. `lease` must outlast a POST, so a slow answer is never posted twice.
        """
        now = time.time() if now is None else now
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY next_attempt_at, id LIMIT ?)"
                " RETURNING id, server, job, number, payload, attempts",
                [self.owner, now + lease, now, now, limit],
            ).fetchall()
        return sorted((Item(*r) for r in rows), key=lambda i: i.id)

    def release(self, ids: list[int]) -> None:
        """Give back rows claimed but not posted (delivery paused or stopping)."""
        if not ids:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ?",
                [(i, self.owner) for i in ids],
            )

    def release_leases(self) -> None:
        """On a clean exit: rows this process still holds are free for the next one."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ? AND status = 'pending'",
                [self.owner],
            )

    def release_stale_leases(self) -> int:
        """Free the leases of processes that are gone (killed mid-POST), without waiting."""
        owners = [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL"
                " AND status = 'pending' AND lease_until > ?",
                [time.time()],
            )
        ]
        dead = [o for o in owners if o != self.owner and not owner_alive(o)]
        if not dead:
            return 0
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ? AND status = 'pending'",
                [(o,) for o in dead],
            )
        return cur.rowcount

    def next_due_at(self, *, now: float | None = None) -> float | None:
        """When a row this process may claim is next due; rows another process holds now
        are its to post (see `pending_elsewhere`), not ours to wait for."""
        now = time.time() if now is None else now
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"
            " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)",
            [now, self.owner],
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def pending_elsewhere(self, *, now: float | None = None) -> int:
        """Pending rows another live process has claimed: its to deliver, not ours."""
        now = time.time() if now is None else now
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND lease_until > ?"
            " AND lease_owner != ?",
            [now, self.owner],
        ).fetchone()
        return int(row[0])

    def sent(self, *item_ids: int) -> None:
        """SEI has them: drop the payloads, keep the rows for `status` counts (one commit)."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET status = 'sent', payload = NULL, attempts = attempts + 1,"
                " sent_at = ?, last_error = NULL, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ?",
                [(now, i) for i in item_ids],
            )

    def retry_later(self, item_id: int, delay: float, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                [time.time() + delay, error[:1000], item_id],
            )

    def dead(self, item_id: int, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                [error[:2000], item_id],
            )

    # -- problems: parked builds and containers that cannot be listed --------------------

    def park(
        self, server: str, job: str, number: int, url: str, error: str, retry_at: float
    ) -> Parked:
        """Record another failed attempt at a build's details; the first failure is kept."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO problems (server, kind, job, number, url, error, first_at, last_at,"
                " attempts, retry_at) VALUES (?, 'build', ?, ?, ?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (server, kind, job, number) DO UPDATE SET url = excluded.url,"
                " error = excluded.error, last_at = excluded.last_at,"
                " attempts = problems.attempts + 1, retry_at = excluded.retry_at"
                " RETURNING first_at, attempts, retry_at",
                [server, job, number, url, error[:500], now, now, retry_at],
            ).fetchone()
        return Parked(*row)

    def parked(self, server: str, job: str) -> dict[int, Parked]:
        rows = self.db.execute(
            "SELECT number, first_at, attempts, retry_at FROM problems"
            " WHERE server = ? AND kind = 'build' AND job = ?",
            [server, job],
        )
        return {r[0]: Parked(*r[1:]) for r in rows}

    def unlisted(self, server: str, failing: Iterable[tuple[str, str, str]]) -> None:
        """After a discovery: the containers (name, url, error) that failed this time."""
        now = time.time()
        failing = list(failing)
        with self._write() as conn:
            names = [name for name, _, _ in failing]
            conn.execute(
                "DELETE FROM problems WHERE server = ? AND kind = 'container' AND job NOT IN"
                f" ({','.join('?' * len(names))})",
                [server, *names],
            )
            conn.executemany(
                "INSERT INTO problems (server, kind, job, number, url, error, first_at,"
                " last_at) VALUES (?, 'container', ?, 0, ?, ?, ?, ?)"
                " ON CONFLICT (server, kind, job, number) DO UPDATE SET url = excluded.url,"
                " error = excluded.error, last_at = excluded.last_at,"
                " attempts = problems.attempts + 1",
                [(server, name, url, error[:500], now, now) for name, url, error in failing],
            )

    def problems(self) -> list[dict[str, Any]]:
        """Parked builds and failing containers, for `status`."""
        return list(
            self.db.query(
                "SELECT server, kind, job, number, url, error, first_at, last_at, attempts,"
                " retry_at FROM problems ORDER BY server, kind, job, number"
            )
        )

    def dead_letters(self, server: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, server, job, number, attempts, last_error, created_at FROM outbox"
            " WHERE status = 'dead'" + (" AND server = ?" if server else "") + " ORDER BY id"
        )
        return list(self.db.query(sql, [server] if server else []))

    def retry_dead(self, server: str | None = None) -> int:
        with self._write() as conn:
            cur = conn.execute(
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

    def server_facts(self) -> dict[str, dict[str, Any]]:
        """Per server, for the metrics: parked, dead-lettered and owed builds, the oldest
        pending payload and the last acceptance."""
        facts: dict[str, dict[str, Any]] = {}

        def row(server: str) -> dict[str, Any]:
            return facts.setdefault(
                server,
                {
                    "parked": 0,
                    "dead": 0,
                    "owed": 0,
                    "oldest_pending_at": None,
                    "last_sent_at": None,
                },
            )

        for (server,) in self.db.execute("SELECT server FROM servers").fetchall():
            row(server)
        for server, n in self.db.execute(
            "SELECT server, COUNT(*) FROM problems WHERE kind = 'build' GROUP BY server"
        ).fetchall():
            row(server)["parked"] = n
        for server, n in self.db.execute(
            "SELECT server, COUNT(*) FROM owed GROUP BY server"
        ).fetchall():
            row(server)["owed"] = n
        for server, dead, oldest, sent in self.db.execute(
            "SELECT server, SUM(status = 'dead'), MIN(CASE WHEN status = 'pending' THEN"
            " created_at END), MAX(sent_at) FROM outbox GROUP BY server"
        ).fetchall():
            r = row(server)
            r["dead"], r["oldest_pending_at"], r["last_sent_at"] = int(dead or 0), oldest, sent
        return facts

    def disk(self) -> tuple[int, int | None, int | None]:
        """Bytes the database takes (its WAL included); bytes free and in all beside it."""
        size = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                size += os.stat(str(self.path) + suffix).st_size
        try:
            usage = shutil.disk_usage(self.path.parent)
        except OSError:
            return size, None, None
        return size, usage.free, usage.total

    def oldest_pending_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def readiness(self, since: float) -> dict[str, dict[str, int]]:
        """Per server, of the builds SEI accepted since `since`: what they carried.

        `known` counts the rows with recorded facts (rows enqueued by a release before
        schema 3 have none); the other counts are of those.
        """
        rows = self.db.execute(
            "SELECT server, COUNT(*), COUNT(has_commits),"
            " COALESCE(SUM(has_commits = 1 AND repo_parsed = 1), 0),"
            " COALESCE(SUM(has_commits = 0), 0), COALESCE(SUM(repo_parsed = 0), 0),"
            " COALESCE(SUM(expects_stages = 1), 0),"
            " COALESCE(SUM(expects_stages = 1 AND has_stages = 1), 0)"
            " FROM outbox WHERE status = 'sent' AND sent_at >= ? GROUP BY server",
            [since],
        )
        return {r[0]: dict(zip(READINESS_KEYS, r[1:], strict=True)) for r in rows}

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


Row = tuple[int, str] | tuple[int, str, Any]


def _flags(facts: Any) -> tuple[int | None, ...]:
    if facts is None:
        return (None, None, None, None)
    return tuple(int(bool(f)) for f in facts)


def lookup(path: Path, server: str, job: str, number: int) -> dict[str, Any] | None:
    """A build's outbox row, read without creating, upgrading or changing the file.

    For `explain`, which must write nothing: None when there is no state file yet or no row.
    """
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.DatabaseError as exc:
        raise state_error(path, exc) from None
    try:
        if not _has_table(conn, "outbox"):
            return None
        row = conn.execute(
            "SELECT status, created_at, sent_at, attempts, last_error FROM outbox"
            " WHERE server = ? AND job = ? AND number = ?",
            [server, job, number],
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise state_error(path, exc) from None
    finally:
        conn.close()
    if row is None:
        return None
    keys = ("status", "created_at", "sent_at", "attempts", "last_error")
    return dict(zip(keys, row, strict=True))


def _use_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """WAL mode, once per file (it persists), waiting for the other process if need be.

    Switching a new file to WAL takes an exclusive lock and, unlike other statements,
    answers "database is locked" at once rather than through the busy timeout: two
    processes opening a fresh state together (two `once`) would otherwise fail one of them.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
        ).fetchone()
        is not None
    )


def state_error(path: Path, exc: sqlite3.DatabaseError) -> StateError:
    """SQLite's complaint about a file, in the operator's words, with what to do."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return StateError(
            f"not a usable SQLite database ({text}): move it aside (mv {path} {path}.bad) and"
            " run again; history is re-read and SEI ignores the builds it already has",
            where=str(path),
        )
    if "readonly" in text or "unable to open" in text or "disk I/O" in text:
        return StateError(
            f"cannot write the state database ({text}): check its owner and permissions,"
            " and that its directory is writable (SQLite adds -wal and -shm files there)",
            where=str(path),
        )
    return StateError(f"state database error: {text}", where=str(path))


def process_token(pid: int | str) -> str | None:
    """`pid:start-time` of a live process (Linux), so a reused pid is not taken for it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{pid}:{fields[19]}" if len(fields) > 19 else str(pid)


def owner_alive(owner: str) -> bool:
    """Whether the process that took a lease still runs (on this host)."""
    pid = owner.partition(":")[0]
    if not pid.isdigit():
        return True  # not ours to judge: let the lease run out
    token = process_token(pid)
    if token is not None:
        return token == owner or ":" not in owner
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
