"""The event processor: detection in arrival order, at once after storing, and replay of what a crash left."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.events import FailureDetector, PlaybackEvent
from bridge.intake import store_event
from bridge.matching import Match
from bridge.mappings import MappingStore
from bridge.processor import EventProcessor
from bridge.refresh import RefreshOutcome


class RecordingPipeline:
    """Stands in for the refresh pipeline: records which mapping was refreshed, and why."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str]] = []

    async def refresh(self, mapping_id: int, *, trigger: str, reason: str, **_: Any) -> RefreshOutcome:
        self.calls.append((mapping_id, trigger, reason))
        return RefreshOutcome(mapping_id, "refreshed", reason)


class MappingLocator:
    def __init__(self, mapping: dict[str, Any]) -> None:
        self.mapping = mapping
        self.located: list[str] = []

    async def locate(self, event: PlaybackEvent) -> Match:
        self.located.append(event.kind)
        return Match(self.mapping, "item_id")


def events(item: str = "item-1") -> list[PlaybackEvent]:
    start = PlaybackEvent(source="jellyfin", kind="start", item_id=item, session_key="tv", received_at=100.0)
    stop = PlaybackEvent(source="jellyfin", kind="stop", item_id=item, session_key="tv", position_seconds=0.0,
                         received_at=100.5)
    return [start, stop]


def processor(store: MappingStore, pipeline: RecordingPipeline, locator: MappingLocator) -> EventProcessor:
    detector = FailureDetector(window_seconds=30, min_progress_seconds=10)
    return EventProcessor(store.db, detector, pipeline, locators={"jellyfin": locator})  # type: ignore[arg-type]


async def test_a_stored_stop_is_detected_before_the_next_event(store: MappingStore) -> None:
    mapping = store.upsert({"strm_path": "/lib/a.strm", "resolved_url": "http://cdn.test/a"})
    pipeline, locator = RecordingPipeline(), MappingLocator(mapping)
    proc = processor(store, pipeline, locator)
    proc.start()
    start, stop = events()
    proc.submit(store_event(store.conn, start), start)
    proc.submit(store_event(store.conn, stop), stop)
    await proc.drain()
    assert pipeline.calls == [(mapping["id"], "jellyfin", "early_stop")]
    outcomes = [r[0] for r in store.conn.execute("select outcome from events order by id")]
    assert outcomes == ["no_failure", "refreshed"]
    await proc.stop()


async def test_events_replayed_at_start_keep_their_order(store: MappingStore) -> None:
    """A crash left a start and its early stop unprocessed: the restart must still see a failure."""
    mapping = store.upsert({"strm_path": "/lib/a.strm", "resolved_url": "http://cdn.test/a"})
    for event in events():
        store_event(store.conn, event)
    pipeline, locator = RecordingPipeline(), MappingLocator(mapping)
    proc = processor(store, pipeline, locator)
    assert proc.replay_unprocessed() == 2
    await asyncio.sleep(0)
    assert pipeline.calls == [] and locator.located == []  # nothing runs before start
    proc.start()
    await proc.drain()
    assert pipeline.calls == [(mapping["id"], "jellyfin", "early_stop")]
    assert store.conn.execute("select count(*) from events where processed_at is null").fetchone()[0] == 0
    await proc.stop()


async def test_accepted_start_is_stored_as_processed_in_its_insert(store: MappingStore) -> None:
    """A start that needs nothing more costs one insert, not an insert and an update."""
    from types import SimpleNamespace

    from bridge.intake import accept_event
    from bridge.metrics import Metrics

    mapping = store.upsert({"strm_path": "/lib/a.strm", "resolved_url": "http://cdn.test/a"})
    pipeline, locator = RecordingPipeline(), MappingLocator(mapping)
    proc = processor(store, pipeline, locator)
    proc.start()
    from bridge.holding import Holding

    services = SimpleNamespace(processor=proc, db=store.db, store=store, metrics=Metrics(),
                               holding=Holding(store.conn, None))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    start, stop = events()
    start_id = await accept_event(services, start)
    store.conn.set_trace_callback(None)
    stop_id = await accept_event(services, stop)
    await proc.drain()
    assert [s.split()[0].lower() for s in statements if not s.startswith(("BEGIN", "COMMIT"))] == ["insert"]
    rows = dict(store.conn.execute("select id, outcome from events").fetchall())
    assert rows == {start_id: "no_failure", stop_id: "refreshed"}
    assert pipeline.calls == [(mapping["id"], "jellyfin", "early_stop")]
    assert locator.located == ["start", "stop"]  # the look-up started at playback start, then the heal's own
    await proc.stop()


async def test_restart_relearns_handled_starts_without_acting_on_them_again(store: MappingStore) -> None:
    """A start handled before the restart pairs with the stop after it; handled pairs are not healed twice."""
    from bridge.timeutil import from_epoch

    mapping = store.upsert({"strm_path": "/lib/a.strm", "resolved_url": "http://cdn.test/a"})
    old_start, old_stop = events("healed-before")
    store_event(store.conn, old_start, settled=True)
    store_event(store.conn, old_stop, settled=True)  # its heal finished before the restart
    waiting, _ = events("item-1")
    store_event(store.conn, waiting, settled=True)
    # a crash interrupted this heal 10 minutes ago: its start is older than the window before now
    crashed_start, crashed_stop = events("crashed")
    ids = [store_event(store.conn, crashed_start, settled=True), store_event(store.conn, crashed_stop)]
    store.conn.executemany("update events set received_at = ? where id = ?",
                           [(from_epoch(time.time() - 600), event_id) for event_id in ids])
    store.conn.commit()

    pipeline, locator = RecordingPipeline(), MappingLocator(mapping)
    proc = processor(store, pipeline, locator)
    assert proc.replay_unprocessed() == 1  # only the crashed stop is replayed
    proc.start()
    await proc.drain()
    assert [call[2] for call in pipeline.calls] == ["early_stop"]  # the crashed heal, once
    stop = PlaybackEvent(source="jellyfin", kind="stop", item_id="item-1", session_key="tv", position_seconds=0.0,
                         received_at=101.0)
    assert proc.detect(stop)[0] is not None  # the handled start survived the restart
    await proc.stop()
