"""Manual refresh, jobs, rescans, cache and events under /api."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api import query_int, read_json_object
from bridge.errors import ApiError, bad_request
from bridge.selection import SelectionError, parse_selection, resolve_selection
from bridge.strm import StrmError
from bridge.validate import InvalidValue, encodable, require_text


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    async def post_refresh(request: web.Request) -> web.Response:
        services = request.app[key]
        body = await read_json_object(request)
        unknown = set(body) - {"id", "path", "identity", "series", "stale", "all", "margin_seconds", "dry_run", "force"}
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(sorted(unknown))}", "invalid_field")
        for flag in ("dry_run", "force"):
            if not isinstance(body.get(flag, False), bool):
                raise bad_request(f"{flag} must be true or false", "invalid_field")
        try:
            selection = parse_selection(body)
        except SelectionError as exc:
            raise bad_request(str(exc), "invalid_selection") from None
        ids = resolve_selection(services.store, selection)
        dry_run, force = bool(body.get("dry_run")), bool(body.get("force"))
        if selection.single and len(ids) <= 1:
            if not ids:
                raise ApiError(404, "not_found", "no mapping matches the selection")
            outcome = await services.pipeline.refresh(ids[0], trigger="manual", reason="manual", force=force,
                                                      dry_run=dry_run)
            return web.json_response(outcome.as_dict())
        job_id = services.jobs.create(ids, {"selection": selection.kind, **selection.params, "dry_run": dry_run,
                                            "force": force, "trigger": "manual", "reason": "manual"})
        services.jobs.start(job_id)
        return web.json_response({"job": job_id, "total": len(ids), "url": f"/api/jobs/{job_id}"}, status=202)

    async def get_job(request: web.Request) -> web.Response:
        services = request.app[key]
        job_id = request.match_info["id"]
        if not encodable(job_id) or len(job_id) > 200:
            raise ApiError(404, "not_found", "no such job")
        job = services.jobs.get(job_id, items_limit=query_int(request, "limit", 1000, 1, 100_000) or 1000,
                                items_offset=query_int(request, "offset", 0, 0, 2**62) or 0)
        if job is None:
            raise ApiError(404, "not_found", "no such job")
        return web.json_response(job)

    async def purge_cache(request: web.Request) -> web.Response:
        return web.json_response({"purged": request.app[key].cache.purge()})

    async def post_rescan(request: web.Request) -> web.Response:
        services = request.app[key]
        body = await read_json_object(request)
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise bad_request("path is required", "missing_field")
        try:
            path = require_text(path, "path", 65_536)
        except InvalidValue as exc:
            raise bad_request(str(exc), "invalid_field") from None
        mapping = services.store.by_path(path)
        if mapping is None:
            try:
                services.library.check_path(path)
            except StrmError as exc:
                raise ApiError(422, exc.code, str(exc)) from None
            raise ApiError(404, "not_found", f"no mapping for {path}")
        queued = await services.rescan.enqueue_for(mapping)
        if not queued:
            raise ApiError(409, "no_target", "no configured media server can refresh this item yet")
        return web.json_response({"queued": [{"target": t, "key": k} for t, k in queued]}, status=202)

    async def list_events(request: web.Request) -> web.Response:
        services = request.app[key]
        limit = query_int(request, "limit", 50, 1, 1000)
        cursor = services.db.conn.execute(
            "select id, source, kind, item_id, received_at, processed_at, outcome, match_rule, mapping_id, error"
            " from events order by id desc limit ?", (limit,))
        names = [c[0] for c in cursor.description]
        return web.json_response({"items": [dict(zip(names, r)) for r in cursor.fetchall()]})

    app.router.add_post("/api/refresh", post_refresh)
    app.router.add_get("/api/jobs/{id}", get_job)
    app.router.add_post("/api/cache/purge", purge_cache)
    app.router.add_post("/api/rescan", post_rescan)
    app.router.add_get("/api/events", list_events)
