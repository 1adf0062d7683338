"""The rescan queue loses no request that coalesces into a row while that row is being sent."""
from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from bridge.rescan import RescanQueue, RescanRequest


class RewrittenDuringSend:
    """A target whose first send overlaps a rewrite of the same file: its rescan coalesces into the row in flight."""

    name = "server"
    debounce_seconds = 0.0
    gap_seconds = 0.0

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.queue: RescanQueue | None = None

    async def requests_for(self, mapping: dict[str, Any]) -> list[RescanRequest]:
        return [RescanRequest("item", {"v": mapping["v"]})]

    async def send(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)
        if len(self.sent) == 1 and self.queue is not None:
            await self.queue.enqueue_for({"v": 2})  # the server may already have read the file: ask again

    async def close(self) -> None:
        pass


async def test_a_request_coalesced_into_the_row_being_sent_is_sent_after_it(db: Database) -> None:
    target = RewrittenDuringSend()
    queue = RescanQueue(db, {"server": target})
    target.queue = queue
    await queue.enqueue_for({"v": 1})
    assert await queue.run_due() == 1
    assert [json.loads(row["payload"]) for row in queue.pending()] == [{"v": 2}]
    assert await queue.run_due() == 1
    assert target.sent == [{"v": 1}, {"v": 2}] and queue.pending() == []
