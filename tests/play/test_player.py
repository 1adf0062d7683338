"""Stable links proven with a real player: ffprobe and ffmpeg through /play/ in redirect, proxy and auto mode."""
from __future__ import annotations

import time

import pytest

from bridge.timeutil import to_epoch
from tests.play.conftest import BridgeFactory, ffplay_null, ffprobe, needs_ffmpeg
from tests.play.media import SECONDS, Media

pytestmark = needs_ffmpeg
MODES = ("redirect", "proxy", "auto")
FULL_FRAMES = 25 * SECONDS * 0.95


async def wait_until_expired(expires_at: str) -> None:
    import asyncio

    deadline = to_epoch(expires_at) + 0.1
    while time.time() < deadline:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
async def test_mp4_plays_and_survives_expiry_between_two_plays(mode: str, make_bridge: BridgeFactory, media: Media) -> None:
    bridge = await make_bridge(mode)
    mapping = bridge.plant("show-1-1", media.mp4_dir, "episode.mp4")
    link = bridge.link(mapping["id"])

    code, duration, err = await ffprobe(link)
    assert code == 0, err
    assert abs(duration - SECONDS) < 0.5
    first = await ffplay_null(link)
    assert first.clean and first.frames >= FULL_FRAMES, first.log
    assert bridge.provider.resolve_calls == []  # a fresh link is used as it is

    mapping = bridge.age(mapping, 1)
    await wait_until_expired(mapping["expires_at"])  # the viewer comes back after the link died
    second = await ffplay_null(link)
    assert second.clean and second.frames >= FULL_FRAMES, second.log
    assert len(bridge.provider.resolve_calls) == 1
    fresh = bridge.store.get(mapping["id"])
    assert fresh["resolved_url"] != mapping["resolved_url"]
    assert [r["outcome"] for r in bridge.play_refreshes(mapping["id"])] == ["refreshed"]
    # the heal never writes a direct URL over the stable link
    assert (bridge.root / "show" / "show S01E01.strm").read_text() == link + "\n"
    if mode == "proxy":
        assert all(h.status in (200, 206) for h in bridge.provider.hits_for("show-1-1")[-3:])


@pytest.mark.parametrize("mode", MODES)
async def test_mp4_expires_in_the_middle_of_a_seeking_read(mode: str, make_bridge: BridgeFactory, media: Media) -> None:
    """The first read stalls inside the moov box until the token has expired; the seek then needs a new URL."""
    bridge = await make_bridge(mode)
    mapping = bridge.plant("show-1-2", media.mp4_dir, "episode.mp4", ttl=4)
    bridge.provider.streams["show-1-2"].stall_after = 2000
    played = await ffplay_null(bridge.link(mapping["id"]), seek=5)
    assert bridge.provider.stalls == 1  # the first read really was held across the expiry
    assert played.clean and played.frames >= 25 * (SECONDS - 5) * 0.9, played.log
    ranged = [h for h in bridge.provider.hits_for("show-1-2") if h.range and not h.range.startswith("bytes=0-")]
    assert ranged and all(h.status == 206 for h in ranged)
    assert len(bridge.provider.resolve_calls) == 1
    assert [r["outcome"] for r in bridge.play_refreshes(mapping["id"])] == ["refreshed"]


@pytest.mark.parametrize("mode", MODES)
async def test_hls_plays_and_survives_expiry_between_playlist_and_segments(mode: str, make_bridge: BridgeFactory,
                                                                          media: Media) -> None:
    bridge = await make_bridge(mode)
    mapping = bridge.plant("anime-1-1", media.hls_dir, "master.m3u8")
    link = bridge.link(mapping["id"])
    code, duration, err = await ffprobe(link)
    assert code == 0, err
    assert abs(duration - SECONDS) < 0.5
    assert bridge.provider.resolve_calls == []

    # the variant playlists are held until the stream's token has expired: every segment and key they name is dead
    bridge.age(mapping, 4)
    bridge.provider.streams["anime-1-1"].stall_variants = True
    played = await ffplay_null(link)
    assert played.clean and played.frames >= FULL_FRAMES, played.log
    assert bridge.provider.stalls >= 1  # the variant playlists were held until their token had died
    assert len(bridge.provider.resolve_calls) == 1  # one re-resolve served every part of the stream
    hits = bridge.provider.hits_for("anime-1-1")
    served = {h.path for h in hits if h.status in (200, 206)}
    assert served >= {"master.m3u8", "v0/index.m3u8", "v1/index.m3u8", "enc.key", "v0/seg0.ts", "v0/seg3.ts"}
    assert bridge.services.play.stats["parts_found_again"] >= 1  # dead parts were found again under the new token


@pytest.mark.parametrize("mode", ("proxy", "auto"))
async def test_referer_is_sent_upstream_and_auto_proxies_for_it(mode: str, make_bridge: BridgeFactory,
                                                               media: Media) -> None:
    bridge = await make_bridge(mode)
    referer = "https://embed.example/e/abc"
    mapping = bridge.plant("ref-1-1", media.hls_dir, "master.m3u8", referer=referer)
    link = bridge.link(mapping["id"])
    code, _, err = await ffprobe(link)
    assert code == 0, err
    played = await ffplay_null(link)
    assert played.clean and played.frames >= FULL_FRAMES, played.log
    hits = bridge.provider.hits_for("ref-1-1")
    assert hits and all(h.referer == referer and h.status in (200, 206) for h in hits)
    assert bridge.services.play.stats.get("plays_redirect", 0) == 0


async def test_redirect_mode_cannot_carry_a_referer(make_bridge: BridgeFactory, media: Media) -> None:
    """Why auto proxies: a 302 sends the player upstream without the header, and the provider refuses it."""
    bridge = await make_bridge("redirect")
    mp4 = bridge.plant("ref-1-2", media.mp4_dir, "episode.mp4", referer="https://embed.example/e/x")
    played = await ffplay_null(bridge.link(mp4["id"]))
    assert played.returncode != 0
    assert [h.status for h in bridge.provider.hits_for("ref-1-2")] == [403]


async def test_proxy_retries_once_after_an_unpredicted_death(make_bridge: BridgeFactory, media: Media) -> None:
    """Keys rotated before the predicted expiry: the first upstream answer is 403, one re-resolve, one retry."""
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-1-3", media.mp4_dir, "episode.mp4")
    link = bridge.link(mapping["id"])
    assert (await ffplay_null(link)).clean
    bridge.provider.expire_all()
    played = await ffplay_null(link, seek=3)
    assert played.clean and played.frames >= 25 * (SECONDS - 3) * 0.9, played.log
    assert len(bridge.provider.resolve_calls) == 1
    assert bridge.services.play.stats["retries"] >= 1


async def test_proxy_hls_segments_re_resolved_after_key_rotation(make_bridge: BridgeFactory, media: Media) -> None:
    """Tokens die right after the playlists were read (unpredictable): each part is found again and served."""
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("anime-1-2", media.hls_dir, "master.m3u8")
    bridge.provider.streams["anime-1-2"].expire_after_playlists = 3  # master and both variants, then rotation
    played = await ffplay_null(bridge.link(mapping["id"]))
    assert played.clean and played.frames >= FULL_FRAMES, played.log
    assert len(bridge.provider.resolve_calls) == 1
    assert bridge.services.play.stats["parts_found_again"] >= 1


async def test_proxy_resumes_a_body_cut_off_mid_stream(make_bridge: BridgeFactory, media: Media) -> None:
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("show-1-4", media.mp4_dir, "episode.mp4")
    bridge.provider.streams["show-1-4"].cut_after = 700_000
    played = await ffplay_null(bridge.link(mapping["id"]))
    assert played.clean and played.frames >= FULL_FRAMES, played.log
    assert bridge.services.play.stats["resumes"] == 1
    resumed = [h for h in bridge.provider.hits_for("show-1-4") if h.range == "bytes=700000-2053555" or
               (h.range or "").startswith("bytes=700000-")]
    assert resumed and resumed[0].status == 206
