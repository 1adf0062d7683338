"""PlexClient (real plexapi underneath) against FakePlex."""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

import pytest
import requests

from integrations.plex.client import (
    PlexAuthError,
    PlexClient,
    PlexNotFound,
    PlexRequestError,
    PlexUnavailable,
    Section,
)
from tests.fakes.plex import FakePlex

EPISODE = "/data/tv/Attack on Titan/Season 01/Attack on Titan - S01E01.strm"


async def wait_until(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_item_parts(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    fake_plex.add_item(101, [EPISODE, EPISODE.replace(".strm", ".part2.strm")], grandparent_title="Attack on Titan",
                       parent_index=1, index=1, guid="plex://episode/abc", section_id=2, title="To You")
    info = await plex_client.item_parts(101)
    assert info is not None
    assert info.files == (EPISODE, EPISODE.replace(".strm", ".part2.strm"))
    assert (info.type, info.grandparent_title, info.parent_index, info.index) == ("episode", "Attack on Titan", 1, 1)
    assert (info.guid, info.section_id) == ("plex://episode/abc", 2)
    assert info.hints()["series"] == "Attack on Titan"
    assert fake_plex.calls[0].path == "/"  # connected lazily, on first use
    assert all(call.token == fake_plex.token for call in fake_plex.calls)


async def test_item_without_parts(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    fake_plex.add_item(102, [], type="movie", title="Ghost", year=2001)
    info = await plex_client.item_parts(102)
    assert info is not None and info.files == () and info.year == 2001


async def test_unknown_item_is_none(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    assert await plex_client.item_parts(999) is None
    assert fake_plex.calls_to("/library/metadata/999")


async def test_wrong_token_is_an_auth_error_reported_once(fake_plex: FakePlex, caplog: pytest.LogCaptureFixture) -> None:
    client = PlexClient(fake_plex.url, "wrong-token-123456", timeout=5)
    caplog.set_level(logging.DEBUG)
    for _ in range(2):
        with pytest.raises(PlexAuthError):
            await client.item_parts(1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "rejected the token" in r.getMessage()]
    assert len(errors) == 1
    assert all("wrong-token-123456" not in r.getMessage() for r in caplog.records)
    await client.close()


async def test_server_down_is_unavailable() -> None:
    client = PlexClient(f"http://127.0.0.1:{free_port()}", "tok", timeout=2)
    with pytest.raises(PlexUnavailable, match="unreachable"):
        await client.item_parts(1)
    await client.close()


async def test_5xx_is_unavailable_and_400_is_a_request_error(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    fake_plex.add_item(101, [EPISODE])
    await plex_client.server()
    fake_plex.fail_with(503)
    with pytest.raises(PlexUnavailable):
        await plex_client.item_parts(101)
    fake_plex.fail_with(400)
    with pytest.raises(PlexRequestError):
        await plex_client.item_parts(101)
    fake_plex.fail_with(None)
    assert (await plex_client.item_parts(101)) is not None


async def test_connects_after_plex_comes_up(fake_plex: FakePlex) -> None:
    """PlexServer() talks to the server: a failed first attempt must not stick."""
    client = PlexClient(fake_plex.url, fake_plex.token, timeout=2)
    await fake_plex.stop()
    with pytest.raises(PlexUnavailable):
        await client.server()
    await fake_plex.start()
    fake_plex.add_item(5, [EPISODE])
    assert (await client.item_parts(5)) is not None
    await client.close()


async def test_a_cancelled_connect_closes_its_session(fake_plex: FakePlex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling `server()` (a listener stopped at start-up) must not strand the thread's session.

    The worker thread goes on connecting after the await is cancelled; before the fix its PlexServer, and
    with it a pooled socket, was dropped unclosed and left to the garbage collector.
    """
    made: list[requests.Session] = []
    closed: list[requests.Session] = []

    class RecordingSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(requests, "Session", RecordingSession)
    client = PlexClient(fake_plex.url, fake_plex.token, timeout=5)
    fake_plex.hold = asyncio.Event()
    connecting = asyncio.create_task(client.server())
    await wait_until(lambda: fake_plex.calls)  # the thread's request is at Plex, waiting
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    fake_plex.hold.set()  # PlexServer() now completes in its thread, for nobody
    await wait_until(lambda: len(closed) == len(made) == 1)
    fake_plex.hold = None
    assert (await client.item_parts(1)) is None  # and the client still connects afresh
    await client.close()
    assert len(closed) == len(made) == 2


async def test_sections_are_cached_for_the_ttl(fake_plex: FakePlex) -> None:
    fake_plex.add_section(1, "Movies", ["/data/movies"], type="movie")
    fake_plex.add_section(2, "TV", ["/data/tv", "/data/tv2"])
    client = PlexClient(fake_plex.url, fake_plex.token, sections_ttl_seconds=300)
    first = await client.sections()
    assert first == [Section(1, "Movies", "movie", ("/data/movies",)), Section(2, "TV", "show", ("/data/tv", "/data/tv2"))]
    await client.sections()
    assert len(fake_plex.calls_to("/library/sections")) == 1
    await client.close()


async def test_sections_are_reread_after_the_ttl(fake_plex: FakePlex) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    client = PlexClient(fake_plex.url, fake_plex.token, sections_ttl_seconds=0)
    await client.sections()
    fake_plex.add_section(3, "Anime", ["/data/anime"])
    assert [s.key for s in await client.sections()] == [2, 3]
    assert len(fake_plex.calls_to("/library/sections")) == 2
    await client.close()


async def test_stale_sections_are_used_while_plex_is_down(fake_plex: FakePlex) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    client = PlexClient(fake_plex.url, fake_plex.token, sections_ttl_seconds=0)
    await client.sections()
    fake_plex.fail_with(502)
    assert [s.key for s in await client.sections()] == [2]
    await client.close()


async def test_partial_scan_and_metadata_refresh(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    fake_plex.add_item(101, [EPISODE], section_id=2)
    await plex_client.partial_scan(2, "/data/tv/Attack on Titan/Season 01")
    await plex_client.refresh_metadata(101)
    scan = fake_plex.calls_to("/library/sections/2/refresh")
    assert [(c.method, c.query_string) for c in scan] == [("GET", "path=%2Fdata%2Ftv%2FAttack+on+Titan%2FSeason+01")]
    assert [c.method for c in fake_plex.calls_to("/library/metadata/101/refresh")] == ["PUT"]


async def test_partial_scan_of_an_unknown_section(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    with pytest.raises(PlexNotFound):
        await plex_client.partial_scan(9, "/data/tv/x")


async def test_token_never_logged(fake_plex: FakePlex, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = PlexClient(fake_plex.url, fake_plex.token)
    fake_plex.add_section(2, "TV", ["/data/tv"])
    fake_plex.add_item(101, [EPISODE])
    await client.item_parts(101)
    await client.partial_scan(2, "/data/tv/A")
    assert caplog.records
    assert all(fake_plex.token not in r.getMessage() for r in caplog.records)
    await client.close()
