"""A fake Plex Media Server on 127.0.0.1 that the real plexapi client can talk to.

It serves the XML documents plexapi parses (identity, library, sections, item metadata), the refresh
endpoints, and the notification websocket, checks X-Plex-Token like PMS (401), and records every request
so tests can assert exactly what went over the wire.
"""
from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.loopback import serve

MACHINE_ID = "5f1d2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f"
VERSION = "1.41.3.9314-a0bfb8370"
SECTION_TYPES = {"movie": ("com.plexapp.agents.none", "Plex Movie"), "show": ("tv.plex.agents.series", "Plex TV Series")}


@dataclass
class FakeCall:
    method: str
    path: str
    query_string: str
    """Raw (still percent-encoded) query string, exactly as the client sent it."""
    query: dict[str, str]
    token: str | None


@dataclass
class FakeItem:
    rating_key: int
    files: list[str]
    type: str = "episode"
    title: str = "Episode"
    grandparent_title: str | None = None
    parent_index: int | None = None
    index: int | None = None
    guid: str | None = None
    section_id: int = 1
    year: int | None = None


@dataclass
class FakeSection:
    key: int
    title: str
    locations: list[str]
    type: str = "show"


@dataclass
class _Failure:
    status: int
    remaining: int | None
    path_prefix: str


def _xml(root: ET.Element) -> web.Response:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


def _attrs(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(int(v) if isinstance(v, bool) else v) for k, v in values.items() if v is not None}


def play_state_notification(
    rating_key: str | int, session_key: str | int, state: str = "error", view_offset: int = 0
) -> dict[str, Any]:
    """A NotificationContainer like PMS sends on its websocket when a session changes state."""
    return {
        "type": "playing",
        "size": 1,
        "PlaySessionStateNotification": [
            {
                "sessionKey": str(session_key),
                "clientIdentifier": "3a7bd3e2360a3d29eea436fcfb7e44d6",
                "guid": "",
                "ratingKey": str(rating_key),
                "url": "",
                "key": f"/library/metadata/{rating_key}",
                "viewOffset": view_offset,
                "playQueueItemID": 47,
                "playQueueID": 12,
                "state": state,
            }
        ],
    }


class FakePlex:
    """Start with `await FakePlex().start()`; `url` is then the base URL to hand to plexapi."""

    def __init__(self, token: str = "fake-plex-token") -> None:
        self.token = token
        self.items: dict[int, FakeItem] = {}
        self.sections: dict[int, FakeSection] = {}
        self.calls: list[FakeCall] = []
        self.ws_connections = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._ws_changed = asyncio.Condition()
        self._failure: _Failure | None = None
        self.hold: asyncio.Event | None = None  # when set to an Event, requests wait for it (a slow Plex)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- controls --------------------------------------------------------------------------------------
    def add_section(self, key: int, title: str, locations: list[str], type: str = "show") -> FakeSection:
        section = FakeSection(key, title, list(locations), type)
        self.sections[key] = section
        return section

    def add_item(
        self,
        rating_key: int,
        files: list[str],
        *,
        type: str = "episode",
        title: str = "Episode",
        grandparent_title: str | None = None,
        parent_index: int | None = None,
        index: int | None = None,
        guid: str | None = None,
        section_id: int = 1,
        year: int | None = None,
    ) -> FakeItem:
        item = FakeItem(rating_key, list(files), type, title, grandparent_title, parent_index, index, guid, section_id, year)
        self.items[rating_key] = item
        return item

    def fail_with(self, status: int | None, *, times: int | None = None, path_prefix: str = "/") -> None:
        """Answer `status` to requests under `path_prefix` (`times` of them, or all); None stops failing."""
        self._failure = None if status is None else _Failure(status, times, path_prefix)

    def calls_to(self, path: str, method: str | None = None) -> list[FakeCall]:
        return [c for c in self.calls if c.path == path and (method is None or c.method == method)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- websocket controls ----------------------------------------------------------------------------
    async def push(self, container: dict[str, Any]) -> int:
        """Send one NotificationContainer to every connected listener; returns how many got it."""
        text = json.dumps({"NotificationContainer": container})
        sent = 0
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(text)
                sent += 1
        return sent

    async def drop_websockets(self) -> None:
        """Close every notification socket, as PMS does when it restarts."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server restart")

    async def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` websocket connections have been accepted in total."""
        async with self._ws_changed:
            await asyncio.wait_for(self._ws_changed.wait_for(lambda: self.ws_connections >= count), timeout)

    @property
    def open_sockets(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> "FakePlex":
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/", self._root)
        app.router.add_get("/identity", self._identity)
        app.router.add_get("/library", self._library)
        app.router.add_get("/library/sections", self._sections)
        app.router.add_get("/library/sections/", self._sections)
        app.router.add_route("*", "/library/sections/{key}/refresh", self._section_refresh)
        app.router.add_get("/library/metadata/{key}", self._metadata)
        app.router.add_put("/library/metadata/{key}/refresh", self._metadata_refresh)
        app.router.add_get("/:/websockets/notifications", self._notifications)
        self._runner, self.port = await serve(app, self.port)
        return self

    async def stop(self) -> None:
        """Shut down; the port stays known so a later `start()` comes back on the same URL."""
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- handlers --------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        self.calls.append(
            FakeCall(request.method, request.path, request.rel_url.raw_query_string, dict(request.query), token)
        )
        if token != self.token:
            return web.Response(status=401, text="<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>",
                                content_type="text/html")
        if self.hold is not None:
            await self.hold.wait()
        failure = self._failure
        if failure is not None and request.path.startswith(failure.path_prefix):
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failure = None
            return web.Response(status=failure.status, text=f"fake failure {failure.status}")
        return await handler(request)

    async def _root(self, request: web.Request) -> web.Response:
        return _xml(ET.Element("MediaContainer", _attrs({
            "size": 0, "allowCameraUpload": 0, "allowSync": 1, "friendlyName": "fake-pms", "machineIdentifier": MACHINE_ID,
            "multiuser": 1, "myPlex": 1, "myPlexSigninState": "ok", "myPlexSubscription": 1, "myPlexUsername": "owner@example.org",
            "platform": "Linux", "platformVersion": "6.1.0", "transcoderActiveVideoSessions": 0, "updatedAt": 1718000000,
            "version": VERSION,
        })))

    async def _identity(self, request: web.Request) -> web.Response:
        return _xml(ET.Element("MediaContainer", _attrs({"size": 0, "claimed": 1, "machineIdentifier": MACHINE_ID, "version": VERSION})))

    async def _library(self, request: web.Request) -> web.Response:
        root = ET.Element("MediaContainer", _attrs({
            "size": 3, "allowSync": 0, "art": "/:/resources/library-art.png", "content": "",
            "identifier": "com.plexapp.plugins.library", "mediaTagPrefix": "/system/bundle/media/flags/",
            "mediaTagVersion": 1718000000, "title1": "Plex Library", "title2": "",
        }))
        ET.SubElement(root, "Directory", {"key": "sections", "title": "Library Sections"})
        ET.SubElement(root, "Directory", {"key": "recentlyAdded", "title": "Recently Added Content"})
        ET.SubElement(root, "Directory", {"key": "onDeck", "title": "On Deck Content"})
        return _xml(root)

    async def _sections(self, request: web.Request) -> web.Response:
        root = ET.Element("MediaContainer", _attrs({"size": len(self.sections), "allowSync": 0, "title1": "Plex Library"}))
        for section in self.sections.values():
            agent, scanner = SECTION_TYPES.get(section.type, ("com.plexapp.agents.none", "Plex Video Files Scanner"))
            directory = ET.SubElement(root, "Directory", _attrs({
                "allowSync": 1, "art": "/:/resources/show-fanart.jpg", "composite": f"/library/sections/{section.key}/composite/1718000000",
                "filters": 1, "refreshing": 0, "thumb": "/:/resources/show.png", "key": section.key, "type": section.type,
                "title": section.title, "agent": agent, "scanner": scanner, "language": "en-US",
                "uuid": f"0000{section.key:04d}-1111-2222-3333-444444444444", "updatedAt": 1718000000,
                "createdAt": 1700000000, "scannedAt": 1718000000, "content": 1, "directory": 1, "hidden": 0,
            }))
            for i, path in enumerate(section.locations):
                ET.SubElement(directory, "Location", {"id": str(section.key * 100 + i), "path": path})
        return _xml(root)

    async def _section_refresh(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "PUT", "DELETE"):
            return web.Response(status=405)
        key = request.match_info["key"]
        if key != "all" and (not key.isdigit() or int(key) not in self.sections):
            return web.Response(status=404, text="section not found")
        return web.Response(status=200, body=b"")

    async def _metadata(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        item = self.items.get(int(key)) if key.isdigit() else None
        if item is None:
            return web.Response(status=404, text="<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html")
        section = self.sections.get(item.section_id)
        root = ET.Element("MediaContainer", _attrs({
            "size": 1, "allowSync": 1, "identifier": "com.plexapp.plugins.library",
            "librarySectionID": item.section_id, "librarySectionTitle": section.title if section else None,
            "librarySectionUUID": f"0000{item.section_id:04d}-1111-2222-3333-444444444444", "mediaTagPrefix": "/system/bundle/media/flags/",
        }))
        video = ET.SubElement(root, "Video", _attrs({
            "ratingKey": item.rating_key, "key": f"/library/metadata/{item.rating_key}", "guid": item.guid,
            "type": item.type, "title": item.title, "librarySectionID": item.section_id,
            "librarySectionTitle": section.title if section else None, "librarySectionKey": f"/library/sections/{item.section_id}",
            "grandparentTitle": item.grandparent_title, "parentIndex": item.parent_index, "index": item.index,
            "parentRatingKey": item.rating_key - 1 if item.type == "episode" else None,
            "grandparentRatingKey": item.rating_key - 2 if item.type == "episode" else None,
            "year": item.year, "duration": 1440000, "addedAt": 1717000000, "updatedAt": 1717000000,
            "summary": "", "thumb": f"/library/metadata/{item.rating_key}/thumb/1717000000",
        }))
        for i, path in enumerate(item.files):
            media = ET.SubElement(video, "Media", _attrs({
                "id": item.rating_key * 10 + i, "duration": 1440000, "container": "strm" if path.endswith(".strm") else "mkv",
            }))
            part_id = item.rating_key * 100 + i
            ET.SubElement(media, "Part", _attrs({
                "id": part_id, "key": f"/library/parts/{part_id}/1717000000/file", "duration": 1440000,
                "file": path, "size": 112, "container": "strm" if path.endswith(".strm") else "mkv",
            }))
        return _xml(root)

    async def _metadata_refresh(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not key.isdigit() or int(key) not in self.items:
            return web.Response(status=404, text="item not found")
        return web.Response(status=200, body=b"")

    async def _notifications(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        async with self._ws_changed:
            self.ws_connections += 1
            self._ws_changed.notify_all()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._sockets.discard(ws)
        return ws

