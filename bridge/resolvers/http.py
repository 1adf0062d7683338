"""The `http` resolver: ask a user's own service for a fresh URL.

This is the escape hatch for sites we do not know: anything that can answer one POST can heal links.
Protocol (also in DESIGN.md): POST JSON {site, slug, season, episode, language, provider, source_url,
strm_path, previous_url, reason} → 200 {"url", "headers"?, "provider"?, "expires_at"?}; 404 means the
episode does not exist there; anything else, or no answer in time, is a resolver failure.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bridge.resolvers._common import MIB, Options, client_session, parse_json_answer, redact_url, request_fields
from bridge.resolvers.base import EpisodeNotFound, Resolved, ResolverContext, ResolveRequest, ResolverError

OPTIONS = ("url", "headers", "timeout_seconds", "max_response_bytes")


class HttpResolver:
    name: str

    def __init__(self, options: dict[str, Any], context: ResolverContext | None = None, name: str = "http") -> None:
        opts = Options(name, options, OPTIONS)
        self.name = name
        self.url: str = opts.http_url("url")
        self.headers = opts.string_dict("headers")
        self.timeout = opts.number("timeout_seconds", 10.0)
        self.max_bytes = opts.integer("max_response_bytes", MIB, minimum=1)
        self.user_agent = (context or ResolverContext()).user_agent
        self.egress = (context or ResolverContext()).egress
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Created on first use because a ClientSession must be born inside the running loop."""
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json", **self.headers}
            self._session = client_session(self.egress, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def resolve(self, request: ResolveRequest) -> Resolved:
        where = f"{self.name}: {redact_url(self.url)}"
        try:
            async with self._client().post(self.url, json=request_fields(request), allow_redirects=False) as resp:
                if resp.status == 404:
                    raise EpisodeNotFound(f"{where} does not know this episode (404)")
                body = await self._read_capped(resp, where)
                if resp.status != 200:
                    snippet = body[:200].decode("utf-8", "replace").strip()
                    raise ResolverError(f"{where} answered {resp.status}" + (f": {snippet}" if snippet else ""))
        except asyncio.TimeoutError:
            raise ResolverError(f"{where}: no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ResolverError(f"{where}: {type(exc).__name__}: {exc}") from None
        return parse_json_answer(body, self.name, where)

    async def _read_capped(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        """Never buffer more than `max_response_bytes`: a broken helper must not eat our memory."""
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise ResolverError(f"{where}: answer of {resp.content_length} bytes exceeds {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await resp.content.read(64 * 1024)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise ResolverError(f"{where}: answer exceeds {self.max_bytes} bytes")
            chunks.append(chunk)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
