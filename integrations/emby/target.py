"""Emby as a rescan target: refresh the item so Emby re-reads its .strm.

The request is keyed by the Emby item id, which only the locator knows (from the webhook that reported the
failure); a mapping Emby never reported has nothing to refresh, and Emby's own scan picks it up later.
"""
from __future__ import annotations

import logging
from typing import Any

from bridge.config import EmbyConfig
from bridge.mappings import Mapping
from bridge.rescan import RescanRequest, TargetGone, TargetRetry
from integrations.emby.client import (
    EmbyAuthError,
    EmbyClient,
    EmbyError,
    EmbyNotFound,
    EmbyRequestError,
    EmbyUnavailable,
)
from integrations.emby.locator import EmbyItemIndex

log = logging.getLogger(__name__)


class EmbyTarget:
    name = "emby"

    def __init__(
        self,
        client: EmbyClient,
        index: EmbyItemIndex,
        *,
        debounce_seconds: float = 2.0,
        gap_seconds: float = 0.2,
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.index = index
        self.debounce_seconds = debounce_seconds
        self.gap_seconds = gap_seconds
        self.owns_client = owns_client

    @classmethod
    def from_config(cls, config: EmbyConfig, index: EmbyItemIndex) -> "EmbyTarget":
        return cls(EmbyClient(config.url, config.api_key, config.timeout_seconds), index)

    async def requests_for(self, mapping: Mapping) -> list[RescanRequest]:
        mapping_id = mapping.get("id")
        item_id = mapping.get("emby_item_id") or (self.index.get(int(mapping_id)) if mapping_id is not None else None)
        if not item_id:
            log.debug("no Emby item known for mapping %s: nothing to refresh", mapping_id)
            return []
        return [RescanRequest(key=item_id, payload={"item_id": item_id})]

    async def send(self, payload: dict[str, Any]) -> None:
        try:
            await self.client.refresh_item(str(payload["item_id"]))
        except EmbyNotFound as exc:
            raise TargetGone(str(exc)) from None
        except EmbyRequestError as exc:
            raise TargetGone(f"Emby refused the refresh: {exc}") from None
        except (EmbyUnavailable, EmbyAuthError, EmbyError) as exc:
            raise TargetRetry(str(exc)) from None

    async def close(self) -> None:
        if self.owns_client:
            await self.client.close()
