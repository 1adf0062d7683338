"""Tautulli's Webhook agent → PlaybackEvent.

Tautulli is the best Plex failure source: it fires `on_error` when a session's state becomes "error",
carries the item's `file`, can send an auth header, and needs no Plex Pass (it watches PMS with the admin
token). Its JSON Data template is filled in as strings, so every value here arrives as a string, and a
parameter Tautulli does not know for this item arrives as "".

`on_error` fires only when a session Tautulli already tracks changes to "error"; a session first seen failing
gives `on_play` then `on_stop`, so those carry most real failures. Both send `view_offset` (ms; on `on_play` the
resume point) and `duration_sec`, which the detector compares like every other source's positions. Triggers
strm-bridge does not use (`on_watched`, `on_created`, `on_intdown`, ...) are acknowledged as `Ignored`.
"""
from __future__ import annotations

import json
import math
import re
from importlib import resources
from typing import Any

from bridge.events import EventKind, Ignored, PlaybackEvent
from bridge.validate import INT64_MAX, bounded_int
from integrations.plex.webhook import WebhookError

# `{action}` is the trigger name without "on_"; users who type the trigger name itself are accepted too.
TAUTULLI_KINDS: dict[str, EventKind] = {
    "play": "start",
    "stop": "stop",
    "error": "error",
    "buffer": "buffer",
    "pause": "pause",
    "resume": "resume",
}
TEMPLATE_FILE = "tautulli-webhook.json"
_FOREIGN_KEY = re.compile(r"^[0-9a-fA-F]{8,64}$")
"""A rating key of Plex's online content (hex), which no library item has."""


def webhook_template() -> dict[str, str]:
    """The JSON Data template users paste into Tautulli (shipped beside this module)."""
    text = resources.files("integrations.plex").joinpath(TEMPLATE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    text = str(value).strip()
    if text.startswith("{") and text.endswith("}") and text[1:-1] == key:
        return ""  # an unfilled placeholder: the parameter is unknown to this Tautulli version
    return text


def _int(text: str) -> int | None:
    """ASCII digits within 64 bits (`"²".isdigit()` is true, and int() refuses it)."""
    return bounded_int(text, 0, INT64_MAX) if text.isascii() and text.isdigit() else None


def _ms(body: dict[str, Any], key: str) -> float | None:
    text = _text(body, key)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise WebhookError(f"{key} must be milliseconds, got {text[:64]!r}") from None
    if not math.isfinite(value) or value < 0:  # NaN, inf ("1e400") or negative
        raise WebhookError(f"{key} must be milliseconds, got {text[:64]!r}")
    return value / 1000.0


def _runtime(body: dict[str, Any]) -> float | None:
    """`duration_sec` (seconds) where the template has it, else `duration` (minutes); None when 0 or unknown."""
    for key, scale in (("duration_sec", 1.0), ("duration", 60.0)):
        text = _text(body, key)
        number = _int(text)
        if number:
            return number * scale
    return None


def tautulli_event(body: dict[str, Any]) -> PlaybackEvent | Ignored:
    """Normalise one Tautulli webhook body (our template's keys)."""
    if not isinstance(body, dict):
        raise WebhookError("Tautulli body must be a JSON object")
    action = _text(body, "action").lower()
    if not action:
        raise WebhookError("Tautulli body has no 'action'")
    kind: EventKind = TAUTULLI_KINDS.get(action.removeprefix("on_"), "other")
    if kind == "other":
        return Ignored(f"Tautulli on_{action.removeprefix('on_')[:64]} notifications are not used")
    rating_key = _text(body, "rating_key")
    if _int(rating_key) is None:
        if _FOREIGN_KEY.match(rating_key):
            return Ignored(f"rating_key {rating_key!r} is not a library item's (no library has hex keys)")
        raise WebhookError(f"rating_key must be a number, got {str(body.get('rating_key'))[:64]!r}")

    hints: dict[str, Any] = {}
    media_type = _text(body, "media_type")
    if media_type:
        hints["type"] = media_type
    show = _text(body, "show_name")
    if show and media_type in ("episode", ""):
        hints["series"] = show
    for key, name in (("season_num", "season"), ("episode_num", "episode"), ("section_id", "section_id")):
        number = _int(_text(body, key))
        if number is not None:
            hints[name] = number
    for key, name in (("guid", "guid"), ("title", "title")):
        value = _text(body, key)
        if value:
            hints[name] = value

    position = _ms(body, "view_offset")

    session_key = _text(body, "machine_id") or _text(body, "player") or _text(body, "session_key")
    path = _text(body, "file") or None
    if path:
        hints["file"] = path
    return PlaybackEvent(
        source="tautulli",
        kind=kind,
        item_id=rating_key,
        session_key=session_key,
        user=_text(body, "user") or None,
        position_seconds=position,
        path=path,
        hints=hints,
        raw_kind=action,
        runtime_seconds=_runtime(body),
    )
