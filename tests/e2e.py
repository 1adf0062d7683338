"""Shared pieces of the end-to-end tests: a bridge wired to the fake provider, expired episodes on disk, polling."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from bridge.mappings import MappingStore
from tests.fakes.provider import FakeProvider


def refresh_config(provider: FakeProvider, cooldown_seconds: float = 600) -> str:
    return f"""
[refresh]
resolvers = ["http"]
cooldown_seconds = {cooldown_seconds}
[resolvers.http]
url = "{provider.base_url}/resolve"
"""


def plant_expired(provider: FakeProvider, store: MappingStore, path: Path, slug: str, episode: int,
                  **fields: Any) -> str:
    """An episode the provider has, whose .strm and mapping hold a URL that expired two minutes ago.

    `fields` go into the row too (a Jellyfin item id; `expires_at=None` when re-planting a healed row)."""
    key = f"{slug}/1/{episode}"
    if not provider.has_episode(key):  # re-planting keeps its bytes: 64 kB of hashing per episode
        provider.add_episode(key)
    expired = provider.sign(key, expires_at=time.time() - 120)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(expired + "\n")
    store.upsert({"strm_path": str(path), "resolved_url": expired, "site": "fake", "slug": slug, "season": 1,
                  "episode": episode, "language": "German Dub", "state": "ok", **fields})
    return expired


async def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`check()`'s first true value, polled every 50 ms: for what a background task (the watcher) does on its own."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
