"""The ytdlp resolver with the real yt-dlp against the FakeProvider's HTML page on 127.0.0.1."""
from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

pytest.importorskip("yt_dlp")

from bridge.resolvers.base import EpisodeNotFound, ResolverError  # noqa: E402
from bridge.resolvers.registry import create_resolver  # noqa: E402
from bridge.resolvers.ytdlp import YtdlpResolver  # noqa: E402
from tests.fakes.provider import FakeProvider  # noqa: E402
from tests.resolvers.util import make_request  # noqa: E402

ServerFactory = Callable[[web.Application], Awaitable[Any]]


async def test_page_with_a_video_tag_gives_a_fresh_playable_url(fake_provider: FakeProvider) -> None:
    fake_provider.add_episode("ep1")
    page = fake_provider.base_url + "/page/ep1"
    resolver = create_resolver("ytdlp", {"timeout_seconds": 20})
    resolved = await resolver.resolve(make_request(source_url=page))
    assert resolved.url.startswith(fake_provider.base_url + "/media/ep1?exp=")
    assert resolved.resolver == "ytdlp"
    assert resolved.headers is not None and resolved.headers.get("Referer") == page
    assert fake_provider.page_calls == 1
    async with aiohttp.ClientSession() as session, session.get(resolved.url) as resp:
        assert resp.status == 200
        assert await resp.read() == fake_provider.content("ep1")


async def test_each_resolve_extracts_again(fake_provider: FakeProvider) -> None:
    fake_provider.add_episode("ep1")
    resolver = YtdlpResolver({})
    request = make_request(source_url=fake_provider.base_url + "/page/ep1")
    await resolver.resolve(request)
    fake_provider.expire_all()  # every URL signed so far is now dead
    fresh = await resolver.resolve(request)
    assert fake_provider.page_calls == 2
    async with aiohttp.ClientSession() as session, session.head(fresh.url) as resp:
        assert resp.status == 200


async def test_missing_page_is_episode_not_found(fake_provider: FakeProvider) -> None:
    with pytest.raises(EpisodeNotFound, match="404"):
        await YtdlpResolver({}).resolve(make_request(source_url=fake_provider.base_url + "/page/nope"))


async def test_a_missing_page_leaves_no_connection_open() -> None:
    """yt-dlp's HTTPError keeps the 404 response, and with it the connection: the resolver closes it.

    Before the fix the connection stayed open until the garbage collector found it (a ResourceWarning, and
    an idle socket per failed resolve until then). The collector is off here so it cannot close it for us.
    """
    closed_by_client = asyncio.Event()

    async def answer_404(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found")
        await writer.drain()
        await reader.read()  # returns at EOF: the client closed its end
        closed_by_client.set()
        writer.close()

    server = await asyncio.start_server(answer_404, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(EpisodeNotFound, match="404"):
                await YtdlpResolver({}).resolve(make_request(source_url=f"http://127.0.0.1:{port}/page/nope"))
            await asyncio.wait_for(closed_by_client.wait(), 3)
        assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    finally:
        gc.enable()
        server.close()
        await server.wait_closed()


async def test_page_without_media_is_a_failure(aiohttp_server: ServerFactory) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><head><title>nothing</title></head><body>no video</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/page", page)
    server = await aiohttp_server(app)
    with pytest.raises(ResolverError) as caught:
        await YtdlpResolver({}).resolve(make_request(source_url=str(server.make_url("/page"))))
    assert not isinstance(caught.value, EpisodeNotFound)
    assert "Unsupported URL" in str(caught.value)


async def test_no_source_url() -> None:
    with pytest.raises(ResolverError, match="no source_url"):
        await YtdlpResolver({}).resolve(make_request(source_url=None))


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^resolvers\.ytdlp\.format:"):
        YtdlpResolver({"format": ""})
    with pytest.raises(ValueError, match=r"^resolvers\.yt\.timeout_seconds:"):
        create_resolver("yt", {"type": "ytdlp", "timeout_seconds": 0})
