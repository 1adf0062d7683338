"""Stable link security and ownership: signatures, rotation, the stored secret, and the heal loop leaving /play/ alone."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from bridge.config import ConfigError, load_config
from bridge.play.signing import PlaySigner, ensure_play_secret, play_link_id
from bridge.timeutil import from_epoch
from tests.appfactory import write_config
from tests.play.conftest import BridgeFactory


async def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.read()


def episode_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ep"
    folder.mkdir(exist_ok=True)
    (folder / "e.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(5000))
    return folder


async def test_bad_signatures_are_refused_before_anything_is_looked_up(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge("proxy")
    one = bridge.plant("a-1-1", episode_dir(tmp_path), "e.mp4")
    two = bridge.plant("a-1-2", episode_dir(tmp_path), "e.mp4")
    bridge.provider.hits.clear()
    base = f"{bridge.base_url}/play"
    good = bridge.services.play.signer.sign(one["id"])
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    cases = [
        (f"{base}/{one['id']}", 403),                        # missing sig
        (f"{base}/{one['id']}?sig=", 403),                   # empty sig
        (f"{base}/{one['id']}?sig={tampered}", 403),         # one character changed
        (f"{base}/{two['id']}?sig={good}", 403),             # the signature of another id
        (f"{base}/{one['id']}?sig={good}x", 403),            # too long
        (f"{base}/999999?sig={bridge.services.play.signer.sign(999999)}", 404),  # signed, but no such mapping
        (f"{base}/abc?sig={good}", 404),                     # not an id at all
    ]
    for url, expected in cases:
        for method in ("GET", "HEAD"):
            status, headers, body = await fetch(url, method)
            assert status == expected, (url, method, status)
            if method == "GET":
                assert headers["Content-Type"].startswith("application/json")
                assert b'"error"' in body
    assert bridge.provider.resolve_calls == [] and bridge.provider.hits == []
    status, _, body = await fetch(bridge.link(one["id"]))
    assert status == 200 and body == bridge.provider.streams["a-1-1"].files["e.mp4"]


async def test_part_links_are_signed_too(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge("proxy")
    mapping = bridge.plant("a-1-3", episode_dir(tmp_path), "e.mp4")
    play = bridge.services.play
    part = play._part_link(mapping["id"], [], mapping["resolved_url"], top=True)
    status, _, _ = await fetch(f"{bridge.base_url}/play/{part}")
    assert status == 200
    other_url = bridge.provider.base_url + "/m/elsewhere/secret.mp4"
    forged = play._part_link(mapping["id"], [], other_url, top=True).replace(
        play._part_link(mapping["id"], [], other_url, top=True).rsplit("sig=", 1)[1], part.rsplit("sig=", 1)[1])
    assert (await fetch(f"{bridge.base_url}/play/{forged}"))[0] == 403
    moved = part.replace(f"{mapping['id']}/r/", f"{mapping['id'] + 1}/r/", 1)
    assert (await fetch(f"{bridge.base_url}/play/{moved}"))[0] == 403
    assert all("elsewhere" not in h.key for h in bridge.provider.hits)


async def test_redirect_answers_302_without_caching(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge("redirect")
    mapping = bridge.plant("a-1-4", episode_dir(tmp_path), "e.mp4")
    for method in ("GET", "HEAD"):
        status, headers, _ = await fetch(bridge.link(mapping["id"]), method)
        assert status == 302
        assert headers["Location"] == mapping["resolved_url"]
        assert headers["Cache-Control"] == "no-store"
    assert bridge.provider.hits == []  # a fresh link is handed over, not probed


async def test_redirect_re_resolves_within_the_margin(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge("redirect", margin=600)
    mapping = bridge.plant("a-1-5", episode_dir(tmp_path), "e.mp4", ttl=300)  # alive, but not for a whole episode
    status, headers, _ = await fetch(bridge.link(mapping["id"]))
    assert status == 302 and headers["Location"] != mapping["resolved_url"]
    assert len(bridge.provider.resolve_calls) == 1
    assert [r["reason"] for r in bridge.play_refreshes(mapping["id"])] == ["expiring"]


async def test_known_dead_is_probed_first_and_gone_episode_is_404(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge("redirect")
    mapping = bridge.plant("a-1-6", episode_dir(tmp_path), "e.mp4")
    bridge.store.update(mapping["id"], {"state": "dead"})
    status, headers, _ = await fetch(bridge.link(mapping["id"]))
    # the link is the judge: it answers, so it is kept and the row is ok again; no resolver call
    assert status == 302 and headers["Location"] == mapping["resolved_url"]
    assert bridge.provider.resolve_calls == [] and bridge.store.get(mapping["id"])["state"] == "ok"
    assert [h.method for h in bridge.provider.hits] == ["HEAD"]
    gone = bridge.plant("a-1-7", episode_dir(tmp_path), "e.mp4")
    bridge.store.update(gone["id"], {"expires_at": from_epoch(time.time() - 5)})
    del bridge.provider.streams["a-1-7"]
    status, _, body = await fetch(bridge.link(gone["id"]))
    assert status == 404 and b"episode_gone" in body


async def test_rotation_keeps_old_links_open_during_the_grace(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    old, new = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
    first = await make_bridge("redirect", extra=f'secret = "{old}"')
    mapping = first.plant("a-1-8", episode_dir(tmp_path), "e.mp4")
    old_link = first.link(mapping["id"])
    rotated = await make_bridge("redirect", extra=f'secret = "{new}"\nold_secrets = ["{old}"]')
    assert (await fetch(old_link.replace(first.base_url, rotated.base_url)))[0] == 302
    assert (await fetch(rotated.link(mapping["id"])))[0] == 302
    assert rotated.link(mapping["id"]) != old_link.replace(first.base_url, rotated.base_url)
    after = await make_bridge("redirect", extra=f'secret = "{new}"')
    assert (await fetch(old_link.replace(first.base_url, after.base_url)))[0] == 403


def test_secret_is_generated_once_and_stored_privately(tmp_path: Path) -> None:
    db_path = tmp_path / "data" / "bridge.db"
    secret = ensure_play_secret("", db_path)
    stored = tmp_path / "data" / "play-secret"
    assert stored.read_text().strip() == secret and len(secret) >= 32
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert ensure_play_secret("", db_path) == secret
    assert ensure_play_secret("configured-secret-123456", db_path) == "configured-secret-123456"


def test_signer_and_link_shape() -> None:
    signer = PlaySigner("s" * 20, ["t" * 20])
    assert signer.verify(5, signer.sign(5)) and not signer.verify(6, signer.sign(5))
    assert PlaySigner("t" * 20).sign(5) != signer.sign(5) and signer.verify(5, PlaySigner("t" * 20).sign(5))
    url = signer.play_url("http://bridge:8765/", 5)
    assert url == f"http://bridge:8765/play/5?sig={signer.sign(5)}" and play_link_id(url) == 5
    assert play_link_id("http://cdn/play/5") is None  # no signature: not ours
    assert play_link_id("http://cdn/media/5?sig=x") is None


@pytest.mark.parametrize("text, key", [
    ('[play]\nmode = "sideways"\n', "play.mode"),
    ('[play]\nmargin_seconds = -1\n', "play.margin_seconds"),
    ('[play]\nsecret = "short"\n', "play.secret"),
    ('[server]\npublic_url = "bridge:8765"\n', "server.public_url"),
])
def test_play_settings_are_validated(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path, env={})


async def test_heal_loop_never_overwrites_a_stable_link(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    """A failure webhook for a /play/ file re-resolves the mapping's URL; the file keeps its stable link."""
    bridge = await make_bridge("redirect")
    mapping = bridge.plant("a-1-9", episode_dir(tmp_path), "e.mp4")
    path = Path(mapping["strm_path"])
    before = path.read_bytes()
    mapping = bridge.age(mapping, -10)  # its URL died ten seconds ago
    outcome = await bridge.services.pipeline.refresh(mapping["id"], trigger="jellyfin", reason="playback_failed")
    assert outcome.outcome == "refreshed" and outcome.rescans == []
    assert path.read_bytes() == before
    assert bridge.store.get(mapping["id"])["resolved_url"] == outcome.new_url != mapping["resolved_url"]
    assert bridge.services.rescan.pending() == []
    forced = await bridge.services.pipeline.refresh(mapping["id"], trigger="manual", reason="manual", force=True)
    assert forced.outcome in ("refreshed", "unchanged") and path.read_bytes() == before
    _ = write_config  # the app factory's config writer is what make_bridge uses


def test_resolve_cache_never_serves_a_link_past_its_expiry() -> None:
    from bridge.cache import ResolveCache
    from bridge.mappings import Identity
    from bridge.resolvers.base import Resolved

    cache = ResolveCache(3600)
    identity = Identity("fake", "show", 1, 1, "German Dub")
    cache.put(identity, Resolved("http://cdn/a", expires_at=from_epoch(time.time() + 60)))
    assert cache.get(identity) is not None
    cache.put(identity, Resolved("http://cdn/b", expires_at=from_epoch(time.time() - 1)))
    assert cache.get(identity) is None
