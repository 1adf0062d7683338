"""A dead episode healed end to end through Emby: webhook in (JSON or form `data`), fresh URL in the .strm,
one `POST /Items/{id}/Refresh` out. The real app on a temp database, FakeEmby and FakeProvider on loopback."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bridge.app import create_app
from bridge.strm import read_strm
from tests.appfactory import make_services
from tests.e2e import plant_expired, refresh_config
from tests.fakes.emby import FakeEmby
from tests.fakes.provider import FakeProvider

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "emby"
API_KEY = "emby-api-key-0123456789abcdef"
HOOK = "emby-webhook-token-abcdef012345"
DEVICE = "TW96aWxsYS81LjAgKFgxMTsgTGludXggeDg2XzY0KQ11"
REFRESH_QUERY = {"metadataRefreshMode": "FullRefresh", "imageRefreshMode": "None",
                 "replaceAllMetadata": "false", "replaceAllImages": "false"}


@pytest.fixture
async def world(tmp_path: Path, library_root: Path, aiohttp_client: Any) -> AsyncIterator[dict[str, Any]]:
    provider = FakeProvider()
    await provider.start()
    emby = await FakeEmby(token=API_KEY).start()
    services = make_services(tmp_path, f"""
[emby]
url = "{emby.url}"
api_key = "{API_KEY}"
webhook_token = "{HOOK}"
path_map = [{{server = "/mnt/tv", local = "{library_root}"}}]
{refresh_config(provider)}""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    yield {"provider": provider, "emby": emby, "services": services, "client": client, "root": library_root}
    await emby.stop()
    await provider.close()


def add_episode(world: dict[str, Any], episode: int) -> tuple[str, Path, str]:
    path = world["root"] / "Attack on Titan" / "Season 01" / f"Attack on Titan - S01E{episode:02d}.strm"
    expired = plant_expired(world["provider"], world["services"].store, path, "aot", episode)
    return str(90210 + episode), path, expired


def payload(kind: str, item_id: str, server_path: str, *, position_ticks: int = 0) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"playback_{kind}.json").read_text())
    data["Item"].update(Id=item_id, Path=server_path, FileName=server_path.rsplit("/", 1)[1])
    data["Session"]["DeviceId"] = DEVICE
    if kind == "stop":
        data["PlaybackInfo"].update(PositionTicks=position_ticks, PlayedToCompletion=False)
    return data


async def post(world: dict[str, Any], data: dict[str, Any], fmt: str, query: str = f"?token={HOOK}") -> aiohttp.ClientResponse:
    client = world["client"]
    if fmt == "json":
        return await client.post("/webhooks/emby" + query, json=data)
    if fmt == "form":  # older Emby: application/x-www-form-urlencoded with the JSON in `data`
        return await client.post("/webhooks/emby" + query, data=aiohttp.FormData({"data": json.dumps(data)}))
    form = aiohttp.FormData(default_to_multipart=True)  # the same `data` field as multipart/form-data
    form.add_field("data", json.dumps(data))
    return await client.post("/webhooks/emby" + query, data=form)


def refreshes(world: dict[str, Any]) -> list[Any]:
    return [c for c in world["emby"].calls if c.path.endswith("/Refresh")]


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        await answer.read()
        return answer.status


@pytest.mark.parametrize("fmt", ["json", "form", "multipart"])
async def test_failed_playback_is_healed_with_one_item_refresh(world: dict[str, Any], fmt: str) -> None:
    item_id, path, expired = add_episode(world, 1)
    server_path = f"/mnt/tv/Attack on Titan/Season 01/{path.name}"
    assert await status_of(expired) == 403
    for kind in ("start", "stop"):
        response = await post(world, payload(kind, item_id, server_path, position_ticks=21_000_000), fmt)
        assert response.status == 202, await response.text()
    await world["services"].processor.drain()
    await world["services"].rescan.flush()

    fresh = read_strm(path)
    assert fresh != expired and await status_of(fresh) == 200
    assert world["services"].store.by_path(str(path))["resolved_url"] == fresh
    assert len(world["provider"].resolve_calls) == 1
    calls = refreshes(world)
    assert [(c.method, c.path) for c in calls] == [("POST", f"/Items/{item_id}/Refresh")]
    assert calls[0].query == REFRESH_QUERY and calls[0].token == API_KEY
    assert "api_key" not in calls[0].query  # the key goes in the header, never in the URL
    events = (await (await world["client"].get("/api/events", headers={"X-Api-Key": world["services"].api_token})).json())["items"]
    assert (events[0]["kind"], events[0]["outcome"], events[0]["match_rule"]) == ("stop", "refreshed", "strm_path")

    # again inside the cooldown: nothing resolved, nothing refreshed
    for kind in ("start", "stop"):
        await post(world, payload(kind, item_id, server_path, position_ticks=10_000_000), fmt)
    await world["services"].processor.drain()
    await world["services"].rescan.flush()
    assert len(world["provider"].resolve_calls) == 1 and len(refreshes(world)) == 1 and read_strm(path) == fresh


async def test_long_playback_is_no_failure(world: dict[str, Any]) -> None:
    item_id, path, expired = add_episode(world, 2)
    server_path = f"/mnt/tv/Attack on Titan/Season 01/{path.name}"
    await post(world, payload("start", item_id, server_path), "json")
    await post(world, payload("stop", item_id, server_path, position_ticks=600 * 10_000_000), "json")
    await world["services"].processor.drain()
    await world["services"].rescan.flush()
    assert path.read_text() == expired + "\n" and world["provider"].resolve_calls == [] and refreshes(world) == []


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_wrong_token_writes_nothing(world: dict[str, Any], query: str) -> None:
    item_id, path, expired = add_episode(world, 3)
    server_path = f"/mnt/tv/Attack on Titan/Season 01/{path.name}"
    for kind in ("start", "stop"):
        response = await post(world, payload(kind, item_id, server_path, position_ticks=1), "json", query=query)
        assert response.status == 401
    await world["services"].processor.drain()
    assert world["services"].db.conn.execute("select count(*) from events").fetchone()[0] == 0
    assert path.read_text() == expired + "\n" and world["provider"].resolve_calls == [] and refreshes(world) == []


async def test_path_outside_the_path_map_writes_nothing(world: dict[str, Any]) -> None:
    item_id, path, expired = add_episode(world, 4)
    for kind in ("start", "stop"):
        await post(world, payload(kind, item_id, f"/srv/other/{path.name}", position_ticks=1), "json")
    await world["services"].processor.drain()
    await world["services"].rescan.flush()
    outcome, error = world["services"].db.conn.execute(
        "select outcome, error from events where kind = 'stop'").fetchone()
    assert outcome == "unmatched" and error
    assert path.read_text() == expired + "\n" and world["provider"].resolve_calls == [] and refreshes(world) == []
