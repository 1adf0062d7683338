"""A small Jellyfin on 127.0.0.1 for driving the real client library in tests.

It serves the handful of routes the bridge and jellyfin-apiclient-python touch, answers like Jellyfin 10.11
does (PascalCase JSON, GUIDs as 32 hex digits, case-insensitive routes, `MediaBrowser Token="..."` auth)
and records every exchange so tests can assert on the wire and validate it against the OpenAPI document.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict, MultiDict

_TOKEN = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?$")
# Fields Jellyfin returns only when asked for through `fields=` (ItemFields); the rest are always present.
_OPTIONAL_FIELDS = {"Path", "ProviderIds", "MediaSources", "Overview", "Genres", "DateCreated"}
_JSON = "application/json; charset=utf-8"


def guid(value: str) -> str:
    """Jellyfin's wire spelling of a GUID: 32 lowercase hex digits."""
    if not _GUID.match(value.strip()):
        raise ValueError(f"not a GUID: {value!r}")
    return value.strip().strip("{}").replace("-", "").lower()


@dataclass
class Call:
    """One request as the fake received it, and what it answered."""

    method: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    body: bytes
    status: int = 0
    response_body: bytes = b""
    response_content_type: str = ""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


Handler = Callable[[web.Request, list[str]], Awaitable[web.Response]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True
    public: bool = False  # keeps answering while fail_with() is active, unless everything fails


class FakeJellyfin:
    """Routes: System/Info/Public, System/Info, Items, Items/{id}/Refresh, Library/Media/Updated, legacy Users/{id}/Items."""

    def __init__(
        self,
        api_key: str = "fake-api-key-0123456789",
        *,
        server_name: str = "Fake Jellyfin",
        version: str = "10.11.0",
        legacy_authorization: bool = True,
    ) -> None:
        self.api_key = api_key
        self.dropped_ids: list[str] = []
        """`ids` values the binder could not convert and left out, as Jellyfin does."""
        self.server_name = server_name
        self.version = version
        self.server_id = uuid.uuid4().hex
        self.legacy_authorization = legacy_authorization
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.refreshed: list[tuple[str, dict[str, str]]] = []
        self.refreshed_at: list[tuple[str, float]] = []
        """(item, time.time() on arrival) per accepted refresh: a test can tell whether it came after a file changed."""
        self.media_updates: list[dict[str, Any]] = []
        self._fail_status: int | None = None
        self._fail_public = False
        self._hang = False
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self._routes = [
            _Route("GET", re.compile(r"^/system/info/public$", re.I), self._public_info, auth=False, public=True),
            _Route("GET", re.compile(r"^/system/info$", re.I), self._system_info),
            _Route("GET", re.compile(r"^/items$", re.I), self._get_items),
            _Route("POST", re.compile(r"^/items/([^/]+)/refresh$", re.I), self._refresh),
            _Route("POST", re.compile(r"^/library/media/updated$", re.I), self._media_updated),
            _Route("GET", re.compile(r"^/users/([^/]+)/items/([^/]+)$", re.I), self._legacy_user_item),
            _Route("GET", re.compile(r"^/users/([^/]+)/items$", re.I), self._legacy_user_items),
        ]

    # ---- lifecycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "FakeJellyfin":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self.port = self._runner.addresses[0][1]  # port 0 above: the OS picked a free one
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeJellyfin":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- controls -----------------------------------------------------------------------------------
    def add_item(self, item_id: str, path: str | None, **fields: Any) -> str:
        """Register an item; `fields` are BaseItemDto keys (Type, Name, SeriesName, ParentIndexNumber...)."""
        key = guid(item_id)
        item: dict[str, Any] = {
            "Name": fields.pop("Name", path.rsplit("/", 1)[-1].rsplit(".", 1)[0] if path else "Item"),
            "ServerId": self.server_id,
            "Id": key,
            "Type": fields.pop("Type", "Episode" if "SeriesName" in fields else "Movie"),
            "IsFolder": False,
            "MediaType": "Video",
            "LocationType": "FileSystem",
        }
        if path is not None:
            item["Path"] = path
        for name in ("SeriesId", "SeasonId", "ParentId"):
            if fields.get(name):
                fields[name] = guid(fields[name])
        item.update(fields)
        self.items[key] = item
        return key

    def remove_item(self, item_id: str) -> None:
        self.items.pop(guid(item_id), None)

    def fail_with(self, status: int | None, *, everything: bool = False) -> None:
        """Answer `status` to every request (but System/Info/Public unless `everything`); None heals."""
        self._fail_status = status
        self._fail_public = everything

    def hang(self, flag: bool = True) -> None:
        """Accept requests and never answer them (until close), like a wedged server."""
        self._hang = flag
        if flag:
            self._release.clear()
        else:
            self._release.set()

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        pattern = re.compile(path_pattern, re.I)
        return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    # ---- dispatch -----------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme = header.split(None, 1)[0].lower() if header.strip() else ""
        tokens: list[str] = []
        if scheme in ("mediabrowser", "emby"):
            tokens += [value for key, value in _TOKEN.findall(header) if key.lower() == "token"]
        if "ApiKey" in request.query:
            tokens.append(request.query["ApiKey"])
        if self.legacy_authorization:  # 10.11 still accepts these; 12.0 turns them off by default
            tokens += [request.headers[h] for h in ("X-Emby-Token", "X-MediaBrowser-Token") if h in request.headers]
            if "api_key" in request.query:
                tokens.append(request.query["api_key"])
        return bool(tokens) and tokens[0] == self.api_key

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = Call(
            method=request.method,
            path=request.path,
            query=MultiDict(request.query),
            headers=CIMultiDict(request.headers),
            body=body,
        )
        self.calls.append(call)
        response = await self._answer(request)
        call.status = response.status
        raw = response.body
        call.response_body = raw if isinstance(raw, bytes) else b""
        call.response_content_type = response.headers.get("Content-Type", "")
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        for route in self._routes:
            found = route.pattern.match(request.path)
            if found is None:
                continue
            if request.method != route.method:
                return web.Response(status=405)
            if self._hang:
                await self._release.wait()
                return web.Response(status=503, text="shutting down", content_type="text/html")
            if self._fail_status is not None and (self._fail_public or not route.public):
                return web.Response(status=self._fail_status, text="injected failure", content_type="text/plain")
            if route.auth and not self._authorized(request):
                return web.Response(status=401)
            return await route.handler(request, list(found.groups()))
        return web.Response(status=404)

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": _JSON})

    @staticmethod
    def _problem(status: int, title: str, detail: str) -> web.Response:
        body = {"type": "https://tools.ietf.org/html/rfc9110", "title": title, "status": status, "detail": detail}
        return web.Response(status=status, body=json.dumps(body).encode(), headers={"Content-Type": _JSON})

    def _item_view(self, item: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in _OPTIONAL_FIELDS or k.lower() in fields}

    @staticmethod
    def _list_param(request: web.Request, name: str) -> list[str]:
        """Jellyfin's binder: repeated keys or one comma-separated value, keys matched case-insensitively."""
        values = [v for k, v in request.query.items() if k.lower() == name.lower()]
        if len(values) == 1:
            values = values[0].split(",")
        return [v.strip() for v in values if v.strip()]

    # ---- routes -------------------------------------------------------------------------------------
    async def _public_info(self, request: web.Request, groups: list[str]) -> web.Response:
        return self._json(
            {
                "LocalAddress": self.url,
                "ServerName": self.server_name,
                "Version": self.version,
                "ProductName": "Jellyfin Server",
                "Id": self.server_id,
                "StartupWizardCompleted": True,
            }
        )

    async def _system_info(self, request: web.Request, groups: list[str]) -> web.Response:
        return self._json(
            {
                "LocalAddress": self.url,
                "ServerName": self.server_name,
                "Version": self.version,
                "ProductName": "Jellyfin Server",
                "OperatingSystem": "",
                "Id": self.server_id,
                "StartupWizardCompleted": True,
                "OperatingSystemDisplayName": "Linux",
                "PackageName": "fake",
                "HasPendingRestart": False,
                "IsShuttingDown": False,
                "SupportsLibraryMonitor": True,
                "WebSocketPortNumber": self.port,
                "CompletedInstallations": [],
                "CanSelfRestart": False,
                "CanLaunchWebBrowser": False,
                "HasUpdateAvailable": False,
                "SystemArchitecture": "X64",
            }
        )

    def _bound_ids(self, request: web.Request) -> list[str]:
        """Jellyfin's CommaDelimitedArrayModelBinder for `Guid[] ids`: a value it cannot convert is dropped
        (logged at debug level), not refused; with nothing left, the query has no `ids` filter at all."""
        bound = []
        for raw in self._list_param(request, "ids"):
            try:
                bound.append(guid(raw))
            except ValueError:
                self.dropped_ids.append(raw)
        return bound

    def _query_result(self, request: web.Request, ids: list[str]) -> web.Response:
        fields = {f.lower() for f in self._list_param(request, "fields")}
        found = [self._item_view(self.items[key], fields) for key in ids if key in self.items]
        return self._json({"Items": found, "TotalRecordCount": len(found), "StartIndex": 0})

    async def _get_items(self, request: web.Request, groups: list[str]) -> web.Response:
        # an empty `ids` (absent, or every value dropped by the binder) is an unfiltered listing
        return self._query_result(request, self._bound_ids(request) or list(self.items))

    async def _refresh(self, request: web.Request, groups: list[str]) -> web.Response:
        try:
            key = guid(groups[0])
        except ValueError:
            return self._problem(400, "One or more validation errors occurred.", "itemId is not a GUID")
        if key not in self.items:
            return self._problem(404, "Not Found", "Item not found.")
        self.refreshed.append((key, {k: v for k, v in request.query.items()}))
        self.refreshed_at.append((key, time.time()))
        return web.Response(status=204)

    async def _media_updated(self, request: web.Request, groups: list[str]) -> web.Response:
        try:
            payload = json.loads(await request.read() or b"null")
        except json.JSONDecodeError:
            return self._problem(400, "Bad Request", "body is not JSON")
        self.media_updates.append(payload)
        return web.Response(status=204)

    async def _legacy_user_item(self, request: web.Request, groups: list[str]) -> web.Response:
        try:
            key = guid(groups[1])
        except ValueError:
            return self._problem(400, "Bad Request", "itemId is not a GUID")
        if key not in self.items:
            return self._problem(404, "Not Found", "Item not found.")
        fields = {f.lower() for f in self._list_param(request, "fields")} or {f.lower() for f in _OPTIONAL_FIELDS}
        return self._json(self._item_view(self.items[key], fields))

    async def _legacy_user_items(self, request: web.Request, groups: list[str]) -> web.Response:
        return self._query_result(request, self._bound_ids(request) or list(self.items))
