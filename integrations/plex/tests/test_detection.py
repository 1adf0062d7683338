"""Plex and Tautulli detection as they report playback: a resume at 12:00 (`viewOffset` / `view_offset`, the
saved offset, in both the play and the stop) that fails at once is healed with one resolve and one partial
scan; a resume that plays is left alone; plex.tv streaming content and events strm-bridge does not use are
acknowledged (202, outcome "ignored", the reason), never refused."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

import pytest

from integrations.plex.tests.test_end_to_end import (FIXTURES, PLAYER, SEASON_SERVER, SHOW, Bridge, assert_healed,
                                                     assert_one_partial_scan, assert_untouched, bridge, make_bridge,
                                                     plex_multipart, tautulli_body)

__all__ = ["bridge", "make_bridge"]  # pytest fixtures used here


def recorded(name: str, rating_key: int, **metadata: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / "plex" / name).read_text())
    payload["Metadata"].update(ratingKey=str(rating_key), key=f"/library/metadata/{rating_key}", librarySectionID=1,
                               grandparentTitle=SHOW, **metadata)
    payload["Player"]["uuid"] = PLAYER
    return payload


async def stop_outcomes(bridge: Bridge) -> list[str]:
    return [e["outcome"] for e in await bridge.events() if e["kind"] == "stop"]


async def test_plex_failed_resume_is_healed(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(21)
    play, stop = recorded("media_play_resume.json", rating_key), recorded("media_stop_resume.json", rating_key)
    assert play["Metadata"]["viewOffset"] == stop["Metadata"]["viewOffset"] == 720_000
    for payload in (play, stop):
        response = await bridge.post_plex(plex_multipart(payload))
        assert response.status == 202 and (await response.json())["status"] == "accepted"
    await bridge.settle()

    await assert_healed(bridge, rating_key)
    assert len(bridge.provider.resolve_calls) == 1
    assert_one_partial_scan(bridge)
    assert await stop_outcomes(bridge) == ["refreshed"]


async def test_plex_resume_that_plays_is_left_alone(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(22)
    await bridge.post_plex(plex_multipart(recorded("media_play_resume.json", rating_key)))
    await bridge.post_plex(plex_multipart(recorded("media_stop_resume.json", rating_key, viewOffset=1_020_000)))
    await bridge.settle()
    await assert_untouched(bridge, rating_key)
    assert bridge.provider.media_requests == []
    assert await stop_outcomes(bridge) == ["no_failure"]


async def test_tautulli_failed_resume_on_play_on_stop_is_healed(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(23)
    file = f"{SEASON_SERVER}/{path.name}"
    play = tautulli_body("on_play_resume", rating_key, file)
    stop = tautulli_body("on_stop_resume", rating_key, file)
    assert play["view_offset"] == stop["view_offset"] == "720000"
    for body in (play, stop):
        assert (await bridge.post_tautulli(body)).status == 202
    await bridge.settle()

    await assert_healed(bridge, rating_key)
    assert len(bridge.provider.resolve_calls) == 1
    assert_one_partial_scan(bridge)
    assert await stop_outcomes(bridge) == ["refreshed"]


async def test_tautulli_resume_that_plays_is_left_alone(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(24)
    file = f"{SEASON_SERVER}/{path.name}"
    await bridge.post_tautulli(tautulli_body("on_play_resume", rating_key, file))
    await bridge.post_tautulli(tautulli_body("on_stop_resume", rating_key, file, view_offset="1020000"))
    await bridge.settle()
    await assert_untouched(bridge, rating_key)
    assert bridge.provider.media_requests == []


@pytest.mark.parametrize(("name", "reason"), [
    ("media_play_vod.json", "plex.tv streaming content (Server.uuid tv.plex.provider.vod) is not a library item"),
    ("media_stop_vod.json", "plex.tv streaming content (Server.uuid tv.plex.provider.vod) is not a library item"),
    ("library_new.json", "Plex library.new events are not used"),
    ("media_rate.json", "Plex media.rate events are not used"),
    ("admin_database_backup.json", "Plex admin.database.backup events are not used"),
])
async def test_payloads_about_what_the_bridge_does_not_handle_are_ignored(bridge: Bridge, name: str,
                                                                          reason: str) -> None:
    payload = json.loads((FIXTURES / "plex" / name).read_text())
    response = await bridge.post_plex(plex_multipart(payload))
    assert response.status == 202, await response.text()
    assert await response.json() == {"status": "ignored", "outcome": "ignored", "reason": reason}
    assert bridge.event_count() == 0 and bridge.plex.calls_to("/library/metadata/6015de7207408f002dcee048") == []


async def test_a_hex_rating_key_from_another_server_is_ignored_and_garbage_is_refused(bridge: Bridge) -> None:
    payload = json.loads((FIXTURES / "plex" / "media_play.json").read_text())
    payload["Metadata"]["ratingKey"] = "5d776b59ad5437001f79c6f8"
    response = await bridge.post_plex(plex_multipart(payload))
    assert response.status == 202 and (await response.json())["outcome"] == "ignored"
    payload["Metadata"]["ratingKey"] = "12; drop table"
    response = await bridge.post_plex(plex_multipart(payload))
    assert response.status == 400 and "Metadata.ratingKey must be a number" in (await response.json())["detail"]


async def test_tautulli_triggers_not_used_are_ignored(bridge: Bridge) -> None:
    for body in ({"action": "intdown"}, {"action": "watched", "rating_key": "4711"}):
        response = await bridge.post_tautulli(body)
        assert response.status == 202
        assert (await response.json())["reason"] == f"Tautulli on_{body['action']} notifications are not used"
    assert bridge.event_count() == 0


async def test_tautulli_buffer_warnings_are_failures_only_when_enabled(
        make_bridge: Callable[..., Awaitable[Bridge]], monkeypatch: pytest.MonkeyPatch) -> None:
    import integrations.plex.tests.test_end_to_end as e2e

    plain = e2e.config_text
    monkeypatch.setattr(e2e, "config_text", lambda *a, **kw: plain(*a, **kw).replace(
        "[tautulli]\n", "[tautulli]\nuse_buffer = true\n"))
    enabled = await make_bridge()
    rating_key, path, expired = enabled.add_episode(25)
    body = tautulli_body("on_buffer_empty_offset", rating_key, f"{SEASON_SERVER}/{path.name}")
    assert (await enabled.post_tautulli(body)).status == 202
    await enabled.settle()
    await assert_healed(enabled, rating_key)
    assert len(enabled.provider.resolve_calls) == 1
    assert_one_partial_scan(enabled)


async def test_tautulli_buffer_warnings_are_ignored_by_default(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(26)
    response = await bridge.post_tautulli(tautulli_body("on_buffer_empty_offset", rating_key,
                                                        f"{SEASON_SERVER}/{path.name}"))
    assert response.status == 202
    assert await response.json() == {"status": "ignored", "outcome": "ignored", "reason": "buffer events are not used"}
    await bridge.settle()
    await assert_untouched(bridge, rating_key)
