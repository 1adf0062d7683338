"""Webhook bodies as the plugin sends them: Send All Properties, our template, GenericForm, and junk."""
from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bridge.events import FailureDetector, Ignored
from integrations.jellyfin.tests.conftest import fixture_body
from integrations.jellyfin.webhook import WebhookError, normalize_guid, parse_webhook

TEMPLATE = Path(__file__).resolve().parents[1] / "webhook.handlebars"
ITEM = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DEVICE = "TW96aWxsYS81LjAgKFgxMTsgTGludXggeDg2XzY0KXwxNzE1MTk1NjQyNzEz"


# ---- Send All Properties ---------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["application/json", "text/plain; charset=utf-8", ""])
def test_send_all_start(content_type: str) -> None:
    event = parse_webhook(fixture_body("send_all_playback_start.json"), content_type)
    assert event is not None
    assert (event.source, event.kind, event.raw_kind) == ("jellyfin", "start", "PlaybackStart")
    assert event.item_id == ITEM
    assert event.session_key == DEVICE
    assert event.user == "alice"
    assert event.position_seconds == 0.0
    assert event.played_to_completion is False
    assert event.path is None
    assert event.hints["series"] == "Neon Genesis Evangelion"
    assert event.hints["season"] == 1 and event.hints["episode"] == 1
    assert event.hints["provider_ids"] == {"tvdb": "70350", "imdb": "tt0112159", "tmdb": "890"}
    assert event.hints["item_type"] == "Episode"
    assert event.hints["series_id"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert event.hints["user_id"] == "6a5b4c3d2e1f40a9b8c7d6e5f4a3b2c1"
    # The plugin's Escape() leaves \" in names; Send All Properties serialises it as-is.
    assert event.hints["name"] == 'The "Pilot"'


def test_send_all_stop_early() -> None:
    event = parse_webhook(fixture_body("send_all_playback_stop.json"), "text/plain")
    assert event is not None
    assert event.kind == "stop"
    assert event.position_seconds == pytest.approx(1.2)
    assert event.played_to_completion is False
    assert event.session_key == DEVICE


def test_send_all_progress_paused_is_pause() -> None:
    event = parse_webhook(fixture_body("send_all_playback_progress_paused.json"), "application/json")
    assert event is not None
    assert event.kind == "pause"
    assert event.raw_kind == "PlaybackProgress"
    assert event.item_id == "c0ffee00c0ffee00c0ffee00c0ffee00"
    assert event.position_seconds == pytest.approx(3612.345)
    assert event.hints["item_type"] == "Movie"
    assert "series" not in event.hints and "season" not in event.hints


def test_progress_not_paused_is_progress() -> None:
    body = json.loads(fixture_body("send_all_playback_progress_paused.json"))
    body["IsPaused"] = "false"
    event = parse_webhook(json.dumps(body).encode(), "application/json")
    assert event is not None and event.kind == "progress"


def test_non_playback_notification_is_ignored_with_its_reason() -> None:
    assert parse_webhook(fixture_body("send_all_item_added.json"), "application/json") == Ignored(
        "Jellyfin ItemAdded notifications are not used")
    assert parse_webhook(b'{"NotificationType": "UserCreated", "UserId": "x"}', "text/plain") == Ignored(
        "Jellyfin UserCreated notifications are not used")


def test_start_then_stop_pairs_in_detector() -> None:
    """The point of parsing: the detector sees an early stop of the same item on the same device."""
    detector = FailureDetector(window_seconds=30, min_progress_seconds=10)
    start = parse_webhook(fixture_body("send_all_playback_start.json"), "text/plain")
    stop = parse_webhook(fixture_body("send_all_playback_stop.json"), "text/plain")
    assert start is not None and stop is not None
    assert detector.observe(start) is None
    signal = detector.observe(stop)
    assert signal is not None and signal.reason == "early_stop"


# ---- our template, as text/plain and as GenericForm --------------------------------------------------
def test_template_start_dashed_guids() -> None:
    event = parse_webhook(fixture_body("template_playback_start.json"), "text/plain; charset=utf-8")
    assert event is not None
    assert event.kind == "start"
    assert event.item_id == ITEM
    assert event.hints["series_id"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert event.hints["season"] == 1 and event.hints["episode"] == 1  # numbers arrive as strings
    assert event.hints["name"] == 'The "Pilot"'
    assert event.position_seconds == 0.0
    assert event.session_key == DEVICE


def test_template_stop_upper_case_guid_and_device_fallback() -> None:
    event = parse_webhook(fixture_body("template_playback_stop.json"), "application/json")
    assert event is not None
    assert event.item_id == ITEM  # upper-case D format normalised
    assert event.played_to_completion is False  # "False"
    assert event.position_seconds == pytest.approx(1.2)
    assert event.session_key == "Firefox/Jellyfin Web"  # no DeviceId, no session Id


def test_generic_form_body() -> None:
    event = parse_webhook(fixture_body("genericform_playback_stop.txt"), "application/x-www-form-urlencoded")
    assert event is not None
    assert event.kind == "stop"
    assert event.item_id == ITEM
    assert event.played_to_completion is True  # "True"
    assert event.position_seconds == pytest.approx(1439.0)
    assert event.session_key == DEVICE
    assert event.hints["name"] == 'The "Pilot"'
    assert event.hints["season"] == 1


def test_json_body_labelled_as_form_is_still_read() -> None:
    """A user who sets Content-Type to the form type on the Generic destination still sends JSON."""
    event = parse_webhook(fixture_body("template_playback_start.json"), "application/x-www-form-urlencoded")
    assert event is not None and event.item_id == ITEM


def test_booleans_and_numbers_in_every_spelling() -> None:
    for truthy in (True, "True", "true", "1"):
        body = {"NotificationType": "PlaybackStop", "ItemId": ITEM, "PlayedToCompletion": truthy}
        event = parse_webhook(json.dumps(body).encode(), "text/plain")
        assert event is not None and event.played_to_completion is True, truthy
    for ticks, seconds in ((50_000_000, 5.0), ("50000000", 5.0), ("5E7", 5.0), ("junk", None), (-1, None)):
        body = {"NotificationType": "PlaybackStop", "ItemId": ITEM, "PlaybackPositionTicks": ticks}
        event = parse_webhook(json.dumps(body).encode(), "text/plain")
        assert event is not None and event.position_seconds == seconds, ticks


def test_session_id_fallback_and_case_insensitive_keys() -> None:
    body = {"notificationtype": "playbackstart", "itemid": ITEM, "Id": "sess-1"}
    event = parse_webhook(json.dumps(body).encode(), "application/json")
    assert event is not None
    assert event.raw_kind == "PlaybackStart" and event.session_key == "sess-1"


def test_path_is_kept_when_a_plugin_sends_it() -> None:
    body = {"NotificationType": "PlaybackStart", "ItemId": ITEM, "Path": "/data/tv/Show/S01E01.strm"}
    event = parse_webhook(json.dumps(body).encode(), "application/json")
    assert event is not None and event.path == "/data/tv/Show/S01E01.strm"


def test_utf8_bom_is_tolerated() -> None:
    event = parse_webhook(b"\xef\xbb\xbf" + fixture_body("send_all_playback_start.json"), "text/plain")
    assert event is not None and event.item_id == ITEM


# ---- malformed -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content_type", "message"),
    [
        ("malformed_not_json.txt", "text/plain", "neither JSON nor a form"),
        ("malformed_truncated.json", "application/json", "neither JSON nor a form"),
        ("malformed_array.json", "application/json", "must be a JSON object"),
        ("malformed_no_type.json", "application/json", "no NotificationType"),
        ("malformed_unknown_type.json", "text/plain", "unknown NotificationType 'PlaybackFailed'"),
        ("malformed_bad_itemid.json", "application/json", "is not a GUID"),
        ("malformed_missing_itemid.json", "application/json", "PlaybackStart payload has no ItemId"),
    ],
)
def test_malformed_bodies(name: str, content_type: str, message: str) -> None:
    with pytest.raises(WebhookError, match=re.escape(message)):
        parse_webhook(fixture_body(name), content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "application/json", "body is empty"),
        (b"   \n", "text/plain", "body is empty"),
        (b"\xff\xfe{}", "application/json", "not UTF-8"),
        (b'"PlaybackStart"', "application/json", "must be a JSON object, got str"),
        (b"&&&", "application/x-www-form-urlencoded", "form body has no fields"),
        (b"ItemId=" + ITEM.encode(), "application/x-www-form-urlencoded", "no NotificationType"),
        (b'{"NotificationType": "PlaybackStop", "ItemId": "00000000-0000-0000-0000-000000000000"}', "text/plain", "empty GUID"),
        (b'{"NotificationType": "PlaybackStop", "ItemId": 12345}', "text/plain", "is not a GUID"),
        (b'{"NotificationType": "PlaybackStop", "ItemId": ""}', "text/plain", "has no ItemId"),
    ],
)
def test_malformed_inline(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(WebhookError, match=re.escape(message)):
        parse_webhook(body, content_type)


def test_webhook_error_is_a_value_error() -> None:
    assert issubclass(WebhookError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ITEM, ITEM),
        ("A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90", ITEM),
        ("{a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90}", ITEM),
        ("a1b2c3d4e5f60718293a4b5c6d7e8f9", None),
        ("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f9g", None),
        (None, None),
        (42, None),
    ],
)
def test_normalize_guid(value: Any, expected: str | None) -> None:
    assert normalize_guid(value) == expected


# ---- the shipped template, rendered the way the plugin renders it -------------------------------------
def _dotnet(value: Any) -> str:
    """Object.ToString() as Handlebars.Net writes it: True/False, Guid in D format, null as nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def render(template: str, data: dict[str, Any]) -> str:
    """The subset of Handlebars the template may use: if_exist blocks, {{{raw}}} and {{html-escaped}}."""

    def block(found: re.Match[str]) -> str:
        return found.group(2) if _dotnet(data.get(found.group(1))) else ""

    text = re.sub(r"\{\{#if_exist (\w+)\}\}(.*?)\{\{/if_exist\}\}", block, template, flags=re.S)
    text = re.sub(r"\{\{\{(\w+)\}\}\}", lambda m: _dotnet(data.get(m.group(1))), text)
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: html.escape(_dotnet(data.get(m.group(1)))), text)
    assert "{{" not in text, "template uses Handlebars the test renderer does not know"
    return text


def _escape(text: str) -> str:
    return text.replace('"', '\\"')  # the plugin's Escape() on names


PLUGIN_STOP = {
    "ServerId": "9c7a1e3f5b2d4e6a8f0b1c2d3e4f5a6b",
    "NotificationType": "PlaybackStop",
    "Name": _escape('Tom & Jerry "Live" <1>'),
    "ItemId": uuid.UUID(ITEM),
    "ItemType": "Episode",
    "SeriesName": _escape("Tom & Jerry"),
    "SeriesId": uuid.UUID("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    "SeasonNumber": 0,
    "EpisodeNumber": 12,
    "Provider_tvdb": "70350",
    "PlaybackPositionTicks": 31_000_000,
    "IsPaused": False,
    "PlayedToCompletion": False,
    "DeviceId": DEVICE,
    "DeviceName": _escape("Bob's \"TV\""),
    "ClientName": "Jellyfin Android TV",
    "UserId": uuid.UUID("6a5b4c3d2e1f40a9b8c7d6e5f4a3b2c1"),
    "NotificationUsername": "bob",
}


def test_template_has_every_key_the_bridge_reads() -> None:
    keys = set(re.findall(r'"(\w+)":', TEMPLATE.read_text()))
    assert keys == {
        "NotificationType", "ItemId", "ItemType", "Name", "SeriesName", "SeriesId", "SeasonNumber", "EpisodeNumber",
        "RunTimeTicks", "PlaybackPositionTicks", "PlayedToCompletion", "IsPaused", "DeviceId", "DeviceName", "ClientName", "UserId",
        "NotificationUsername", "Provider_tvdb", "Provider_tmdb", "Provider_imdb", "ServerId",
    }


def test_rendered_template_parses_as_generic_json() -> None:
    rendered = render(TEMPLATE.read_text(), PLUGIN_STOP)
    event = parse_webhook(rendered.encode(), "text/plain; charset=utf-8")
    assert event is not None
    assert event.kind == "stop" and event.item_id == ITEM
    assert event.position_seconds == pytest.approx(3.1)
    assert event.played_to_completion is False
    assert event.session_key == DEVICE
    assert event.hints["name"] == 'Tom & Jerry "Live" <1>'  # triple-stash: no HTML entities
    assert event.hints["season"] == 0 and event.hints["episode"] == 12
    assert event.hints["provider_ids"] == {"tvdb": "70350"}
    assert event.hints["device_name"] == "Bob's \"TV\""


def test_rendered_template_survives_generic_form() -> None:
    """GenericForm reads the rendered JSON as Dictionary<string,string>: every value must be a string."""
    rendered = render(TEMPLATE.read_text(), PLUGIN_STOP)
    fields = json.loads(rendered)
    assert all(isinstance(value, str) for value in fields.values())
    event = parse_webhook(urlencode(fields).encode(), "application/x-www-form-urlencoded")
    assert event is not None and event.item_id == ITEM and event.hints["episode"] == 12


def test_rendered_template_for_a_movie_start_and_a_non_playback_event() -> None:
    movie = {
        "ServerId": "9c7a1e3f5b2d4e6a8f0b1c2d3e4f5a6b",
        "NotificationType": "PlaybackStart",
        "Name": "Blade Runner",
        "ItemId": uuid.UUID("c0ffee00c0ffee00c0ffee00c0ffee00"),
        "ItemType": "Movie",
        "PlaybackPositionTicks": 0,
        "IsPaused": False,
        "DeviceName": "Firefox",
        "ClientName": "Jellyfin Web",
    }
    event = parse_webhook(render(TEMPLATE.read_text(), movie).encode(), "application/json")
    assert event is not None and event.kind == "start" and "series" not in event.hints
    added = {"ServerId": "x", "NotificationType": "ItemAdded", "ItemId": uuid.UUID(ITEM), "Name": "New"}
    assert isinstance(parse_webhook(render(TEMPLATE.read_text(), added).encode(), "application/json"), Ignored)
