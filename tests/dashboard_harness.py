"""A real bridge with the dashboard, a fake provider and a fake Jellyfin, all in one thread with its own loop.

Playwright's `page` is synchronous, so the servers cannot share the test's loop: they live in `LiveBridge`'s
thread, and the test calls into that loop with `call` when it needs to change the fakes or read the store.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web

from bridge.app import create_app
from bridge.config import load_config
from bridge.probe import expiry_iso
from bridge.resolvers.base import ResolveRequest, Resolved
from bridge.services import Services
from bridge.wiring import build_services
from tests.appfactory import TOKEN
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping

T = TypeVar("T")


class SlowProviderResolver:
    """Resolves through the fake provider after a pause, so a bulk refresh's progress can be watched."""

    name = "slow-fake"

    def __init__(self, provider: FakeProvider, delay: float) -> None:
        self.provider = provider
        self.delay = delay

    async def resolve(self, request: ResolveRequest) -> Resolved:
        await asyncio.sleep(self.delay)
        identity = request.identity
        key = f"{identity.slug}/{identity.season}/{identity.episode}"
        return Resolved(url=self.provider.sign(key, ttl=3600), provider="FakeCDN")

    async def close(self) -> None:
        pass


class LiveBridge:
    def __init__(self, tmp_path: Path, *, resolve_delay: float = 0.25, public_url: bool = False) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / "library"
        self.root.mkdir(exist_ok=True)
        self.resolve_delay = resolve_delay
        self.public_url = public_url
        """True: server.public_url names the bridge's own address (stable links need it)."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-bridge", daemon=True)
        self.provider = FakeProvider()
        self.jellyfin = FakeJellyfin()
        self.services: Services | None = None
        self.runner: web.AppRunner | None = None
        self.base_url = ""
        self.token = TOKEN

    def call(self, func: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(func(), self.loop).result(timeout)

    def run(self, func: Callable[[], T], timeout: float = 30) -> T:
        async def wrapper() -> T:
            return func()

        return self.call(wrapper, timeout)

    def start(self) -> "LiveBridge":
        self.thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        await self.provider.start()
        await self.jellyfin.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # an ephemeral port, named in the configuration as a user would
        port = sock.getsockname()[1]
        config_path = self.tmp_path / "strm-bridge.toml"
        config_path.write_text(
            f'[server]\napi_token = "{TOKEN}"\nport = {port}\n'
            + (f'public_url = "http://127.0.0.1:{port}"\n' if self.public_url else "") +
            f'[database]\npath = "{self.tmp_path / "data" / "bridge.db"}"\n'
            f'[library]\nroots = ["{self.root}"]\n'
            f'[jellyfin]\nurl = "{self.jellyfin.url}"\napi_key = "{self.jellyfin.api_key}"\n'
            'webhook_token = "jellyfin-hook-token-1234"\n'
            "[refresh]\nconcurrency = 1\ncooldown_seconds = 0\nprobe_timeout_seconds = 2\n"
            "sweep_interval_seconds = 0\n")
        config = load_config(config_path, env={})
        self.services = build_services(config, resolvers=[SlowProviderResolver(self.provider, self.resolve_delay)])
        self.runner = web.AppRunner(create_app(self.services), handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()
        self.base_url = f"http://127.0.0.1:{port}"

    def add_episode(self, slug: str, season: int, episode: int, *, expired: bool, state: str = "ok") -> dict[str, Any]:
        """A mapping whose .strm is on disk; expired links answer 403, as the provider's signed URLs do."""

        def make() -> dict[str, Any]:
            assert self.services is not None
            key = f"{slug}/{season}/{episode}"
            self.provider.add_episode(key)
            url = self.provider.sign(key, expires_at=time.time() - 60) if expired else self.provider.sign(key, ttl=3600)
            path = self.root / slug / f"Season {season}" / f"{slug} S{season:02d}E{episode:02d}.strm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(url + "\n")
            return self.services.store.upsert({  # the expiry predicted from the URL, as POST /api/mappings does
                "strm_path": str(path), "resolved_url": url, "site": "fake", "slug": slug, "season": season,
                "episode": episode, "language": "German Dub", "provider_used": "FakeCDN", "state": state,
                "expires_at": expiry_iso(url, time.time() - (7200 if expired else 0))})  # expired: resolved 2 h ago

        return self.run(make)

    def mapping(self, mapping_id: int) -> dict[str, Any]:
        assert self.services is not None
        return self.run(lambda: self.services.store.get(mapping_id))  # type: ignore[union-attr]

    def stop(self) -> None:
        async def _stop() -> None:
            if self.runner is not None:
                await self.runner.cleanup()
            await self.jellyfin.close()
            await self.provider.close()

        try:
            self.call(_stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


__all__ = ["LiveBridge", "add_mapping"]
