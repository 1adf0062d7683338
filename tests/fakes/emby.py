"""A fake Emby server on 127.0.0.1: the item refresh endpoint, token check, recorded calls."""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tests.fakes.loopback import serve


@dataclass
class FakeEmbyCall:
    method: str
    path: str
    query_string: str
    """Raw (still percent-encoded) query string, exactly as the client sent it."""
    query: dict[str, str]
    token: str | None


class FakeEmby:
    """`items` empty means every id exists; add ids to make the others answer 404."""

    def __init__(self, token: str = "fake-emby-key") -> None:
        self.token = token
        self.items: set[str] = set()
        self.calls: list[FakeEmbyCall] = []
        self._fail_status: int | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_item(self, item_id: str) -> None:
        self.items.add(item_id)

    def fail_with(self, status: int | None) -> None:
        self._fail_status = status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "FakeEmby":
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/Items/{item_id}/Refresh", self._refresh)
        app.router.add_get("/System/Info/Public", self._info)
        app.router.add_get("/System/Info", self._info)  # the same fields here; Emby asks for the token on this one
        self._runner, self.port = await serve(app, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _token_of(request: web.Request) -> str | None:
        token = request.headers.get("X-Emby-Token") or request.query.get("api_key")
        auth = request.headers.get("X-Emby-Authorization") or request.headers.get("Authorization") or ""
        if token is None and 'Token="' in auth:
            token = auth.split('Token="', 1)[1].split('"', 1)[0]
        return token

    @web.middleware
    async def _middleware(self, request: web.Request, handler: object) -> web.StreamResponse:
        token = self._token_of(request)
        self.calls.append(FakeEmbyCall(request.method, request.path, request.rel_url.raw_query_string, dict(request.query), token))
        if request.path != "/System/Info/Public" and token != self.token:
            return web.Response(status=401, text="Access token is invalid or expired.")
        if self._fail_status is not None:
            return web.Response(status=self._fail_status, text=f"fake failure {self._fail_status}")
        return await handler(request)  # type: ignore[operator]

    async def _refresh(self, request: web.Request) -> web.Response:
        item_id = request.match_info["item_id"]
        if self.items and item_id not in self.items:
            return web.Response(status=404, text=f"Item not found: {item_id}")
        return web.Response(status=204)

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"ServerName": "fake-emby", "Version": "4.9.0.42", "Id": "b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"})
