"""A simulated Jellyfin and its viewer: enough of the server for the bridge's client, and a player.

The server answers the calls jellyfin-apiclient-python and the bridge make (public info, signed-in info,
item lookup by id with its path, item refresh). The player does what Jellyfin does with a `.strm`: reads the
URL from the file, opens it, and reports PlaybackStart/PlaybackStop through the webhook plugin's template.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

_TOKEN = re.compile(r'Token="([^"]*)"')
TICKS_PER_SECOND = 10_000_000


@dataclass
class Episode:
    series: str
    season: int
    number: int
    path: str
    runtime_seconds: int = 24 * 60
    item_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def label(self) -> str:
        return f"{self.series} S{self.season:02d}E{self.number:02d}"


class SimulatedJellyfin:
    """Items keyed by 32-hex ids, as Jellyfin spells GUIDs on the wire; refreshes are recorded."""

    def __init__(self, api_key: str, on_event: Callable[[str], None] | None = None) -> None:
        self.api_key = api_key
        self.server_id = uuid.uuid4().hex
        self.items: dict[str, Episode] = {}
        self.refreshed: list[str] = []
        self.url = ""
        self.on_event = on_event or (lambda message: None)
        self._runner: web.AppRunner | None = None

    def add(self, episode: Episode) -> None:
        self.items[episode.item_id] = episode

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "") or request.headers.get("X-Emby-Authorization", "")
        match = _TOKEN.search(header)
        presented = match.group(1) if match else request.headers.get("X-Emby-Token", "")
        return presented == self.api_key

    def _info(self) -> dict[str, Any]:
        return {"LocalAddress": self.url, "ServerName": "Demo Jellyfin", "Version": "10.11.0",
                "ProductName": "Jellyfin Server", "Id": self.server_id, "StartupWizardCompleted": True}

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        """Jellyfin's routes are case-insensitive; the client library asks in lower case."""
        path = request.path.lower().rstrip("/")
        if path == "/system/info/public":
            return web.json_response(self._info())
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        if path == "/system/info":
            return web.json_response(self._info())
        if path == "/items" and request.method == "GET":
            wanted = [v.replace("-", "").lower() for raw in request.query.getall("ids", []) for v in raw.split(",")]
            found = [self._view(self.items[i]) for i in wanted if i in self.items]
            return web.json_response({"Items": found, "TotalRecordCount": len(found), "StartIndex": 0})
        match = re.fullmatch(r"/items/([0-9a-f]{32})/refresh", path)
        if match and request.method == "POST":
            episode = self.items.get(match.group(1))
            if episode is None:
                return web.Response(status=404, text="Item not found.")
            self.refreshed.append(episode.item_id)
            self.on_event(f"refresh of {episode.label} received: Jellyfin re-reads the .strm")
            return web.Response(status=204)
        if path == "/library/media/updated" and request.method == "POST":
            return web.Response(status=204)
        return web.Response(status=404, text="Not Found")

    @staticmethod
    def _view(episode: Episode) -> dict[str, Any]:
        return {"Id": episode.item_id, "Name": f"Episode {episode.number}", "Type": "Episode",
                "Path": episode.path, "SeriesName": episode.series, "ParentIndexNumber": episode.season,
                "IndexNumber": episode.number, "RunTimeTicks": episode.runtime_seconds * TICKS_PER_SECOND,
                "ProviderIds": {}}


class Viewer:
    """Plays like a Jellyfin client: start webhook, open the `.strm`'s URL, stop webhook."""

    def __init__(self, server: SimulatedJellyfin, webhook_url: str, webhook_token: str) -> None:
        self.server = server
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.device_id = uuid.uuid4().hex
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def play(self, episode: Episode, *, from_seconds: int = 0, watch_seconds: int = 600) -> tuple[bool, str]:
        """Returns (played, what the player saw). A failed open stops at once at the resume point."""
        await self._webhook("PlaybackStart", episode, from_seconds)
        with open(episode.path, encoding="utf-8") as handle:
            url = handle.read().strip()
        try:
            async with self._client().get(url, headers={"Range": "bytes=0-65535"}) as response:
                await response.read()
                ok = response.status in (200, 206) and response.content_type.startswith("video/")
                seen = f"HTTP {response.status}"
        except aiohttp.ClientError as exc:
            ok, seen = False, type(exc).__name__
        await asyncio.sleep(0.3)
        position = from_seconds + (watch_seconds if ok else 0)
        await self._webhook("PlaybackStop", episode, position,
                            completed=ok and position >= episode.runtime_seconds)
        return ok, seen

    async def _webhook(self, kind: str, episode: Episode, position_seconds: int, completed: bool = False) -> None:
        """The fields of the webhook plugin's template (`integrations/jellyfin/webhook.handlebars`), as strings."""
        body: dict[str, Any] = {
            "NotificationType": kind, "ServerId": self.server.server_id, "ItemId": episode.item_id,
            "ItemType": "Episode", "Name": f"Episode {episode.number}", "SeriesName": episode.series,
            "SeasonNumber": str(episode.season), "EpisodeNumber": str(episode.number),
            "PlaybackPositionTicks": str(position_seconds * TICKS_PER_SECOND),
            "RunTimeTicks": str(episode.runtime_seconds * TICKS_PER_SECOND),
            "DeviceId": self.device_id, "DeviceName": "Demo TV", "ClientName": "Jellyfin Web",
            "NotificationUsername": "viewer", "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if kind == "PlaybackStop":
            body["PlayedToCompletion"] = "True" if completed else "False"
        async with self._client().post(self.webhook_url, json=body,
                                       headers={"X-Api-Key": self.webhook_token}) as response:
            if response.status != 202:
                raise RuntimeError(f"the bridge answered {response.status} to a webhook: {await response.text()}")
