"""Opening the database: WAL, busy timeout, and migrations serialised across processes.

sqlite-utils' Migrations take no lock, so two processes starting on a fresh file could both try the
first step. A POSIX advisory lock on a side file makes the second wait and then find nothing pending.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlite_utils import Database

from schema import migrations

BUSY_TIMEOUT_MS = 10_000


@contextmanager
def _migration_lock(db_path: Path) -> Iterator[None]:
    lock_path = db_path.with_name(db_path.name + ".migrate-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def connect(path: str | os.PathLike[str]) -> Database:
    """A connection with the pragmas every process needs; does not migrate."""
    db_path = Path(path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return Database(conn)


def open_database(path: str | os.PathLike[str], *, migrate: bool = True) -> Database:
    """Open (creating if needed), switch to WAL and apply pending migrations under the file lock."""
    db = connect(path)
    if migrate:
        with _migration_lock(Path(path)):
            if db.journal_mode != "wal":
                db.enable_wal()
            migrations.apply(db)
    return db


def migration_status(db: Database) -> tuple[list[tuple[str, str]], list[str]]:
    applied = [(m.name, m.applied_at) for m in migrations.applied(db)]
    pending = [m.name for m in migrations.pending(db)]
    return applied, pending


class GroupCommit:
    """Many webhooks arriving together share one COMMIT; each handler still answers only after it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._pending: asyncio.Future[None] | None = None

    def wait(self) -> asyncio.Future[None]:
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self._flush)
        return self._pending

    def _flush(self) -> None:
        future, self._pending = self._pending, None
        if future is None:
            return
        try:
            self.conn.commit()
        except Exception as exc:  # every waiter learns that its event was not stored
            future.set_exception(exc)
        else:
            future.set_result(None)
