"""Switching Plex and Tautulli on: webhook routes, the optional alert listener, locator and partial-scan target."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge.events import Ignored, PlaybackEvent
from bridge.intake import accept_event, webhook_handler
from bridge.pathmap import PathMap
from bridge.services import Services
from bridge.validate import InvalidValue, parse_json
from integrations.plex.alerts import PlexAlertListener
from integrations.plex.client import PlexClient
from integrations.plex.locator import PlexLocator
from integrations.plex.target import PlexTarget
from integrations.plex.tautulli import tautulli_event
from integrations.plex.webhook import WebhookError, plex_event, read_plex_multipart

log = logging.getLogger(__name__)


def wire(services: Services, targets: dict[str, Any], locators: dict[str, Any]) -> None:
    config = services.config.plex

    async def parse_plex(request: web.Request) -> PlaybackEvent | Ignored:
        return plex_event(await read_plex_multipart(request, max_body_bytes=config.max_body_bytes))

    async def parse_tautulli(request: web.Request) -> PlaybackEvent | Ignored:
        try:
            body = parse_json(await request.read(), "Tautulli body")
        except InvalidValue as exc:
            raise WebhookError(str(exc)) from None
        if not isinstance(body, dict):
            raise WebhookError("Tautulli body must be a JSON object")
        return tautulli_event(body)

    def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
        app.router.add_post("/webhooks/plex", webhook_handler("plex", parse_plex, key))
        app.router.add_post("/webhooks/tautulli", webhook_handler("tautulli", parse_tautulli, key))

    services.route_adders.append(add_routes)
    services.body_limits["/webhooks/plex"] = config.max_body_bytes
    path_map = PathMap(config.path_map)
    client = PlexClient(config.url, config.token, config.timeout_seconds,
                        sections_ttl_seconds=config.sections_ttl_seconds) if config.url and config.token else None
    locator = PlexLocator(client, services.store, path_map, strm_roots=services.config.library.roots)
    locators["plex"] = locator
    locators["tautulli"] = locator  # Tautulli reports Plex items: same lookup, and its `file` is used first
    if client is None:
        return
    targets["plex"] = PlexTarget.from_config(config, client, path_map)

    async def close_client() -> None:
        await client.close()

    services.stoppers.append(close_client)
    if config.listen_alerts:
        listener = PlexAlertListener(client, lambda event: accept_event(services, event))  # a coroutine: it schedules it

        async def start_listener() -> None:
            listener.start()

        services.starters.append(start_listener)
        services.stoppers.append(listener.stop)
