"""A dead episode healed end to end: plugin webhooks in, fresh URL in the .strm, one Jellyfin item refresh out."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bridge.app import create_app
from bridge.strm import read_strm
from tests.appfactory import make_services
from tests.e2e import plant_expired, refresh_config
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.provider import FakeProvider

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "jellyfin"
API_KEY = "jf-api-key-0123456789abcdef"
HOOK = "jf-webhook-token-abcdef"
REFRESH_QUERY = {"metadataRefreshMode": "FullRefresh", "imageRefreshMode": "None",
                 "replaceAllMetadata": "false", "replaceAllImages": "false"}


def dashed(item_id: str) -> str:
    return f"{item_id[:8]}-{item_id[8:12]}-{item_id[12:16]}-{item_id[16:20]}-{item_id[20:]}"


def body(fmt: str, kind: str, item_id: str, device: str, position_ticks: int = 0) -> tuple[bytes, str]:
    """The four shapes the plugin really sends, built from the recorded fixtures."""
    if fmt.startswith("send_all"):
        data = json.loads((FIXTURES / f"send_all_playback_{kind}.json").read_text())
        data.update(ItemId=item_id, DeviceId=device)
        if kind == "stop":
            data.update(PlaybackPositionTicks=position_ticks, PlayedToCompletion=False)
        content_type = "text/plain; charset=utf-8" if fmt == "send_all_text" else "application/json"
        return json.dumps(data).encode(), content_type
    data = json.loads((FIXTURES / f"template_playback_{kind}.json").read_text())
    data.update(ItemId=dashed(item_id).upper(), DeviceId=device)
    if kind == "stop":
        data.update(PlaybackPositionTicks=str(position_ticks), PlayedToCompletion="False")
    if fmt == "form":
        return urlencode(data).encode(), "application/x-www-form-urlencoded"
    return json.dumps(data).encode(), "application/json"


@pytest.fixture
def extra_config() -> str:
    """Overridden by tests that need more configuration (pytest.mark.parametrize on this name)."""
    return ""


@pytest.fixture
async def world(tmp_path: Path, library_root: Path, aiohttp_client, extra_config: str):  # type: ignore[no-untyped-def]
    provider = FakeProvider()
    await provider.start()
    jellyfin = FakeJellyfin(api_key=API_KEY)
    await jellyfin.start()
    services = make_services(tmp_path, f"""
[jellyfin]
url = "{jellyfin.url}"
api_key = "{API_KEY}"
webhook_token = "{HOOK}"
path_map = [{{server = "/data/tv", local = "{library_root}"}}]
{extra_config}
{refresh_config(provider)}""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    yield {"provider": provider, "jellyfin": jellyfin, "services": services, "client": client, "root": library_root}
    await jellyfin.close()
    await provider.close()


def add_episode(world: dict[str, Any], episode: int) -> tuple[str, Path, str]:
    path = world["root"] / "Show" / "Season 01" / f"Show S01E{episode:02d}.strm"
    expired = plant_expired(world["provider"], world["services"].store, path, "show", episode)
    item_id = f"{episode:032x}"
    world["jellyfin"].add_item(item_id, f"/data/tv/Show/Season 01/Show S01E{episode:02d}.strm", Type="Episode")
    return item_id, path, expired


async def post(world: dict[str, Any], data: bytes, content_type: str, headers: dict[str, str] | None = None,
               query: str = "") -> aiohttp.ClientResponse:
    return await world["client"].post("/webhooks/jellyfin" + query, data=data,
                                      headers={"Content-Type": content_type, **(headers or {"X-Api-Key": HOOK})})


async def settle(world: dict[str, Any]) -> None:
    await world["services"].processor.drain()
    await world["services"].rescan.flush()


@pytest.mark.parametrize("fmt", ["send_all_json", "send_all_text", "template_json", "form"])
async def test_failed_playback_is_healed(world, fmt: str) -> None:  # type: ignore[no-untyped-def]
    item_id, path, expired = add_episode(world, 1)
    for kind in ("start", "stop"):
        data, content_type = body(fmt, kind, item_id, "device-1", position_ticks=5_000_000)
        response = await post(world, data, content_type)
        assert response.status == 202, await response.text()
    await settle(world)

    fresh = read_strm(path)
    assert fresh != expired
    async with aiohttp.ClientSession() as session, session.get(fresh) as answer:
        assert answer.status == 200 and len(await answer.read()) > 0
    refreshes = world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")
    assert len(refreshes) == 1
    assert refreshes[0].path.lower() == f"/items/{item_id}/refresh"
    assert {k: refreshes[0].query[k] for k in REFRESH_QUERY} == REFRESH_QUERY
    mapping = world["services"].store.by_path(str(path))
    assert mapping["jellyfin_item_id"] == item_id and mapping["resolved_url"] == fresh
    event = (await (await world["client"].get("/api/events", headers={"X-Api-Key": world["services"].api_token})).json())["items"][0]
    assert event["outcome"] == "refreshed" and event["match_rule"] == "strm_path"

    # a second failure inside the cooldown: no second resolver call, no second Jellyfin refresh
    for kind in ("start", "stop"):
        await post(world, *body(fmt, kind, item_id, "device-1"))
    await settle(world)
    assert len(world["provider"].resolve_calls) == 1
    assert len(world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")) == 1


async def test_one_webhook_per_user_counts_once_and_normal_stops_are_ignored(world) -> None:  # type: ignore[no-untyped-def]
    item_id, path, expired = add_episode(world, 2)
    other_id, other_path, other_url = add_episode(world, 3)
    for kind in ("start", "start", "stop", "stop"):  # two users in one session: the plugin sends each twice
        await post(world, *body("send_all_json", kind, item_id, "tv"))
    await post(world, *body("send_all_json", "start", other_id, "tv"))
    await post(world, *body("send_all_json", "stop", other_id, "tv", position_ticks=25 * 60 * 10_000_000))
    await settle(world)
    assert len(world["provider"].resolve_calls) == 1
    assert read_strm(path) != expired
    assert read_strm(other_path) == other_url  # a long playback is no failure


@pytest.mark.parametrize("headers,query", [({}, ""), ({"X-Api-Key": "wrong"}, ""), ({}, "?token=nope"),
                                           ({"Authorization": "Bearer nope"}, "")])
async def test_wrong_token(world, headers, query) -> None:  # type: ignore[no-untyped-def]
    response = await post(world, *body("send_all_json", "start", "0" * 32, "d"), headers=headers or {"X": "y"},
                          query=query)
    assert response.status == 401


async def test_token_forms_accepted(world) -> None:  # type: ignore[no-untyped-def]
    data, ctype = body("send_all_json", "start", "1" * 32, "d")
    assert (await post(world, data, ctype, headers={"Authorization": f"Bearer {HOOK}"})).status == 202
    assert (await post(world, data, ctype, headers={"X-Other": "1"}, query=f"?token={HOOK}")).status == 202
    api = world["services"].api_token
    assert (await post(world, data, ctype, headers={"X-Api-Key": api})).status == 202


@pytest.mark.parametrize("name", ["malformed_not_json.txt", "malformed_array.json", "malformed_unknown_type.json",
                                  "malformed_missing_itemid.json", "malformed_bad_itemid.json",
                                  "malformed_no_type.json", "malformed_truncated.json"])
async def test_malformed_bodies_are_refused(world, name: str) -> None:  # type: ignore[no-untyped-def]
    response = await post(world, (FIXTURES / name).read_bytes(), "application/json")
    assert response.status == 400
    payload = await response.json()
    assert payload["error"] == "invalid_payload" and payload["detail"]
    assert world["services"].db.conn.execute("select count(*) from events").fetchone()[0] == 0


async def test_progress_events_are_ignored_cheaply(world) -> None:  # type: ignore[no-untyped-def]
    data = (FIXTURES / "send_all_playback_progress_paused.json").read_bytes()
    response = await post(world, data, "application/json")
    assert response.status == 202 and (await response.json())["status"] == "ignored"
    assert world["services"].db.conn.execute("select count(*) from events").fetchone()[0] == 0


async def test_unknown_item_and_unmapped_path_write_nothing(world, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="bridge.processor")
    world["jellyfin"].add_item("f" * 32, "/data/tv/Other/movie.mkv", Type="Movie")
    world["jellyfin"].add_item("e" * 32, "/data/tv/Other/unknown.strm", Type="Episode")
    for item_id in ("d" * 32, "f" * 32, "e" * 32):
        await post(world, *body("send_all_json", "start", item_id, "x"))
        await post(world, *body("send_all_json", "stop", item_id, "x"))
    await settle(world)
    rows = world["services"].db.conn.execute("select item_id, outcome, error from events where kind = 'stop'").fetchall()
    details = {item: (outcome, error) for item, outcome, error in rows}
    assert details["d" * 32] == ("unmatched", "item unknown to Jellyfin")
    assert details["f" * 32][0] == "unmatched" and "not a .strm" in details["f" * 32][1]
    assert details["e" * 32][0] == "unmatched" and "no mapping" in details["e" * 32][1]
    assert world["provider"].resolve_calls == [] and world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$") == []
    assert "item unknown to Jellyfin" in caplog.text


async def test_refresh_waits_while_jellyfin_is_down_even_across_restart(world, tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    item_id, path, expired = add_episode(world, 4)
    await post(world, *body("send_all_json", "start", item_id, "d"))
    await post(world, *body("send_all_json", "stop", item_id, "d"))
    await world["services"].processor.drain()  # located while Jellyfin was up: the item id is stored
    world["jellyfin"].fail_with(503, everything=True)
    await world["services"].rescan.flush()
    assert read_strm(path) != expired
    queued = world["services"].rescan.pending()
    assert len(queued) == 1 and queued[0]["attempts"] == 1 and "503" in (queued[0]["last_error"] or "")
    await world["client"].close()  # the bridge stops with the refresh still queued

    world["jellyfin"].fail_with(None)
    services = make_services(tmp_path, (tmp_path / "strm-bridge.toml").read_text().split("[library]")[1].split("\n", 2)[2],
                             roots=[world["root"]])
    client = await aiohttp_client(create_app(services))
    assert len(services.rescan.pending()) == 1
    await services.rescan.flush()
    assert services.rescan.pending() == []
    refreshes = world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")
    assert [c.path.lower() for c in refreshes if c.status == 204] == [f"/items/{item_id}/refresh"]
    await client.close()


@pytest.mark.parametrize("extra_config", ["[detector]\nprobe_on_start = true"])
async def test_probe_on_start_heals_before_the_stop(world) -> None:  # type: ignore[no-untyped-def]
    provider, services = world["provider"], world["services"]
    dead_id, dead_path, dead_url = add_episode(world, 1)
    live_id, live_path, _ = add_episode(world, 2)
    live_url = provider.sign("show/1/2", ttl=3600)
    live_path.write_text(live_url + "\n")
    services.store.update(services.store.by_path(str(live_path))["id"], {"resolved_url": live_url})
    for item_id in (dead_id, live_id):
        assert (await post(world, *body("send_all_json", "start", item_id, "d"))).status == 202
    await settle(world)
    assert read_strm(dead_path) != dead_url  # healed on the start alone
    assert read_strm(live_path) == live_url
    assert len(provider.resolve_calls) == 1
    assert len(world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")) == 1
    outcomes = dict(services.db.conn.execute("select item_id, outcome from events").fetchall())
    assert outcomes == {dead_id: "refreshed", live_id: "no_failure"}
