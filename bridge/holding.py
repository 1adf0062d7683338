"""Webhooks accepted while another process holds the database's write lock: held, journalled, stored later.

The server's connection waits at most `LOOP_BUSY_TIMEOUT_MS` for a lock (it runs on the event loop: a longer
wait would freeze every request, `/healthz` included). When an insert meets a foreign lock the event is held
in memory and appended to a journal file next to the database (so a crash during the lock loses nothing), and
the 202 goes out at once. A flusher retries every `retry_seconds`; when the lock clears the held events are
inserted in one commit, the journal is emptied and each event is processed as if it had just arrived. Past
`limit` held events the answer is 503 with Retry-After: the sender (Jellyfin's plugin, Tautulli) retries.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from bridge.events import FailureSignal, PlaybackEvent
from bridge.timeutil import now_iso

log = logging.getLogger(__name__)

LOOP_BUSY_TIMEOUT_MS = 50
"""How long a statement on the event loop may wait for another process's lock before the caller is told."""
RETRY_AFTER_SECONDS = 2


def is_locked(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED as the sqlite3 module reports them."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class HoldFull(Exception):
    """The bound of held events is reached: answer 503 with Retry-After."""


@dataclass
class _Held:
    event: PlaybackEvent
    signal: FailureSignal | None
    settled: bool
    received_at: str


class Holding:
    def __init__(self, conn: sqlite3.Connection, journal: str | os.PathLike[str] | None, *, limit: int = 10_000,
                 retry_seconds: float = 0.1, on_stored: Callable[[int, PlaybackEvent, FailureSignal | None], None]
                 | None = None) -> None:
        self.conn = conn
        self.journal = Path(journal) if journal is not None else None
        self.limit = limit
        self.retry_seconds = retry_seconds
        self.on_stored = on_stored
        self.held: deque[_Held] = deque()
        self.stored_after_lock = 0
        self.refused = 0
        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None

    @property
    def active(self) -> bool:
        """Events are waiting: newer ones queue behind them, so the order of arrival is kept."""
        return bool(self.held)

    # ---- holding ------------------------------------------------------------------------------------
    def hold(self, event: PlaybackEvent, signal: FailureSignal | None, settled: bool) -> None:
        if len(self.held) >= self.limit:
            self.refused += 1
            raise HoldFull(f"{len(self.held)} webhooks are waiting for the database")
        item = _Held(event, signal, settled, now_iso())
        self._journal_append(item)
        self.held.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_loop(), name="held-events-flush")

    def _journal_append(self, item: _Held) -> None:
        """One write(2) per event on an O_APPEND file: survives a crash of the process (the page cache stays)."""
        if self.journal is None:
            return
        if self._fd is None:
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        line = orjson.dumps({"event": item.event.__dict__, "settled": item.settled, "received_at": item.received_at},
                            default=str) + b"\n"
        os.write(self._fd, line)

    # ---- storing -------------------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while self.held:
            await asyncio.sleep(self.retry_seconds)
            try:
                self.flush()
            except Exception:  # a bug or a broken disk: keep the events, try again
                log.exception("storing held webhooks failed")

    def flush(self) -> int:
        """Insert every held event in one commit; 0 (and nothing changed) while the lock is still held."""
        if not self.held:
            return 0
        batch = list(self.held)
        # the retry asks without waiting: a waiting statement would hold up the loop every retry_seconds
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            ids = [self._insert(item) for item in batch]
            self.conn.commit()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            # the busy insert was this transaction's first write (a pending write would hold the lock):
            # rolling back drops only its read snapshot, which would otherwise go stale
            self.conn.rollback()
            return 0
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
        for _ in batch:
            self.held.popleft()
        self._journal_clear()
        self.stored_after_lock += len(batch)
        log.info("stored %d webhook(s) held while the database was locked", len(batch))
        if self.on_stored is not None:
            for event_id, item in zip(ids, batch):
                self.on_stored(event_id, item.event, item.signal)
        return len(batch)

    def _insert(self, item: _Held) -> int:
        from bridge.intake import store_event

        return store_event(self.conn, item.event, commit=False, settled=item.settled, received_at=item.received_at)

    def _journal_clear(self) -> None:
        if self.journal is None:
            return
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif self.journal.exists():
            self.journal.write_bytes(b"")

    # ---- start-up and shutdown -----------------------------------------------------------------------
    def recover(self) -> int:
        """Events a previous run accepted during a lock and could not store before it stopped or crashed."""
        if self.journal is None or not self.journal.exists():
            return 0
        from bridge.intake import store_event

        recovered = 0
        with open(self.journal, "rb") as fh:
            lines = fh.read().splitlines()
        for line in lines:
            try:
                record = orjson.loads(line)
                event = PlaybackEvent(**record["event"])
            except (ValueError, TypeError, KeyError):
                continue  # a line torn by a crash mid-write: the event was never answered 202
            store_event(self.conn, event, commit=False, settled=False, received_at=record.get("received_at"))
            recovered += 1
        self.conn.commit()
        self.journal.write_bytes(b"")
        return recovered

    async def close(self) -> None:
        """Store what is still held if the lock has cleared; what is not stays in the journal for the next run.

        Stored now, they are processed by the next start's replay of unprocessed events, not as new heals.
        """
        self.on_stored = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        try:
            self.flush()
        except Exception:
            log.exception("storing held webhooks at shutdown failed; they stay in %s", self.journal)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def status(self) -> dict[str, Any]:
        return {"held": len(self.held), "stored_after_lock": self.stored_after_lock, "refused": self.refused}
