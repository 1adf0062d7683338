"""Tautulli's Webhook agent → PlaybackEvent.

Tautulli is the best Plex failure source: it fires `on_error` when a session's state becomes "error",
carries the item's `file`, can send an auth header, and needs no Plex Pass (it watches PMS with the admin
token). Its JSON Data template is filled in as strings, so every value here arrives as a string, and a
parameter Tautulli does not know for this item arrives as "".
"""
from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

from bridge.events import EventKind, PlaybackEvent
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


def tautulli_event(body: dict[str, Any]) -> PlaybackEvent:
    """Normalise one Tautulli webhook body (our template's keys)."""
    if not isinstance(body, dict):
        raise WebhookError("Tautulli body must be a JSON object")
    action = _text(body, "action").lower()
    if not action:
        raise WebhookError("Tautulli body has no 'action'")
    kind: EventKind = TAUTULLI_KINDS.get(action.removeprefix("on_"), "other")
    rating_key = _text(body, "rating_key")
    if _int(rating_key) is None:
        raise WebhookError(f"rating_key must be a number, got {body.get('rating_key')!r}")

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

    offset = _text(body, "view_offset")
    position: float | None = None
    if offset:
        try:
            milliseconds = float(offset)
        except ValueError:
            raise WebhookError(f"view_offset must be milliseconds, got {offset[:64]!r}") from None
        if not math.isfinite(milliseconds) or milliseconds < 0:
            raise WebhookError(f"view_offset must be a finite, non-negative number, got {offset[:64]!r}")
        position = milliseconds / 1000.0

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
    )
