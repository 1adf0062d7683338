"""`GET`/`HEAD /play/{id}?sig=…`: the stable link a `.strm` can hold forever, answered by redirect or proxy.

`/play/{id}` stands for the mapping's current URL. HLS parts (variant playlists, segments, keys) are reached
through `/play/{id}/r/{name}?u=&c=&sig=`: `u` is the upstream URL the playlist named, `c` the paths of the
playlists between the mapping's URL and it, both signed. When `u` has died, `c` is walked again from the
mapping's current (re-resolved) URL to find the same part under a fresh token, so a part link lives as long
as the stream, not as long as the token that was in the playlist when it was rewritten.
"""
from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp import web

from bridge.config import PlayConfig
from bridge.errors import ApiError
from bridge.mappings import Mapping, MappingStore
from bridge.play import hls
from bridge.play.locate import EXPIRY_SLACK_SECONDS, Locator, PlayUnavailable, Upstream, needs_proxy, upstream_of
from bridge.play.proxy import Relay, UpstreamFailed
from bridge.play.signing import PlaySigner, play_link_id
from bridge.probe import predict_expiry
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.refresh import RefreshPipeline

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
"""u and c together stay under the 8190-byte request line aiohttp accepts."""
PLAYLIST_CACHE_ENTRIES = 512
NO_STORE = {"Cache-Control": "no-store"}
"""Players must come back to the bridge for every new request (ffmpeg caches a redirect that allows it)."""


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(403, "forbidden", "malformed part reference") from None


class PlayService:
    def __init__(self, config: PlayConfig, store: MappingStore, pipeline: "RefreshPipeline", secret: str) -> None:
        self.config = config
        self.signer = PlaySigner(secret, config.old_secrets)
        self.locator = Locator(store, pipeline)
        self.stats: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._playlists: OrderedDict[str, list[str]] = OrderedDict()

    # ---- lifecycle -----------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # the refresh pipeline's egress guard: a stream is never fetched from the bridge's own listener
            self._session = self.locator.pipeline.egress.session(
                connector_args={"limit": 512, "ttl_dns_cache": 300},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
                auto_decompress=False,
                read_bufsize=1024 * 1024,  # fewer, larger hand-offs between the two sockets
                headers={"User-Agent": "strm-bridge"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", r"/play/{id:[0-9]{1,18}}", self.handle_play)
        app.router.add_route("HEAD", r"/play/{id:[0-9]{1,18}}", self.handle_play)
        app.router.add_route("GET", r"/play/{id:[0-9]{1,18}}/r/{name:[^/]{1,80}}", self.handle_part)
        app.router.add_route("HEAD", r"/play/{id:[0-9]{1,18}}/r/{name:[^/]{1,80}}", self.handle_part)

    # ---- decisions -----------------------------------------------------------------------------------
    def mode_for(self, mapping: Mapping) -> str:
        if self.config.mode == "auto":
            return "proxy" if needs_proxy(mapping) else "redirect"
        return self.config.mode

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _mapping(self, request: web.Request, sig_ok: Any) -> tuple[int, Mapping]:
        mapping_id = int(request.match_info["id"])
        if not sig_ok(mapping_id):
            self._count("forbidden")
            raise ApiError(403, "forbidden", "missing or wrong signature for this link")
        mapping = self.locator.get(mapping_id)
        if mapping is None:
            raise ApiError(404, "not_found", f"no mapping {mapping_id}")
        return mapping_id, mapping

    # ---- /play/{id} ----------------------------------------------------------------------------------
    async def handle_play(self, request: web.Request) -> web.StreamResponse:
        mapping_id, mapping = self._mapping(request, lambda i: self.signer.verify(i, request.query.get("sig")))
        self._count("plays")
        try:
            margin = self.config.margin_seconds if self.config.mode != "proxy" else 0.0
            mapping = await self.locator.current(mapping, margin)
            mode = self.mode_for(mapping)
            self._count(f"plays_{mode}")
            url = mapping["resolved_url"]
            if mode == "redirect" and not hls.looks_like_playlist(url, None):
                return web.Response(status=302, headers={"Location": url, **NO_STORE})
            state = {"mapping": mapping}

            async def locate(force: bool, why: str) -> Upstream:
                if force:
                    state["mapping"] = await self.locator.after_failure(state["mapping"],
                                                                        state["mapping"]["resolved_url"], why)
                return upstream_of(state["mapping"])

            def rewrite(text: str, playlist_url: str) -> str:
                return hls.rewrite(text, playlist_url, lambda abs_url: self._part_link(mapping_id, [], abs_url, top=True))

            return await Relay(self.session, request, locate, rewrite, self.stats).serve()
        except PlayUnavailable as exc:
            raise ApiError(exc.status, exc.error, exc.detail) from None

    # ---- /play/{id}/r/{name} -------------------------------------------------------------------------
    def _part_link(self, mapping_id: int, chain: list[str], abs_url: str, *, top: bool) -> str:
        if play_link_id(abs_url) is not None:
            return abs_url  # a playlist naming a bridge link: never proxied through ourselves
        u, c = _b64(abs_url), _b64("\n".join(chain))
        sig = self.signer.sign_part(mapping_id, u, c)
        prefix = f"{mapping_id}/r/" if top else ""
        return f"{prefix}{hls.part_name(abs_url)}?u={u}&c={c}&sig={sig}"

    async def handle_part(self, request: web.Request) -> web.StreamResponse:
        u_raw, c_raw = request.query.get("u", ""), request.query.get("c", "")
        if len(u_raw) > MAX_PARAM_CHARS or len(c_raw) > MAX_PARAM_CHARS:
            raise ApiError(403, "forbidden", "part reference too long")
        mapping_id, mapping = self._mapping(
            request, lambda i: self.signer.verify_part(i, u_raw, c_raw, request.query.get("sig")))
        part_url = _unb64(u_raw)
        chain = [p for p in _unb64(c_raw).split("\n") if p] if c_raw else []
        if not part_url.startswith(("http://", "https://")):
            raise ApiError(403, "forbidden", "part reference is not an http(s) URL")
        self._count("parts")
        state: dict[str, Any] = {"mapping": mapping, "url": part_url}

        async def locate(force: bool, why: str) -> Upstream:
            url = state["url"]
            if force or _expired(url):
                state["mapping"], state["url"] = await self._find_again(state["mapping"], chain, hls.path_of(part_url),
                                                                        failed=url if force else None, why=why)
            return Upstream(state["url"], upstream_of(state["mapping"]).headers)

        def rewrite(text: str, playlist_url: str) -> str:
            below = [*chain, hls.path_of(part_url)]
            return hls.rewrite(text, playlist_url, lambda abs_url: self._part_link(mapping_id, below, abs_url, top=False))

        try:
            mode = self.mode_for(mapping)
            if mode == "redirect" and not hls.looks_like_playlist(part_url, None):
                target = await locate(False, "")
                return web.Response(status=302, headers={"Location": target.url, **NO_STORE})
            return await Relay(self.session, request, locate, rewrite, self.stats).serve()
        except PlayUnavailable as exc:
            raise ApiError(exc.status, exc.error, exc.detail) from None

    # ---- finding a part again under a fresh token ---------------------------------------------------
    async def _find_again(self, mapping: Mapping, chain: list[str], target_path: str, *, failed: str | None,
                          why: str) -> tuple[Mapping, str]:
        """Walk master → … → part from the mapping's current URL; re-resolve the mapping once if that is stale."""
        self._count("parts_found_again")
        mapping = await self.locator.current(mapping, 0.0)
        for attempt in range(2):
            try:
                found = await self._walk(mapping, chain, target_path)
            except UpstreamFailed as exc:
                found, why = None, f"re-reading the playlist: {exc.detail}"
            if found is not None and (failed is None or found != failed or attempt == 1):
                return mapping, found
            if attempt == 0:  # the playlists still hand out the dead token, or cannot be read: re-resolve
                mapping = await self.locator.after_failure(mapping, mapping["resolved_url"], why or "part expired")
        raise PlayUnavailable(502, "part_not_found", "the part is no longer listed in the stream's playlists")

    async def _walk(self, mapping: Mapping, chain: list[str], target_path: str) -> str | None:
        upstream = upstream_of(mapping)
        current = upstream.url
        for hop in [*chain, target_path]:
            found = hls.find_again(await self._entries(current, upstream.headers), hop)
            if found is None:
                found = hls.find_again(await self._entries(current, upstream.headers, cached=False), hop)
            if found is None:
                return None
            current = found
        return current

    async def _entries(self, url: str, headers: dict[str, str], cached: bool = True) -> list[str]:
        if cached and url in self._playlists:
            self._playlists.move_to_end(url)
            return self._playlists[url]
        try:
            async with self.session.get(url, headers={**headers, "Accept-Encoding": "identity"}) as response:
                if response.status != 200:
                    raise UpstreamFailed(f"playlist answered {response.status}", response.status)
                body = await response.content.read(hls.MAX_PLAYLIST_BYTES + 1)
                final = str(response.url)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UpstreamFailed(f"playlist fetch failed: {type(exc).__name__}") from None
        if len(body) > hls.MAX_PLAYLIST_BYTES or not hls.is_playlist_text(body):
            raise UpstreamFailed("not an HLS playlist")
        found = hls.entries(body.decode("utf-8", "replace"), final)
        self._playlists[url] = found
        while len(self._playlists) > PLAYLIST_CACHE_ENTRIES:
            self._playlists.popitem(last=False)
        return found


def _expired(url: str) -> bool:
    moment = predict_expiry(url)
    return moment is not None and moment - time.time() <= EXPIRY_SLACK_SECONDS
