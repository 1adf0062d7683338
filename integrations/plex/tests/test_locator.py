"""PlexLocator: each way a Plex part can point at our .strm, against FakePlex and a real mapping store."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from bridge.config import PathMapEntry
from bridge.events import PlaybackEvent
from bridge.mappings import MappingStore
from bridge.pathmap import PathMap
from integrations.plex.client import PlexClient
from integrations.plex.locator import PlexLocator, safe_url
from integrations.plex.tautulli import tautulli_event
from tests.fakes.plex import FakePlex

REL = "Attack on Titan/Season 01/Attack on Titan - S01E01.strm"
STREAM = "https://cdn.example.net/v/abc123/master.m3u8?token=s3cr3t&expires=1718003600"


@pytest.fixture
def tv_root(library_root: Path) -> Path:
    root = library_root / "tv"
    (root / "Attack on Titan" / "Season 01").mkdir(parents=True)
    return root


@pytest.fixture
def strm_path(tv_root: Path) -> str:
    path = tv_root / REL
    path.write_text(STREAM + "\n")
    return str(path)


@pytest.fixture
def mapping(store: MappingStore, strm_path: str) -> dict:
    return store.upsert({"strm_path": strm_path, "site": "aniworld", "slug": "attack-on-titan", "season": 1,
                         "episode": 1, "language": "de", "resolved_url": STREAM})


def plex_event(item_id: str = "4711") -> PlaybackEvent:
    return PlaybackEvent(source="plex", kind="stop", item_id=item_id, session_key="p1",
                         hints={"series": "Attack on Titan", "season": 1, "episode": 1})


def locator(client: PlexClient | None, store: MappingStore, tv_root: Path, **kwargs: object) -> PlexLocator:
    return PlexLocator(client, store, PathMap([PathMapEntry(server="/data/tv", local=str(tv_root))]), **kwargs)  # type: ignore[arg-type]


async def test_part_path_through_path_map(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                          tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, [f"/data/tv/{REL}"], grandparent_title="Attack on Titan", parent_index=1, index=1)
    match = await locator(plex_client, store, tv_root).locate(plex_event())
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]
    assert match.rule == "strm_path"
    assert match.mapping["plex_rating_key"] == "4711"
    assert store.by_plex_rating_key("4711")["id"] == mapping["id"]


async def test_strm_proxy_url_with_relative_path(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                 tv_root: Path, mapping: dict) -> None:
    proxy = "http://strm-proxy:3000/" + "/".join(quote(seg) for seg in REL.split("/"))
    fake_plex.add_item(4711, [proxy])
    match = await locator(plex_client, store, tv_root, strm_roots=[str(tv_root)]).locate(plex_event())
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]
    assert match.rule == "strm_path" and "strm proxy URL" in match.detail


async def test_strm_proxy_url_with_configured_base(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                   tv_root: Path, mapping: dict) -> None:
    proxy = "http://strm-proxy:3000/strm/" + "/".join(quote(seg) for seg in REL.split("/"))
    fake_plex.add_item(4711, [proxy])
    loc = locator(plex_client, store, tv_root, proxy_bases={"http://strm-proxy:3000/strm": str(tv_root)})
    match = await loc.locate(plex_event())
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]


async def test_strm_proxy_url_cannot_escape_the_root(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                     tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, ["http://strm-proxy:3000/..%2F..%2Fetc%2Fx.strm"])
    loc = locator(plex_client, store, tv_root, strm_roots=[str(tv_root)])
    assert loc._proxy_candidates("http://strm-proxy:3000/..%2F..%2Fetc%2Fx.strm") == ["/etc/x.strm"]
    match = await loc.locate(PlaybackEvent(source="plex", kind="stop", item_id="4711"))
    assert match.mapping is None


async def test_stream_url_stored_in_plex(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                         tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, [STREAM])
    match = await locator(plex_client, store, tv_root).locate(PlaybackEvent(source="plex", kind="stop", item_id="4711"))
    assert match.mapping is not None and match.rule == "stored_url"


async def test_identity_when_the_part_is_unknown(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                 tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, ["/data/elsewhere/aot-01.strm"], grandparent_title="Attack on Titan", parent_index=1, index=1)
    event = PlaybackEvent(source="plex", kind="stop", item_id="4711")  # no hints: they come from Plex
    match = await locator(plex_client, store, tv_root).locate(event)
    assert match.mapping is not None and match.rule == "identity"


async def test_no_match_explains_the_parts(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                           tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, ["https://other.example/x.m3u8?sig=abc"], type="movie", title="Other")
    match = await locator(plex_client, store, tv_root).locate(PlaybackEvent(source="plex", kind="stop", item_id="4711"))
    assert match.mapping is None
    assert "https://other.example/x.m3u8" in match.detail and "sig=abc" not in match.detail


async def test_item_without_part(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                 tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, [])
    match = await locator(plex_client, store, tv_root).locate(plex_event())
    assert (match.mapping, match.rule, match.detail) == (None, None, "item has no media part")


async def test_item_unknown_to_plex(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                    tv_root: Path, mapping: dict) -> None:
    match = await locator(plex_client, store, tv_root).locate(plex_event("999"))
    assert match.mapping is None and "Plex has no item 999" in match.detail


async def test_tautulli_file_skips_the_plex_lookup(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                   tv_root: Path, mapping: dict) -> None:
    body = {"action": "error", "rating_key": "4711", "file": f"/data/tv/{REL}", "machine_id": "m1"}
    match = await locator(plex_client, store, tv_root).locate(tautulli_event(body))
    assert match.mapping is not None and match.rule == "strm_path"
    assert fake_plex.calls == []
    assert store.get(mapping["id"])["plex_rating_key"] == "4711"


async def test_tautulli_unknown_file_falls_back_to_plex(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                        tv_root: Path, mapping: dict) -> None:
    fake_plex.add_item(4711, [f"/data/tv/{REL}"])
    body = {"action": "error", "rating_key": "4711", "file": "/data/old/location.strm"}
    match = await locator(plex_client, store, tv_root).locate(tautulli_event(body))
    assert match.mapping is not None
    assert fake_plex.calls_to("/library/metadata/4711")


async def test_plex_down_uses_the_stored_rating_key(store: MappingStore, tv_root: Path, mapping: dict) -> None:
    store.update(mapping["id"], {"plex_rating_key": "4711"})
    client = PlexClient("http://127.0.0.1:9", "tok", timeout=1)
    match = await locator(client, store, tv_root).locate(PlaybackEvent(source="plex", kind="error", item_id="4711"))
    assert match.mapping is not None and match.rule == "item_id"
    await client.close()


async def test_rating_key_moves_to_the_new_mapping(fake_plex: FakePlex, plex_client: PlexClient, store: MappingStore,
                                                   tv_root: Path, mapping: dict) -> None:
    other = store.upsert({"strm_path": str(tv_root / "old.strm"), "plex_rating_key": "4711"})
    fake_plex.add_item(4711, [f"/data/tv/{REL}"])
    await locator(plex_client, store, tv_root).locate(plex_event())
    assert store.get(other["id"])["plex_rating_key"] is None
    assert store.by_plex_rating_key("4711")["id"] == mapping["id"]


def test_safe_url_drops_query_and_credentials() -> None:
    assert safe_url("https://user:pw@cdn.example.net:8443/a/b.m3u8?token=x") == "https://cdn.example.net:8443/a/b.m3u8"
