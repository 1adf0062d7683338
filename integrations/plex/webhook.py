"""Plex webhooks: a multipart body (`payload` JSON field plus an optional `thumb` JPEG) → PlaybackEvent.

Plex cannot send headers or sign its requests and does not retry, so the handler must answer fast and must
never let a large thumbnail sit in memory: the body is streamed and the image is discarded chunk by chunk.
Plex has no failure event; `media.play` followed soon by a `media.stop` at the same `viewOffset` (the saved
resume point, in ms) is the only hint, so both events carry it and the item's `duration`. Webhooks about
things that are not library items (plex.tv streaming content: `Server.uuid = "tv.plex.provider.vod"` and a hex
`ratingKey`) and events strm-bridge does not use (`library.new`, `media.rate`, `admin.database.backup`, ...)
are well formed: they come back as `Ignored` with the reason, never as an error.
"""
from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.events import EventKind, Ignored, PlaybackEvent
from bridge.validate import INT64_MAX, InvalidValue, bounded_int, parse_json

MIB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = MIB
MAX_PARTS = 16
CHUNK = 64 * 1024

PLEX_KINDS: dict[str, EventKind] = {
    "media.play": "start",
    "media.stop": "stop",
    "media.pause": "pause",
    "media.resume": "resume",
}
SCROBBLE_RATIO = 0.9  # Plex scrobbles at 90%: a stop past that point finished the episode
VOD_SERVER = "tv.plex.provider.vod"
"""The `Server.uuid` of webhooks about plex.tv's own streaming content (movies and shows that are no library's)."""
_FOREIGN_KEY = re.compile(r"^[0-9a-fA-F]{8,64}$")
"""A ratingKey that is an id of Plex's online providers (24 hex digits for VOD) rather than a library number."""


class WebhookError(ValueError):
    """A body the sender got wrong; the app answers 400 with this message."""


async def _discard(part: BodyPartReader, budget: int | None) -> int:
    """Drain a part without keeping it; returns the bytes read so the total body can be capped."""
    total = 0
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if budget is not None and total > budget:
            raise WebhookError(f"multipart body is larger than {budget} bytes")


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    buf = bytearray()
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise WebhookError(f"payload field is larger than {limit} bytes")


async def read_plex_multipart(
    request: web.Request,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    *,
    max_body_bytes: int | None = None,
) -> dict[str, Any]:
    """Return the `payload` JSON object of a Plex webhook, streaming the body.

    `max_body_bytes` caps everything read (thumbnail included); aiohttp's client_max_size does not
    apply to `request.multipart()`, so without it a sender could stream forever.
    """
    if not request.content_type.startswith("multipart/"):
        raise WebhookError(f"expected a multipart/form-data body (Plex webhook), got {request.content_type or 'none'}")
    try:
        reader = await request.multipart()
    except (ValueError, KeyError, AssertionError, LookupError, HttpProcessingError) as exc:
        raise WebhookError(f"malformed multipart body: {exc}") from None
    payload_raw: bytes | None = None
    charset = "utf-8"
    read_total = 0
    parts = 0
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            parts += 1
            if parts > MAX_PARTS:
                raise WebhookError(f"multipart body has more than {MAX_PARTS} parts")
            if isinstance(part, MultipartReader):  # nested multipart: Plex never sends one
                raise WebhookError("nested multipart bodies are not accepted")
            budget = None if max_body_bytes is None else max_body_bytes - read_total
            if part.name == "payload" and payload_raw is None:
                limit = max_payload_bytes if budget is None else min(max_payload_bytes, budget)
                payload_raw = await _read_limited(part, limit)
                charset = part.get_charset("utf-8")
                read_total += len(payload_raw)
            else:
                read_total += await _discard(part, budget)
    except WebhookError:
        raise
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        # aiohttp's part parser raises these on bad framing; InvalidHeader and LineTooLong are not ValueErrors
        raise WebhookError(f"malformed multipart body: {type(exc).__name__}: {exc}"[:300]) from None
    if payload_raw is None:
        raise WebhookError("multipart body has no 'payload' field")
    try:
        payload = parse_json(payload_raw.decode(charset), "'payload' field")
    except (UnicodeDecodeError, LookupError) as exc:
        raise WebhookError(f"'payload' field is not text in {charset[:40]!r}: {exc}"[:300]) from None
    except InvalidValue as exc:
        raise WebhookError(str(exc)) from None
    if not isinstance(payload, dict):
        raise WebhookError(f"'payload' field must be a JSON object, got {type(payload).__name__}")
    return payload


def _int(value: Any) -> int | None:
    """Plex mixes strings and ints for numbers (ratingKey is a string, librarySectionID an int).

    Only non-negative values within 64 bits count: `"²".isdigit()` is true and a 400-digit offset would
    overflow the position's float division.
    """
    return bounded_int(value, 0, INT64_MAX)


def _obj(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def plex_event(payload: dict[str, Any]) -> PlaybackEvent | Ignored:
    """Normalise a Plex webhook payload; what is not a library item's playback comes back as `Ignored`."""
    raw_kind = payload.get("event")
    if not isinstance(raw_kind, str) or not raw_kind:
        raise WebhookError("Plex payload has no 'event'")
    kind = PLEX_KINDS.get(raw_kind)
    if kind is None:
        return Ignored(f"Plex {raw_kind[:64]} events are not used")
    server_uuid = _obj(payload, "Server").get("uuid")
    if server_uuid == VOD_SERVER:
        return Ignored(f"plex.tv streaming content (Server.uuid {VOD_SERVER}) is not a library item")
    metadata = _obj(payload, "Metadata")
    rating_key = metadata.get("ratingKey")
    if rating_key is None or rating_key == "":
        raise WebhookError(f"Plex {raw_kind} payload has no Metadata.ratingKey")
    number = _int(rating_key)
    if number is None:
        if isinstance(rating_key, str) and _FOREIGN_KEY.match(rating_key):
            return Ignored(f"Metadata.ratingKey {rating_key!r} is not a library item's (no library has hex keys)")
        raise WebhookError(f"Metadata.ratingKey must be a number, got {str(rating_key)[:64]!r}")
    item_id = str(number)

    hints: dict[str, Any] = {}
    media_type = metadata.get("type")
    if isinstance(media_type, str) and media_type:
        hints["type"] = media_type
    series = metadata.get("grandparentTitle")
    if media_type == "episode" and isinstance(series, str) and series:
        hints["series"] = series
    title = metadata.get("title")
    if isinstance(title, str) and title:
        hints["title"] = title
    for source, name in (("parentIndex", "season"), ("index", "episode"), ("librarySectionID", "section_id"), ("year", "year")):
        value = _int(metadata.get(source))
        if value is not None:
            hints[name] = value
    guid = metadata.get("guid")
    if isinstance(guid, str) and guid:
        hints["guid"] = guid

    position: float | None = None
    offset = metadata.get("viewOffset")
    offset_ms = _int(round(offset) if isinstance(offset, float) and math.isfinite(offset) else offset)
    if offset_ms is not None:
        position = offset_ms / 1000.0
    duration = _int(metadata.get("duration"))
    completed = bool(kind == "stop" and offset_ms is not None and duration and offset_ms >= SCROBBLE_RATIO * duration)
    runtime = duration / 1000.0 if duration else None

    player = _obj(payload, "Player")
    account = _obj(payload, "Account")
    user = account.get("title")
    return PlaybackEvent(
        source="plex",
        kind=kind,
        item_id=item_id,
        session_key=str(player.get("uuid") or ""),
        user=user if isinstance(user, str) and user else None,
        position_seconds=position,
        played_to_completion=completed,
        hints=hints,
        raw_kind=raw_kind,
        runtime_seconds=runtime,
    )
