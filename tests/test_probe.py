"""probe() against real local servers: the pipeline's remedies hinge on these classifications being right."""
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.probe import PROBE_STATUSES, ProbeResult, classify_status, parse_retry_after, probe
from tests.fakes.provider import FakeProvider

EPISODE = "naruto/1/2"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def seen() -> list[tuple[str, str | None]]:
    """(method, Range header) of every request the little test servers receive."""
    return []


@pytest.fixture
async def status_server(aiohttp_server: ServerFactory, seen: list[tuple[str, str | None]]) -> TestServer:
    """Answers /status/<code> with that code, /nohead/<code> refuses HEAD with <code> but serves GET."""

    async def status(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Range")))
        # a media type, so only the status decides (what a body that is not media gets: see the soft failures)
        return web.Response(status=int(request.match_info["code"]), body=b"x", content_type="video/mp4")

    async def nohead(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Range")))
        if request.method == "HEAD":
            return web.Response(status=int(request.match_info["code"]))
        if request.headers.get("Range") == "bytes=0-1023":
            return web.Response(status=206, body=MP4_HEAD, headers={"Content-Range": f"bytes 0-{len(MP4_HEAD) - 1}/1000"})
        return web.Response(status=200, body=MP4_HEAD + b"\x00" * 1000)

    async def nohead_missing(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Range")))
        return web.Response(status=405 if request.method == "HEAD" else 404)

    async def headers_echo(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("User-Agent")))
        ok = request.headers.get("Referer") == "https://example.org/"
        return web.Response(status=200 if ok else 403, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/nohead/{code}", nohead)
    app.router.add_route("*", "/nohead-missing", nohead_missing)
    app.router.add_get("/needs-referer", headers_echo)
    return await aiohttp_server(app)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (200, "alive"),
        (204, "alive"),
        (206, "alive"),
        (400, "other"),
        (401, "other"),
        (403, "forbidden"),
        (404, "dead"),
        (410, "dead"),
        (416, "other"),
        (418, "other"),
        (429, "rate_limited"),
        (451, "legal"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
    ],
)
async def test_http_status_classification(
    session: aiohttp.ClientSession,
    status_server: TestServer,
    seen: list[tuple[str, str | None]],
    code: int,
    expected: str,
) -> None:
    result = await probe(session, str(status_server.make_url(f"/status/{code}")), timeout=2)
    assert result.status == expected
    assert result.http_status == code
    assert result.error is None
    assert result.elapsed_ms >= 0
    assert seen == [("HEAD", None)]  # answered by HEAD alone: no fallback for anything but 405/501


@pytest.mark.parametrize("refusal", [405, 501])
async def test_head_refused_falls_back_to_a_ranged_get(
    session: aiohttp.ClientSession, status_server: TestServer, seen: list[tuple[str, str | None]], refusal: int
) -> None:
    result = await probe(session, str(status_server.make_url(f"/nohead/{refusal}")), timeout=2)
    assert result.status == "alive"
    assert result.http_status == 206
    assert result.method == "GET"
    assert seen == [("HEAD", None), ("GET", "bytes=0-1023")]


async def test_fallback_get_is_classified_on_its_own_status(
    session: aiohttp.ClientSession, status_server: TestServer, seen: list[tuple[str, str | None]]
) -> None:
    result = await probe(session, str(status_server.make_url("/nohead-missing")), timeout=2)
    assert result.status == "dead"
    assert result.http_status == 404
    assert [method for method, _ in seen] == ["HEAD", "GET"]


async def test_caller_headers_are_sent(
    session: aiohttp.ClientSession, status_server: TestServer, seen: list[tuple[str, str | None]]
) -> None:
    url = str(status_server.make_url("/needs-referer"))
    without = await probe(session, url, timeout=2)
    with_headers = await probe(
        session, url, headers={"Referer": "https://example.org/", "User-Agent": "Kodi/21"}, timeout=2
    )
    assert without.status == "forbidden"
    assert with_headers.status == "alive"
    assert seen[-1] == ("HEAD", "Kodi/21")


async def test_fallback_get_does_not_read_an_endless_body(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory
) -> None:
    """A server that refuses HEAD and ignores Range must not make the probe download the film."""
    sent = {"bytes": 0}

    async def endless(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=405)
        response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        chunk = b"\x00" * 65536
        try:
            for _ in range(2000):  # ~128 MiB, far more than the probe may ever want
                await response.write(chunk)
                sent["bytes"] += len(chunk)
                await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_route("*", "/film", endless)
    server = await aiohttp_server(app)
    started = time.monotonic()
    result = await probe(session, str(server.make_url("/film")), timeout=3)
    assert result.status == "alive"
    assert result.http_status == 200
    assert result.method == "GET"
    assert time.monotonic() - started < 2.5
    assert sent["bytes"] < 2000 * 65536


async def test_redirects_are_followed_and_final_url_reported(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    result = await probe(session, f"{fake_provider.base_url}/d/{EPISODE}", timeout=2)
    assert result.status == "alive"
    assert result.http_status == 200
    assert result.final_url.startswith(f"{fake_provider.base_url}/media/{EPISODE}?exp=")
    assert fake_provider.redirect_calls == 1


async def test_fake_provider_states_classify_like_a_real_cdn(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    assert (await probe(session, url, timeout=2)).status == "alive"

    stale = fake_provider.sign(EPISODE, expires_at=time.time() - 60)
    assert (await probe(session, stale, timeout=2)).status == "forbidden"

    fake_provider.set_mode(EPISODE, "legal")
    assert (await probe(session, url, timeout=2)).status == "legal"
    fake_provider.set_mode(EPISODE, "error")
    error = await probe(session, url, timeout=2)
    assert (error.status, error.http_status) == ("server_error", 500)
    fake_provider.set_mode(EPISODE, None)

    fake_provider.expire_all()
    assert (await probe(session, url, timeout=2)).status == "forbidden"

    fresh = fake_provider.sign(EPISODE)
    fake_provider.remove_episode(EPISODE)
    gone = await probe(session, fresh, timeout=2)
    assert (gone.status, gone.http_status) == ("dead", 404)


async def test_rate_limited_probe_reports_retry_after_seconds(session: aiohttp.ClientSession) -> None:
    async with FakeProvider(rate_limit=1, rate_window=30, retry_after=11) as provider:
        provider.add_episode(EPISODE)
        url = provider.sign(EPISODE)
        first = await probe(session, url, timeout=2)
        second = await probe(session, url, timeout=2)
    assert first.status == "alive"
    assert second.status == "rate_limited"
    assert second.http_status == 429
    assert second.retry_after == 11.0


async def test_retry_after_http_date(session: aiohttp.ClientSession, aiohttp_server: ServerFactory) -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})

    app = web.Application()
    app.router.add_get("/", limited)
    server = await aiohttp_server(app)
    result = await probe(session, str(server.make_url("/")), timeout=2)
    assert result.status == "rate_limited"
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 121


async def test_retry_after_only_reported_for_429(session: aiohttp.ClientSession, aiohttp_server: ServerFactory) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "30"})

    app = web.Application()
    app.router.add_get("/", unavailable)
    server = await aiohttp_server(app)
    result = await probe(session, str(server.make_url("/")), timeout=2)
    assert (result.status, result.retry_after) == ("server_error", None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 120 ", 120.0), ("1.5", 1.5), ("soon", None), ("", None), (None, None), ("-5", None)],
)
def test_parse_retry_after_seconds_and_garbage(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_date_in_the_past_is_zero() -> None:
    reference = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=reference) == 0.0
    assert parse_retry_after(formatdate(reference + 90, usegmt=True), now=reference) == 90.0


async def test_hanging_server_times_out(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    fake_provider.set_mode(EPISODE, "hang")
    started = time.monotonic()
    result = await probe(session, fake_provider.sign(EPISODE), timeout=0.3)
    took = time.monotonic() - started
    assert result.status == "timeout"
    assert result.http_status is None
    assert result.error
    assert 0.25 <= took < 1.5


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """TCP servers that misbehave below HTTP: 'silent' accepts and never answers, 'slam' hangs up at once."""
    servers: list[asyncio.base_events.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(kind: str) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if kind == "slam":
                await reader.read(1)
                writer.close()
            else:
                writers.append(writer)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_silent_tcp_server_times_out(
    session: aiohttp.ClientSession, raw_server: Callable[[str], Awaitable[int]]
) -> None:
    port = await raw_server("silent")
    result = await probe(session, f"http://127.0.0.1:{port}/video.mp4", timeout=0.3)
    assert result.status == "timeout"


async def test_server_hanging_up_is_a_connection_error(
    session: aiohttp.ClientSession, raw_server: Callable[[str], Awaitable[int]]
) -> None:
    port = await raw_server("slam")
    result = await probe(session, f"http://127.0.0.1:{port}/video.mp4", timeout=2)
    assert result.status == "connection_error"
    assert result.http_status is None
    assert result.error


async def test_connection_refused(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    result = await probe(session, f"http://127.0.0.1:{port}/video.mp4", timeout=2)
    assert result.status == "connection_error"
    assert result.http_status is None
    assert result.final_url == f"http://127.0.0.1:{port}/video.mp4"
    assert "Connect" in (result.error or "")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "not a url", "http://"])
async def test_unusable_urls_are_classified_not_raised(session: aiohttp.ClientSession, url: str) -> None:
    result = await probe(session, url, timeout=1)
    assert isinstance(result, ProbeResult)
    assert result.status == "connection_error"
    assert result.error


async def test_redirect_loop_is_other(session: aiohttp.ClientSession, aiohttp_server: ServerFactory) -> None:
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(location="/loop")

    app = web.Application()
    app.router.add_get("/loop", loop)
    server = await aiohttp_server(app)
    result = await probe(session, str(server.make_url("/loop")), timeout=2)
    assert result.status == "other"
    assert result.error == "too many redirects"


def test_every_classification_is_a_declared_status() -> None:
    produced = {classify_status(code) for code in range(100, 600)}
    assert produced <= set(PROBE_STATUSES)
    assert {"timeout", "connection_error"} == set(PROBE_STATUSES) - produced


# ---- what "alive" means: media, not any 2xx -------------------------------------------------------------------


async def test_a_200_html_error_page_is_dead(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    fake_provider.set_mode(EPISODE, "not_found_page")
    result = await probe(session, fake_provider.sign(EPISODE), timeout=2)
    assert (result.status, result.http_status) == ("dead", 200)
    assert "text/html" in (result.error or "") and "not media" in (result.error or "")


async def test_a_redirect_chain_ending_on_an_error_page_is_dead(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    fake_provider.set_mode(EPISODE, "error_chain")
    result = await probe(session, fake_provider.sign(EPISODE), timeout=2)
    assert (result.status, result.http_status) == ("dead", 200)
    assert result.final_url == f"{fake_provider.base_url}/gone"


async def test_media_bytes_under_a_wrong_content_type_are_alive(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    """The bytes decide when the type is not a media type: an mp4 served as text/plain plays."""
    fake_provider.add_episode(EPISODE)
    fake_provider.set_mode(EPISODE, "mislabelled")
    result = await probe(session, fake_provider.sign(EPISODE), timeout=2)
    assert (result.status, result.http_status, result.method) == ("alive", 206, "GET")
    assert [(m, s) for m, _, s in fake_provider.media_requests] == [("HEAD", 200), ("GET", 206)]


async def test_hls_is_alive_only_when_variant_and_segment_answer(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_hls(EPISODE)
    url = fake_provider.sign_hls(EPISODE)
    alive = await probe(session, url, timeout=2)
    assert alive.status == "alive", alive
    prefix = f"/hls/{EPISODE}/"
    walked = [(method, path.removeprefix(prefix)) for method, path in fake_provider.hls_requests]
    assert walked == [("HEAD", "master.m3u8"), ("GET", "master.m3u8"), ("GET", "v0/index.m3u8"), ("GET", "v0/seg0.ts")]

    fake_provider.set_mode(EPISODE, "dead_segments")
    dead = await probe(session, url, timeout=2)
    assert (dead.status, dead.http_status) == ("dead", 404)
    assert dead.error == "HLS segment answered 404"


async def test_hls_with_an_expired_variant_is_forbidden(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory
) -> None:
    async def master(request: web.Request) -> web.Response:
        return web.Response(text="#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index.m3u8\n",
                            content_type="application/x-mpegURL")

    async def variant(request: web.Request) -> web.Response:
        return web.Response(status=403, text="expired")

    app = web.Application()
    app.router.add_get("/master.m3u8", master)
    app.router.add_get("/low/index.m3u8", variant)
    server = await aiohttp_server(app)
    result = await probe(session, str(server.make_url("/master.m3u8")), timeout=2)
    assert (result.status, result.http_status, result.error) == ("forbidden", 403, "HLS variant answered 403")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html", b"<!DOCTYPE html><html><body>captcha</body></html>", "dead"),
        ("application/json", b'{"error": "file removed"}', "dead"),
        ("text/plain", b"\x1a\x45\xdf\xa3\x01\x00\x00\x00webm", "alive"),  # Matroska / WebM
        ("text/plain", (b"\x47" + b"\x00" * 187) * 2, "alive"),  # MPEG-TS
        ("application/octet-stream", b"\x00" * 64, "alive"),
        ("video/x-matroska", b"anything", "alive"),
        ("text/plain", b"#EXTM3U\n#EXTINF:4,\n", "dead"),  # a playlist without a segment
    ],
)
async def test_what_the_first_bytes_say(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory, content_type: str, body: bytes, expected: str
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_route("*", "/x", answer)
    server = await aiohttp_server(app)
    result = await probe(session, str(server.make_url("/x")), timeout=2)
    assert result.status == expected, result
