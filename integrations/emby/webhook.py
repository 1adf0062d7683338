"""Emby native webhooks (Emby Premiere) → PlaybackEvent.

Emby 4.9 can post `application/json`; older servers post form data whose `data` field holds the JSON, so
both are read. Unlike Jellyfin, Emby sends the item's `Path`, so no lookup is needed to find the file.
Emby has no failure event either: a start followed soon by a stop that made no progress from the start's
position (`PlaybackInfo.PositionTicks`, the resume point on playback.start). `Item.RunTimeTicks` says how long
the item is. Events strm-bridge does not use (`library.new`, `item.rate`, `system.*`, ...) come back as
`Ignored` with the reason.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.events import EventKind, Ignored, PlaybackEvent
from bridge.validate import InvalidValue, bounded_int, finite_number, parse_json

TICKS_PER_SECOND = 10_000_000
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

EMBY_KINDS: dict[str, EventKind] = {
    "playback.start": "start",
    "playback.stop": "stop",
    "playback.pause": "pause",
    "playback.unpause": "resume",
}


class EmbyWebhookError(ValueError):
    """A body the sender got wrong; the app answers 400 with this message."""


def _decode(text: str, where: str) -> dict[str, Any]:
    try:
        payload = parse_json(text, where)
    except InvalidValue as exc:
        raise EmbyWebhookError(str(exc)) from None
    if not isinstance(payload, dict):
        raise EmbyWebhookError(f"{where} must be a JSON object, got {type(payload).__name__}")
    return payload


async def read_emby_body(request: web.Request) -> dict[str, Any]:
    """The webhook JSON, from a JSON body or from the `data` form field; bounded by client_max_size."""
    if request.content_type in FORM_TYPES:
        try:
            form = await request.post()  # 413 (HTTPRequestEntityTooLarge) propagates to the app
        except (ValueError, LookupError, AssertionError, HttpProcessingError) as exc:
            raise EmbyWebhookError(f"malformed form body: {type(exc).__name__}: {exc}"[:300]) from None
        data = form.get("data")
        if data is None:
            raise EmbyWebhookError("form body has no 'data' field")
        if isinstance(data, (bytes, bytearray)):  # a non-text part (e.g. application/json) arrives as bytes
            data = bytes(data).decode("utf-8", "replace")
        elif not isinstance(data, str):  # sent as a file part
            data = data.file.read().decode("utf-8", "replace")
        return _decode(data, "'data' field")
    raw = await request.read()
    try:
        text = raw.decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise EmbyWebhookError(f"body is not text: {exc}") from None
    return _decode(text, "body")


def _int(value: Any) -> int | None:
    """Within 64 bits only: `"²".isdigit()` is true, and a longer number cannot be stored."""
    return bounded_int(value)


def _obj(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def _seconds(ticks: Any) -> float | None:
    """Ticks within 64 bits only: a 400-digit integer would overflow the float division."""
    number = finite_number(ticks)
    if number is not None and number >= 0:
        return number / TICKS_PER_SECOND
    return None


def emby_event(payload: dict[str, Any]) -> PlaybackEvent | Ignored:
    """Normalise one Emby webhook; events that are not about playback come back as `Ignored`."""
    raw_kind = payload.get("Event")
    if not isinstance(raw_kind, str) or not raw_kind:
        raise EmbyWebhookError("Emby payload has no 'Event'")
    kind: EventKind | None = EMBY_KINDS.get(raw_kind.lower())
    if kind is None:
        return Ignored(f"Emby {raw_kind[:64]} events are not used")
    item = _obj(payload, "Item")
    item_id = item.get("Id")
    if item_id is None or item_id == "":
        raise EmbyWebhookError(f"Emby {raw_kind} payload has no Item.Id")
    elif not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        raise EmbyWebhookError(f"Item.Id must be a string, got {type(item_id).__name__}")

    hints: dict[str, Any] = {}
    item_type = item.get("Type")
    if isinstance(item_type, str) and item_type:
        hints["type"] = item_type
    series = item.get("SeriesName")
    if isinstance(series, str) and series:
        hints["series"] = series
    name = item.get("Name")
    if isinstance(name, str) and name:
        hints["title"] = name
    for source, target in (("ParentIndexNumber", "season"), ("IndexNumber", "episode"), ("ProductionYear", "year")):
        number = _int(item.get(source))
        if number is not None:
            hints[target] = number
    providers = item.get("ProviderIds")
    if isinstance(providers, dict) and providers:
        hints["provider_ids"] = {str(k): str(v) for k, v in providers.items()}

    info = _obj(payload, "PlaybackInfo")
    position = _seconds(info.get("PositionTicks"))
    session = _obj(payload, "Session")
    user = _obj(payload, "User").get("Name")
    path = item.get("Path")
    return PlaybackEvent(
        source="emby",
        kind=kind,
        item_id=str(item_id),
        session_key=str(session.get("DeviceId") or session.get("Id") or ""),
        user=user if isinstance(user, str) and user else None,
        position_seconds=position,
        played_to_completion=info.get("PlayedToCompletion") is True,
        path=path if isinstance(path, str) and path else None,
        hints=hints,
        raw_kind=raw_kind,
        runtime_seconds=_seconds(item.get("RunTimeTicks")) or None,
    )
