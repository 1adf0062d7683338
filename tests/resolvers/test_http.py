"""The http resolver against the FakeProvider's /resolve endpoint and a few hand-made misbehaving servers."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from bridge.resolvers.base import EpisodeNotFound, ResolverContext, ResolverError
from bridge.resolvers.http import HttpResolver
from bridge.timeutil import parse_iso
from tests.fakes.provider import FakeProvider
from tests.resolvers.util import make_request

ServerFactory = Callable[[web.Application], Awaitable[Any]]


@pytest.fixture
async def resolver_for() -> AsyncIterator[Callable[..., HttpResolver]]:
    made: list[HttpResolver] = []

    def make(url: str, **options: Any) -> HttpResolver:
        resolver = HttpResolver({"url": url, **options}, ResolverContext(user_agent="strm-bridge-test"))
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.close()


async def test_200_gives_a_fresh_url_and_sends_the_whole_request(
    fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]
) -> None:
    fake_provider.add_episode("show/1/2")
    resolver = resolver_for(fake_provider.base_url + "/resolve")
    request = make_request(
        "show", 1, 2, provider="VOE", source_url="https://example.org/page", strm_path="/tv/a.strm",
        previous_url="http://old/x", reason="jellyfin",
    )
    resolved = await resolver.resolve(request)
    assert resolved.url.startswith(fake_provider.base_url + "/media/show/1/2?exp=")
    assert resolved.provider == "fake" and resolved.resolver == "http"
    assert resolved.expires_at is not None and parse_iso(resolved.expires_at).timestamp() > time.time() + 3000
    assert fake_provider.resolve_calls == [
        {
            "site": "example.org", "slug": "show", "season": 1, "episode": 2, "language": "German Dub",
            "provider": "VOE", "source_url": "https://example.org/page", "strm_path": "/tv/a.strm",
            "previous_url": "http://old/x", "reason": "jellyfin",
        }
    ]
    # The URL really plays: the provider accepts the signature it just issued.
    async with resolver._client().get(resolved.url) as resp:
        assert resp.status == 200
        assert await resp.read() == fake_provider.content("show/1/2")


async def test_404_means_episode_not_found(fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]) -> None:
    with pytest.raises(EpisodeNotFound):
        await resolver_for(fake_provider.base_url + "/resolve").resolve(make_request("missing"))


async def test_500_is_a_resolver_failure(fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]) -> None:
    fake_provider.resolve_mode = "error"
    with pytest.raises(ResolverError, match="answered 500") as caught:
        await resolver_for(fake_provider.base_url + "/resolve").resolve(make_request())
    assert not isinstance(caught.value, EpisodeNotFound)


async def test_timeout_is_a_resolver_failure(fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]) -> None:
    fake_provider.resolve_mode = "hang"
    started = time.monotonic()
    with pytest.raises(ResolverError, match="no answer within 0.3s"):
        await resolver_for(fake_provider.base_url + "/resolve", timeout_seconds=0.3).resolve(make_request())
    assert time.monotonic() - started < 2


async def test_non_json_answer(fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]) -> None:
    fake_provider.resolve_mode = "not_json"
    with pytest.raises(ResolverError, match="not JSON"):
        await resolver_for(fake_provider.base_url + "/resolve").resolve(make_request())


async def test_non_http_url_is_refused(fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]) -> None:
    fake_provider.resolve_mode = "bad_url"
    with pytest.raises(ResolverError, match="not an absolute http"):
        await resolver_for(fake_provider.base_url + "/resolve").resolve(make_request())


async def test_huge_answer_with_content_length_is_refused_quickly(
    fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]
) -> None:
    fake_provider.add_episode("show/1/2")
    fake_provider.resolve_mode = "huge"
    started = time.monotonic()
    with pytest.raises(ResolverError, match="exceeds 1048576"):
        await resolver_for(fake_provider.base_url + "/resolve").resolve(make_request())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"headers": {}}, "no string 'url'"),
        ({"url": 42}, "no string 'url'"),
        ({"url": ""}, "no string 'url'"),
        ([1, 2], "expected a JSON object"),
        ({"url": "http://127.0.0.1/x", "headers": {"Referer": 5}}, "'headers' must be an object of strings"),
    ],
)
async def test_malformed_answers(
    aiohttp_server: ServerFactory, resolver_for: Callable[..., HttpResolver], answer: Any, message: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/r", handler)
    server = await aiohttp_server(app)
    with pytest.raises(ResolverError, match=message):
        await resolver_for(str(server.make_url("/r"))).resolve(make_request())


async def test_streamed_10mb_answer_is_cut_off_without_buffering_it(
    aiohttp_server: ServerFactory, resolver_for: Callable[..., HttpResolver]
) -> None:
    """No Content-Length: the cap must hold while reading, and the server must not get to send it all."""
    sent = 0
    finished = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await resp.write(b'{"url": "http://127.0.0.1/x", "pad": "')
            for _ in range(160):
                await resp.write(b"x" * 65536)
                sent += 65536
            await resp.write(b'"}')
            finished.set()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/r", handler)
    server = await aiohttp_server(app)
    started = time.monotonic()
    with pytest.raises(ResolverError, match="exceeds 1048576 bytes"):
        await resolver_for(str(server.make_url("/r"))).resolve(make_request())
    assert time.monotonic() - started < 2
    await asyncio.sleep(0.1)
    assert not finished.is_set()
    assert sent < 10 * 1024 * 1024


async def test_configured_headers_and_user_agent_are_sent(
    aiohttp_server: ServerFactory, resolver_for: Callable[..., HttpResolver]
) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.json_response(
            {"url": "https://cdn.example/v.m3u8?t=1", "headers": {"Referer": "https://p.example/"}, "expires_at": 1_900_000_000}
        )

    app = web.Application()
    app.router.add_post("/r", handler)
    server = await aiohttp_server(app)
    resolver = resolver_for(str(server.make_url("/r")), headers={"Authorization": "Bearer s3cret"})
    resolved = await resolver.resolve(make_request())
    assert seen["Authorization"] == "Bearer s3cret"
    assert seen["User-Agent"] == "strm-bridge-test"
    assert resolved.headers == {"Referer": "https://p.example/"}
    assert resolved.provider is None
    assert resolved.expires_at == "2030-03-17T17:46:40.000000Z"


async def test_connection_refused_is_a_resolver_failure(resolver_for: Callable[..., HttpResolver]) -> None:
    with pytest.raises(ResolverError, match="ClientConnectorError"):
        await resolver_for("http://127.0.0.1:9/resolve", timeout_seconds=2).resolve(make_request())


async def test_close_is_idempotent_and_the_resolver_reopens(
    fake_provider: FakeProvider, resolver_for: Callable[..., HttpResolver]
) -> None:
    fake_provider.add_episode("show/1/2")
    resolver = resolver_for(fake_provider.base_url + "/resolve")
    await resolver.resolve(make_request())
    await resolver.close()
    await resolver.close()
    assert (await resolver.resolve(make_request())).url.startswith(fake_provider.base_url)
