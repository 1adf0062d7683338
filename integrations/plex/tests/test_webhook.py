"""Plex webhook bodies: real multipart requests through aiohttp, and payload → PlaybackEvent."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import MultipartWriter, hdrs, web
from aiohttp.test_utils import TestClient

from bridge.events import Ignored
from integrations.plex.webhook import WebhookError, plex_event, read_plex_multipart

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "plex"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def fake_jpeg(size: int) -> bytes:
    """A JPEG-shaped blob (SOI ... EOI) with incompressible content, like Plex's poster thumbnails."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(size - 22) + b"\xff\xd9"


def plex_body(payload: str | None, thumb: bytes | None, *, thumb_first: bool = False) -> MultipartWriter:
    """Build the body the way PMS does: a `payload` form field and a `thumb` JPEG file part."""
    writer = MultipartWriter("form-data")
    parts: list[tuple[str, Any]] = []
    if payload is not None:
        parts.append(("payload", payload))
    if thumb is not None:
        parts.append(("thumb", thumb))
    if thumb_first:
        parts.reverse()
    for name, value in parts:
        if name == "payload":
            part = writer.append(value, {hdrs.CONTENT_TYPE: "text/plain; charset=utf-8"})
            part.set_content_disposition("form-data", name="payload")
        else:
            part = writer.append(value, {hdrs.CONTENT_TYPE: "image/jpeg"})
            part.set_content_disposition("form-data", name="thumb", filename="thumb.jpg")
    return writer


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    async def handler(request: web.Request) -> web.Response:
        limit = int(request.query.get("max_payload", 1024 * 1024))
        body_limit = int(request.query["max_body"]) if "max_body" in request.query else None
        try:
            payload = await read_plex_multipart(request, limit, max_body_bytes=body_limit)
            event = plex_event(payload)
        except WebhookError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"kind": event.kind, "item_id": event.item_id, "session_key": event.session_key,
                                  "position": event.position_seconds, "user": event.user, "hints": event.hints})

    app = web.Application()
    app.router.add_post("/webhooks/plex", handler)
    return await aiohttp_client(app)


async def test_real_multipart_with_large_thumb(client: TestClient) -> None:
    payload = json.dumps(fixture("media_play.json"))
    response = await client.post("/webhooks/plex?token=x", data=plex_body(payload, fake_jpeg(300 * 1024)))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["kind"] == "start"
    assert body["item_id"] == "4711"
    assert body["session_key"] == "k3r9x2m1q8w7e6r5t4y3"
    assert body["user"] == "alice"
    assert body["position"] == 0.0
    assert body["hints"] == {"type": "episode", "series": "Attack on Titan", "title": "To You, in 2000 Years",
                             "season": 1, "episode": 1, "section_id": 3, "year": 2013,
                             "guid": "plex://episode/5d9c0b8e7a6f5e4d3c2b1a09"}


async def test_thumb_before_payload_is_skipped(client: TestClient) -> None:
    payload = json.dumps(fixture("media_stop.json"))
    response = await client.post("/webhooks/plex", data=plex_body(payload, fake_jpeg(300 * 1024), thumb_first=True))
    assert response.status == 200
    body = await response.json()
    assert (body["kind"], body["position"]) == ("stop", 1.2)


async def test_formdata_built_body_is_read(client: TestClient) -> None:
    """aiohttp.FormData (as other senders build it) gives the same result as PMS's own layout."""
    from aiohttp import FormData

    form = FormData()
    form.add_field("payload", json.dumps(fixture("media_play.json")))
    form.add_field("thumb", fake_jpeg(4096), filename="thumb.jpg", content_type="image/jpeg")
    response = await client.post("/webhooks/plex", data=form)
    assert response.status == 200
    assert (await response.json())["item_id"] == "4711"


async def test_body_cap_stops_an_oversized_thumb(client: TestClient) -> None:
    payload = json.dumps(fixture("media_play.json"))
    response = await client.post("/webhooks/plex?max_body=65536", data=plex_body(payload, fake_jpeg(300 * 1024)))
    assert response.status == 400
    assert "larger than" in (await response.json())["error"]


async def test_missing_payload(client: TestClient) -> None:
    response = await client.post("/webhooks/plex", data=plex_body(None, fake_jpeg(2048)))
    assert response.status == 400
    assert (await response.json())["error"] == "multipart body has no 'payload' field"


async def test_payload_not_json(client: TestClient) -> None:
    response = await client.post("/webhooks/plex", data=plex_body("event=media.play", fake_jpeg(2048)))
    assert response.status == 400
    assert "'payload' field is not valid JSON" in (await response.json())["error"]


async def test_payload_not_an_object(client: TestClient) -> None:
    response = await client.post("/webhooks/plex", data=plex_body("[1, 2]", None))
    assert response.status == 400
    assert "must be a JSON object, got list" in (await response.json())["error"]


async def test_payload_too_big(client: TestClient) -> None:
    payload = json.dumps(dict(fixture("media_play.json"), padding="x" * 5000))
    response = await client.post("/webhooks/plex?max_payload=1024", data=plex_body(payload, None))
    assert response.status == 400
    assert "payload field is larger than 1024 bytes" in (await response.json())["error"]


async def test_not_multipart(client: TestClient) -> None:
    response = await client.post("/webhooks/plex", json=fixture("media_play.json"))
    assert response.status == 400
    assert "expected a multipart/form-data body" in (await response.json())["error"]


@pytest.mark.parametrize("content_type,body,message", [
    ("multipart/form-data", b"x", "boundary"),
    ("multipart/form-data; boundary=abc", b"garbage", "starting boundary"),
    ("multipart/form-data; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="payload"\r\n\r\n{"a"', "malformed"),
])
async def test_malformed_multipart(client: TestClient, content_type: str, body: bytes, message: str) -> None:
    response = await client.post("/webhooks/plex", data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith("malformed multipart body") and message in error


async def test_rating_key_not_a_number(client: TestClient) -> None:
    payload = fixture("media_play.json")
    payload["Metadata"]["ratingKey"] = "../../etc"
    response = await client.post("/webhooks/plex", data=plex_body(json.dumps(payload), None))
    assert response.status == 400
    assert "Metadata.ratingKey must be a number" in (await response.json())["error"]


def test_event_kinds() -> None:
    assert plex_event(fixture("media_play.json")).kind == "start"
    stop = plex_event(fixture("media_stop.json"))
    assert (stop.kind, stop.position_seconds, stop.played_to_completion, stop.source) == ("stop", 1.2, False, "plex")
    for raw, kind in (("media.pause", "pause"), ("media.resume", "resume")):
        assert plex_event(dict(fixture("media_play.json"), event=raw)).kind == kind
    assert plex_event(dict(fixture("media_play.json"), event="media.rate")) == Ignored("Plex media.rate events are not used")


def test_scrobble_is_ignored_and_movie_has_no_series() -> None:
    scrobble = fixture("media_scrobble_movie.json")
    assert plex_event(scrobble) == Ignored("Plex media.scrobble events are not used")
    event = plex_event(dict(scrobble, event="media.stop"))
    assert (event.kind, event.raw_kind, event.item_id) == ("stop", "media.stop", "812")
    assert "series" not in event.hints and event.hints["year"] == 2008


def test_stop_near_the_end_counts_as_completed() -> None:
    payload = fixture("media_stop.json")
    payload["Metadata"]["viewOffset"] = 1400000
    assert plex_event(payload).played_to_completion is True


def test_server_event_without_metadata_is_ignored() -> None:
    assert plex_event(fixture("admin_database_backup.json")) == Ignored("Plex admin.database.backup events are not used")


def test_playback_event_without_metadata_is_refused() -> None:
    payload = fixture("media_play.json")
    del payload["Metadata"]
    with pytest.raises(WebhookError, match="no Metadata.ratingKey"):
        plex_event(payload)


def test_missing_view_offset_gives_no_position() -> None:
    payload = fixture("media_stop.json")
    del payload["Metadata"]["viewOffset"]
    assert plex_event(payload).position_seconds is None


def test_integer_rating_key_is_accepted() -> None:
    payload = fixture("media_play.json")
    payload["Metadata"]["ratingKey"] = 4711
    assert plex_event(payload).item_id == "4711"
