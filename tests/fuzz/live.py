"""A real bridge on a loopback port in its own thread, for clients that block (schemathesis uses requests)."""
from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.app import create_app
from tests.appfactory import make_services

LIBRARY_FILES = {"Show/Season 01/Show S01E01.strm": "https://cdn.example/show/1.mp4\n",
                 "Film (2020)/Film.strm": "https://cdn.example/film.mp4\n"}


class LiveBridge:
    """Starts the app with the same wiring `serve` uses; `stop()` shuts it down like SIGTERM would."""

    def __init__(self, tmp_path: Path, config_text: str = "") -> None:
        self.tmp_path = tmp_path
        self.library = tmp_path / "library"
        self.config_text = config_text
        self.port = 0
        self.statuses: Counter[int] = Counter()
        self.services: Any = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-bridge", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveBridge":
        for name, text in LIBRARY_FILES.items():
            path = self.library / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the live bridge did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._stop())
        self._loop.close()

    async def _start(self) -> None:
        self.services = make_services(self.tmp_path, text=self.config_text, roots=[self.library])
        app = create_app(self.services)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's loop thread (SQLite connections belong to it) and return its result."""
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def library_snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.library)): p.read_bytes() for p in sorted(self.library.rglob("*")) if p.is_file()}

    def mapping_count(self) -> int:
        return int(self.call(self.services.store.count))

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
