"""Play requests are counted in `/metrics`: by mode, refusals, retries, resumes, zero-copy bytes, heals."""
from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.play import splice
from tests.appfactory import AUTH
from tests.play.conftest import Bridge, BridgeFactory
from tests.play.media import Media


async def scrape(bridge: Bridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(f"{bridge.base_url}/metrics", headers=AUTH) as r:
        assert r.status == 200
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_play_counters_move_with_what_the_bridge_did(make_bridge: BridgeFactory, media: Media,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice, "SPLICE_MIN_BYTES", 0)  # the ~2 MB test episode takes the zero-copy path too
    bridge = await make_bridge("auto")
    plain = bridge.plant("show-3-1", media.mp4_dir, "episode.mp4")
    bound = bridge.plant("show-3-2", media.mp4_dir, "episode.mp4", referer="https://embed.example/e/3-2")
    before = await scrape(bridge)
    assert before[("strm_bridge_play_requests_total", (("mode", "redirect"),))] == 0
    original = (media.mp4_dir / "episode.mp4").read_bytes()
    bridge.provider.streams["show-3-2"].cut_after = 300_000
    async with aiohttp.ClientSession() as session:
        async with session.get(bridge.link(plain["id"]), allow_redirects=False) as response:
            assert response.status == 302
        async with session.get(bridge.link(bound["id"])) as response:  # proxied (Referer), cut off, resumed
            assert await response.read() == original
        bridge.provider.expire_all()  # dies before its predicted expiry: one re-resolve and retry, a heal
        async with session.get(bridge.link(bound["id"])) as response:
            assert await response.read() == original
        async with session.get(bridge.link(plain["id"]).replace("sig=", "sig=x")) as response:
            assert response.status == 403
    after = await scrape(bridge)
    assert after[("strm_bridge_play_requests_total", (("mode", "redirect"),))] == 1
    assert after[("strm_bridge_play_requests_total", (("mode", "proxy"),))] == 2
    assert after[("strm_bridge_play_forbidden_total", ())] == 1
    assert after[("strm_bridge_play_resumes_total", ())] == 1
    assert after[("strm_bridge_play_upstream_retries_total", ())] >= 1
    assert after[("strm_bridge_play_spliced_bytes_total", ())] >= 2 * len(original) - 300_000
    assert after.get(("strm_bridge_refreshes_total", (("outcome", "refreshed"), ("trigger", "play"))), 0) >= 1
