"""The aiohttp application: middlewares (errors, auth, body limit), routes and the service lifecycle."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bridge import api, api_identity, api_refresh, openapi
from bridge.auth import presented_token, token_matches
from bridge.errors import ApiError, error_response
from bridge.holding import RETRY_AFTER_SECONDS, is_locked
from bridge.services import Services
from bridge.web import add_routes as add_dashboard_routes, is_dashboard_path

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = ("/healthz",)


def accepted_tokens(services: Services, path: str) -> list[str] | None:
    """Which tokens open this path; None means the path needs none."""
    if path in OPEN_PATHS or path.startswith("/play/") or path.startswith("/static/"):
        return None
    if is_dashboard_path(path):  # the login page, and pages that accept only the dashboard's session cookie
        return None
    if path.startswith("/webhooks/"):
        source = path.split("/")[2]
        section = getattr(services.config, source, None)
        own = getattr(section, "webhook_token", "") if section is not None else ""
        return [own, services.api_token]
    return [services.api_token]


def _error_from_http(exc: web.HTTPException) -> web.Response:
    code = exc.reason.lower().replace(" ", "_") if exc.reason else "error"
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return error_response(exc.status, code, detail, headers=kept)


def guard_middleware_for(services: Services) -> Callable[..., Any]:
    """Errors as JSON, then auth, then the body limit: one middleware, because every webhook pays for each layer."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None:  # the address we are reached on: never a probe or write target
            services.egress.note_socket(request.transport.get_extra_info("sockname"))
        try:
            accepted = accepted_tokens(services, request.path)
            if accepted is not None and not token_matches(presented_token(request), accepted):
                raise ApiError(401, "unauthorized", "missing or wrong token (Authorization: Bearer, X-Api-Key or ?token=)")
            limit = services.body_limit_for(request.path)
            if request.content_length is not None and request.content_length > limit:
                raise ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.error, exc.detail)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error_from_http(exc)
        except asyncio.CancelledError:
            raise
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                log.exception("unhandled error on %s %s", request.method, request.path)
                return error_response(500, "internal_error", type(exc).__name__)
            # no rollback here: the transaction may carry other coroutines' pending writes (their commit ends it)
            return error_response(503, "database_busy", "the database is locked by another process; retry later",
                                  headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal_error", type(exc).__name__)

    return guard


class RedactingAccessLogger(AbstractAccessLogger):
    """Access lines without query strings: Plex puts its token there (the log filter masks the rest)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1000)


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.store.conn.execute("select 1").fetchone()  # reads never wait for a writer (WAL)
    body: dict[str, object] = {"status": "ok", "mappings": services.store.count()}
    if services.holding.active:  # another process holds the write lock: webhooks are being held
        body["held_webhooks"] = len(services.holding.held)
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(request.app[SERVICES].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[guard_middleware_for(services)],
        client_max_size=services.config.server.max_body_bytes,
    )
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    api.add_routes(app, SERVICES)
    api_refresh.add_routes(app, SERVICES)
    api_identity.add_routes(app, SERVICES)
    openapi.add_routes(app, SERVICES)
    add_dashboard_routes(app, SERVICES)
    for add_routes in services.route_adders:
        add_routes(app, SERVICES)

    async def on_startup(app: web.Application) -> None:
        await services.start()

    async def on_shutdown(app: web.Application) -> None:
        await services.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app

