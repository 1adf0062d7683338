"""From a Jellyfin webhook to the mapping behind it: item id → server path → our path → mapping.

Webhooks carry an ItemId but no file path, so the path comes from the API, goes through path_map (Docker
volumes differ) and then through the core's ordered matching rules. The item id is stored on the mapping
so the rescan target knows which item to refresh after a rewrite.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from bridge.events import PlaybackEvent
from bridge.mappings import MappingStore
from bridge.matching import Match, match_mapping
from bridge.pathmap import PathMap
from integrations.jellyfin.client import ItemInfo, JellyfinUnavailable

log = logging.getLogger(__name__)


class ItemLookup(Protocol):
    async def item_path(self, item_id: str) -> ItemInfo | None: ...


class JellyfinLocator:
    def __init__(self, client: ItemLookup, store: MappingStore, path_map: PathMap) -> None:
        self.client = client
        self.store = store
        self.path_map = path_map

    async def locate(self, event: PlaybackEvent) -> Match:
        """Raises JellyfinUnavailable only when neither the API nor a stored link can answer."""
        info: ItemInfo | None = None
        server_path: str | None = None
        try:
            info = await self.client.item_path(event.item_id)
        except JellyfinUnavailable:
            linked = self.store.by_jellyfin_item(event.item_id)
            if linked is not None:
                return Match(linked, "item_id", "Jellyfin unavailable; matched by the stored item id")
            if not event.path:
                raise
            server_path = event.path  # a patched plugin may send Path; good enough while the API is down
        else:
            if info is None:
                return Match(None, None, "item unknown to Jellyfin")
            server_path = info.path or event.path
        if not server_path:
            kind = info.item_type if info is not None else None
            return Match(None, None, f"Jellyfin item has no file path (type {kind or 'unknown'})")

        local_path = self.path_map.to_local(server_path)
        if not local_path.lower().endswith(".strm"):
            return Match(None, None, f"item's file is not a .strm: {local_path}")

        hints: dict[str, Any] = dict(event.hints)
        if info is not None:
            hints.update(info.hints())  # the server's own record wins over what the template rendered
        match = match_mapping(self.store, local_path=local_path, hints=hints)
        if match.mapping is None:
            detail = match.detail or "no mapping matches"
            return Match(None, None, f"{detail} (file {local_path})")
        return self._link(match, event.item_id)

    def _link(self, match: Match, item_id: str) -> Match:
        """Remember which Jellyfin item a mapping is, moving the link off any stale holder."""
        mapping = match.mapping
        assert mapping is not None
        if mapping.get("jellyfin_item_id") == item_id:
            return match
        previous = self.store.by_jellyfin_item(item_id)
        if previous is not None and previous["id"] != mapping["id"]:
            self.store.update(previous["id"], {"jellyfin_item_id": None}, commit=False)
        self.store.update(mapping["id"], {"jellyfin_item_id": item_id})
        log.info("mapping %s is Jellyfin item %s (matched by %s)", mapping["id"], item_id, match.rule)
        return Match(self.store.get(mapping["id"]), match.rule, match.detail)
