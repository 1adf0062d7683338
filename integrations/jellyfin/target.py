"""Jellyfin as a rescan target: after a rewrite, refresh the one item so it re-reads the .strm."""
from __future__ import annotations

from typing import Any, Protocol

from bridge.mappings import Mapping
from bridge.rescan import RescanRequest, TargetGone, TargetRetry
from integrations.jellyfin.client import JellyfinAuthError, JellyfinError, JellyfinNotFound, JellyfinUnavailable
from integrations.jellyfin.webhook import normalize_guid


class ItemRefresher(Protocol):
    async def refresh_item(self, item_id: str) -> None: ...

    async def close(self) -> None: ...


class JellyfinTarget:
    """Coalesces per item; a short debounce because Jellyfin queues the refresh itself and answers 204 at once."""

    name = "jellyfin"

    def __init__(self, client: ItemRefresher, *, debounce_seconds: float = 1.0, gap_seconds: float = 0.2) -> None:
        self.client = client
        self.debounce_seconds = debounce_seconds
        self.gap_seconds = gap_seconds

    async def requests_for(self, mapping: Mapping) -> list[RescanRequest]:
        """Nothing to ask until a webhook has told us which Jellyfin item the mapping is."""
        item_id = normalize_guid(mapping.get("jellyfin_item_id"))
        if item_id is None:
            return []
        return [RescanRequest(key=item_id, payload={"item_id": item_id})]

    async def send(self, payload: dict[str, Any]) -> None:
        item_id = payload.get("item_id")
        if normalize_guid(item_id) is None:
            raise TargetGone(f"rescan payload has no valid item_id: {item_id!r}")
        try:
            await self.client.refresh_item(str(item_id))
        except JellyfinNotFound as exc:
            raise TargetGone(f"Jellyfin item {item_id} no longer exists") from exc
        except JellyfinAuthError as exc:
            raise TargetRetry(f"Jellyfin refused the API key: {exc}") from exc
        except JellyfinUnavailable as exc:
            raise TargetRetry(str(exc)) from exc
        except JellyfinError as exc:
            raise TargetRetry(f"unexpected answer from Jellyfin: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()
