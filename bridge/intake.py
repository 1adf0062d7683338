"""Webhook intake shared by every source: parse, store durably, answer 202, process asynchronously.

Parsing is the integration's job (a `Parser`); storing and queueing is the same for all of them. Events
the detector never uses (progress, library events) are answered without touching the database, because
the Jellyfin plugin can send every PlaybackProgress tick. A well-formed payload about something strm-bridge
does not handle (a library event, plex.tv streaming content) is acknowledged with 202, outcome "ignored" and
the reason; only a payload the sender got wrong is refused (400).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from bridge.errors import ApiError
from bridge.events import Ignored, PlaybackEvent
from bridge.holding import RETRY_AFTER_SECONDS, HoldFull, is_locked
from bridge.timeutil import now_iso
from bridge.validate import InvalidValue

log = logging.getLogger(__name__)

HELD = 0
"""accept_event's answer for an event held while another process locks the database (it has no id yet)."""

Parser = Callable[[web.Request], Awaitable[PlaybackEvent | Ignored | None]]
"""None stands for a valid notification that is not about playback."""


def ignored_response(reason: str) -> web.Response:
    body = orjson.dumps({"status": "ignored", "outcome": "ignored", "reason": reason})
    return web.Response(body=body, status=202, content_type="application/json")


def event_from_json(text: str) -> PlaybackEvent:
    data: dict[str, Any] = json.loads(text)
    return PlaybackEvent(**data)


def encode_event(event: PlaybackEvent) -> str:
    """The stored form of an event; InvalidValue when it holds what JSON cannot carry.

    orjson refuses integers past 64 bits, lone surrogates (which `json.loads` lets through from `\ud800`
    escapes) and very deep nesting: that is the sender's fault and must be a 400, not a 500 at insert time.
    """
    # the event's fields are already JSON types: a shallow dump avoids dataclasses.asdict's deep copy, and
    # orjson takes 1 µs where json takes 7, on every webhook
    try:
        return orjson.dumps(event.__dict__, default=str).decode()
    except orjson.JSONEncodeError as exc:
        raise InvalidValue(f"the event cannot be stored: {exc}") from None


def store_event(conn: Any, event: PlaybackEvent, *, commit: bool = True, settled: bool = False,
                payload: str | None = None, received_at: str | None = None) -> int:
    """Insert one event; `settled` stores it as already processed (a start the detector needs nothing more of)."""
    now = received_at or now_iso()
    cursor = conn.execute(
        "insert into events (source, kind, item_id, payload, received_at, processed_at, outcome)"
        " values (?, ?, ?, ?, ?, ?, ?)",
        (event.source, event.kind, event.item_id, payload if payload is not None else encode_event(event), now,
         now if settled else None, "no_failure" if settled else None),
    )
    if commit:
        conn.commit()
    return int(cursor.lastrowid or 0)


async def accept_event(services: Any, event: PlaybackEvent) -> int | None:
    """Store durably and act on an event the detector uses; None when it is ignored. Webhooks and listeners.

    Detection runs first, in arrival order, so that a start needing nothing more is stored as processed in the
    same insert. The 202 still waits for the commit; a crash before it loses the event and its heal together.
    """
    processor = services.processor
    if event.kind not in processor.kinds_used(event.source):
        services.metrics.webhook(event.source, event.kind, "ignored")
        return None
    payload = encode_event(event)  # before detection: a refused event must leave the detector untouched
    signal, settled = processor.detect(event)
    holding = services.holding
    if holding.active:  # behind events waiting for a foreign lock: keep the order of arrival
        return _hold(services, event, signal, settled)
    try:
        event_id = store_event(services.db.conn, event, commit=False, settled=settled, payload=payload)
    except sqlite3.OperationalError as exc:
        if not is_locked(exc):
            raise
        services.db.conn.rollback()  # only a read snapshot: a pending write would have held the lock already
        return _hold(services, event, signal, settled)
    committed = services.store.group_commit.wait()
    # the heal starts alongside the commit, not after it: its first database write joins the same transaction
    processor.dispatch(event_id, event, signal)
    await committed
    services.metrics.webhook(event.source, event.kind)
    return event_id


def _hold(services: Any, event: PlaybackEvent, signal: Any, settled: bool) -> int:
    """Another process holds the write lock: the event waits in memory and in the journal, the 202 goes now."""
    try:
        services.holding.hold(event, signal, settled)
    except HoldFull as exc:
        services.metrics.webhook(event.source, "refused")
        raise web.HTTPServiceUnavailable(text=f"database locked by another process; {exc}; retry later",
                                         headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    services.metrics.webhook(event.source, event.kind)
    return HELD


def webhook_handler(source: str, parse: Parser, services_key: web.AppKey[Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        services = request.app[services_key]
        try:
            event = await parse(request)
        except ValueError as exc:
            log.info("%s webhook refused: %s", source, exc)
            services.metrics.webhook(source, "", "invalid")
            raise ApiError(400, "invalid_payload", str(exc)) from None
        if event is None:
            return ignored_response(f"not a playback notification ({source})")
        if isinstance(event, Ignored):
            services.metrics.webhook(source, "", "ignored")
            log.debug("%s webhook ignored: %s", source, event.reason)
            return ignored_response(event.reason)
        try:
            event_id = await accept_event(services, event)
        except InvalidValue as exc:  # only encode_event raises it: nothing was stored or detected
            log.info("%s webhook refused: %s", source, exc)
            raise ApiError(400, "invalid_payload", str(exc)) from None
        if event_id is None:
            return ignored_response(f"{event.raw_kind or event.kind} events are not used")
        if event_id == HELD:
            return web.Response(body=b'{"status": "accepted", "event_id": null, "held": true}', status=202,
                                content_type="application/json")
        return web.Response(body=b'{"status": "accepted", "event_id": %d}' % event_id, status=202,
                            content_type="application/json")

    return handle
