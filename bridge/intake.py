"""Webhook intake shared by every source: parse, store durably, answer 202, process asynchronously.

Parsing is the integration's job (a `Parser`); storing and queueing is the same for all of them. Events
the detector never uses (progress, library events) are answered without touching the database, because
the Jellyfin plugin can send every PlaybackProgress tick.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any, Awaitable, Callable

from aiohttp import web

from bridge.errors import ApiError
from bridge.events import PlaybackEvent
from bridge.timeutil import now_iso

log = logging.getLogger(__name__)

Parser = Callable[[web.Request], Awaitable[PlaybackEvent | None]]


def event_from_json(text: str) -> PlaybackEvent:
    data: dict[str, Any] = json.loads(text)
    return PlaybackEvent(**data)


def store_event(conn: Any, event: PlaybackEvent) -> int:
    cursor = conn.execute(
        "insert into events (source, kind, item_id, payload, received_at) values (?, ?, ?, ?, ?)",
        (event.source, event.kind, event.item_id, json.dumps(asdict(event), default=str), now_iso()),
    )
    conn.commit()
    return int(cursor.lastrowid or 0)


def accept_event(services: Any, event: PlaybackEvent) -> int | None:
    """Store and queue an event the detector uses; None when it is ignored. Shared by webhooks and listeners."""
    if event.kind not in services.processor.kinds_used(event.source):
        services.metrics.webhooks.labels(event.source, "ignored").inc()
        return None
    event_id = store_event(services.db.conn, event)
    services.metrics.webhooks.labels(event.source, event.kind).inc()
    services.processor.submit(event_id, event)
    return event_id


def webhook_handler(source: str, parse: Parser, services_key: web.AppKey[Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        services = request.app[services_key]
        try:
            event = await parse(request)
        except ValueError as exc:
            log.info("%s webhook refused: %s", source, exc)
            raise ApiError(400, "invalid_payload", str(exc)) from None
        event_id = accept_event(services, event) if event is not None else None
        if event_id is None:
            return web.json_response({"status": "ignored"}, status=202)
        return web.json_response({"status": "accepted", "event_id": event_id}, status=202)

    return handle
