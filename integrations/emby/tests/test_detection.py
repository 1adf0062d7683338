"""Emby detection as Emby reports it: a resume at 12:00 (`PlaybackInfo.PositionTicks` in start and stop) that
fails at once is healed; a resume that plays is left alone; events strm-bridge does not use are acknowledged."""
from __future__ import annotations

import json
from typing import Any

from bridge.strm import read_strm
from integrations.emby.tests.test_end_to_end import DEVICE, FIXTURES, add_episode, post, refreshes, world

__all__ = ["world"]  # the pytest fixture used here
TICKS = 10_000_000


def recorded(name: str, item_id: str, server_path: str, **playback: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    data["Item"].update(Id=item_id, Path=server_path, FileName=server_path.rsplit("/", 1)[1])
    data["Session"]["DeviceId"] = DEVICE
    data["PlaybackInfo"].update(playback)
    return data


async def settle(world: dict[str, Any]) -> None:
    await world["services"].processor.drain()
    await world["services"].rescan.flush()


async def test_failed_resume_is_healed_with_one_resolve_and_one_refresh(world: dict[str, Any]) -> None:
    item_id, path, expired = add_episode(world, 11)
    server_path = f"/mnt/tv/Attack on Titan/Season 01/{path.name}"
    start = recorded("playback_start_resume.json", item_id, server_path)
    stop = recorded("playback_stop_resume.json", item_id, server_path)
    assert start["PlaybackInfo"]["PositionTicks"] == stop["PlaybackInfo"]["PositionTicks"] == 720 * TICKS
    for data in (start, stop):
        assert (await post(world, data, "json")).status == 202
    await settle(world)

    assert read_strm(path) != expired
    assert len(world["provider"].resolve_calls) == 1
    assert [(c.method, c.path) for c in refreshes(world)] == [("POST", f"/Items/{item_id}/Refresh")]
    [outcome] = world["services"].db.conn.execute("select outcome from events where kind = 'stop'").fetchall()
    assert outcome == ("refreshed",)


async def test_resume_that_plays_and_a_completed_play_are_left_alone(world: dict[str, Any]) -> None:
    resumed, resumed_path, resumed_url = add_episode(world, 12)
    done, done_path, done_url = add_episode(world, 13)
    base = "/mnt/tv/Attack on Titan/Season 01/"
    await post(world, recorded("playback_start_resume.json", resumed, base + resumed_path.name), "json")
    await post(world, recorded("playback_stop_resume.json", resumed, base + resumed_path.name,
                               PositionTicks=1020 * TICKS), "json")
    await post(world, recorded("playback_start.json", done, base + done_path.name), "json")
    await post(world, recorded("playback_stop.json", done, base + done_path.name, PositionTicks=1439 * TICKS,
                               PlayedToCompletion=True), "json")
    await settle(world)

    assert read_strm(resumed_path) == resumed_url and read_strm(done_path) == done_url
    assert world["provider"].media_requests == [] and world["provider"].resolve_calls == [] and refreshes(world) == []


async def test_events_not_used_are_acknowledged_with_the_reason(world: dict[str, Any]) -> None:
    for event in ("library.new", "item.rate", "system.updateavailable"):
        response = await post(world, {"Event": event, "Server": {"Name": "emby-nas"}}, "json")
        assert response.status == 202
        assert await response.json() == {"status": "ignored", "outcome": "ignored",
                                         "reason": f"Emby {event} events are not used"}
    assert world["services"].db.conn.execute("select count(*) from events").fetchone()[0] == 0
