"""Switching Sonarr and Radarr on: `POST /webhooks/sonarr` and `/webhooks/radarr` (their Webhook connection).

The token comes in the URL (`?token=`) or an `X-Api-Key` header (the connection's custom headers); the app's
auth layer checks it against `[sonarr]`/`[radarr] webhook_token` or the API token. Events are applied at once
(a few indexed statements) and stored in `events` for the audit trail.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from bridge import overrides
from bridge.errors import ApiError
from bridge.importer import Adopter
from bridge.pathmap import PathMap
from bridge.probe import expiry_iso
from bridge.services import Services
from bridge.timeutil import now_iso
from bridge.validate import InvalidValue, parse_json
from integrations.arr.handler import ArrRefused, apply
from integrations.arr.payload import App, ArrPayloadError, parse

log = logging.getLogger(__name__)


def handler_for(app_name: App, services: Services) -> Callable[[web.Request], Awaitable[web.Response]]:
    paths = PathMap(getattr(services.config, app_name).path_map)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            # strict JSON with bounded nesting: json.loads raised RecursionError (a 500) on a deep body
            payload = parse_json(raw.decode(request.charset or "utf-8"))
        except (UnicodeDecodeError, LookupError, InvalidValue) as exc:
            raise ApiError(400, "invalid_payload", f"body is not JSON: {exc}"[:500]) from None
        try:
            event = parse(app_name, payload)
        except ArrPayloadError as exc:
            log.info("%s webhook refused: %s", app_name, exc)
            raise ApiError(400, "invalid_payload", str(exc)) from None
        if event.kind == "test":
            return web.json_response({"status": "ok", "event": "Test"})
        if event.kind == "other":
            return web.json_response({"status": "ignored", "event": event.event_type}, status=202)
        adopter = Adopter(services.store, services.library, predict_expiry=expiry_iso,
                          overrides=overrides.all_overrides(services.config.library.series, services.db))
        try:
            result = apply(event, adopter, paths)
        except ArrRefused as exc:
            _audit(services, app_name, event.event_type, "refused", str(exc))
            raise ApiError(422, "not_followed", str(exc)) from None
        _audit(services, app_name, event.event_type, "applied", result)
        return web.json_response(result)

    return handle


def _audit(services: Services, source: str, kind: str, outcome: str, detail: Any) -> None:
    now = now_iso()
    services.db.conn.execute(
        "insert into events (source, kind, item_id, payload, received_at, processed_at, outcome) values (?, ?, ?, ?, ?, ?, ?)",
        (source, kind, "", orjson.dumps(detail, default=str).decode(), now, now, outcome))
    services.db.conn.commit()


def wire(services: Services, targets: dict[str, Any], locators: dict[str, Any]) -> None:
    def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
        for name in ("sonarr", "radarr"):
            handle = handler_for(name, services)  # type: ignore[arg-type]
            app.router.add_post(f"/webhooks/{name}", handle)
            app.router.add_put(f"/webhooks/{name}", handle)  # the connection's Method can be PUT

    services.route_adders.append(add_routes)
