"""Turning what the Jellyfin webhook plugin really sends into a PlaybackEvent.

The plugin has three shapes for one event: "Send All Properties" JSON (PascalCase keys, GUIDs as 32 hex
digits), our Handlebars template (GUIDs with dashes, every value a string), and GenericForm (the same
template flattened into urlencoded fields). Its Generic destination labels the body `text/plain` unless
the user adds a Content-Type header, so the body is sniffed rather than trusted by its label.

Non-playback notifications (ItemAdded, UserCreated, ...) are valid but carry nothing to heal: they parse
to `Ignored` so the route can acknowledge them (202, with the reason) without queuing work.

Detection needs two numbers from each playback event: the position (`PlaybackPositionTicks`, the resume point
on a PlaybackStart; the plugin writes 0 when the client reported none) and the item's length (`RunTimeTicks`,
0 when Jellyfin does not know it), so that a stop Jellyfin calls "completed" a second after its start can be
told from a real completion.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from bridge.events import EventKind, Ignored, PlaybackEvent
from bridge.validate import MAX_JSON_DEPTH, bounded_int, nested_deeper_than

SOURCE = "jellyfin"
TICKS_PER_SECOND = 10_000_000

# Destinations/NotificationType.cs in jellyfin-plugin-webhook; the payload carries the enum name.
NOTIFICATION_TYPES = (
    "None",
    "ItemAdded",
    "Generic",
    "PlaybackStart",
    "PlaybackProgress",
    "PlaybackStop",
    "SubtitleDownloadFailure",
    "AuthenticationFailure",
    "AuthenticationSuccess",
    "SessionStart",
    "PendingRestart",
    "TaskCompleted",
    "PluginInstallationCancelled",
    "PluginInstallationFailed",
    "PluginInstalled",
    "PluginInstalling",
    "PluginUninstalled",
    "PluginUpdated",
    "UserCreated",
    "UserDeleted",
    "UserLockedOut",
    "UserPasswordChanged",
    "UserUpdated",
    "UserDataSaved",
    "ItemDeleted",
)
_CANONICAL = {name.lower(): name for name in NOTIFICATION_TYPES}
PLAYBACK_KINDS: dict[str, EventKind] = {"PlaybackStart": "start", "PlaybackStop": "stop", "PlaybackProgress": "progress"}

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?$")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_FORM_TYPES = ("application/x-www-form-urlencoded",)
# Fields the plugin passes through its Escape() (which only turns `"` into `\"`); Send All Properties
# serialises the escaped text, so the backslash survives JSON decoding and has to be taken off again.
_ESCAPED_FIELDS = ("name", "seriesname", "devicename", "notificationusername", "client", "itemtype")


class WebhookError(ValueError):
    """The body is not a webhook we can read; the message says why, for a 400 answer."""


def normalize_guid(value: Any) -> str | None:
    """Any .NET Guid spelling (N, D or B format) as 32 lowercase hex digits; None when it is not one."""
    if not isinstance(value, str):
        return None
    if len(value) == 32 and _HEX_DIGITS.issuperset(value):  # the plugin's own "N" format: most webhooks
        return value.lower()
    found = _GUID.match(value.strip())
    if not found:
        return None
    return "".join(found.groups()).lower()


def _decode_body(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WebhookError("body is not UTF-8 text") from None


def _load(body: bytes, content_type: str) -> dict[str, Any]:
    text = _decode_body(body)
    stripped = text.strip()
    if not stripped:
        raise WebhookError("body is empty")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _FORM_TYPES and not stripped.startswith(("{", "[")):
        pairs = parse_qsl(stripped, keep_blank_values=True)
        if not pairs:
            raise WebhookError("form body has no fields")
        return dict(pairs)
    try:
        data = orjson.loads(stripped)  # strict RFC 8259, and twice as fast as json on the plugin's 1.5 kB bodies
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"body is neither JSON nor a form ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise WebhookError(f"payload must be a JSON object, got {type(data).__name__}")
    return data


def _too_deep(data: dict[str, Any]) -> bool:
    """Only nested values are walked: the plugin's payloads are flat, so this costs nothing on real traffic."""
    return any(isinstance(v, (dict, list)) and nested_deeper_than(v, MAX_JSON_DEPTH - 1) for v in data.values())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _bool(value: Any) -> bool:
    """true / "True" / "true" / "1": .NET renders booleans as True/False inside templates."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


def _int(value: Any) -> int | None:
    """Numbers arrive as ints or (from the template) strings; one past 64 bits is dropped, not stored."""
    if type(value) is int and -(2**63) <= value < 2**63:  # the common case, without the helper's checks
        return value
    return bounded_int(value)


def _unescape(value: str | None) -> str | None:
    return value.replace('\\"', '"') if value else value


def _seconds(ticks: int | None) -> float | None:
    return ticks / TICKS_PER_SECOND if ticks is not None and ticks >= 0 else None


def parse_webhook(body: bytes, content_type: str) -> PlaybackEvent | Ignored:
    """One plugin request → a PlaybackEvent, or `Ignored` for a valid notification that is not about playback."""
    raw = _load(body, content_type)
    if _too_deep(raw):
        raise WebhookError(f"payload is nested deeper than {MAX_JSON_DEPTH} levels")
    data = {key.lower(): value for key, value in raw.items()}  # the plugin's dictionary is case-insensitive

    type_value = _text(data.get("notificationtype"))
    if type_value is None:
        raise WebhookError("payload has no NotificationType")
    notification = _CANONICAL.get(type_value.lower())
    if notification is None:
        raise WebhookError(f"unknown NotificationType {type_value[:64]!r}")
    kind = PLAYBACK_KINDS.get(notification)
    if kind is None:
        return Ignored(f"Jellyfin {notification} notifications are not used")

    raw_item = data.get("itemid")
    if _text(raw_item) is None:
        raise WebhookError(f"{notification} payload has no ItemId")
    item_id = normalize_guid(raw_item)
    if item_id is None:
        raise WebhookError(f"ItemId {str(raw_item)[:64]!r} is not a GUID")
    if item_id == "0" * 32:
        raise WebhookError("ItemId is the empty GUID")

    is_paused = _bool(data.get("ispaused"))
    if kind == "progress" and is_paused:
        kind = "pause"

    position = _seconds(_int(data.get("playbackpositionticks")))
    runtime = _seconds(_int(data.get("runtimeticks"))) or None  # the plugin sends 0 for "unknown"

    for name in _ESCAPED_FIELDS:
        if isinstance(data.get(name), str):
            data[name] = _unescape(data[name])

    device_name = _text(data.get("devicename"))
    client = _text(data.get("client")) or _text(data.get("clientname"))
    session_key = _text(data.get("deviceid")) or _text(data.get("id")) or ""
    if not session_key and (device_name or client):
        session_key = f"{device_name or ''}/{client or ''}"

    provider_ids = {
        key[9:]: text for key, value in data.items() if key[:9] == "provider_" and (text := _text(value))
    }
    hints: dict[str, Any] = {
        "series": _text(data.get("seriesname")),
        "season": _int(data.get("seasonnumber")),
        "episode": _int(data.get("episodenumber")),
        "provider_ids": provider_ids,
        "item_type": _text(data.get("itemtype")),
        "name": _text(data.get("name")),
        "series_id": normalize_guid(data.get("seriesid")),
        "user_id": normalize_guid(data.get("userid")),
        "device_name": device_name,
        "client": client,
        "server_id": normalize_guid(data.get("serverid")) or _text(data.get("serverid")),
        "is_paused": is_paused,
    }
    hints = {key: value for key, value in hints.items() if value not in (None, {}, "")}

    return PlaybackEvent(
        source=SOURCE,
        kind=kind,
        item_id=item_id,
        session_key=session_key,
        user=_text(data.get("notificationusername")) or _text(data.get("username")),
        position_seconds=position,
        played_to_completion=_bool(data.get("playedtocompletion")),
        path=_text(data.get("path")),
        hints=hints,
        raw_kind=notification,
        runtime_seconds=runtime,
    )
