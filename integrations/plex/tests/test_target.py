"""PlexTarget: which folder and section a rewrite rescans, and what goes over the wire."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from plexapi.server import PlexServer
from requests import Session

from bridge.config import PathMapEntry, PlexConfig
from bridge.mappings import MappingStore
from bridge.pathmap import PathMap
from bridge.rescan import RescanQueue, RescanRequest, Target, TargetGone, TargetRetry
from integrations.plex.client import PlexClient
from integrations.plex.target import PlexTarget
from tests.fakes.plex import FakePlex

SHOW_DIR = "Show: Part & Co (2020)/Season 01"


@pytest.fixture
def local_root(library_root: Path) -> Path:
    return library_root / "media"


@pytest.fixture
def path_map(local_root: Path) -> PathMap:
    return PathMap([PathMapEntry(server="/data", local=str(local_root))])


@pytest.fixture
def sections(fake_plex: FakePlex) -> None:
    fake_plex.add_section(1, "TV", ["/data/tv"])
    fake_plex.add_section(2, "Anime", ["/data/tv/anime"])  # nested inside TV: the longer location wins
    fake_plex.add_section(3, "Movies", ["/data/movies"], type="movie")


def target(client: PlexClient, path_map: PathMap, **kwargs: object) -> PlexTarget:
    return PlexTarget(client, path_map, debounce_seconds=0.0, gap_seconds=0.0, **kwargs)  # type: ignore[arg-type]


def mapping(local_root: Path, rel: str, **fields: object) -> dict:
    return {"id": 1, "strm_path": str(local_root / rel), **fields}


async def test_is_a_target(plex_client: PlexClient, path_map: PathMap) -> None:
    t = PlexTarget.from_config(PlexConfig(scan_debounce_seconds=7, scan_gap_seconds=3), plex_client, path_map)
    assert isinstance(t, Target)
    assert (t.name, t.debounce_seconds, t.gap_seconds) == ("plex", 7, 3)


async def test_folder_in_the_right_section(sections: None, plex_client: PlexClient, path_map: PathMap,
                                           local_root: Path) -> None:
    requests = await target(plex_client, path_map).requests_for(mapping(local_root, f"tv/{SHOW_DIR}/Show - S01E01.strm"))
    assert requests == [RescanRequest(key=f"/data/tv/{SHOW_DIR}", payload={"section": 1, "path": f"/data/tv/{SHOW_DIR}"})]
    anime = await target(plex_client, path_map).requests_for(mapping(local_root, "tv/anime/AoT/Season 01/e1.strm"))
    assert anime[0].payload == {"section": 2, "path": "/data/tv/anime/AoT/Season 01"}


async def test_never_a_file_path(sections: None, plex_client: PlexClient, path_map: PathMap, local_root: Path) -> None:
    requests = await target(plex_client, path_map).requests_for(mapping(local_root, "movies/Ghost (2001)/Ghost (2001).strm"))
    assert [r.payload["path"] for r in requests] == ["/data/movies/Ghost (2001)"]
    assert not requests[0].payload["path"].endswith(".strm")


async def test_outside_every_section(sections: None, plex_client: PlexClient, path_map: PathMap, local_root: Path,
                                     caplog: pytest.LogCaptureFixture, fake_plex: FakePlex) -> None:
    caplog.set_level(logging.WARNING)
    requests = await target(plex_client, path_map).requests_for(mapping(local_root, "music/a/b.strm"))
    assert requests == []
    assert any("/data/music/a" in r.getMessage() and "not inside any Plex library location" in r.getMessage()
               for r in caplog.records)


async def test_new_location_is_found_without_restart(sections: None, fake_plex: FakePlex, path_map: PathMap,
                                                     local_root: Path) -> None:
    client = PlexClient(fake_plex.url, fake_plex.token, min_sections_reload_seconds=0)
    t = target(client, path_map)
    await client.sections()
    fake_plex.add_section(4, "Docs", ["/data/docs"])
    requests = await t.requests_for(mapping(local_root, "docs/x/y.strm"))
    assert requests[0].payload == {"section": 4, "path": "/data/docs/x"}
    await client.close()


async def test_send_encodes_like_plexapi(sections: None, fake_plex: FakePlex, plex_client: PlexClient,
                                         path_map: PathMap, local_root: Path) -> None:
    t = target(plex_client, path_map)
    [request] = await t.requests_for(mapping(local_root, f"tv/{SHOW_DIR}/Show - S01E01.strm"))
    await t.send(request.payload)
    ours = fake_plex.calls_to("/library/sections/1/refresh")
    assert [(c.method, c.query_string) for c in ours] == [
        ("GET", "path=%2Fdata%2Ftv%2FShow%3A+Part+%26+Co+%282020%29%2FSeason+01")
    ]
    assert ours[0].query == {"path": f"/data/tv/{SHOW_DIR}"}

    # plexapi's own section.update(path=...) must put the very same bytes on the wire
    fake_plex.calls.clear()

    def plexapi_direct() -> None:
        with Session() as session:  # plexapi's own session would be left open for the collector
            server = PlexServer(fake_plex.url, fake_plex.token, session=session)
            server.library.sectionByID(1).update(path=f"/data/tv/{SHOW_DIR}")

    await asyncio.to_thread(plexapi_direct)
    theirs = fake_plex.calls_to("/library/sections/1/refresh")
    assert [(c.method, c.query_string) for c in theirs] == [(c.method, c.query_string) for c in ours]


async def test_send_failures(sections: None, fake_plex: FakePlex, plex_client: PlexClient, path_map: PathMap) -> None:
    t = target(plex_client, path_map)
    payload = {"section": 1, "path": "/data/tv/Show"}
    fake_plex.fail_with(503, path_prefix="/library/sections/1/refresh")
    with pytest.raises(TargetRetry):
        await t.send(payload)
    fake_plex.fail_with(None)
    await t.send(payload)  # accepted now

    wrong = target(PlexClient(fake_plex.url, "not-the-token"), path_map)
    with pytest.raises(TargetRetry):
        await wrong.send(payload)
    await wrong.client.close()

    await fake_plex.stop()
    down = target(PlexClient(fake_plex.url, fake_plex.token, timeout=1), path_map)
    with pytest.raises(TargetRetry):
        await down.send(payload)
    await down.client.close()


async def test_removed_section_drops_the_request(sections: None, fake_plex: FakePlex, plex_client: PlexClient,
                                                 path_map: PathMap) -> None:
    t = target(plex_client, path_map)
    with pytest.raises(TargetGone):
        await t.send({"section": 9, "path": "/data/elsewhere/x"})


async def test_recreated_section_is_followed(sections: None, fake_plex: FakePlex, path_map: PathMap) -> None:
    client = PlexClient(fake_plex.url, fake_plex.token, sections_ttl_seconds=0, min_sections_reload_seconds=0)
    t = target(client, path_map)
    del fake_plex.sections[3]
    fake_plex.add_section(7, "Movies", ["/data/movies"], type="movie")
    await t.send({"section": 3, "path": "/data/movies/Ghost (2001)"})
    assert fake_plex.calls_to("/library/sections/7/refresh")
    await client.close()


async def test_plex_down_while_planning(fake_plex: FakePlex, path_map: PathMap, local_root: Path) -> None:
    fake_plex.add_section(1, "TV", ["/data/tv"])
    client = PlexClient(fake_plex.url, fake_plex.token, timeout=1)
    t = target(client, path_map)
    await fake_plex.stop()
    [request] = await t.requests_for(mapping(local_root, "tv/Show/Season 01/e1.strm"))
    assert request.payload == {"section": None, "path": "/data/tv/Show/Season 01"}
    await fake_plex.start()
    await t.send(request.payload)
    assert fake_plex.calls_to("/library/sections/1/refresh")[0].query == {"path": "/data/tv/Show/Season 01"}
    await client.close()


async def test_metadata_refresh_when_enabled(sections: None, fake_plex: FakePlex, plex_client: PlexClient,
                                             path_map: PathMap, local_root: Path) -> None:
    fake_plex.add_item(4711, ["/data/tv/Show/e1.strm"], section_id=1)
    t = target(plex_client, path_map, refresh_metadata=True)
    requests = await t.requests_for(mapping(local_root, "tv/Show/e1.strm", plex_rating_key="4711"))
    assert [r.key for r in requests] == ["/data/tv/Show", "metadata:4711"]
    for request in requests:
        await t.send(request.payload)
    assert [c.method for c in fake_plex.calls_to("/library/metadata/4711/refresh")] == ["PUT"]
    without = await target(plex_client, path_map).requests_for(mapping(local_root, "tv/Show/e1.strm", plex_rating_key="4711"))
    assert [r.key for r in without] == ["/data/tv/Show"]


async def test_rewrites_in_one_folder_make_one_scan(sections: None, db, store: MappingStore, fake_plex: FakePlex,
                                                    plex_client: PlexClient, path_map: PathMap, local_root: Path) -> None:
    """Through the real rescan queue: two episodes of one season → one partial scan of that season."""
    t = target(plex_client, path_map)
    queue = RescanQueue(db, {"plex": t}, base_backoff=0.01)
    for n in (1, 2):
        row = store.upsert({"strm_path": str(local_root / f"tv/Show/Season 01/Show - S01E0{n}.strm")})
        assert await queue.enqueue_for(row) == [("plex", "/data/tv/Show/Season 01")]
    assert len(queue.pending()) == 1
    assert await queue.run_due() == 1
    assert [c.query for c in fake_plex.calls_to("/library/sections/1/refresh")] == [{"path": "/data/tv/Show/Season 01"}]
    assert queue.pending() == []
