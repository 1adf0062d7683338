"""Item id → Jellyfin path → our path → mapping, with real files, the real client and the fake server."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import PathMapEntry
from bridge.events import PlaybackEvent
from bridge.mappings import MappingStore
from bridge.pathmap import PathMap
from integrations.jellyfin.client import JellyfinClient, JellyfinUnavailable
from integrations.jellyfin.locator import JellyfinLocator
from integrations.jellyfin.webhook import parse_webhook
from integrations.jellyfin.tests.conftest import fixture_body
from tests.fakes.jellyfin import FakeJellyfin

ITEM = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SERVER_ROOT = "/data/tv"
URL = "https://cdn.example.net/e/abc123/master.m3u8?token=t0k"


def write_strm(path: Path, url: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")
    return str(path)


def stop_event(**hints: object) -> PlaybackEvent:
    return PlaybackEvent(source="jellyfin", kind="stop", item_id=ITEM, session_key="dev", hints=dict(hints))


@pytest.fixture
def locator(client: JellyfinClient, store: MappingStore, library_root: Path) -> JellyfinLocator:
    return JellyfinLocator(client, store, PathMap([PathMapEntry(server=SERVER_ROOT, local=str(library_root))]))


def episode_path(root: Path | str, name: str = "S01E01.strm") -> str:
    return f"{root}/Neon Genesis Evangelion/Season 01/{name}"


async def test_matches_by_strm_path_after_path_map(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    local = write_strm(Path(episode_path(library_root)), URL)
    mapping = store.upsert({"strm_path": local, "site": "aniworld", "slug": "neon-genesis-evangelion",
                            "season": 1, "episode": 1, "resolved_url": URL})
    fake.add_item(ITEM, episode_path(SERVER_ROOT), SeriesName="Neon Genesis Evangelion", ParentIndexNumber=1, IndexNumber=1)

    match = await locator.locate(stop_event())

    assert match.rule == "strm_path"
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]
    assert match.mapping["jellyfin_item_id"] == ITEM
    assert store.by_jellyfin_item(ITEM)["id"] == mapping["id"]  # type: ignore[index]


async def test_webhook_body_to_mapping(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    """The whole way in: a real Send All Properties body, dashless GUID, to the mapping row."""
    local = write_strm(Path(episode_path(library_root)), URL)
    mapping = store.upsert({"strm_path": local, "resolved_url": URL})
    fake.add_item(ITEM, episode_path(SERVER_ROOT))
    event = parse_webhook(fixture_body("send_all_playback_stop.json"), "text/plain")
    assert event is not None
    match = await locator.locate(event)
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]


async def test_moved_file_matched_by_its_url_and_path_corrected(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    old_local = episode_path(library_root, "Neon Genesis Evangelion - S01E01.strm")
    mapping = store.upsert({"strm_path": old_local, "resolved_url": URL})
    new_local = write_strm(Path(episode_path(library_root, "Neon Genesis Evangelion - S01E01 - Angel Attack.strm")), URL)
    fake.add_item(ITEM, episode_path(SERVER_ROOT, "Neon Genesis Evangelion - S01E01 - Angel Attack.strm"))

    match = await locator.locate(stop_event())

    assert match.rule == "file_url"
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]
    assert match.mapping["strm_path"] == new_local
    assert match.mapping["jellyfin_item_id"] == ITEM
    assert store.by_path(old_local) is None


async def test_identity_fallback_from_jellyfin_item(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    write_strm(Path(episode_path(library_root, "episode-1.strm")), "https://other.example/unknown")
    mapping = store.upsert({"strm_path": str(library_root / "elsewhere" / "e1.strm"), "site": "aniworld",
                            "slug": "neon-genesis-evangelion", "season": 1, "episode": 1, "resolved_url": URL})
    fake.add_item(ITEM, episode_path(SERVER_ROOT, "episode-1.strm"), SeriesName="Neon Genesis Evangelion",
                  ParentIndexNumber=1, IndexNumber=1)

    match = await locator.locate(stop_event())

    assert match.rule == "identity"
    assert match.mapping is not None and match.mapping["id"] == mapping["id"]
    assert match.mapping["jellyfin_item_id"] == ITEM


async def test_identity_from_webhook_hints_when_jellyfin_has_none(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    write_strm(Path(episode_path(library_root, "episode-1.strm")), "https://other.example/unknown")
    mapping = store.upsert({"strm_path": str(library_root / "x.strm"), "slug": "neon-genesis-evangelion",
                            "season": 1, "episode": 1})
    fake.add_item(ITEM, episode_path(SERVER_ROOT, "episode-1.strm"), Type="Video")
    match = await locator.locate(stop_event(series="Neon Genesis Evangelion", season=1, episode=1))
    assert match.rule == "identity" and match.mapping is not None and match.mapping["id"] == mapping["id"]


async def test_unknown_item(fake: FakeJellyfin, locator: JellyfinLocator) -> None:
    match = await locator.locate(stop_event(series="Neon Genesis Evangelion", season=1, episode=1))
    assert (match.mapping, match.rule, match.detail) == (None, None, "item unknown to Jellyfin")


async def test_item_that_is_not_a_strm(fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore,
                                       library_root: Path) -> None:
    store.upsert({"strm_path": str(library_root / "movie.mkv")})
    fake.add_item(ITEM, f"{SERVER_ROOT}/movie.mkv", Type="Movie")
    match = await locator.locate(stop_event())
    assert match.mapping is None and match.rule is None
    assert match.detail == f"item's file is not a .strm: {library_root}/movie.mkv"


async def test_strm_with_no_mapping(fake: FakeJellyfin, locator: JellyfinLocator, library_root: Path) -> None:
    local = write_strm(Path(episode_path(library_root)), URL)
    fake.add_item(ITEM, episode_path(SERVER_ROOT))
    match = await locator.locate(stop_event())
    assert match.mapping is None
    assert "no mapping matches" in match.detail and local in match.detail


async def test_item_without_a_path(fake: FakeJellyfin, locator: JellyfinLocator) -> None:
    fake.add_item(ITEM, None, Type="Episode")
    match = await locator.locate(stop_event())
    assert match.mapping is None and match.detail == "Jellyfin item has no file path (type Episode)"


async def test_stale_link_moves_to_the_matched_mapping(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    stale = store.upsert({"strm_path": str(library_root / "old.strm"), "jellyfin_item_id": ITEM})
    local = write_strm(Path(episode_path(library_root)), URL)
    current = store.upsert({"strm_path": local, "resolved_url": URL})
    fake.add_item(ITEM, episode_path(SERVER_ROOT))
    match = await locator.locate(stop_event())
    assert match.mapping is not None and match.mapping["id"] == current["id"]
    assert store.get(stale["id"])["jellyfin_item_id"] is None  # type: ignore[index]
    assert store.by_jellyfin_item(ITEM)["id"] == current["id"]  # type: ignore[index]


async def test_jellyfin_down_falls_back_to_the_stored_link(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    linked = store.upsert({"strm_path": str(library_root / "e.strm"), "jellyfin_item_id": ITEM})
    fake.fail_with(503, everything=True)
    match = await locator.locate(stop_event())
    assert match.rule == "item_id" and match.mapping is not None and match.mapping["id"] == linked["id"]


async def test_jellyfin_down_with_a_path_in_the_payload(
    fake: FakeJellyfin, locator: JellyfinLocator, store: MappingStore, library_root: Path
) -> None:
    local = write_strm(Path(episode_path(library_root)), URL)
    mapping = store.upsert({"strm_path": local})
    fake.fail_with(500, everything=True)
    event = PlaybackEvent(source="jellyfin", kind="stop", item_id=ITEM, path=episode_path(SERVER_ROOT))
    match = await locator.locate(event)
    assert match.rule == "strm_path" and match.mapping is not None and match.mapping["id"] == mapping["id"]


async def test_jellyfin_down_and_nothing_known_raises(fake: FakeJellyfin, locator: JellyfinLocator) -> None:
    fake.fail_with(503, everything=True)
    with pytest.raises(JellyfinUnavailable):
        await locator.locate(stop_event())
