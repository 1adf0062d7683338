"""Switching the Jellyfin integration on: webhook route, locator and rescan target, from `[jellyfin]`."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge.events import Ignored, PlaybackEvent
from bridge.intake import webhook_handler
from bridge.pathmap import PathMap
from bridge.services import Services
from integrations.jellyfin.client import JellyfinClient
from integrations.jellyfin.locator import JellyfinLocator
from integrations.jellyfin.target import JellyfinTarget
from integrations.jellyfin.webhook import parse_webhook

log = logging.getLogger(__name__)


async def parse_request(request: web.Request) -> PlaybackEvent | Ignored:
    return parse_webhook(await request.read(), request.headers.get("Content-Type", ""))


def wire(services: Services, targets: dict[str, Any], locators: dict[str, Any]) -> None:
    """The webhook route is always there; lookups and refreshes need `jellyfin.url` and `jellyfin.api_key`."""
    config = services.config.jellyfin

    def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
        app.router.add_post("/webhooks/jellyfin", webhook_handler("jellyfin", parse_request, key))

    services.route_adders.append(add_routes)
    if not (config.url and config.api_key):
        return
    client = JellyfinClient(config.url, config.api_key, timeout=config.timeout_seconds)
    locators["jellyfin"] = JellyfinLocator(client, services.store, PathMap(config.path_map))
    targets["jellyfin"] = JellyfinTarget(client, debounce_seconds=config.refresh_debounce_seconds,
                                         gap_seconds=config.refresh_gap_seconds)
    for name in ("Jellyfin", "JELLYFIN"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the library logs every failed request at ERROR

    async def check() -> None:
        try:
            info = await client.check()
            log.info("Jellyfin %s at %s reachable", info.get("name"), config.url)
        except Exception as exc:  # not fatal: rescans wait in the queue until it answers
            log.warning("Jellyfin at %s not usable yet: %s", config.url, exc)

    services.starters.append(check)
