"""The Emby item id found at locate time is stored, so a rebuilt target still knows what to refresh."""
from __future__ import annotations

from pathlib import Path

from bridge.config import PathMapEntry
from bridge.events import PlaybackEvent
from bridge.mappings import MappingStore
from bridge.pathmap import PathMap
from integrations.emby.client import EmbyClient
from integrations.emby.locator import EmbyItemIndex, EmbyLocator
from integrations.emby.target import EmbyTarget


async def test_item_id_survives_a_new_index(store: MappingStore, library_root: Path) -> None:
    path = library_root / "Show" / "S01E01.strm"
    mapping = store.upsert({"strm_path": str(path), "resolved_url": "http://cdn.test/1"})
    locator = EmbyLocator(store, PathMap([PathMapEntry(server="/mnt/tv", local=str(library_root))]), EmbyItemIndex())
    event = PlaybackEvent(source="emby", kind="stop", item_id="4711", path="/mnt/tv/Show/S01E01.strm")
    match = await locator.locate(event)
    assert match.mapping is not None and match.rule == "strm_path"
    stored = store.get(mapping["id"])
    assert stored["emby_item_id"] == "4711"

    target = EmbyTarget(EmbyClient("http://127.0.0.1:9", "key-0123456789"), EmbyItemIndex())  # as after a restart
    requests = await target.requests_for(stored)
    await target.close()
    assert [(r.key, r.payload) for r in requests] == [("4711", {"item_id": "4711"})]
