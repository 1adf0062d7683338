"""The few Jellyfin calls the bridge needs, through jellyfin-apiclient-python, off the event loop.

The library is synchronous (requests), so its calls run in `asyncio.to_thread`; the item refresh, the one call
on a heal's critical path, is sent with aiohttp and the library's own headers instead. Three of its habits are
worked around here rather than patched:
- it swallows HTTP 500 (returns None, just like a 204), so each call uses its own `requests.Session` with a
  response hook and the status is read from what actually came back;
- its retry loop pops the method on the first attempt, so a retried POST goes out as a GET: its retries
  are off (`retry: 0`) and this module retries connection failures itself;
- its `refresh_item` defaults to `ReplaceAllMetadata=True`, which wipes user metadata: the refresh request
  is built by hand with the exact, non-destructive parameters.
Auth stays the library's: `authenticate()` with the API key, then its `Authorization: MediaBrowser
Token="..."` header on every request.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp
import requests
from jellyfin_apiclient_python import JellyfinClient as _LibClient
from jellyfin_apiclient_python.connection_manager import CONNECTION_STATE
from jellyfin_apiclient_python.exceptions import HTTPException

from integrations.jellyfin.webhook import normalize_guid

log = logging.getLogger(__name__)
T = TypeVar("T")

APP_NAME = "strm-bridge"
APP_VERSION = "0.1.0"
# The exact refresh that re-reads a .strm without touching the user's metadata (research §3).
REFRESH_PARAMS: dict[str, str] = {
    "metadataRefreshMode": "FullRefresh",
    "imageRefreshMode": "None",
    "replaceAllMetadata": "false",
    "replaceAllImages": "false",
}
_LIBRARY_LOGGERS = (
    "Jellyfin",
    "Jellyfin.jellyfin_apiclient_python.http",
    "Jellyfin.jellyfin_apiclient_python.timesync_manager",
    "JELLYFIN.jellyfin_apiclient_python.api",
    "JELLYFIN.jellyfin_apiclient_python.client",
    "JELLYFIN.jellyfin_apiclient_python.configuration",
    "JELLYFIN.jellyfin_apiclient_python.connection_manager",
    "JELLYFIN.jellyfin_apiclient_python.credentials",
)


class JellyfinError(Exception):
    """Jellyfin answered in a way the bridge cannot use."""


class JellyfinAuthError(JellyfinError):
    """The API key was refused (401/403): a configuration error, not worth retrying quickly."""


class JellyfinUnavailable(JellyfinError):
    """No answer, a timeout or a 5xx: try again later."""


class JellyfinNotFound(JellyfinError):
    """The item does not exist (any more) on the server."""


class _Redactor(logging.Filter):
    """The library logs whole requests (headers included) at DEBUG; the API key must never reach a log."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the library's problem, not a reason to drop the record
            return True
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACTOR = _Redactor()
for _name in _LIBRARY_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTOR)


@dataclass(frozen=True)
class ItemInfo:
    """What Jellyfin knows about an item that helps find its mapping."""

    item_id: str
    path: str | None
    item_type: str | None = None
    name: str | None = None
    series_name: str | None = None
    series_id: str | None = None
    season: int | None = None
    episode: int | None = None
    provider_ids: dict[str, str] = field(default_factory=dict)

    def hints(self) -> dict[str, Any]:
        """The item's identity in the hint vocabulary of bridge.matching (series/season/episode)."""
        out: dict[str, Any] = {
            "series": self.series_name,
            "season": self.season,
            "episode": self.episode,
            "item_type": self.item_type,
            "name": self.name,
            "series_id": self.series_id,
            "provider_ids": {k.lower(): v for k, v in self.provider_ids.items()} or None,
        }
        return {key: value for key, value in out.items() if value is not None}


def _item_info(item: dict[str, Any], fallback_id: str) -> ItemInfo:
    def as_int(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    providers = item.get("ProviderIds") or {}
    return ItemInfo(
        item_id=normalize_guid(item.get("Id")) or fallback_id,
        path=item.get("Path") or None,
        item_type=item.get("Type"),
        name=item.get("Name"),
        series_name=item.get("SeriesName"),
        series_id=normalize_guid(item.get("SeriesId")),
        season=as_int(item.get("ParentIndexNumber")),
        episode=as_int(item.get("IndexNumber")),
        provider_ids={str(k): str(v) for k, v in providers.items() if v} if isinstance(providers, dict) else {},
    )


class _TTLCache:
    """A tiny LRU with expiry: webhooks for one item come in bursts (one per user, start then stop)."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._data: OrderedDict[str, tuple[float, ItemInfo]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ItemInfo | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: str, value: ItemInfo) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _item_id(item_id: str) -> str:
    normalized = normalize_guid(item_id)
    if normalized is None:
        raise ValueError(f"not a Jellyfin item id: {item_id!r}")
    return normalized


class JellyfinClient:
    """Item lookup and item refresh against one Jellyfin server with an API key."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 1,
        retry_delay: float = 0.5,
        cache_size: int = 256,
        cache_ttl: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("jellyfin.url must start with http:// or https://")
        if not api_key:
            raise ValueError("jellyfin.api_key is empty")
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.retry_delay = retry_delay
        self.cache = _TTLCache(cache_size, cache_ttl)
        self._auth_lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._authenticated = False
        self._auth_error_logged = False
        self._aiohttp: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY / NO_PROXY, read once for both HTTP stacks (requests would re-read them on every call)
        self._proxies: dict[str, str] = requests.utils.get_environ_proxies(self.url)
        _REDACTOR.secrets.add(api_key)

        lib = _LibClient()
        lib.config.data["app.name"] = APP_NAME
        lib.config.data["app.version"] = APP_VERSION
        # No config.app(...): a device name would switch the header to device mode (research §4).
        lib.config.http(user_agent=f"{APP_NAME}/{APP_VERSION}", max_retries=0, timeout=timeout)
        lib.config.data["auth.ssl"] = True  # the library's default (missing/False) turns TLS verification off
        lib.auth.API.default_timeout = timeout  # used by authenticate()'s own two requests
        self._lib = lib

    def __repr__(self) -> str:
        return f"JellyfinClient({self.url!r})"

    # ---- plumbing (runs in a worker thread) ---------------------------------------------------------
    def _session(self, statuses: list[int]) -> requests.Session:
        session = requests.Session()
        # Proxy settings are read from the environment once, here: with trust_env on, requests scans the whole
        # environment (and ~/.netrc) on every call, a millisecond of each heal's refresh.
        session.proxies.update(self._proxies)
        session.trust_env = False

        def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            statuses.append(response.status_code)

        session.hooks["response"].append(remember)
        return session

    def _thread_session(self) -> tuple[requests.Session, list[int]]:
        """One kept-alive session per worker thread: a new TCP connection per call cost ~4 ms of each heal."""
        state: tuple[requests.Session, list[int]] | None = getattr(self._local, "state", None)
        if state is None:
            statuses: list[int] = []
            state = (self._session(statuses), statuses)
            self._local.state = state
            with self._auth_lock:
                self._sessions.append(state[0])
        state[1].clear()
        return state

    def _authenticate(self) -> None:
        with self._auth_lock:
            if self._authenticated:
                return
            lib = self._lib
            lib.config.data.pop("auth.token", None)  # a revoked token would be sent as Token="None"
            statuses: list[int] = []
            session = self._session(statuses)
            lib.auth.session = session
            try:
                state = lib.authenticate({"Servers": [{"AccessToken": self._api_key, "address": self.url}]}, discover=False)
            finally:
                lib.auth.session = None
                session.close()
            if state.get("State") == CONNECTION_STATE["SignedIn"]:
                self._authenticated = True
                return
            if any(status in (401, 403) for status in statuses):
                raise JellyfinAuthError(f"Jellyfin at {self.url} refused the API key (HTTP {statuses[-1]})")
            if statuses:
                raise JellyfinUnavailable(f"Jellyfin at {self.url} answered HTTP {statuses[-1]} while signing in")
            raise JellyfinUnavailable(f"Jellyfin at {self.url} did not answer")

    def _request_once(self, method: str, handler: str, params: dict[str, Any] | None, body: Any) -> tuple[int, Any]:
        self._authenticate()
        session, statuses = self._thread_session()
        data: dict[str, Any] = {"type": method, "handler": handler, "params": params or {}, "retry": 0}
        if body is not None:
            data["json"] = body
        try:
            result = self._lib.http.request(data, session=session)
        except HTTPException as exc:
            status = exc.status
            if status in ("Unauthorized", "AccessRestricted", 401, 403):
                self._authenticated = False  # the library revoked the token; sign in again next time
                raise JellyfinAuthError(f"Jellyfin refused the API key on {method} /{handler}") from None
            if status in ("ServerUnreachable", "ReadTimeout"):
                raise JellyfinUnavailable(f"Jellyfin did not answer {method} /{handler} ({status})") from None
            if status == 404:
                raise JellyfinNotFound(f"{method} /{handler}: not found") from None
            if isinstance(status, int) and status >= 500:
                raise JellyfinUnavailable(f"Jellyfin answered HTTP {status} to {method} /{handler}") from None
            raise JellyfinError(f"Jellyfin answered {status} to {method} /{handler}") from None
        except requests.RequestException as exc:
            raise JellyfinUnavailable(f"{method} /{handler} failed: {type(exc).__name__}") from None
        status = statuses[-1] if statuses else 0
        if status >= 500:  # the library logs a 500 and returns None as if it were a success
            raise JellyfinUnavailable(f"Jellyfin answered HTTP {status} to {method} /{handler}")
        return status, result

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Every call's policy: no answer is retried `retries` times; a refused key is logged once until a call
        succeeds again (it is a configuration error, and every webhook would repeat it)."""
        tries = 0
        while True:
            try:
                result = await attempt()
            except JellyfinUnavailable:
                if tries >= self.retries:
                    raise
                tries += 1
                await asyncio.sleep(self.retry_delay)
                continue
            except JellyfinAuthError:
                if not self._auth_error_logged:
                    self._auth_error_logged = True
                    log.error("Jellyfin at %s refused the API key: check jellyfin.api_key", self.url)
                raise
            self._auth_error_logged = False
            return result

    async def _request(self, method: str, handler: str, params: dict[str, Any] | None = None,
                       body: Any = None) -> tuple[int, Any]:
        """One call through the library, in a worker thread."""
        return await self._with_retries(lambda: self._run(self._request_once, method, handler, params, body))

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    # ---- the API the bridge uses --------------------------------------------------------------------
    async def item_path(self, item_id: str) -> ItemInfo | None:
        """The item's file as Jellyfin sees it, plus its series/season/episode; None if Jellyfin has no such item."""
        key = _item_id(item_id)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        _, result = await self._request(
            "GET",
            "Items",
            # Repeated `fields` keys: Jellyfin's binder takes them as well as a comma list, and so does OpenAPI.
            {"ids": key, "fields": ["Path", "ProviderIds"], "enableImages": "false", "enableUserData": "false"},
        )
        if not isinstance(result, dict) or not isinstance(result.get("Items"), list):
            raise JellyfinUnavailable("Jellyfin answered /Items with something that is not a query result")
        for item in result["Items"]:
            if isinstance(item, dict) and normalize_guid(item.get("Id")) == key:
                info = _item_info(item, key)
                self.cache.put(key, info)
                return info
        return None

    async def refresh_item(self, item_id: str) -> None:
        """Queue a refresh that re-reads the .strm (FullRefresh, never replaceAllMetadata); 404 → JellyfinNotFound."""
        key = _item_id(item_id)
        await self._with_retries(lambda: self._refresh_once(key))
        self.cache.pop(key)

    async def _refresh_once(self, key: str) -> None:
        """The one call on a heal's critical path goes out through aiohttp, with the library's own headers.

        Through the library (requests in a worker thread) it took about 1.3 ms on loopback, through the
        loop's kept-alive aiohttp session about 0.3 ms; sign-in and the token remain the library's.
        """
        if not self._authenticated:
            await self._run(self._authenticate)
        handler = f"Items/{key}/Refresh"
        headers = self._lib.http._get_default_headers()  # its Authorization: MediaBrowser Token="...", User-Agent
        try:
            async with self._http().post(f"{self.url}/{handler}", params=REFRESH_PARAMS, headers=headers,
                                         proxy=self._proxies.get(self.url.split(":", 1)[0]),
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise JellyfinUnavailable(f"POST /{handler} failed: {type(exc).__name__}") from None
        if status in (401, 403):
            self._authenticated = False  # sign in again next time, as the library would after revoking
            raise JellyfinAuthError(f"Jellyfin refused the API key on POST /{handler}")
        if status == 404:
            raise JellyfinNotFound(f"POST /{handler}: not found")
        if status >= 500:
            raise JellyfinUnavailable(f"Jellyfin answered HTTP {status} to POST /{handler}")
        if status >= 400:
            raise JellyfinError(f"Jellyfin answered {status} to POST /{handler}")

    def _http(self) -> aiohttp.ClientSession:
        if self._aiohttp is None or self._aiohttp.closed:
            self._aiohttp = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
        return self._aiohttp

    async def report_media_updated(self, server_paths: list[str]) -> None:
        """For new or deleted files only: Jellyfin debounces it (60 s) and may skip the .strm re-read."""
        if server_paths:
            updates = [{"Path": path, "UpdateType": "Modified"} for path in server_paths]
            await self._request("POST", "Library/Media/Updated", None, {"Updates": updates})

    async def check(self) -> dict[str, Any]:
        """Sign in (validates URL and key) and say which server answered, for start-up logs and health."""
        await self._with_retries(lambda: self._run(self._authenticate))
        data = self._lib.config.data
        return {"url": self.url, "name": data.get("auth.server-name"), "server_id": self._lib.auth.server_id}

    async def close(self) -> None:
        self.cache.clear()
        if self._aiohttp is not None:
            await self._aiohttp.close()
            self._aiohttp = None
        with self._auth_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
