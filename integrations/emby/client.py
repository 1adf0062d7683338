"""The one Emby call strm-bridge needs: refresh an item so Emby re-reads the .strm it points at.

Emby shares Jellyfin's refresh endpoint. `replaceAllMetadata=false` is deliberate: `true` wipes the user's
metadata edits. The token goes in the `X-Emby-Token` header, never in a logged URL.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

REFRESH_QUERY = {
    "metadataRefreshMode": "FullRefresh",
    "imageRefreshMode": "None",
    "replaceAllMetadata": "false",
    "replaceAllImages": "false",
}


class EmbyError(Exception):
    """Base of this client's errors; messages never contain the API key."""


class EmbyAuthError(EmbyError):
    """401/403: the api_key is wrong (a configuration error)."""


class EmbyUnavailable(EmbyError):
    """Emby is down, slow or answering 5xx."""


class EmbyNotFound(EmbyError):
    """The item does not exist (any more)."""


class EmbyRequestError(EmbyError):
    """Emby refused the request itself (other 4xx)."""


class EmbyClient:
    def __init__(self, url: str, api_key: str, timeout: float = 10.0, *, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._auth_reported = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._owns_session = True
        return self._session

    async def refresh_item(self, item_id: str) -> None:
        """`POST /Items/{id}/Refresh?...` (Emby answers 204 and refreshes in the background)."""
        url = f"{self.url}/Items/{quote(str(item_id), safe='')}/Refresh"
        what = f"refreshing Emby item {item_id}"
        try:
            async with self._get_session().post(
                url, params=REFRESH_QUERY, headers={"X-Emby-Token": self._api_key}, timeout=self.timeout
            ) as response:
                status = response.status
                body = (await response.text(errors="replace"))[:200] if status >= 300 else ""
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise EmbyUnavailable(f"{what}: Emby at {self.url} is unreachable ({type(exc).__name__})") from None
        if status < 300:
            self._auth_reported = False
            return
        message = f"{what}: HTTP {status} {body}".strip()
        if status in (401, 403):
            if not self._auth_reported:
                log.error("Emby at %s rejected the API key (%d): check emby.api_key", self.url, status)
                self._auth_reported = True
            raise EmbyAuthError(message)
        if status == 404:
            raise EmbyNotFound(message)
        if status >= 500 or status in (408, 429):
            raise EmbyUnavailable(message)
        raise EmbyRequestError(message)

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
