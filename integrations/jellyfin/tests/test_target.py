"""JellyfinTarget against the fake server, alone and inside the core's persisted rescan queue."""
from __future__ import annotations

from typing import Callable

import pytest
from sqlite_utils import Database

from bridge.mappings import MappingStore
from bridge.rescan import RescanQueue, RescanRequest, Target, TargetGone, TargetRetry
from integrations.jellyfin.client import JellyfinClient
from integrations.jellyfin.target import JellyfinTarget
from tests.fakes.jellyfin import FakeJellyfin

ITEM = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


@pytest.fixture
def target(client: JellyfinClient) -> JellyfinTarget:
    return JellyfinTarget(client)


def test_implements_the_target_protocol(target: JellyfinTarget) -> None:
    assert isinstance(target, Target)
    assert target.name == "jellyfin"
    assert 0 < target.debounce_seconds <= 5 and 0 <= target.gap_seconds < 1


async def test_requests_for_needs_an_item_id(target: JellyfinTarget) -> None:
    assert await target.requests_for({"id": 1, "strm_path": "/x.strm", "jellyfin_item_id": None}) == []
    assert await target.requests_for({"id": 1, "strm_path": "/x.strm"}) == []
    assert await target.requests_for({"id": 1, "jellyfin_item_id": "A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90"}) == [
        RescanRequest(key=ITEM, payload={"item_id": ITEM})
    ]


async def test_send_refreshes_the_item(fake: FakeJellyfin, target: JellyfinTarget) -> None:
    fake.add_item(ITEM, "/data/tv/e.strm")
    await target.send({"item_id": ITEM})
    assert [key for key, _ in fake.refreshed] == [ITEM]
    assert fake.refreshed[0][1]["replaceAllMetadata"] == "false"


async def test_gone_item_is_target_gone(fake: FakeJellyfin, target: JellyfinTarget) -> None:
    with pytest.raises(TargetGone):
        await target.send({"item_id": ITEM})
    with pytest.raises(TargetGone):
        await target.send({"item_id": "nonsense"})


@pytest.mark.parametrize("status", [500, 503, 401])
async def test_failures_are_retried_later(fake: FakeJellyfin, target: JellyfinTarget, status: int) -> None:
    fake.add_item(ITEM, "/data/tv/e.strm")
    fake.fail_with(status, everything=True)
    with pytest.raises(TargetRetry):
        await target.send({"item_id": ITEM})


async def test_hang_is_retried_later(fake: FakeJellyfin, make_client: Callable[..., JellyfinClient]) -> None:
    fake.add_item(ITEM, "/data/tv/e.strm")
    target = JellyfinTarget(make_client(timeout=0.3))
    fake.hang(True)
    with pytest.raises(TargetRetry):
        await target.send({"item_id": ITEM})


async def test_through_the_rescan_queue(
    fake: FakeJellyfin, client: JellyfinClient, db: Database, store: MappingStore
) -> None:
    """Two rewrites of one mapping coalesce into one refresh; a 500 keeps the row for a retry."""
    fake.add_item(ITEM, "/data/tv/e.strm")
    mapping = store.upsert({"strm_path": "/lib/e.strm", "jellyfin_item_id": ITEM})
    target = JellyfinTarget(client, debounce_seconds=0.0, gap_seconds=0.0)
    queue = RescanQueue(db, {"jellyfin": target}, base_backoff=0.0)
    assert await queue.enqueue_for(mapping) == [("jellyfin", ITEM)]
    await queue.enqueue_for(mapping)
    assert len(queue.pending()) == 1

    fake.fail_with(500)
    assert await queue.run_due() == 0
    (row,) = queue.pending()
    assert row["attempts"] == 1 and "500" in row["last_error"]

    fake.fail_with(None)
    assert await queue.run_due() == 1
    assert queue.pending() == []
    assert [key for key, _ in fake.refreshed] == [ITEM]
    await queue.stop()
