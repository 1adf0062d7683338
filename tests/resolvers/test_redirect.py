"""The redirect resolver follows stable links hop by hop and never downloads the media behind them."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.resolvers.base import EpisodeNotFound, ResolverError
from bridge.resolvers.redirect import RedirectResolver
from tests.fakes.provider import FakeProvider
from tests.resolvers.util import make_request

ServerFactory = Callable[[web.Application], Awaitable[Any]]


@pytest.fixture
async def resolver() -> AsyncIterator[RedirectResolver]:
    made = RedirectResolver({"timeout_seconds": 3, "max_redirects": 3})
    yield made
    await made.close()


async def test_alist_style_link_resolves_to_the_fresh_signed_url(
    fake_provider: FakeProvider, resolver: RedirectResolver
) -> None:
    fake_provider.add_episode("show/s1e2.mkv")
    source = fake_provider.base_url + "/d/show/s1e2.mkv"
    resolved = await resolver.resolve(make_request(source_url=source))
    assert resolved.url.startswith(fake_provider.base_url + "/media/show/s1e2.mkv?exp=")
    assert resolved.resolver == "redirect"
    assert fake_provider.redirect_calls == 1
    # Only a HEAD reached the media: nothing was downloaded.
    assert [(method, status) for method, _, status in fake_provider.media_requests] == [("HEAD", 200)]
    async with aiohttp.ClientSession() as session, session.get(resolved.url) as resp:
        assert resp.status == 200
        assert await resp.read() == fake_provider.content("show/s1e2.mkv")


async def test_source_that_answers_2xx_is_its_own_url(fake_provider: FakeProvider, resolver: RedirectResolver) -> None:
    fake_provider.add_episode("ep")
    signed = fake_provider.sign("ep")
    resolved = await resolver.resolve(make_request(source_url=signed))
    assert resolved.url == signed


async def test_missing_at_the_source_is_episode_not_found(
    fake_provider: FakeProvider, resolver: RedirectResolver
) -> None:
    with pytest.raises(EpisodeNotFound, match="answered 404"):
        await resolver.resolve(make_request(source_url=fake_provider.base_url + "/d/nothing-here"))


async def test_no_source_url(resolver: RedirectResolver) -> None:
    with pytest.raises(ResolverError, match="no source_url"):
        await resolver.resolve(make_request(source_url=None))


def hop_app(log: list[tuple[str, str, str | None]], *, head_allowed: bool = True) -> web.Application:
    """/hop/N redirects (relative, absolute-path and absolute forms mixed) down to /final?sig=a%2Fb+c."""

    async def hop(request: web.Request) -> web.Response:
        log.append((request.method, request.path_qs, request.headers.get("Range")))
        if request.method == "HEAD" and not head_allowed:
            return web.Response(status=405)
        n = int(request.match_info["n"])
        if n == 0:
            location = "/final?sig=a%2Fb+c"
        elif n % 2:
            location = f"{n - 1}"  # relative to /hop/
        else:
            location = f"{request.url.origin()}/hop/{n - 1}"
        return web.Response(status=302 if n % 3 else 307, headers={"Location": location})

    async def final(request: web.Request) -> web.Response:
        log.append((request.method, request.path_qs, request.headers.get("Range")))
        if request.method == "HEAD" and not head_allowed:
            return web.Response(status=405)
        status = 206 if request.headers.get("Range") else 200
        return web.Response(status=status, body=b"x" if request.method == "GET" else None)

    async def loop(request: web.Request) -> web.Response:
        log.append((request.method, request.path_qs, None))
        return web.Response(status=302, headers={"Location": "/loop"})

    app = web.Application()
    app.router.add_route("*", "/hop/{n}", hop)
    app.router.add_route("*", "/final", final)
    app.router.add_route("*", "/loop", loop)
    return app


async def test_chain_of_redirects_keeps_the_signed_query_byte_for_byte(
    aiohttp_server: ServerFactory, resolver: RedirectResolver
) -> None:
    log: list[tuple[str, str, str | None]] = []
    server = await aiohttp_server(hop_app(log))
    resolved = await resolver.resolve(make_request(source_url=str(server.make_url("/hop/2"))))
    assert resolved.url == str(server.make_url("/final")) + "?sig=a%2Fb+c"
    assert log == [
        ("HEAD", "/hop/2", None),
        ("HEAD", "/hop/1", None),
        ("HEAD", "/hop/0", None),
        ("HEAD", "/final?sig=a%2Fb+c", None),
    ]


async def test_head_405_falls_back_to_a_one_byte_ranged_get(
    aiohttp_server: ServerFactory, resolver: RedirectResolver
) -> None:
    log: list[tuple[str, str, str | None]] = []
    server = await aiohttp_server(hop_app(log, head_allowed=False))
    resolved = await resolver.resolve(make_request(source_url=str(server.make_url("/hop/1"))))
    assert resolved.url.endswith("/final?sig=a%2Fb+c")
    assert log == [
        ("HEAD", "/hop/1", None),
        ("GET", "/hop/1", "bytes=0-0"),
        ("GET", "/hop/0", "bytes=0-0"),
        ("GET", "/final?sig=a%2Fb+c", "bytes=0-0"),
    ]


async def test_too_many_redirects(aiohttp_server: ServerFactory, resolver: RedirectResolver) -> None:
    log: list[tuple[str, str, str | None]] = []
    server = await aiohttp_server(hop_app(log))
    with pytest.raises(ResolverError, match="more than 3 redirects"):
        await resolver.resolve(make_request(source_url=str(server.make_url("/loop"))))
    assert len(log) == 4  # the source plus three followed hops, then it stops asking


async def test_max_redirects_allows_exactly_that_many(aiohttp_server: ServerFactory, resolver: RedirectResolver) -> None:
    server = await aiohttp_server(hop_app([]))
    # /hop/2 → /hop/1 → /hop/0 → /final is three redirects: allowed with max_redirects = 3
    assert (await resolver.resolve(make_request(source_url=str(server.make_url("/hop/2"))))).url.endswith("sig=a%2Fb+c")
    with pytest.raises(ResolverError, match="more than 3 redirects"):
        await resolver.resolve(make_request(source_url=str(server.make_url("/hop/3"))))


async def test_presigned_target_refusing_head_is_retried_with_get(
    aiohttp_server: ServerFactory, resolver: RedirectResolver
) -> None:
    """S3-style URLs sign the method: HEAD gets 403 although the GET link is fine."""
    methods: list[str] = []

    async def source(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/bucket/file.mkv?X-Amz-Signature=abc"})

    async def bucket(request: web.Request) -> web.Response:
        methods.append(request.method)
        return web.Response(status=403 if request.method == "HEAD" else 206)

    app = web.Application()
    app.router.add_route("*", "/d/file.mkv", source)
    app.router.add_route("*", "/bucket/file.mkv", bucket)
    server = await aiohttp_server(app)
    resolved = await resolver.resolve(make_request(source_url=str(server.make_url("/d/file.mkv"))))
    assert resolved.url.endswith("/bucket/file.mkv?X-Amz-Signature=abc")
    assert methods == ["HEAD", "GET"]


async def test_dead_target_after_redirect_is_a_failure_not_not_found(
    aiohttp_server: ServerFactory, resolver: RedirectResolver
) -> None:
    async def source(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/gone"})

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/d/x", source)
    app.router.add_route("*", "/gone", gone)
    server = await aiohttp_server(app)
    with pytest.raises(ResolverError, match=r"answered 404") as caught:
        await resolver.resolve(make_request(source_url=str(server.make_url("/d/x"))))
    assert not isinstance(caught.value, EpisodeNotFound)


async def test_get_fallback_does_not_download_a_server_that_ignores_range(aiohttp_server: ServerFactory) -> None:
    sent = 0

    async def media(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        if request.method == "HEAD":
            return web.Response(status=501)
        resp = web.StreamResponse(status=200)
        resp.content_length = 200 * 65536
        await resp.prepare(request)
        try:
            for _ in range(200):
                await resp.write(b"\0" * 65536)
                sent += 65536
        except ConnectionError:  # the resolver hung up, as it should
            pass
        return resp

    app = web.Application()
    app.router.add_route("*", "/video.mp4", media)
    server = await aiohttp_server(app)
    resolver = RedirectResolver({})
    try:
        started = time.monotonic()
        resolved = await resolver.resolve(make_request(source_url=str(server.make_url("/video.mp4"))))
        assert resolved.url == str(server.make_url("/video.mp4"))
        assert time.monotonic() - started < 2
    finally:
        await resolver.close()
    assert sent < 200 * 65536


async def test_unreachable_source_is_a_failure() -> None:
    resolver = RedirectResolver({"timeout_seconds": 2})
    try:
        with pytest.raises(ResolverError, match="ClientConnectorError"):
            await resolver.resolve(make_request(source_url="http://127.0.0.1:9/d/x"))
    finally:
        await resolver.close()
