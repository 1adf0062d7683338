"""Correcting identity through the API: `PATCH /api/mappings/{id}` for one row, `PATCH /api/series` for a series.

Both are explicit user actions, so the given fields replace what is stored (unlike import, which only fills
empty fields). The series call also stores the override, so files adopted later (import, watcher,
Sonarr/Radarr) get it too, ranked like a `[[library.series]]` entry.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge import overrides
from bridge.api import public_mapping, read_json_object
from bridge.errors import ApiError, bad_request
from bridge.names import parse_path

MAX_TEXT = 500
TEXT_FIELDS = ("site", "slug", "language", "provider", "source_url")
INT_FIELDS = ("season", "episode")


def _text(body: dict[str, Any], name: str, *, nullable: bool = True) -> str | None:
    value = body[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string{' or null' if nullable else ''}", "invalid_field")
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise bad_request(f"{name} must be at most {MAX_TEXT} printable characters", "invalid_field")
    return value


def _number(body: dict[str, Any], name: str) -> int | None:
    value = body[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
        raise bad_request(f"{name} must be an integer between 0 and 100000, or null", "invalid_field")
    return value


def identity_changes(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(allowed)})", "invalid_field")
    changes: dict[str, Any] = {}
    for name in allowed:
        if name in body:
            changes[name] = _number(body, name) if name in INT_FIELDS else _text(body, name)
    if "provider" in changes and changes["provider"] is None:
        changes["provider"] = ""
    if "source_url" in changes and changes["source_url"] and not changes["source_url"].startswith(("http://", "https://")):
        raise bad_request("source_url must be an http(s) URL", "invalid_field")
    return changes


def _mapping_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "¹".isdigit() is true and int() refuses it
        raise bad_request("mapping id must be a positive integer")
    return int(raw)


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    async def patch_mapping(request: web.Request) -> web.Response:
        services = request.app[key]
        mapping_id = _mapping_id(request)
        changes = identity_changes(await read_json_object(request), (*TEXT_FIELDS, *INT_FIELDS))
        if not changes:
            raise bad_request("nothing to change: give any of site, slug, season, episode, language, provider, "
                              "source_url", "missing_field")
        if services.store.get(mapping_id) is None:
            raise ApiError(404, "not_found", f"no mapping with id {mapping_id}")
        services.store.update(mapping_id, changes)
        return web.json_response(public_mapping(services.store.get(mapping_id)))

    async def patch_series(request: web.Request) -> web.Response:
        services = request.app[key]
        body = await read_json_object(request)
        if not isinstance(body.get("match"), str) or not body["match"].strip():
            raise bad_request("match is required: a glob on the series folder, the title or the slug", "missing_field")
        match = _text(body, "match", nullable=False)
        assert match is not None
        changes = identity_changes({k: v for k, v in body.items() if k != "match"}, overrides.OVERRIDE_FIELDS)
        changes = {k: v for k, v in changes.items() if v}
        if not changes:
            raise bad_request("nothing to set: give any of site, slug, language, provider", "missing_field")
        override = overrides.Override(match, changes)
        store = services.store
        matched: list[int] = []
        for mapping_id, path in store.conn.execute("select id, strm_path from mappings order by id"):
            if override.matches(path, parse_path(path)):
                matched.append(mapping_id)
        store.update_many([(mapping_id, changes) for mapping_id in matched])
        override_id = overrides.save(services.db, match, changes)
        store.conn.commit()
        return web.json_response({"match": match, "set": changes, "override_id": override_id, "updated": len(matched)})

    app.router.add_patch("/api/mappings/{id}", patch_mapping)
    app.router.add_patch("/api/series", patch_series)
