"""Streaming an upstream through the bridge: Range passed on, nothing buffered but playlists, one retry.

A failure before the first byte (403/404/410/5xx, a refused connection, a timeout) gets one re-resolve and
one retry; a body that breaks off in the middle is resumed with a Range request from the byte where it
stopped, re-resolving once if the same URL no longer answers. Only then does the player see an error.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from bridge.play.hls import MAX_PLAYLIST_BYTES, is_playlist_text, looks_like_playlist
from bridge.play.locate import PlayUnavailable, Upstream
from bridge.play.splice import can_splice, splice_body
from bridge.probe import classify_status
from bridge.redact import redact_url

log = logging.getLogger(__name__)

FORWARD_REQUEST = ("Range", "If-Range", "Accept", "Accept-Language", "User-Agent")
RELAY_RESPONSE = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Last-Modified", "ETag",
                  "Content-Encoding", "Content-Disposition")
RETRY_STATUSES = ("dead", "forbidden", "server_error", "legal")
"""Upstream answers worth one re-resolve (a 429 is not: a new URL from the same provider is refused too)."""
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
_SINGLE_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)$")


class _BrokeOff(Exception):
    """The body cannot be completed; the player's connection is closed so it sees a broken transfer."""


class UpstreamFailed(Exception):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


Locate = Callable[[bool, str], Awaitable[Upstream]]
"""locate(force, why): the upstream to use; force=True after a failure (re-resolve / re-read the playlist)."""
Rewrite = Callable[[str, str], str]
"""rewrite(playlist text, its upstream URL) -> the playlist the player gets."""


@dataclass
class Relay:
    session: aiohttp.ClientSession
    request: web.Request
    locate: Locate
    rewrite: Rewrite
    stats: dict[str, int]

    def _headers(self, upstream: Upstream, range_header: str | None) -> dict[str, str]:
        headers = {name: self.request.headers[name] for name in FORWARD_REQUEST if name in self.request.headers}
        headers.pop("Range", None)
        if range_header:
            headers["Range"] = range_header
        headers["Accept-Encoding"] = "identity"  # bytes pass through untouched, ranges mean what they say
        lowered = {k.lower(): k for k in headers}
        for name, value in upstream.headers.items():  # the resolver's Referer/User-Agent/Cookie win
            headers.pop(lowered.get(name.lower(), name), None)
            headers[name] = value
        return headers

    async def _open(self, upstream: Upstream, method: str, range_header: str | None) -> aiohttp.ClientResponse:
        try:
            response = await self.session.request(method, upstream.url, headers=self._headers(upstream, range_header),
                                                  allow_redirects=True)
        except asyncio.TimeoutError:
            raise UpstreamFailed("timeout") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise UpstreamFailed(f"connection error: {type(exc).__name__}") from None
        if classify_status(response.status) in RETRY_STATUSES:
            response.release()
            raise UpstreamFailed(f"upstream answered {response.status}", response.status)
        return response

    async def _open_with_retry(self, method: str, range_header: str | None) -> tuple[Upstream, aiohttp.ClientResponse]:
        upstream = await self.locate(False, "")
        try:
            return upstream, await self._open(upstream, method, range_header)
        except UpstreamFailed as first:
            log.info("play: %s from %s; re-resolving once", first.detail, redact_url(upstream.url))
            self.stats["retries"] = self.stats.get("retries", 0) + 1
            upstream = await self.locate(True, first.detail)
            try:
                return upstream, await self._open(upstream, method, range_header)
            except UpstreamFailed as second:
                raise PlayUnavailable(504 if second.detail == "timeout" else 502, "upstream_failed",
                                      f"upstream failed twice: {first.detail}; then {second.detail}") from None

    async def serve(self) -> web.StreamResponse:
        method = "HEAD" if self.request.method == "HEAD" else "GET"
        range_header = self.request.headers.get("Range")
        upstream, response = await self._open_with_retry(method, range_header)
        try:
            if response.status == 200 and looks_like_playlist(str(response.url), response.headers.get("Content-Type")):
                if method == "HEAD":  # the rewritten playlist has another length: answer from a real read
                    response.release()
                    upstream, response = await self._open_with_retry("GET", None)
                return await self._playlist(upstream, response)
            return await self._stream(upstream, response, range_header)
        finally:
            response.release()

    async def _playlist(self, upstream: Upstream, response: aiohttp.ClientResponse) -> web.StreamResponse:
        body = await response.content.read(MAX_PLAYLIST_BYTES + 1)
        if len(body) > MAX_PLAYLIST_BYTES or not is_playlist_text(body):
            raise PlayUnavailable(502, "bad_playlist", "upstream playlist is too large or not an HLS playlist")
        text = self.rewrite(body.decode("utf-8", "replace"), str(response.url))
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "no-store"})

    async def _stream(self, upstream: Upstream, response: aiohttp.ClientResponse,
                      range_header: str | None) -> web.StreamResponse:
        out = web.StreamResponse(status=response.status)
        for name in RELAY_RESPONSE:
            if name in response.headers:
                out.headers[name] = response.headers[name]
        out.headers["Cache-Control"] = "no-store"
        await out.prepare(self.request)
        if self.request.method == "HEAD":
            return out
        span = _span(response)
        sent = 0
        resumed = False
        try:
            while True:
                try:
                    if can_splice(self.request, response, out):
                        assert response.content_length is not None
                        done = await splice_body(self.request, response, out, response.content_length,
                                                 self.session.timeout.sock_read or 60.0)
                        sent += done.moved
                        self.stats["spliced_bytes"] = self.stats.get("spliced_bytes", 0) + done.moved
                        if not done.complete:
                            raise aiohttp.ClientPayloadError("upstream body ended early")
                    else:
                        while True:
                            data = await response.content.readany()
                            if not data:
                                break
                            await out.write(data)
                            sent += len(data)
                    if span is not None and sent < span[1] - span[0] + 1:
                        raise aiohttp.ClientPayloadError("upstream body ended early")
                    break
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.TimeoutError,
                        aiohttp.ClientOSError) as exc:
                    if span is None or resumed:
                        raise _BrokeOff(f"upstream broke off after {sent} bytes ({type(exc).__name__})") from None
                    resumed = True
                    self.stats["resumes"] = self.stats.get("resumes", 0) + 1
                    response.release()
                    first, last = span[0] + sent, span[1]
                    upstream, response = await self._resume(upstream, f"bytes={first}-{last}", first,
                                                            type(exc).__name__)
            await out.write_eof()
        except _BrokeOff as exc:
            log.warning("play: %s; closing the player's connection", exc)
            if self.request.transport is not None:
                self.request.transport.close()  # a short body must look broken to the player, not complete
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the player went away (seek, stop): nothing to finish
        finally:
            response.release()
        return out

    async def _resume(self, upstream: Upstream, range_header: str, first: int,
                      why: str) -> tuple[Upstream, aiohttp.ClientResponse]:
        """Reopen at byte `first`: the same URL, else one re-resolve. The answer must start exactly there."""
        try:
            response = await self._open(upstream, "GET", range_header)
        except UpstreamFailed as failed:
            try:
                upstream = await self.locate(True, f"{why} mid-stream, then {failed.detail}")
                response = await self._open(upstream, "GET", range_header)
            except (UpstreamFailed, PlayUnavailable) as again:
                raise _BrokeOff(f"upstream could not be resumed: {again}") from None
        span = _span(response)
        if response.status != 206 or span is None or span[0] != first:
            response.release()
            raise _BrokeOff("upstream did not resume at the right byte")
        return upstream, response


def _span(response: aiohttp.ClientResponse) -> tuple[int, int] | None:
    """First and last byte of the resource this response carries, when the body can be resumed by Range."""
    content_range = response.headers.get("Content-Range")
    if response.status == 206 and content_range:
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        return (int(match.group(1)), int(match.group(2))) if match else None
    length = response.headers.get("Content-Length")
    if response.status == 200 and length and length.isdigit() and response.headers.get("Accept-Ranges") == "bytes":
        return 0, int(length) - 1
    return None
