"""Opening the database: WAL, busy timeout, and migrations serialised across processes.

sqlite-utils' Migrations take no lock, so two processes starting on a fresh file could both try the
first step. A POSIX advisory lock on a side file makes the second wait and then find nothing pending.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlite_utils import Database

from schema import migrations

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
AUTOCHECKPOINT_PAGES = 10_000
"""The writer's own checkpoint only as a safety net (40 MB of WAL): normally the Checkpointer keeps it small."""


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


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """Statements that must land together, on the connection every coroutine shares, then a commit.

    `with conn:` would roll back, on an error, the uncommitted statements of every other coroutine too (a
    refresh's `refreshing` mark waiting for its group commit); a savepoint undoes only this block's own.
    """
    conn.execute("SAVEPOINT atomic")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO atomic")
        conn.execute("RELEASE atomic")
        raise
    conn.execute("RELEASE atomic")
    conn.commit()


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


class Checkpointer:
    """WAL checkpoints on a connection and thread of their own.

    A checkpoint copies the WAL into the database and fsyncs it; left to SQLite it runs inside whichever
    COMMIT crosses 1,000 pages, which here is a commit on the event loop: a webhook or a heal would wait
    for that fsync. PASSIVE never blocks the writer, so the loop's commits only append to the WAL.
    """

    def __init__(self, path: str | os.PathLike[str], *, interval: float = 0.5, min_pages: int = 1000) -> None:
        self.path = str(path)
        self.interval = interval
        self.min_pages = min_pages
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, writer: sqlite3.Connection) -> None:
        writer.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        wal = self.path + "-wal"
        try:
            while not self._stop.wait(self.interval):
                try:
                    if os.path.getsize(wal) < self.min_pages * 4096:
                        continue
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except (OSError, sqlite3.Error) as exc:  # a busy database or a missing WAL: next round
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            conn.close()


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
