"""From an Emby event to the mapping behind the item, and the Emby item id the refresh will need.

Emby sends the item's `Path`, so the file is matched directly (after path_map); identity hints are the
fallback. The item id found here is stored on the mapping (`emby_item_id`) so the target can refresh it
after a restart; `EmbyItemIndex` keeps a bounded in-memory copy for mappings read before the store was.
"""
from __future__ import annotations

from collections import OrderedDict

from bridge.events import PlaybackEvent
from bridge.mappings import MappingStore
from bridge.matching import Match, match_mapping
from bridge.pathmap import PathMap


class EmbyItemIndex:
    """mapping id → Emby item id, bounded (least recently seen dropped first)."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._ids: OrderedDict[int, str] = OrderedDict()

    def remember(self, mapping_id: int, item_id: str) -> None:
        self._ids[mapping_id] = item_id
        self._ids.move_to_end(mapping_id)
        while len(self._ids) > self.max_items:
            self._ids.popitem(last=False)

    def get(self, mapping_id: int) -> str | None:
        return self._ids.get(mapping_id)

    def __len__(self) -> int:
        return len(self._ids)


class EmbyLocator:
    def __init__(self, store: MappingStore, path_map: PathMap, index: EmbyItemIndex) -> None:
        self.store = store
        self.path_map = path_map
        self.index = index

    async def locate(self, event: PlaybackEvent) -> Match:
        local = self.path_map.to_local(event.path) if event.path else None
        match = match_mapping(self.store, local_path=local, hints=event.hints)
        if match.mapping is not None and event.item_id:
            self.index.remember(int(match.mapping["id"]), event.item_id)
            if match.mapping.get("emby_item_id") != event.item_id:
                self.store.update(int(match.mapping["id"]), {"emby_item_id": event.item_id})
        if match.mapping is None and not event.path:
            return Match(None, None, f"Emby sent no Item.Path; {match.detail}")
        return match
