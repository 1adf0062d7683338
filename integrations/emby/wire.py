"""Switching Emby on: webhook route, locator by the path Emby sends, item-refresh target."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.events import Ignored, PlaybackEvent
from bridge.intake import webhook_handler
from bridge.pathmap import PathMap
from bridge.services import Services
from integrations.emby.locator import EmbyItemIndex, EmbyLocator
from integrations.emby.target import EmbyTarget
from integrations.emby.webhook import emby_event, read_emby_body


async def parse_request(request: web.Request) -> PlaybackEvent | Ignored:
    return emby_event(await read_emby_body(request))


def wire(services: Services, targets: dict[str, Any], locators: dict[str, Any]) -> None:
    config = services.config.emby

    def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
        app.router.add_post("/webhooks/emby", webhook_handler("emby", parse_request, key))

    services.route_adders.append(add_routes)
    index = EmbyItemIndex()
    locators["emby"] = EmbyLocator(services.store, PathMap(config.path_map), index)
    if config.url and config.api_key:
        targets["emby"] = EmbyTarget.from_config(config, index)
