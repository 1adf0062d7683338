"""The refresh pipeline meets the fake provider's soft failures: a 200 that is not media is a dead link."""
from __future__ import annotations

from pathlib import Path

from bridge.mappings import MappingStore
from bridge.resolvers.base import Resolved
from bridge.strm import Library, read_strm
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import ScriptedResolver, add_mapping, http_resolver, pipeline


async def test_a_current_url_answering_an_html_page_is_healed(
    store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider
) -> None:
    """Before, any 2xx was "alive": the hoster's "file not found" page kept a dead link in the file."""
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    fake_provider.set_mode("show/1/1", "not_found_page")
    p = pipeline(store, library, [http_resolver(fake_provider)])
    try:
        outcome = await p.refresh(m["id"], trigger="jellyfin", reason="early_stop")
    finally:
        await p.close()
    assert outcome.outcome == "failed" and "new URL does not answer: dead 200" in outcome.detail
    assert outcome.probe_status is None
    history = store.refresh_history(m["id"])
    assert "not media" in history[0]["reason"]  # the current URL was judged dead, the new one too (same page)
    assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_a_new_url_must_be_media_before_it_is_written(
    store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider
) -> None:
    m = add_mapping(store, library_root, fake_provider, 2)
    fake_provider.add_episode("other/1/1")
    fake_provider.add_hls("hls/1/1")
    fake_provider.set_mode("hls/1/1", "dead_segments")
    fake_provider.add_episode("chain/1/1")
    fake_provider.set_mode("chain/1/1", "error_chain")
    page = Resolved(url=f"{fake_provider.base_url}/gone")
    dead_hls = Resolved(url=fake_provider.sign_hls("hls/1/1"))
    chain = Resolved(url=fake_provider.sign("chain/1/1"))
    for answer, expected in ((page, "dead 200"), (dead_hls, "dead 404"), (chain, "dead 200")):
        p = pipeline(store, library, [ScriptedResolver("scripted", [answer])])
        try:
            outcome = await p.refresh(m["id"], trigger="manual", reason="expired", force=True)
        finally:
            await p.close()
        assert outcome.outcome == "failed", (answer, outcome)
        assert f"new URL does not answer: {expected}" in outcome.detail
        assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_a_live_hls_stream_is_written(
    store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider
) -> None:
    m = add_mapping(store, library_root, fake_provider, 3)
    fake_provider.add_hls("hls/1/3")
    fresh = fake_provider.sign_hls("hls/1/3")
    p = pipeline(store, library, [ScriptedResolver("scripted", [Resolved(url=fresh)])])
    try:
        outcome = await p.refresh(m["id"], trigger="manual", reason="expired")
    finally:
        await p.close()
    assert outcome.outcome == "refreshed", outcome.detail
    assert read_strm(m["strm_path"]) == fresh
