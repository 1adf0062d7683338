"""Detection that follows what the plugin really sends: failed resumes, "completed" stops without a position,
starts from before a restart, and plays that must stay untouched. Every suspected failure is judged by a probe.

Bodies come from tests/fixtures/jellyfin (see its README): the "Send All Properties" serialisation of the
plugin's data dictionary, and the same dictionary rendered through the shipped webhook.handlebars.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bridge.app import create_app
from bridge.strm import read_strm
from integrations.jellyfin.tests.test_end_to_end import FIXTURES, add_episode, extra_config, post, settle, world
from integrations.jellyfin.tests.test_webhook import TEMPLATE, render
from tests.appfactory import make_services

__all__ = ["extra_config", "world"]  # pytest fixtures used here
TICKS = 10_000_000
GUID_KEYS = ("ItemId", "SeriesId", "SeasonId", "UserId", "Id")


def plugin_data(name: str, item_id: str, device: str = "device-1", **changes: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    data.update(ItemId=item_id, MediaSourceId=item_id, DeviceId=device, **changes)
    return data


def body(fmt: str, data: dict[str, Any]) -> tuple[bytes, str]:
    """The plugin's two JSON shapes of one data dictionary: serialised as is, or rendered through our template
    (where Guid values render in .NET's D format and booleans as True/False)."""
    if fmt == "send_all":
        return json.dumps(data).encode(), "application/json"
    values = {key: uuid.UUID(value) if key in GUID_KEYS and isinstance(value, str) and len(value) == 32 else value
              for key, value in data.items()}
    return render(TEMPLATE.read_text(), values).encode(), "text/plain; charset=utf-8"


def outcomes(world: dict[str, Any]) -> dict[str, str]:
    rows = world["services"].db.conn.execute("select item_id, outcome from events where kind = 'stop'").fetchall()
    return dict(rows)


def item_refreshes(world: dict[str, Any]) -> list[Any]:
    return world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")


@pytest.mark.parametrize("fmt", ["send_all", "template"])
async def test_failed_resume_at_twelve_minutes_is_healed(world: dict[str, Any], fmt: str) -> None:
    item_id, path, expired = add_episode(world, 1)
    start = plugin_data("send_all_playback_start_resume.json", item_id)
    stop = plugin_data("send_all_playback_stop_resume_failed.json", item_id)
    assert start["PlaybackPositionTicks"] == stop["PlaybackPositionTicks"] == 720 * TICKS
    for data in (start, stop):
        response = await post(world, *body(fmt, data))
        assert response.status == 202, await response.text()
    await settle(world)

    assert read_strm(path) != expired
    assert len(world["provider"].resolve_calls) == 1
    assert [c.path.lower() for c in item_refreshes(world)] == [f"/items/{item_id}/refresh"]
    assert outcomes(world) == {item_id: "refreshed"}
    # the link was judged first: the expired URL was probed (403) before anything was resolved
    expired_parts = urlsplit(expired)
    assert world["provider"].media_requests[0][1:] == (f"{expired_parts.path}?{expired_parts.query}", 403)


@pytest.mark.parametrize("fmt", ["send_all", "template"])
async def test_plays_that_worked_are_neither_probed_nor_written(world: dict[str, Any], fmt: str) -> None:
    resumed, resumed_path, resumed_url = add_episode(world, 2)
    completed, completed_path, completed_url = add_episode(world, 3)
    long_stop, long_path, long_url = add_episode(world, 4)
    plays = [
        # a resume at 12:00 that played for five minutes
        (plugin_data("send_all_playback_start_resume.json", resumed),
         plugin_data("send_all_playback_stop_resume_failed.json", resumed, PlaybackPositionTicks=1020 * TICKS,
                     PlaybackPosition="00:17:00")),
        # a play to the end, reported with its position
        (plugin_data("send_all_playback_start.json", completed),
         plugin_data("send_all_playback_stop.json", completed, PlaybackPositionTicks=1439 * TICKS,
                     PlaybackPosition="00:23:59", PlayedToCompletion=True)),
        # a normal stop after twenty minutes
        (plugin_data("send_all_playback_start.json", long_stop),
         plugin_data("send_all_playback_stop.json", long_stop, PlaybackPositionTicks=1200 * TICKS,
                     PlaybackPosition="00:20:00")),
    ]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (resumed_path, completed_path, long_path)}
    for start, stop in plays:
        for data in (start, stop):
            assert (await post(world, *body(fmt, data))).status == 202
    await settle(world)

    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert world["provider"].media_requests == []  # nothing probed
    assert world["provider"].resolve_calls == [] and item_refreshes(world) == []
    assert outcomes(world) == {resumed: "no_failure", completed: "no_failure", long_stop: "no_failure"}


async def test_completed_at_zero_a_second_after_the_start_is_probed_and_healed_when_dead(world: dict[str, Any]) -> None:
    """Jellyfin turns a stop without a position into PlayedToCompletion=true at 0 (SessionManager.OnPlaybackStopped)."""
    item_id, path, expired = add_episode(world, 5)
    stop = plugin_data("send_all_playback_stop_no_position.json", item_id)
    assert (stop["PlayedToCompletion"], stop["PlaybackPositionTicks"], stop["RunTimeTicks"]) == (True, 0, 1440 * TICKS)
    await post(world, *body("send_all", plugin_data("send_all_playback_start_resume.json", item_id)))
    await post(world, *body("send_all", stop))
    await settle(world)

    assert world["provider"].media_requests[0][2] == 403  # probed: the link is dead
    assert read_strm(path) != expired
    assert len(world["provider"].resolve_calls) == 1 and len(item_refreshes(world)) == 1
    assert outcomes(world) == {item_id: "refreshed"}
    reasons = world["services"].db.conn.execute("select reason from refresh_log").fetchall()
    assert len(reasons) == 1 and reasons[0][0].startswith("completed_at_start")


async def test_completed_at_zero_with_a_live_link_ends_alive_and_writes_nothing(world: dict[str, Any]) -> None:
    provider, services = world["provider"], world["services"]
    item_id, path, _ = add_episode(world, 6)
    live = provider.sign("show/1/6", ttl=3600)
    path.write_text(live + "\n")
    services.store.update(services.store.by_path(str(path))["id"], {"resolved_url": live})
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    await post(world, *body("template", plugin_data("send_all_playback_start.json", item_id)))
    await post(world, *body("template", plugin_data("send_all_playback_stop_no_position.json", item_id)))
    await settle(world)

    assert [status for _, _, status in provider.media_requests] == [200]  # probed once, alive
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert provider.resolve_calls == [] and item_refreshes(world) == [] and services.rescan.pending() == []
    assert outcomes(world) == {item_id: "alive"}
    assert services.store.by_path(str(path))["resolved_url"] == live


async def test_start_before_a_restart_pairs_with_the_stop_after_it(world: dict[str, Any], tmp_path: Path,
                                                                   aiohttp_client: Any) -> None:
    item_id, path, expired = add_episode(world, 7)
    assert (await post(world, *body("send_all", plugin_data("send_all_playback_start_resume.json", item_id)))).status == 202
    await world["services"].processor.drain()
    await world["client"].close()  # the bridge stops between the start and the stop

    config = (tmp_path / "strm-bridge.toml").read_text().split("[library]")[1].split("\n", 2)[2]
    services = make_services(tmp_path, config, roots=[world["root"]])  # a new app on the same database
    client = await aiohttp_client(create_app(services))
    restarted = {**world, "services": services, "client": client}
    response = await post(restarted, *body("send_all", plugin_data("send_all_playback_stop_resume_failed.json", item_id)))
    assert response.status == 202
    await settle(restarted)

    assert read_strm(path) != expired
    assert len(world["provider"].resolve_calls) == 1 and len(item_refreshes(world)) == 1
    assert outcomes(restarted) == {item_id: "refreshed"}
    await client.close()


async def test_non_playback_notifications_are_acknowledged_with_the_reason(world: dict[str, Any]) -> None:
    response = await post(world, (FIXTURES / "send_all_item_added.json").read_bytes(), "application/json")
    assert response.status == 202
    assert await response.json() == {"status": "ignored", "outcome": "ignored",
                                     "reason": "Jellyfin ItemAdded notifications are not used"}
    progress = await post(world, (FIXTURES / "send_all_playback_progress_paused.json").read_bytes(), "application/json")
    assert progress.status == 202 and (await progress.json())["reason"] == "PlaybackProgress events are not used"
    assert world["services"].db.conn.execute("select count(*) from events").fetchone()[0] == 0
