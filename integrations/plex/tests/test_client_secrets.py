"""PlexClient's own redaction is what keeps the token out of its errors and logs, and it can be seen failing.

A reverse proxy in front of Plex (common: nginx, Traefik) may answer with a debug error page that echoes the
request's headers; plexapi puts the response body into its BadRequest, and the client logs and raises that.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations.plex.client import PlexClient, PlexRequestError
from tests.fakes.plex import FakePlex


@pytest.fixture
async def echoing_proxy(fake_plex: FakePlex) -> AsyncIterator[str]:
    """Forwards to FakePlex; a partial scan gets a 400 page that repeats the X-Plex-Token it was sent."""
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        if request.path.endswith("/refresh"):
            token = request.headers.get("X-Plex-Token", "")
            return web.Response(status=400, text=f"400 Bad Request: upstream refused X-Plex-Token={token}")
        async with session.request(request.method, fake_plex.url + request.path_qs, headers=request.headers,
                                   data=await request.read()) as upstream:
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body,
                                content_type=upstream.content_type, charset=upstream.charset)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await session.close()


async def scan_error(url: str, token: str, caplog: pytest.LogCaptureFixture) -> str:
    client = PlexClient(url, token, timeout=5)
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(PlexRequestError) as raised:
                await client.partial_scan(2, "/data/tv/A")
    finally:
        await client.close()
    return str(raised.value) + "\n" + "\n".join(r.getMessage() for r in caplog.records)


async def test_token_echoed_by_a_proxy_is_redacted(fake_plex: FakePlex, echoing_proxy: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    fake_plex.add_section(2, "TV", ["/data/tv"])
    text = await scan_error(echoing_proxy, fake_plex.token, caplog)
    assert "upstream refused" in text
    assert fake_plex.token not in text


async def test_without_its_redaction_the_token_shows(fake_plex: FakePlex, echoing_proxy: str,
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: with PlexClient._redact a no-op, the echoed token is in the error."""
    monkeypatch.setattr(PlexClient, "_redact", lambda self, text: text)
    fake_plex.add_section(2, "TV", ["/data/tv"])
    assert fake_plex.token in await scan_error(echoing_proxy, fake_plex.token, caplog)
