"""The manual API under /api: mappings now; refresh, jobs, rescans and cache are added by their modules."""
from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from bridge import retire
from bridge.egress import EgressDenied
from bridge.errors import ApiError, bad_request
from bridge.probe import expiry_iso
from bridge.mappings import IDENTITY_FIELDS, STATES, Mapping
from bridge.strm import StrmError
from bridge.timeutil import parse_iso, to_iso
from bridge.validate import INT64_MAX, InvalidValue, check_storable, parse_json, require_int, require_text

MAX_PAGE = 1000
MAX_NUMBER = 2**31 - 1
"""Largest season or episode number a registration may carry."""
MAX_PATH_TEXT = 65_536
"""Longest path string read from a request; the file system's own limits are checked after (422)."""


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; any charset Python knows, strict JSON, bounded nesting, else 400."""
    raw = await request.read()  # the body limit (413) applies here
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        try:
            raw = raw.decode(charset)  # type: ignore[assignment]
        except LookupError:
            raise bad_request(f"unknown charset {charset[:40]!r}", "invalid_json") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"body is not {charset[:40]} text: {exc}"[:300], "invalid_json") from None
    try:
        body = parse_json(raw)
    except InvalidValue as exc:
        raise bad_request(str(exc)[:500], "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object", "invalid_json")
    return body


def query_text(request: web.Request, name: str, max_length: int = MAX_PATH_TEXT) -> str | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return require_text(raw, f"query parameter {name}", max_length)
    except InvalidValue as exc:
        raise bad_request(str(exc)) from None


def path_int(request: web.Request, name: str = "id") -> int:
    """An integer path segment that SQLite can bind (an id past 64 bits is a 400, not an OverflowError)."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20):
        raise bad_request(f"{name} must be an integer, got {raw[:64]!r}")
    try:
        return require_int(int(raw), name, -INT64_MAX, INT64_MAX)
    except InvalidValue as exc:
        raise bad_request(str(exc)) from None

def query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_request(f"query parameter {name} must be between {low} and {high}")
    return value


def public_mapping(mapping: Mapping) -> dict[str, Any]:
    return dict(mapping)


def _optional_str(body: dict[str, Any], name: str, max_length: int = 4096) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return require_text(value, name, max_length)
    except InvalidValue as exc:
        raise bad_request(str(exc), "invalid_field") from None


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    """An integer, or a string of ASCII digits (generators send both); `"²".isdigit()` is not enough."""
    value = body.get(name)
    if value is None:
        return None
    try:
        return require_int(value, name, 0, MAX_NUMBER, digits_ok=True)
    except InvalidValue as exc:
        raise bad_request(str(exc), "invalid_field") from None


def mapping_from_body(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a registration body; raises ApiError(400) naming the offending field."""
    allowed = {"strm_path", "resolved_url", *IDENTITY_FIELDS, "provider_used", "source_url", "resolved_headers", "expires_at"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}", "invalid_field")
    for required in ("strm_path", "resolved_url"):
        if not body.get(required):
            raise bad_request(f"{required} is required", "missing_field")
    fields: dict[str, Any] = {
        "strm_path": _optional_str(body, "strm_path", MAX_PATH_TEXT),
        "resolved_url": _optional_str(body, "resolved_url", MAX_PATH_TEXT),
        "site": _optional_str(body, "site"),
        "slug": _optional_str(body, "slug"),
        "season": _optional_int(body, "season"),
        "episode": _optional_int(body, "episode"),
        "language": _optional_str(body, "language"),
        "provider": _optional_str(body, "provider") or "",
    }
    for name in ("provider_used", "source_url"):
        if name in body:
            fields[name] = _optional_str(body, name, MAX_PATH_TEXT if name == "source_url" else 4096)
    headers = body.get("resolved_headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise bad_request("resolved_headers must be an object of string values", "invalid_field")
        try:
            check_storable(headers, "resolved_headers")
        except InvalidValue as exc:
            raise bad_request(str(exc), "invalid_field") from None
        fields["resolved_headers"] = headers
    if body.get("expires_at") is not None:
        expires = _optional_str(body, "expires_at", 64)
        try:
            fields["expires_at"] = to_iso(parse_iso(expires or ""))
        except ValueError:
            raise bad_request("expires_at must be an ISO-8601 time", "invalid_field") from None
    return fields


def refuse_self_url(services: Any, url: str) -> None:
    """A mapping's URL is what players and probes are sent to: never the bridge itself, nor a denied host."""
    if services.links.points_at_bridge(url):
        raise ApiError(422, "points_at_bridge", "resolved_url points at strm-bridge itself; give the provider's URL")
    try:
        services.egress.check_literal(url)
    except EgressDenied as exc:
        raise ApiError(422, "egress_denied", f"resolved_url: {exc}") from None


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    async def list_mappings(request: web.Request) -> web.Response:
        services = request.app[key]
        state = request.query.get("state")
        if state and state not in STATES:
            raise bad_request(f"state must be one of {', '.join(STATES)}")
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, 2**62)
        rows, total = services.store.search(
            path=query_text(request, "path"),
            slug=query_text(request, "slug", 4096),
            season=query_int(request, "season", None, 0, 100_000),
            state=state or None,
            limit=limit or 100,
            offset=offset or 0,
        )
        return web.json_response(
            {"items": [public_mapping(r) for r in rows], "total": total, "limit": limit, "offset": offset}
        )

    async def get_mapping(request: web.Request) -> web.Response:
        services = request.app[key]
        mapping_id = path_int(request)
        mapping = services.store.get(mapping_id)
        if mapping is None:
            raise ApiError(404, "not_found", f"no mapping with id {mapping_id}")
        result = public_mapping(mapping)
        result["refresh_log"] = services.store.refresh_history(mapping_id, limit=20)
        return web.json_response(result)

    async def post_mapping(request: web.Request) -> web.Response:
        services = request.app[key]
        fields = mapping_from_body(await read_json_object(request))
        if isinstance(fields["strm_path"], str) and ".." not in fields["strm_path"].split("/"):
            fields["strm_path"] = os.path.normpath(fields["strm_path"])
        try:
            services.library.check_writable(fields["strm_path"], fields["resolved_url"])
        except StrmError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        refuse_self_url(services, fields["resolved_url"])
        if "expires_at" not in fields:
            fields["expires_at"] = expiry_iso(fields["resolved_url"])
        existed = services.store.by_path(fields["strm_path"]) is not None
        fields.setdefault("state", "ok")
        mapping = services.store.upsert(fields)
        return web.json_response(public_mapping(mapping), status=200 if existed else 201)

    async def delete_mapping(request: web.Request) -> web.Response:
        """Retire one mapping; its .strm file stays where it is."""
        services = request.app[key]
        raw = request.match_info["id"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "¹".isdigit() is true, int() refuses it
            raise bad_request("mapping id must be a positive integer")
        mapping = services.store.get(int(raw))
        if mapping is None:
            raise ApiError(404, "not_found", f"no mapping with id {raw}")
        try:
            retire.delete_one(services.store, mapping)
        except retire.RetireError as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        return web.json_response({"deleted": public_mapping(mapping)})

    async def prune_mappings(request: web.Request) -> web.Response:
        """`{"missing": true, "dry_run": true}` lists what would go; without dry_run it goes."""
        services = request.app[key]
        body = await read_json_object(request)
        unknown = sorted(set(body) - {"missing", "dry_run"})
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)}", "invalid_field")
        for flag in ("missing", "dry_run"):
            if not isinstance(body.get(flag, False), bool):
                raise bad_request(f"{flag} must be true or false", "invalid_field")
        if not body.get("missing"):
            raise bad_request('say what to prune: {"missing": true} (mappings whose .strm file is gone)',
                              "invalid_selection")
        try:
            report = retire.prune_missing(services.store, services.library, dry_run=bool(body.get("dry_run")))
        except retire.RetireError as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        return web.json_response(report.as_dict())

    app.router.add_get("/api/mappings", list_mappings)
    app.router.add_post("/api/mappings", post_mapping)
    app.router.add_post("/api/mappings/prune", prune_mappings)
    app.router.add_get("/api/mappings/{id}", get_mapping)
    app.router.add_delete("/api/mappings/{id}", delete_mapping)
