"""A fake AniBridge proxy-mode server: `/strm/stream` stable links that stream an upstream CDN (a FakeProvider).

Behaviour rebuilt from Zzackllack/AniBridge @a15ae93 (`apps/api/app/api/strm.py`, `core/strm_proxy/auth.py`,
`core/strm_proxy/urls.py`), not imagined:
- the link is `<base>/strm/stream?` + the identity sorted by key (`e, lang, provider?, s, site, slug`) plus
  `sig` = HMAC-SHA256 hex of the sorted, urlencoded identity under the secret (STRM_PROXY_AUTH=token, no
  expiry), or `apikey=<secret>` (apikey), or nothing (none); a wrong or missing one is 401 `{"detail": ...}`;
- missing slug / lang / season-episode is 400 `{"detail": "missing slug"}` etc.; `site` defaults to aniworld.to;
- a request resolves the identity (its memory cache first), opens the upstream with the player's Range and
  User-Agent, and on a 403/404/410/451/429 answer or a request error, on the first attempt only, drops the
  cache entry, resolves again and retries once; the second answer's status goes to the player, a failed
  second request is 502 "upstream request failed", a failed resolution 502 "upstream resolution failed";
- upstream 5xx is passed on without a refresh; it never redirects: 200/206 with the bytes (HEAD: no body,
  filtered headers, content type defaulting to application/octet-stream).
Test knobs: `resolve_mode` ("fail" → resolution error, "hang" → no answer), `upstream` (identity → key map).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.loopback import serve
from tests.fakes.provider import FakeProvider

REFRESH_STATUSES = frozenset({403, 404, 410, 451, 429})
ALLOWED_HEADERS = ("content-type", "content-length", "content-range", "accept-ranges", "etag", "last-modified")
_HANG_SECONDS = 3600.0


def sign(params: dict[str, str], secret: str) -> str:
    return hmac.new(secret.encode(), urlencode(sorted(params.items())).encode(), hashlib.sha256).hexdigest()


class FakeAniBridge:
    def __init__(self, provider: FakeProvider, *, auth: str = "token", secret: str = "anibridge-secret-0123") -> None:
        self.provider = provider
        self.auth = auth
        self.secret = secret
        self.base_url = ""
        self.port = 0
        self.resolve_mode: str | None = None
        self.requests: list[tuple[str, str, int]] = []
        """(method, query, status) of every answered /strm/stream request, in order."""
        self.arrivals = 0
        """Requests received, counted as they arrive (a hanging one is answered, and recorded, only later)."""
        self.resolutions: Counter[str] = Counter()
        self._cache: dict[str, str] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("GET", "/strm/stream", self._stream)
        app.router.add_route("HEAD", "/strm/stream", self._stream)
        self._closing.clear()
        self._runner, self.port = await serve(app, port or self.port)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Take the server down (the port stays reserved in `port` so `start()` brings it back at the same URL)."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "FakeAniBridge":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- what AniBridge writes into a .strm ----------------------------------------------------------
    def stable_link(self, slug: str, season: int, episode: int, *, site: str = "aniworld.to",
                    language: str = "German Dub", provider: str | None = None) -> str:
        params = {"site": site, "slug": slug, "s": str(season), "e": str(episode), "lang": language}
        if provider:
            params["provider"] = provider
        if self.auth == "token":
            params["sig"] = sign(params, self.secret)
        elif self.auth == "apikey":
            params["apikey"] = self.secret
        return f"{self.base_url}/strm/stream?{urlencode(sorted(params.items()))}"

    @staticmethod
    def key_of(slug: str, season: int, episode: int) -> str:
        """The FakeProvider key AniBridge's resolver finds for an identity."""
        return f"{slug}/{season}/{episode}"

    # ---- the endpoint --------------------------------------------------------------------------------
    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.arrivals += 1
        response = await self._answer(request)
        self.requests.append((request.method, request.query_string, response.status))
        return response

    def _check_auth(self, params: dict[str, str]) -> None:
        if self.auth == "apikey" and params.get("apikey") != self.secret:
            raise _Http(401, "invalid apikey")
        if self.auth == "token":
            sig = params.get("sig")
            if not sig:
                raise _Http(401, "missing signature")
            payload = {k: v for k, v in params.items() if k != "sig"}
            if not hmac.compare_digest(sig, sign(payload, self.secret)):
                raise _Http(401, "invalid signature")

    @staticmethod
    def _identity(params: dict[str, str]) -> tuple[str, str, int, int, str, str]:
        slug = params.get("slug", "").strip()
        if not slug:
            raise _Http(400, "missing slug")
        lang = (params.get("lang") or params.get("language") or "").strip()
        if not lang:
            raise _Http(400, "missing lang")
        s_raw, e_raw = params.get("s") or params.get("season"), params.get("e") or params.get("episode")
        if s_raw is None or e_raw is None:
            raise _Http(400, "missing season/episode")
        try:
            season, episode = int(s_raw), int(e_raw)
        except ValueError:
            raise _Http(400, "invalid season/episode") from None
        return (params.get("site") or "aniworld.to").strip(), slug, season, episode, lang, params.get("provider", "")

    async def _resolve(self, identity: tuple[str, str, int, int, str, str], force: bool) -> str:
        cache_key = "|".join(map(str, identity))
        if not force and cache_key in self._cache:
            return self._cache[cache_key]
        if self.resolve_mode == "hang":
            try:
                await asyncio.wait_for(self._closing.wait(), _HANG_SECONDS)
            except asyncio.TimeoutError:
                pass
            raise _Http(502, "upstream resolution failed")
        if self.resolve_mode == "fail":
            raise _Http(502, "upstream resolution failed")
        _site, slug, season, episode, _lang, _provider = identity
        self.resolutions[cache_key] += 1
        url = self.provider.sign(self.key_of(slug, season, episode))
        self._cache[cache_key] = url
        return url

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        try:
            self._check_auth(params)
            identity = self._identity(params)
            headers = {k: request.headers[k] for k in ("Range", "User-Agent") if k in request.headers}
            upstream, body = await self._fetch_with_refresh(identity, request.method, headers)
        except _Http as exc:
            return web.json_response({"detail": exc.detail}, status=exc.status)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() in ALLOWED_HEADERS}
        kept.setdefault("Content-Type", "application/octet-stream")
        if request.method == "HEAD":
            kept.pop("Content-Length", None)
            return web.Response(status=upstream.status, headers=kept)
        kept.pop("Content-Length", None)
        return web.Response(status=upstream.status, body=body, headers=kept)

    async def _fetch_with_refresh(self, identity: Any, method: str,
                                  headers: dict[str, str]) -> tuple[aiohttp.ClientResponse, bytes]:
        assert self._session is not None
        force = False
        for attempt in range(2):
            url = await self._resolve(identity, force)
            try:
                async with self._session.request(method, url, headers=headers, allow_redirects=True) as upstream:
                    body = await upstream.read() if method != "HEAD" else b""
            except aiohttp.ClientError:
                if attempt == 0:
                    self._cache.pop("|".join(map(str, identity)), None)
                    force = True
                    continue
                raise _Http(502, "upstream request failed") from None
            if upstream.status in REFRESH_STATUSES and attempt == 0:
                self._cache.pop("|".join(map(str, identity)), None)
                force = True
                continue
            return upstream, body
        raise _Http(502, "upstream request failed")


class _Http(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
