"""A local streaming provider whose links expire, so resolvers, probes and the refresh pipeline meet real HTTP.

It behaves like the CDNs strm-bridge heals: signed media URLs that die after their `exp` or when the provider
rotates keys (`expire_all`), episodes that vanish, rate limits with Retry-After, legal blocks, hangs, plus the
`http` resolver endpoint from DESIGN.md, an Alist-style stable redirect and an HTML page with a <video> tag.

It also fails softly, as real hosters do: `not_found_page` answers 200 with an HTML "file not found" page,
`error_chain` redirects twice and lands on such a page, and HLS episodes (`add_hls`) can keep their playlists
alive while every segment is gone (`dead_segments`).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import math
import re
import secrets
import time
from collections import deque
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from aiohttp import web

from bridge.timeutil import from_epoch

__all__ = ["FakeProvider", "default_content"]

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_HANG_SECONDS = 3600.0
_HUGE_BYTES = 10 * 1024 * 1024
_RECORDED = web.RequestKey("recorded", bool)
MODES = ("legal", "error", "hang", "not_found_page", "error_chain", "dead_segments", "mislabelled")
"""mislabelled: the media bytes served as text/plain, which only a probe that reads the bytes calls alive."""
SEGMENTS = 3
_NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>File not found</title></head>"
    "<body><h1>File Not Found</h1><p>The file you were looking for could not be found.</p></body></html>\n"
)


def ts_segment(key: str, index: int, packets: int = 64) -> bytes:
    """MPEG-TS-like bytes: 188-byte packets that each start with the 0x47 sync byte."""
    body = hashlib.sha256(f"{key}:seg{index}".encode()).digest() * 6  # 192 bytes, cut to a packet's payload
    packet = b"\x47" + body[:187]
    return packet * packets  # a hanging request is recorded before it hangs, not again after


def default_content(key: str, size: int = 64 * 1024) -> bytes:
    """Deterministic per key, so a test can tell which episode's bytes it got and compare ranges exactly."""
    # An ISO-BMFF 'ftyp' box first, so sniffers that look at the first bytes see an mp4.
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    chunks = [head]
    total = len(head)
    counter = 0
    while total < size:
        block = hashlib.sha256(f"{key}:{counter}".encode()).digest()
        chunks.append(block)
        total += len(block)
        counter += 1
    return b"".join(chunks)[:size]


class FakeProvider:
    """One aiohttp server on 127.0.0.1 with an ephemeral port; every knob is a plain attribute for tests."""

    def __init__(
        self,
        *,
        ttl: float = 3600.0,
        rate_limit: int | None = None,
        rate_window: float = 1.0,
        retry_after: int = 7,
    ) -> None:
        self.ttl = ttl
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.retry_after = retry_after
        self.base_url = ""
        self.resolve_calls: list[dict] = []
        self.media_requests: list[tuple[str, str, int]] = []
        self.hls_requests: list[tuple[str, str]] = []
        self.redirect_calls = 0
        self.page_calls = 0
        self.resolve_mode: str | None = None
        self._episodes: dict[str, bytes] = {}
        self._hls: set[str] = set()
        self._modes: dict[str, str] = {}
        self._secret = secrets.token_bytes(32)
        self._generation = 0
        self._arrivals: deque[float] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/media/{key:.+}", self._media)
        app.router.add_post("/resolve", self._resolve)
        app.router.add_get("/d/{key:.+}", self._redirect)
        app.router.add_get("/page/{key:.+}", self._page)
        app.router.add_get("/hls/{key:.+}/master.m3u8", self._hls_master)
        app.router.add_get("/hls/{key:.+}/v0/index.m3u8", self._hls_variant)
        app.router.add_get("/hls/{key:.+}/v0/seg{index:[0-9]+}.ts", self._hls_segment)
        app.router.add_get("/chain/{hops:[0-9]+}", self._chain)
        app.router.add_get("/gone", self._gone)
        app.router.add_route("*", "/open-redirect", self._open_redirect)
        # Short shutdown: a test that leaves a request hanging must not stall teardown for a minute.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        self._closing.set()  # releases 'hang' handlers so the runner can shut down promptly
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------------- control

    def add_episode(self, key: str, content: bytes | None = None) -> None:
        self._episodes[key] = default_content(key) if content is None else content

    def has_episode(self, key: str) -> bool:
        return key in self._episodes

    def remove_episode(self, key: str) -> None:
        self._episodes.pop(key, None)
        self._hls.discard(key)

    def add_hls(self, key: str) -> None:
        """An HLS episode: a master playlist, one variant and SEGMENTS MPEG-TS segments, all signed."""
        self._hls.add(key)
        self._episodes.setdefault(key, default_content(key))

    def sign_hls(self, key: str, ttl: float | None = None) -> str:
        exp = math.ceil(time.time() + (self.ttl if ttl is None else ttl))
        return f"{self.base_url}/hls/{quote(key)}/master.m3u8?{self._query(key, exp)}"

    def content(self, key: str) -> bytes:
        """The bytes a test should expect for `key`."""
        return self._episodes[key]

    def sign(self, key: str, ttl: float | None = None, *, expires_at: float | None = None) -> str:
        """Valid for at least `ttl` seconds (exp is rounded up to a whole second, so at most ttl + 1)."""
        if expires_at is not None:
            exp = int(expires_at)
        else:
            exp = math.ceil(time.time() + (self.ttl if ttl is None else ttl))
        return self._signed_url(key, exp)

    def issued_exp(self, url: str) -> int | None:
        """The `exp` of a media URL this provider signed (with its current keys), expired or not; else None."""
        parts = urlsplit(url)
        if not url.startswith(self.base_url + "/media/"):
            return None
        query = dict(parse_qsl(parts.query))
        exp_text, sig = query.get("exp", ""), query.get("sig", "")
        if not exp_text.isdigit() or len(exp_text) > 15:
            return None
        key = unquote(parts.path.removeprefix("/media/"))
        expected = self._signature(key, int(exp_text), self._generation)
        return int(exp_text) if hmac.compare_digest(expected, sig) else None

    def expire_all(self) -> None:
        self._generation += 1

    def set_mode(self, key: str, mode: str | None) -> None:
        if mode is None:
            self._modes.pop(key, None)
        elif mode in MODES:
            self._modes[key] = mode
        else:
            raise ValueError(f"unknown mode {mode!r}")

    # --------------------------------------------------------------------------------------------- internals

    def _signature(self, key: str, exp: int, generation: int) -> str:
        message = f"{generation}\n{exp}\n{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _query(self, key: str, exp: int) -> str:
        return f"exp={exp}&sig={self._signature(key, exp, self._generation)}"

    def _signed_url(self, key: str, exp: int) -> str:
        return f"{self.base_url}/media/{quote(key)}?{self._query(key, exp)}"

    def _signature_ok(self, key: str, exp_text: str, sig: str) -> bool:
        if not exp_text.isdigit() or len(exp_text) > 15:
            return False
        exp = int(exp_text)
        if time.time() >= exp:
            return False
        expected = self._signature(key, exp, self._generation)
        return hmac.compare_digest(expected, sig)

    def _rate_limited(self) -> bool:
        if self.rate_limit is None:
            return False
        now = time.monotonic()
        self._arrivals.append(now)
        while self._arrivals and now - self._arrivals[0] > self.rate_window:
            self._arrivals.popleft()
        return len(self._arrivals) > self.rate_limit

    async def _hang(self) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), _HANG_SECONDS)
        except asyncio.TimeoutError:
            pass

    # ---------------------------------------------------------------------------------------------- handlers

    async def _media(self, request: web.Request) -> web.StreamResponse:
        response = await self._media_answer(request)
        if not request.get(_RECORDED):
            self.media_requests.append((request.method, request.path_qs, response.status))
        return response

    async def _media_answer(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if self._rate_limited():
            return web.Response(status=429, headers={"Retry-After": str(self.retry_after)}, text="slow down")
        mode = self._modes.get(key)
        if mode == "legal":
            return web.Response(status=451, text="unavailable for legal reasons")
        if mode == "error":
            return web.Response(status=500, text="upstream exploded")
        if mode == "hang":
            # Recorded now with status 0: the answer never comes while the test is looking.
            self.media_requests.append((request.method, request.path_qs, 0))
            request[_RECORDED] = True
            await self._hang()
            return web.Response(status=503, text="closing")
        if mode == "not_found_page":
            return web.Response(text=_NOT_FOUND_PAGE, content_type="text/html")
        if mode == "error_chain":
            raise web.HTTPFound(location="/chain/2")
        content = self._episodes.get(key)
        if content is None:
            return web.Response(status=404, text="no such file")
        if not self._signature_ok(key, request.query.get("exp", ""), request.query.get("sig", "")):
            return web.Response(status=403, text="link expired or invalid")
        content_type = "text/plain" if mode == "mislabelled" else "video/mp4"
        return self._serve_bytes(request, content, content_type)

    def _serve_bytes(self, request: web.Request, content: bytes, content_type: str = "video/mp4") -> web.Response:
        size = len(content)
        headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
        status = 200
        body = content
        range_header = request.headers.get("Range")
        if range_header:
            match = _RANGE.fullmatch(range_header.strip())
            if match is not None:
                first_text, last_text = match.groups()
                if first_text:
                    first = int(first_text)
                    last = min(int(last_text), size - 1) if last_text else size - 1
                elif last_text:  # suffix range: the last N bytes
                    first = max(size - int(last_text), 0)
                    last = size - 1
                else:
                    first, last = 0, -1
                if first >= size or last < first:
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{size}", "Content-Type": content_type}
                    )
                status = 206
                body = content[first : last + 1]
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            # Multi-range or malformed headers are ignored like many CDNs do: full body, 200.
        # aiohttp sends the headers (with Content-Length) but no body for HEAD.
        return web.Response(status=status, body=body, headers=headers)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        self.resolve_calls.append(payload if isinstance(payload, dict) else {"_raw": raw.decode("utf-8", "replace")})
        if not isinstance(payload, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)

        mode = self.resolve_mode
        if mode == "error":
            return web.json_response({"error": "resolver exploded"}, status=500)
        if mode == "hang":
            await self._hang()
            return web.json_response({"error": "closing"}, status=503)
        if mode == "bad_url":
            return web.json_response({"url": "ftp://x"})
        if mode == "not_json":
            return web.Response(text="<html>definitely not json</html>", content_type="text/plain")

        key = f"{payload.get('slug')}/{payload.get('season')}/{payload.get('episode')}"
        if key not in self._episodes:
            return web.json_response({"error": "not found"}, status=404)
        exp = math.ceil(time.time() + self.ttl)
        answer = {"url": self._signed_url(key, exp), "provider": "fake", "expires_at": from_epoch(exp)}
        if mode == "huge":
            # Valid JSON with a usable URL: only a resolver that caps response size rejects it.
            answer["padding"] = "x" * _HUGE_BYTES
        return web.json_response(answer)

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self.redirect_calls += 1
        key = request.match_info["key"]
        if key not in self._episodes:
            return web.Response(status=404, text="no such file")
        raise web.HTTPFound(location=self.sign(key))

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self.page_calls += 1
        key = request.match_info["key"]
        if key not in self._episodes:
            return web.Response(status=404, text="no such page")
        src = html.escape(self.sign(key), quote=True)
        title = html.escape(key)
        page = (
            "<!DOCTYPE html>\n<html><head>"
            f"<title>{title}</title>"
            f'<meta property="og:video" content="{src}">'
            '<meta property="og:video:type" content="video/mp4">'
            "</head><body>"
            f'<video controls src="{src}"></video>'
            "</body></html>\n"
        )
        return web.Response(text=page, content_type="text/html")

    async def _chain(self, request: web.Request) -> web.StreamResponse:
        """A redirect chain that ends on a 200 HTML error page, as hosters answer a removed file."""
        hops = int(request.match_info["hops"][:3])
        raise web.HTTPFound(location=f"/chain/{hops - 1}" if hops > 1 else "/gone")

    async def _gone(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=_NOT_FOUND_PAGE, content_type="text/html")

    def _hls_gate(self, request: web.Request) -> web.Response | None:
        key = request.match_info["key"]
        self.hls_requests.append((request.method, request.path))
        if key not in self._hls:
            return web.Response(status=404, text="no such stream")
        if not self._signature_ok(key, request.query.get("exp", ""), request.query.get("sig", "")):
            return web.Response(status=403, text="link expired or invalid")
        return None

    async def _hls_master(self, request: web.Request) -> web.StreamResponse:
        refused = self._hls_gate(request)
        if refused is not None:
            return refused
        query = request.query_string
        text = (
            "#EXTM3U\n#EXT-X-VERSION:3\n"
            '#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n'
            f"v0/index.m3u8?{query}\n"
        )
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    async def _hls_variant(self, request: web.Request) -> web.StreamResponse:
        refused = self._hls_gate(request)
        if refused is not None:
            return refused
        query = request.query_string
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:6", "#EXT-X-MEDIA-SEQUENCE:0"]
        for index in range(SEGMENTS):
            lines += ["#EXTINF:6.000,", f"seg{index}.ts?{query}"]
        lines.append("#EXT-X-ENDLIST")
        return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")

    async def _hls_segment(self, request: web.Request) -> web.StreamResponse:
        refused = self._hls_gate(request)
        if refused is not None:
            return refused
        key = request.match_info["key"]
        if self._modes.get(key) == "dead_segments":
            return web.Response(status=404, text="segment gone")
        return self._serve_bytes(request, ts_segment(key, int(request.match_info["index"][:6])), "video/mp2t")

    async def _open_redirect(self, request: web.Request) -> web.StreamResponse:
        """`?to=<url>`: the open redirect many hosters have, which a hostile answer uses to point anywhere."""
        raise web.HTTPFound(location=request.query.get("to", "/gone"))
