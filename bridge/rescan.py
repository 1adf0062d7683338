"""The persisted, coalescing rescan queue, and the Target protocol media servers implement.

A rewrite asks each target which refresh it needs (Jellyfin: one item; Plex: one folder). Requests with
the same key coalesce into one row whose due time moves forward (debounce); the row survives restarts and
is deleted only when the target has accepted it. A target that is down is retried with backoff.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlite_utils import Database

from bridge.background import BackgroundLoop
from bridge.mappings import Mapping
from bridge.metrics import Metrics
from bridge.strm import AnchorMissing, Library
from bridge.timeutil import now_iso, to_iso

log = logging.getLogger(__name__)


class TargetRetry(Exception):
    """The target is unreachable or refused for now (5xx, timeout, 401): keep the row, try later."""


class TargetGone(Exception):
    """The thing to refresh no longer exists on the server: drop the row."""


@dataclass(frozen=True)
class RescanRequest:
    key: str
    payload: dict[str, Any]


@runtime_checkable
class Target(Protocol):
    name: str
    debounce_seconds: float
    gap_seconds: float

    async def requests_for(self, mapping: Mapping) -> list[RescanRequest]: ...

    async def send(self, payload: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


def _at(seconds_from_now: float) -> str:
    return to_iso(datetime.now(UTC) + timedelta(seconds=seconds_from_now))


class RescanQueue:
    def __init__(
        self,
        db: Database,
        targets: dict[str, Target],
        library: Library | None = None,
        *,
        base_backoff: float = 2.0,
        max_backoff: float = 300.0,
        poll_seconds: float = 0.5,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.targets = targets
        self.library = library
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._last_sent: dict[str, float] = {}
        self._worker = BackgroundLoop("rescan-queue", self._loop)
        self._sending = asyncio.Lock()
        self.sent = 0

    def enqueue(self, target: str, request: RescanRequest, *, delay: float | None = None, commit: bool = True) -> None:
        debounce = self.targets[target].debounce_seconds if delay is None and target in self.targets else (delay or 0.0)
        now = now_iso()
        self.db.conn.execute(
            "insert into rescan_queue (target, key, payload, due_at, attempts, created_at, updated_at)"
            " values (?, ?, ?, ?, 0, ?, ?) on conflict(target, key) do update set payload = excluded.payload,"
            " due_at = max(rescan_queue.due_at, excluded.due_at), updated_at = excluded.updated_at",
            (target, request.key, json.dumps(request.payload, sort_keys=True), _at(debounce), now, now),
        )
        if commit:
            self.db.conn.commit()
        self._wake.set()

    async def enqueue_for(self, mapping: Mapping, *, commit: bool = True) -> list[tuple[str, str]]:
        """Queue every target's refresh for a rewritten mapping; returns (target, key) pairs.

        `commit=False` lets the rows ride on the caller's transaction: the refresh pipeline stores them in the
        same commit as the rewritten row, so a refresh is never recorded without its rescan, nor the reverse.
        """
        queued = []
        for name, target in self.targets.items():
            try:
                requests = await target.requests_for(mapping)
            except Exception as exc:  # a target that cannot tell must not stop the others
                log.warning("target %s could not plan a rescan for mapping %s: %s", name, mapping.get("id"), exc)
                continue
            for request in requests:
                self.enqueue(name, request, commit=commit)
                queued.append((name, request.key))
        return queued

    def pending(self) -> list[dict[str, Any]]:
        cursor = self.db.conn.execute("select * from rescan_queue order by due_at")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    async def run_due(self) -> int:
        """Send every due row once; returns how many were accepted. One pass at a time, so no row goes twice."""
        async with self._sending:
            return await self._run_due()

    async def _run_due(self) -> int:
        if self.library is not None:
            try:
                self.library.check_anchors()
            except AnchorMissing as exc:
                log.warning("rescans held: %s", exc)
                return 0
        rows = self.db.conn.execute(
            "select id, target, key, payload, attempts, updated_at from rescan_queue where due_at <= ?"
            " order by due_at limit 100",
            (now_iso(),),
        ).fetchall()
        accepted = 0
        for row_id, target_name, key, payload, attempts, read_at in rows:
            target = self.targets.get(target_name)
            if target is None:
                continue  # target not configured in this run: keep the row for when it is
            gap = target.gap_seconds - (time.monotonic() - self._last_sent.get(target_name, -1e9))
            if gap > 0:
                await asyncio.sleep(gap)
            try:
                await target.send(json.loads(payload))
            except TargetGone as exc:
                log.info("rescan %s %s dropped: %s", target_name, key, exc)
                if self.metrics is not None:
                    self.metrics.rescan(target_name, "dropped")
                self._done(row_id, read_at)
            except Exception as exc:  # TargetRetry and anything unexpected: keep it, back off
                delay = min(self.max_backoff, self.base_backoff * (2 ** attempts))
                log.warning("rescan %s %s failed (attempt %d), retry in %.0fs: %s", target_name, key, attempts + 1, delay, exc)
                if self.metrics is not None:
                    self.metrics.rescan(target_name, "failed")
                self.db.conn.execute(
                    "update rescan_queue set attempts = attempts + 1, last_error = ?, due_at = ?, updated_at = ? where id = ?",
                    (str(exc)[:500], _at(delay), now_iso(), row_id),
                )
            else:
                accepted += 1
                self.sent += 1
                if self.metrics is not None:
                    self.metrics.rescan(target_name, "sent")
                self._done(row_id, read_at)
            finally:
                self._last_sent[target_name] = time.monotonic()
                self.db.conn.commit()
        return accepted

    def _done(self, row_id: int, read_at: str) -> None:
        """Drop a row that was sent (or is gone), unless a request coalesced into it while it was being sent.

        That request comes from a file rewritten meanwhile, which the server may have read before the change:
        it stays queued and goes in the next pass.
        """
        self.db.conn.execute("delete from rescan_queue where id = ? and updated_at = ?", (row_id, read_at))

    async def flush(self) -> int:
        """Send everything queued now, ignoring debounce (one-shot CLI runs have no worker to wait for)."""
        self.db.conn.execute("update rescan_queue set due_at = ?", (now_iso(),))
        self.db.conn.commit()
        return await self.run_due()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before the pass: a row queued while sending wakes the next one
            try:
                await self.run_due()
            except Exception:  # pragma: no cover - keep the worker alive whatever happens
                log.exception("rescan worker error")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
        for target in self.targets.values():
            await target.close()
