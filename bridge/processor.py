"""From stored playback events to refreshes: detector in arrival order, then locate and refresh.

Detection runs strictly in order (a stop must see its start), right when an event is stored: no queue hop
stands between a failure-confirming webhook and its heal. Locating and refreshing run as tasks so a slow
resolver never holds up the next webhook. At start-up the detector relearns the starts of the last window from
the stored events (a stop that arrives after a restart still finds its start), and unprocessed events are
replayed. A failure is only ever a hint: the refresh probes the link first and leaves a live one alone.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from sqlite_utils import Database

from bridge.events import FailureDetector, FailureSignal, PlaybackEvent, as_detected
from bridge.intake import event_from_json
from bridge.matching import Match
from bridge.metrics import Metrics
from bridge.probe import probe
from bridge.refresh import RefreshPipeline
from bridge.timeutil import from_epoch, now_iso, to_epoch

log = logging.getLogger(__name__)


class Locator(Protocol):
    async def locate(self, event: PlaybackEvent) -> Match: ...


class EventProcessor:
    def __init__(self, db: Database, detector: FailureDetector, pipeline: RefreshPipeline, *,
                 locators: dict[str, Locator] | None = None, probe_on_start: bool = False,
                 use_buffer_sources: tuple[str, ...] = (), metrics: Metrics | None = None,
                 concurrency: int = 8) -> None:
        self.db = db
        self.detector = detector
        self.pipeline = pipeline
        self.locators = locators or {}
        self.probe_on_start = probe_on_start
        self.use_buffer_sources = use_buffer_sources
        self.metrics = metrics
        self._backlog: list[tuple[int | None, PlaybackEvent]] = []
        """Waiting for `start`, in order; an id of None only teaches the detector (an event already handled)."""
        self._running = False
        self._limit = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()

    def kinds_used(self, source: str) -> tuple[str, ...]:
        kinds = ("start", "stop", "error")
        return (*kinds, "buffer") if source in self.use_buffer_sources else kinds

    def submit(self, event_id: int | None, event: PlaybackEvent) -> None:
        """Process an already stored event (replay at start-up); before `start` events wait, in order.

        With `event_id` None the event was handled before a restart: it only tells the detector what happened."""
        if not self._running:
            self._backlog.append((event_id, event))
            return
        if event_id is None:
            self.detector.observe(as_detected(event))
            return
        try:
            signal, settled = self.detect(event)
            if settled:
                # rides on the next commit: replaying an unfinished start after a crash is harmless
                self._finish(event_id, "no_failure", commit=False)
        except Exception:
            log.exception("event %s could not be processed", event_id)
            return
        self.dispatch(event_id, event, signal)

    def _finish(self, event_id: int, outcome: str, *, match: Match | None = None, error: str | None = None,
                commit: bool = True) -> None:
        mapping_id = match.mapping["id"] if match is not None and match.mapping else None
        self.db.conn.execute(
            "update events set processed_at = ?, outcome = ?, match_rule = ?, mapping_id = ?, error = ? where id = ?",
            (now_iso(), outcome, match.rule if match else None, mapping_id, error, event_id),
        )
        if commit:
            self.db.conn.commit()

    def detect(self, event: PlaybackEvent) -> tuple[FailureSignal | None, bool]:
        """Feed the detector (strictly in arrival order); returns the failure, if any, and whether the event
        needs nothing more (then it can be stored as processed)."""
        signal = self.detector.observe(as_detected(event))
        if signal is not None and self.metrics is not None:
            self.metrics.failures.labels(event.source, signal.reason).inc()
        return signal, signal is None and not (event.kind == "start" and self.probe_on_start)

    async def _locate(self, event_id: int | None, event: PlaybackEvent) -> Match | None:
        """The event's mapping match, or None when there is no locator or it failed (then the event says so)."""
        locator = self.locators.get(event.source)
        if locator is None:
            if event_id is not None:
                self._finish(event_id, "unmatched", error=f"no locator for source {event.source}")
            return None
        try:
            return await locator.locate(event)
        except Exception as exc:
            if event_id is None:  # a prefetch: only a warm-up, the failure path looks again and reports
                log.debug("%s: prefetch of item %s failed: %s", event.source, event.item_id, exc)
            else:
                log.warning("%s: could not locate item %s: %s", event.source, event.item_id, exc)
                self._finish(event_id, "locate_failed", error=str(exc)[:500])
            return None

    async def _handle_failure(self, event_id: int, signal: FailureSignal) -> None:
        event = signal.event
        match = await self._locate(event_id, event)
        if match is None:
            return
        if match.mapping is None:
            log.info("%s: failure on item %s ignored: %s", event.source, event.item_id, match.detail)
            self._finish(event_id, "unmatched", match=match, error=match.detail)
            return
        outcome = await self.pipeline.refresh(match.mapping["id"], trigger=event.source, reason=signal.reason)
        # logged after the refresh, with its outcome: a file write on the heal's critical path costs 0.1 ms
        log.info("%s: playback failure on item %s -> mapping %s (matched by %s): %s in %.1f ms", event.source,
                 event.item_id, match.mapping["id"], match.rule, outcome.outcome, outcome.duration_ms)
        self._finish(event_id, outcome.outcome, match=match, error=outcome.detail if outcome.outcome not in (
            "refreshed", "alive", "cooldown") else None)

    async def _probe_start(self, event_id: int, event: PlaybackEvent) -> None:
        """detector.probe_on_start: a dead URL is healed at once, often before the user gives up."""
        match = await self._locate(event_id, event)
        if match is None:
            return
        if match.mapping is None or not match.mapping.get("resolved_url"):
            self._finish(event_id, "no_failure", match=match)
            return
        if not self.pipeline.links.owned(match.mapping["resolved_url"]):
            # a stable link: the pipeline asks it once itself (AniBridge re-resolves on that request), never twice
            outcome = await self.pipeline.refresh(match.mapping["id"], trigger=event.source, reason="probe_on_start")
            self._finish(event_id, "no_failure" if outcome.outcome == "alive" else outcome.outcome, match=match)
            return
        result = await probe(self.pipeline.session, match.mapping["resolved_url"],
                             timeout=self.pipeline.config.probe_timeout_seconds)
        if result.status in ("alive", "rate_limited"):
            self._finish(event_id, "no_failure", match=match)
            return
        outcome = await self.pipeline.refresh(match.mapping["id"], trigger=event.source, reason="probe_dead")
        self._finish(event_id, outcome.outcome, match=match)

    def _spawn(self, coro: Any) -> None:
        async def bounded() -> None:
            async with self._limit:
                try:
                    await coro
                except Exception:
                    log.exception("event processing failed")

        task = asyncio.create_task(bounded())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def dispatch(self, event_id: int, event: PlaybackEvent, signal: FailureSignal | None) -> None:
        """Start what a stored event calls for: the heal of a failure, a probe or a look-up at playback start."""
        try:
            if signal is not None:
                self._spawn(self._handle_failure(event_id, signal))
            elif event.kind == "start" and self.probe_on_start:
                self._spawn(self._probe_start(event_id, event))
            elif event.kind == "start" and event.source in self.locators:
                # look the item up while it starts: if the stop says it failed, the heal skips that round trip
                self._spawn(self._locate(None, event))
        except Exception:
            log.exception("event %s could not be processed", event_id)

    async def drain(self) -> None:
        """Wait until every submitted event is fully processed (tests and shutdown)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def replay_unprocessed(self) -> int:
        """Queue the unprocessed events for `start`, after the handled playback events of the window before them.

        The handled ones (a start stored as processed, a stop that was no failure) only teach the detector, in
        arrival order with the rest, so a stop after a restart pairs with its start. Returns the unprocessed count.
        """
        conn = self.db.conn
        oldest = conn.execute("select min(received_at) from events where processed_at is null").fetchone()[0]
        since = from_epoch(time.time() - self.detector.window)
        if oldest is not None and oldest < since:
            since = from_epoch(to_epoch(oldest) - self.detector.window)
        rows = conn.execute(
            "select id, payload, processed_at from events where processed_at is null"
            " or (received_at >= ? and kind in ('start', 'stop', 'error', 'buffer')) order by id", (since,)).fetchall()
        replayed = 0
        for event_id, payload, processed_at in rows:
            try:
                event = event_from_json(payload)
            except (TypeError, ValueError, json.JSONDecodeError) as exc:
                if processed_at is None:
                    self._finish(event_id, "invalid", error=str(exc))
                continue
            if processed_at is None:
                replayed += 1
                self.submit(event_id, event)
            else:
                self.submit(None, event)
        return replayed

    def prune(self, retention_days: int) -> int:
        cursor = self.db.conn.execute(
            "delete from events where received_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)", (f"-{retention_days} days",))
        self.db.conn.commit()
        return cursor.rowcount

    def start(self) -> None:
        self._running = True
        backlog, self._backlog = self._backlog, []
        for event_id, event in backlog:
            self.submit(event_id, event)

    async def stop(self) -> None:
        self._running = False
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*list(self._inflight), return_exceptions=True)

