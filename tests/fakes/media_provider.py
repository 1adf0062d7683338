"""A provider that serves real media (an MP4 and an HLS stream made by ffmpeg) under expiring signed URLs.

It behaves like the VOE-style CDNs stable links exist for: one token per stream, valid until `exp`, repeated
in the query of every URI of its playlists (so a rewritten playlist's parts die with the token); a key rotation
(`expire_all`) kills every token at once; a provider can require a Referer (403 without it, like hosters whose
links are bound to their embed page). Knobs make the awkward moments happen on cue instead of by timing: a
body that stalls until its token has expired, a body cut off mid-way, tokens that die after N playlists.
It also answers the `http` resolver contract (POST /resolve) with a fresh URL, `expires_at` and headers.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bridge.timeutil import from_epoch
from tests.fakes.loopback import serve

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)$")
_URI_ATTR = re.compile(r'URI="([^"]*)"')
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
CHUNK = 64 * 1024


@dataclass
class Stream:
    """One episode: a folder of files and the entry the resolver hands out (an .mp4 or master.m3u8)."""

    folder: Path
    entry: str
    referer: str | None = None
    stall_after: int | None = None
    """Next full or ranged read of the entry: send this many bytes, then wait until the token has expired."""
    cut_after: int | None = None
    """Next read of the entry: send this many bytes, then drop the connection."""
    expire_after_playlists: int | None = None
    """Rotate keys (every token dies) once this many playlists of the stream have been served."""
    stall_variants: bool = False
    """Hold a playlist other than the entry whose token dies within 10 s until it has died (its parts then carry
    a dead token); a playlist fetched with a fresh token is answered at once."""
    playlists_served: int = 0
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Hit:
    method: str
    key: str
    path: str
    status: int
    range: str | None
    referer: str | None
    peer: tuple[str, int] | None = None
    """The client's address and port: two hits from one port came over one (kept-alive) connection."""


class MediaProvider:
    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self.base_url = ""
        self.streams: dict[str, Stream] = {}
        self.hits: list[Hit] = []
        self.resolve_calls: list[dict] = []
        self.stalls = 0
        self._secret = secrets.token_bytes(32)
        self._generation = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/m/{key}/{path:.+}", self._media)
        app.router.add_post("/resolve", self._resolve)
        self._runner, port = await serve(app)
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- control -------------------------------------------------------------------------------------
    def add(self, key: str, folder: Path, entry: str, *, referer: str | None = None) -> Stream:
        stream = Stream(Path(folder), entry, referer)
        for path in stream.folder.rglob("*"):
            if path.is_file():
                stream.files[path.relative_to(stream.folder).as_posix()] = path.read_bytes()
        self.streams[key] = stream
        return stream

    def sign(self, key: str, ttl: float | None = None, *, expires_at: float | None = None) -> str:
        exp = int(expires_at) if expires_at is not None else math.ceil(time.time() + (self.ttl if ttl is None else ttl))
        return f"{self.base_url}/m/{key}/{self.streams[key].entry}?{self._query(key, exp)}"

    def expire_all(self) -> None:
        self._generation += 1

    def hits_for(self, key: str, path: str | None = None) -> list[Hit]:
        return [h for h in self.hits if h.key == key and (path is None or h.path == path)]

    # ---- tokens --------------------------------------------------------------------------------------
    def _token(self, key: str, exp: int, generation: int) -> str:
        return hmac.new(self._secret, f"{generation}\n{key}\n{exp}".encode(), hashlib.sha256).hexdigest()[:32]

    def _query(self, key: str, exp: int) -> str:
        return f"exp={exp}&tok={self._token(key, exp, self._generation)}"

    def _valid(self, key: str, request: web.Request) -> int | None:
        exp_text, token = request.query.get("exp", ""), request.query.get("tok", "")
        if not exp_text.isdigit() or time.time() >= int(exp_text):
            return None
        if not hmac.compare_digest(token, self._token(key, int(exp_text), self._generation)):
            return None
        return int(exp_text)

    # ---- handlers ------------------------------------------------------------------------------------
    async def _media(self, request: web.Request) -> web.StreamResponse:
        key, path = request.match_info["key"], request.match_info["path"]
        response = await self._answer(request, key, path)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.hits.append(Hit(request.method, key, path, response.status, request.headers.get("Range"),
                             request.headers.get("Referer"), tuple(peer[:2]) if peer else None))
        return response

    async def _answer(self, request: web.Request, key: str, path: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        stream = self.streams.get(key)
        if stream is None or path not in stream.files:
            return web.Response(status=404, text="no such file")
        exp = self._valid(key, request)
        if exp is None:
            return web.Response(status=403, text="token expired or invalid")
        if stream.referer is not None and request.headers.get("Referer") != stream.referer:
            return web.Response(status=403, text="hotlinking refused")
        body = stream.files[path]
        if path.endswith(".m3u8"):
            if stream.stall_variants and path != stream.entry and exp - time.time() < 10:
                await self._until_expired(exp)
            stream.playlists_served += 1
            text = self._sign_playlist(body.decode(), self._query(key, exp))
            response = web.Response(text=text, content_type=PLAYLIST_TYPE)
            if stream.expire_after_playlists is not None and stream.playlists_served >= stream.expire_after_playlists:
                stream.expire_after_playlists = None
                self.expire_all()
            return response
        return await self._bytes(request, stream, path, body, exp)

    @staticmethod
    def _sign_playlist(text: str, query: str) -> str:
        def signed(uri: str) -> str:
            return uri if uri.startswith(("data:", "http://", "https://")) else f"{uri}?{query}"

        lines = []
        for line in text.splitlines():
            if line.startswith("#"):
                lines.append(_URI_ATTR.sub(lambda m: f'URI="{signed(m.group(1))}"', line))
            elif line.strip():
                lines.append(signed(line.strip()))
            else:
                lines.append(line)
        return "\n".join(lines) + "\n"

    async def _bytes(self, request: web.Request, stream: Stream, path: str, body: bytes, exp: int) -> web.StreamResponse:
        size = len(body)
        first, last, status = 0, size - 1, 200
        header = request.headers.get("Range")
        if header:
            match = _RANGE.match(header.strip())
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    first = int(match.group(1))
                    last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                else:
                    first = max(size - int(match.group(2)), 0)
                if first >= size or last < first:
                    return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
                status = 206
        content_type = "video/mp4" if path.endswith(".mp4") else (
            "video/mp2t" if path.endswith(".ts") else "application/octet-stream")
        response = web.StreamResponse(status=status, headers={"Accept-Ranges": "bytes", "Content-Type": content_type})
        response.content_length = last - first + 1
        if status == 206:
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        is_entry = path == stream.entry
        stall = stream.stall_after if is_entry else None
        cut = stream.cut_after if is_entry else None
        if is_entry:
            stream.stall_after = stream.cut_after = None
        position = first
        sent = 0
        while position <= last:
            end = min(position + CHUNK, last + 1)
            limit = next((n for n in (stall, cut) if n is not None and sent < n <= sent + (end - position)), None)
            if limit is not None:
                end = position + (limit - sent)
            await response.write(body[position:end])
            sent += end - position
            position = end
            if cut is not None and sent >= cut:
                await asyncio.sleep(0)  # the bytes so far leave, then the connection drops
                assert request.transport is not None
                request.transport.close()
                return response
            if stall is not None and sent >= stall:
                stall = None
                await self._until_expired(exp)
        await response.write_eof()
        return response

    async def _until_expired(self, exp: int) -> None:
        self.stalls += 1
        while time.time() < exp + 0.05 and not self._closing.is_set():  # a condition, not a fixed delay
            await asyncio.sleep(0.05)

    async def _resolve(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.resolve_calls.append(payload)
        key = f"{payload.get('slug')}-{payload.get('season')}-{payload.get('episode')}"
        stream = self.streams.get(key)
        if stream is None:
            return web.json_response({"error": "not found"}, status=404)
        exp = math.ceil(time.time() + self.ttl)
        answer: dict = {"url": self.sign(key, expires_at=exp), "provider": "fakecdn", "expires_at": from_epoch(exp)}
        if stream.referer is not None:
            answer["headers"] = {"Referer": stream.referer}
        return web.json_response(answer)
