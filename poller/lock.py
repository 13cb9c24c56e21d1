"""One daemon per state file: `run` holds an exclusive lock beside the database.

Two daemons on one state would poll everything twice and fight over the outbox; the
operator almost always did it by mistake (the unit and the timer both enabled), so the
second one refuses to start and names the first. `once` and `backfill` take no lock: they
cooperate with a running daemon through outbox leases (see `State.claim`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from poller.errors import ConfigError


class Locked(ConfigError):
    """Another daemon holds the state file: exit 2, naming its pid."""


class DaemonLock:
    def __init__(self, state_path: Path) -> None:
        self.path = Path(str(state_path) + ".lock")
        self.state_path = state_path
        self._fd: int | None = None

    def acquire(self) -> DaemonLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the daemon lock {self.path}: {exc.strerror}",
                where=str(self.state_path),
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise Locked(
                f"another sei-poller daemon (pid {other}) is using this state database;"
                " stop it first (systemctl stop sei-poller), or give this one its own"
                " [state] path",
                where=str(self.state_path),
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> DaemonLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
