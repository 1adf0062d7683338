"""Emby: webhook bodies (JSON and form `data`), the locator, and the refresh target against FakeEmby."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from bridge.config import EmbyConfig, PathMapEntry
from bridge.events import FailureDetector, Ignored
from bridge.mappings import MappingStore
from bridge.pathmap import PathMap
from bridge.rescan import RescanRequest, Target, TargetGone, TargetRetry
from integrations.emby.client import EmbyClient
from integrations.emby.locator import EmbyItemIndex, EmbyLocator
from integrations.emby.target import EmbyTarget
from integrations.emby.webhook import EmbyWebhookError, emby_event, read_emby_body
from tests.fakes.emby import FakeEmby

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "emby"
REL = "Attack on Titan/Season 01/Attack on Titan - S01E01.strm"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    async def handler(request: web.Request) -> web.Response:
        try:
            event = emby_event(await read_emby_body(request))
        except EmbyWebhookError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"kind": event.kind, "item_id": event.item_id, "path": event.path,
                                  "session_key": event.session_key, "position": event.position_seconds})

    app = web.Application()
    app.router.add_post("/webhooks/emby", handler)
    return await aiohttp_client(app)


@pytest.fixture
async def fake_emby() -> AsyncIterator[FakeEmby]:
    fake = await FakeEmby().start()
    yield fake
    await fake.stop()


# ---- parsing ---------------------------------------------------------------------------------------------
async def test_json_body(client: TestClient) -> None:
    response = await client.post("/webhooks/emby", json=fixture("playback_stop.json"))
    assert response.status == 200
    assert await response.json() == {
        "kind": "stop", "item_id": "90211", "path": f"/mnt/anime/{REL}",
        "session_key": "TW96aWxsYS81LjAgKFgxMTsgTGludXggeDg2XzY0KQ11", "position": 2.1,
    }


async def test_urlencoded_form_data_field(client: TestClient) -> None:
    """Emby before 4.9 posts form data whose `data` field holds the JSON."""
    response = await client.post("/webhooks/emby", data={"data": json.dumps(fixture("playback_start.json"))})
    assert response.status == 200
    body = await response.json()
    assert (body["kind"], body["item_id"], body["position"]) == ("start", "90211", 0.0)


async def test_multipart_form_data_field(client: TestClient) -> None:
    form = FormData()
    form.add_field("data", json.dumps(fixture("playback_stop.json")), content_type="application/json")
    form.add_field("extra", b"ignored", filename="x.bin")
    response = await client.post("/webhooks/emby", data=form)
    assert response.status == 200
    assert (await response.json())["kind"] == "stop"


@pytest.mark.parametrize("kwargs,message", [
    ({"data": {"other": "1"}}, "form body has no 'data' field"),
    ({"data": {"data": "{not json"}}, "'data' field is not valid JSON"),
    ({"data": b"[1]", "headers": {"Content-Type": "application/json"}}, "body must be a JSON object"),
    ({"json": {"Item": {"Id": "1"}}}, "no 'Event'"),
    ({"json": {"Event": "playback.start", "Item": {}}}, "no Item.Id"),
])
async def test_bad_bodies(client: TestClient, kwargs: dict[str, Any], message: str) -> None:
    response = await client.post("/webhooks/emby", **kwargs)
    assert response.status == 400
    assert message in (await response.json())["error"]


def test_event_fields() -> None:
    event = emby_event(fixture("playback_stop.json"))
    assert event.source == "emby" and event.played_to_completion is False and event.user == "alice"
    assert event.hints == {"type": "Episode", "series": "Attack on Titan", "title": "To You, in 2000 Years",
                           "season": 1, "episode": 1, "provider_ids": {"Tvdb": "4538367", "Imdb": "tt2560140"}}
    done = fixture("playback_stop.json")
    done["PlaybackInfo"]["PlayedToCompletion"] = True
    assert emby_event(done).played_to_completion is True


def test_kinds_and_session_fallback() -> None:
    payload = fixture("playback_start.json")
    for raw, kind in (("playback.pause", "pause"), ("playback.unpause", "resume")):
        assert emby_event(dict(payload, Event=raw)).kind == kind
    assert emby_event(dict(payload, Event="item.rate")) == Ignored("Emby item.rate events are not used")
    del payload["Session"]["DeviceId"]
    assert emby_event(payload).session_key == "c0ffee00c0ffee00c0ffee00c0ffee00"
    assert emby_event({"Event": "library.new", "Server": {}}) == Ignored("Emby library.new events are not used")


def test_start_then_early_stop_is_detected() -> None:
    detector = FailureDetector(window_seconds=30, min_progress_seconds=10)
    assert detector.observe(emby_event(fixture("playback_start.json"))) is None
    signal = detector.observe(emby_event(fixture("playback_stop.json")))
    assert signal is not None and signal.reason == "early_stop"


# ---- locator ---------------------------------------------------------------------------------------------
@pytest.fixture
def anime_root(library_root: Path) -> Path:
    root = library_root / "anime"
    (root / "Attack on Titan" / "Season 01").mkdir(parents=True)
    (root / REL).write_text("https://cdn.example.net/a.m3u8\n")
    return root


async def test_locator_by_path_and_identity(store: MappingStore, anime_root: Path) -> None:
    row = store.upsert({"strm_path": str(anime_root / REL), "site": "aniworld", "slug": "attack-on-titan",
                        "season": 1, "episode": 1})
    index = EmbyItemIndex()
    locator = EmbyLocator(store, PathMap([PathMapEntry(server="/mnt/anime", local=str(anime_root))]), index)
    match = await locator.locate(emby_event(fixture("playback_stop.json")))
    assert match.mapping is not None and match.mapping["id"] == row["id"] and match.rule == "strm_path"
    assert index.get(row["id"]) == "90211"

    moved = fixture("playback_stop.json")
    moved["Item"]["Path"] = "/somewhere/else.strm"
    moved["Item"]["Id"] = "90999"
    match = await locator.locate(emby_event(moved))
    assert match.rule == "identity" and index.get(row["id"]) == "90999"

    stranger = fixture("playback_stop.json")
    stranger["Item"].update(Path="/nope/x.strm", SeriesName="Unknown Show")
    assert (await locator.locate(emby_event(stranger))).mapping is None


def test_index_is_bounded() -> None:
    index = EmbyItemIndex(max_items=2)
    for n in range(3):
        index.remember(n, str(n))
    assert (index.get(0), index.get(2), len(index)) == (None, "2", 2)


# ---- target ----------------------------------------------------------------------------------------------
async def test_target_refresh_call(fake_emby: FakeEmby) -> None:
    index = EmbyItemIndex()
    index.remember(7, "90211")
    target = EmbyTarget.from_config(EmbyConfig(url=fake_emby.url, api_key=fake_emby.token), index)
    assert isinstance(target, Target) and target.name == "emby"
    assert await target.requests_for({"id": 8, "strm_path": "/x.strm"}) == []
    [request] = await target.requests_for({"id": 7, "strm_path": "/x.strm"})
    assert request == RescanRequest(key="90211", payload={"item_id": "90211"})
    await target.send(request.payload)
    [call] = fake_emby.calls
    assert (call.method, call.path, call.token) == ("POST", "/Items/90211/Refresh", fake_emby.token)
    assert call.query_string == ("metadataRefreshMode=FullRefresh&imageRefreshMode=None"
                                 "&replaceAllMetadata=false&replaceAllImages=false")
    assert "api_key" not in call.query  # the key travels in the X-Emby-Token header only
    await target.close()


async def test_target_failures(fake_emby: FakeEmby) -> None:
    index = EmbyItemIndex()
    target = EmbyTarget(EmbyClient(fake_emby.url, fake_emby.token, 2), index)
    fake_emby.add_item("1")
    with pytest.raises(TargetGone):
        await target.send({"item_id": "2"})
    fake_emby.fail_with(500)
    with pytest.raises(TargetRetry):
        await target.send({"item_id": "1"})
    fake_emby.fail_with(None)
    await target.send({"item_id": "1"})
    wrong = EmbyTarget(EmbyClient(fake_emby.url, "wrong", 2), index)
    with pytest.raises(TargetRetry):
        await wrong.send({"item_id": "1"})
    await wrong.close()
    await target.close()


async def test_target_server_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = EmbyTarget(EmbyClient(f"http://127.0.0.1:{port}", "k", 1), EmbyItemIndex())
    with pytest.raises(TargetRetry, match="unreachable"):
        await target.send({"item_id": "1"})
    await target.close()
