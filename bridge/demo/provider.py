"""A provider whose links expire: signed media URLs with a lifetime, and the `http` resolver protocol.

The media answer looks like media to a strict probe (video/mp4, bytes that start like an MP4 `ftyp` box),
so the demo shows what a real provider does: a live link plays, an expired one answers 403.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Callable

from aiohttp import web

# An MP4 starts with an `ftyp` box; the rest is filler, enough for a player's first range request.
MEDIA = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64 * 1024 - 24)


class DemoProvider:
    """`GET|HEAD /v/{episode}?expires=&sig=` serves media until `expires`; `POST /resolve` issues a fresh link."""

    def __init__(self, ttl_seconds: float, on_event: Callable[[str], None] | None = None) -> None:
        self.ttl = ttl_seconds
        self.key = secrets.token_bytes(16)
        self.base = ""
        self.resolves = 0
        self.on_event = on_event or (lambda message: None)
        self._runner: web.AppRunner | None = None

    def _sig(self, episode: str, expires: int) -> str:
        return hmac.new(self.key, f"{episode}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def link(self, episode: str, ttl: float | None = None) -> tuple[str, int]:
        """A signed URL for `episode` and its expiry (unix seconds)."""
        expires = int(time.time() + (self.ttl if ttl is None else ttl))
        return f"{self.base}/v/{episode}?expires={expires}&sig={self._sig(episode, expires)}", expires

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_route("GET", "/v/{episode}", self._media)  # aiohttp answers HEAD for GET routes too
        app.router.add_post("/resolve", self._resolve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://{host}:{port}"
        return self.base

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _media(self, request: web.Request) -> web.StreamResponse:
        episode = request.match_info["episode"]
        try:
            expires = int(request.query.get("expires", ""))
        except ValueError:
            return web.Response(status=403, text="missing expiry")
        if not hmac.compare_digest(request.query.get("sig", ""), self._sig(episode, expires)):
            return web.Response(status=403, text="bad signature")
        if time.time() >= expires:
            return web.Response(status=403, text="link expired")
        body, status, headers = MEDIA, 200, {"Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
        ranges = request.http_range
        if ranges.start is not None or ranges.stop is not None:
            start = ranges.start or 0
            stop = min(ranges.stop or len(MEDIA), len(MEDIA))
            body, status = MEDIA[start:stop], 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(MEDIA)}"
        return web.Response(body=body, status=status, headers=headers)

    async def _resolve(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = await request.json()
        episode = f"{data.get('slug')}-s{int(data.get('season') or 0):02d}e{int(data.get('episode') or 0):02d}"
        self.resolves += 1
        url, expires = self.link(episode)
        self.on_event(f"resolver asked for {episode}: new link, valid {self.ttl:g}s")
        return web.json_response({"url": url, "provider": "demo",
                                  "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))})
