"""The `redirect` resolver: turn a stable indirection link into the URL it currently redirects to.

Alist/OpenList `/d/` links, AniBridge `/strm/stream?...` links and zurg links stay valid while the file
behind them moves to fresh signed CDN URLs. Writing the current target into the .strm skips the hop on
every play; when it expires, following the source again heals it. Redirects are followed by hand with HEAD
(a ranged GET where HEAD is refused) so no media is downloaded and every hop is counted.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from bridge.resolvers._common import Options, client_session, is_http_url, redact_url, source_url_of
from bridge.resolvers.base import EpisodeNotFound, Resolved, ResolverContext, ResolveRequest, ResolverError

OPTIONS = ("timeout_seconds", "headers", "max_redirects")
REDIRECTS = (301, 302, 303, 307, 308)
HEAD_REFUSED = (405, 501)


class RedirectResolver:
    name: str

    def __init__(self, options: dict[str, Any], context: ResolverContext | None = None, name: str = "redirect") -> None:
        opts = Options(name, options, OPTIONS)
        self.name = name
        self.timeout = opts.number("timeout_seconds", 10.0)
        self.headers = opts.string_dict("headers")
        self.max_redirects = opts.integer("max_redirects", 10, minimum=0)
        self.user_agent = (context or ResolverContext()).user_agent
        self.egress = (context or ResolverContext()).egress
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = client_session(
                self.egress,
                headers={"User-Agent": self.user_agent, **self.headers},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def resolve(self, request: ResolveRequest) -> Resolved:
        source = source_url_of(request, self.name, "to follow")
        try:
            url = await asyncio.wait_for(self._follow(source), self.timeout)
        except asyncio.TimeoutError:
            raise ResolverError(f"{self.name}: {redact_url(source)} did not answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ResolverError(f"{self.name}: {redact_url(source)}: {type(exc).__name__}: {exc}") from None
        return Resolved(url=url, resolver=self.name)

    async def _follow(self, source: str) -> str:
        url = source
        use_get = False
        hops = 0
        while True:
            status, location = await self._ask(url, use_get)
            if not use_get and (status in HEAD_REFUSED or (status == 403 and hops > 0)):
                # HEAD refused; S3-style presigned targets also answer 403 to HEAD because the signature covers GET.
                use_get = True
                status, location = await self._ask(url, use_get)
            if status in REDIRECTS and location:
                hops += 1
                if hops > self.max_redirects:
                    raise ResolverError(f"{self.name}: {redact_url(source)}: more than {self.max_redirects} redirects")
                url = urljoin(url, location)
                if not is_http_url(url):
                    raise ResolverError(f"{self.name}: redirect to a non-http URL {redact_url(url)!r}")
                continue
            if 200 <= status < 300:
                return url
            if status in (404, 410) and hops == 0:
                raise EpisodeNotFound(f"{self.name}: {redact_url(source)} answered {status}")
            where = redact_url(source) if hops == 0 else f"{redact_url(url)} (after {hops} redirects)"
            raise ResolverError(f"{self.name}: {where} answered {status}")

    async def _ask(self, url: str, use_get: bool) -> tuple[int, str | None]:
        """One hop. A GET is closed unread so a server ignoring Range cannot stream a whole file to us."""
        method = "GET" if use_get else "HEAD"
        headers = {"Range": "bytes=0-0"} if use_get else {}
        # encoded=True: a signed query must reach the server byte for byte, not re-quoted by yarl.
        resp = await self._client().request(method, URL(url, encoded=True), headers=headers, allow_redirects=False)
        try:
            return resp.status, resp.headers.get("Location")
        finally:
            if use_get:
                resp.close()
            else:
                resp.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
