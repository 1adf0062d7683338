"""The demo's script: build a library, start provider, Jellyfin and bridge on loopback, play, let links
expire, play again, and narrate what each part does as a timeline."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
from aiohttp import web

from bridge.demo.mediaserver import Episode, SimulatedJellyfin, Viewer
from bridge.demo.provider import DemoProvider

SERIES = "Demo Show"
SLUG = "demo-show"
SITE = "demo.invalid"


@dataclass
class DemoOptions:
    workdir: Path
    ttl_seconds: float = 20.0
    episodes: int = 4
    port: int = 0
    keep_running: bool = True
    color: bool = True


@dataclass
class DemoResult:
    failed_plays: int = 0
    heals: int = 0
    refreshes: int = 0
    dashboard_url: str = ""
    token: str = ""


class Timeline:
    """One line per step, stamped with seconds since the demo started."""

    WIDTH = 9

    def __init__(self, color: bool) -> None:
        self.t0 = time.monotonic()
        self.color = color
        self.styles = {"provider": "cyan", "jellyfin": "magenta", "viewer": "yellow", "bridge": "green", "demo": "white"}

    def say(self, actor: str, message: str, *, bad: bool = False) -> None:
        stamp = f"{time.monotonic() - self.t0:6.1f}s"
        name = actor.ljust(self.WIDTH)
        if self.color:
            name = click.style(name, fg=self.styles.get(actor, "white"), bold=True)
            if bad:
                message = click.style(message, fg="red")
        click.echo(f"{stamp}  {name} {message}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(options: DemoOptions, port: int, jellyfin_url: str, api_key: str, webhook_token: str,
                  resolver_url: str) -> Path:
    """A real configuration file, read by the real loader: the demo exercises what users configure."""
    library = options.workdir / "library"
    text = f"""# written by `strm-bridge demo`; everything on loopback
[server]
host = "127.0.0.1"
port = {port}

[database]
path = {json.dumps(str(options.workdir / "strm-bridge.db"))}

[library]
roots = [{json.dumps(str(library))}]

[jellyfin]
url = "{jellyfin_url}"
api_key = "{api_key}"
webhook_token = "{webhook_token}"
refresh_debounce_seconds = 0.2
refresh_gap_seconds = 0.0

[refresh]
resolvers = ["http"]
cooldown_seconds = 1
sweep_interval_seconds = 0

[resolvers.http]
url = "{resolver_url}"
timeout_seconds = 5
"""
    path = options.workdir / "strm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.timeline = Timeline(options.color)
        self.result = DemoResult()
        self.provider = DemoProvider(options.ttl_seconds, on_event=lambda m: self.timeline.say("provider", m))
        self.api_key = secrets.token_hex(16)
        self.jellyfin = SimulatedJellyfin(self.api_key, on_event=lambda m: self.timeline.say("jellyfin", m))
        self.episodes: list[Episode] = []
        self.mapping_ids: dict[str, int] = {}
        self.http: aiohttp.ClientSession | None = None
        self.base = ""

    # ---- set-up ---------------------------------------------------------------------------------------
    def _library(self) -> None:
        season = self.options.workdir / "library" / SERIES / "Season 01"
        season.mkdir(parents=True, exist_ok=True)
        for number in range(1, self.options.episodes + 1):
            path = season / f"{SERIES} - S01E{number:02d}.strm"
            url, _ = self.provider.link(f"{SLUG}-s01e{number:02d}")
            path.write_text(url + "\n", encoding="utf-8")
            episode = Episode(SERIES, 1, number, str(path))
            self.episodes.append(episode)
            self.jellyfin.add(episode)

    async def _api(self, method: str, path: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.base + path, json=body,
                                     headers={"Authorization": f"Bearer {self.result.token}"}) as response:
            data = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {response.status} {data}")
            return data

    async def _register(self) -> None:
        """What a generator does after writing a file: tell the bridge its path and identity."""
        for episode in self.episodes:
            with open(episode.path, encoding="utf-8") as handle:
                url = handle.read().strip()
            row = await self._api("POST", "/api/mappings", {
                "strm_path": episode.path, "resolved_url": url, "site": SITE, "slug": SLUG,
                "season": episode.season, "episode": episode.number, "language": "English Sub",
                "provider": "demo"})
            self.mapping_ids[episode.item_id] = int(row["id"])
        self.timeline.say("demo", f"registered {len(self.episodes)} episodes through POST /api/mappings")

    # ---- acts -----------------------------------------------------------------------------------------
    async def _log_entries(self, episode: Episode) -> list[dict[str, Any]]:
        data = await self._api("GET", f"/api/mappings/{self.mapping_ids[episode.item_id]}")
        return list(data.get("refresh_log") or [])

    async def _play(self, viewer: Viewer, episode: Episode, from_seconds: int, deadline: float = 10.0) -> None:
        """Play; on failure wait for the bridge's heal and the server's refresh, then press play again."""
        where = f"at {from_seconds // 60}:{from_seconds % 60:02d}" if from_seconds else "from the start"
        before = len(await self._log_entries(episode))
        refreshes_before = self.jellyfin.refreshed.count(episode.item_id)
        ok, seen = await viewer.play(episode, from_seconds=from_seconds)
        if ok:
            self.timeline.say("viewer", f"plays {episode.label} {where}: {seen}, playing")
            return
        self.result.failed_plays += 1
        self.timeline.say("viewer", f"plays {episode.label} {where}: {seen}, the player gives up", bad=True)
        end = time.monotonic() + deadline
        entry: dict[str, Any] | None = None
        while time.monotonic() < end:
            entries = await self._log_entries(episode)
            if len(entries) > before:
                entry = entries[0]
                break
            await asyncio.sleep(0.1)
        if entry is None:
            events = await self._api("GET", "/api/events?limit=20")
            decided = next((e for e in events["items"] if e.get("item_id") == episode.item_id), {})
            self.timeline.say("bridge", f"no heal: the stop was judged {decided.get('outcome') or 'not a failure'}",
                              bad=True)
            return
        self.timeline.say("bridge", f"failure detected ({entry.get('reason')}): the link was probed, found dead, "
                                    f"re-resolved and the .strm rewritten: {entry.get('outcome')} "
                                    f"in {entry.get('duration_ms') or 0:.0f} ms")
        if entry.get("outcome") != "refreshed":
            return
        self.result.heals += 1
        while time.monotonic() < end and self.jellyfin.refreshed.count(episode.item_id) <= refreshes_before:
            await asyncio.sleep(0.1)
        if self.jellyfin.refreshed.count(episode.item_id) > refreshes_before:
            self.result.refreshes += 1
        ok, seen = await viewer.play(episode, from_seconds=from_seconds)
        self.timeline.say("viewer", f"presses play again on {episode.label} {where}: {seen}"
                                    + (", playing" if ok else ", still failing"), bad=not ok)

    async def _wait_for_expiry(self) -> None:
        wait = self.options.ttl_seconds + 1
        self.timeline.say("demo", f"time passes: the provider's links live {self.options.ttl_seconds:g}s, "
                                  f"waiting {wait:g}s until every link in the library has expired")
        await asyncio.sleep(wait)

    # ---- the whole run --------------------------------------------------------------------------------
    async def run(self) -> DemoResult:
        from bridge.app import RedactingAccessLogger, create_app
        from bridge.config import load_config
        from bridge.wiring import build_services

        self.options.workdir.mkdir(parents=True, exist_ok=True)
        await self.provider.start()
        await self.jellyfin.start()
        self.timeline.say("provider", f"serving expiring links on {self.provider.base}")
        self.timeline.say("jellyfin", f"simulated Jellyfin on {self.jellyfin.url}")
        self._library()
        port = self.options.port or _free_port()
        webhook_token = secrets.token_hex(16)
        config = load_config(_write_config(self.options, port, self.jellyfin.url, self.api_key, webhook_token,
                                           f"{self.provider.base}/resolve"), env={})
        services = build_services(config)
        logging.getLogger().setLevel(logging.WARNING)  # the timeline narrates; warnings still show
        self.result.token = services.api_token
        runner = web.AppRunner(create_app(services), access_log_class=RedactingAccessLogger, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"
        self.result.dashboard_url = f"{self.base}/"
        self.timeline.say("bridge", f"strm-bridge on {self.base}, library {self.options.workdir / 'library'}")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        viewer = Viewer(self.jellyfin, f"{self.base}/webhooks/jellyfin", webhook_token)
        try:
            await self._register()
            first, second, third = self.episodes[0], self.episodes[1], self.episodes[2 % len(self.episodes)]
            await self._play(viewer, first, 0)
            self.timeline.say("viewer", f"stops {first.label} at 10:00 (the server keeps the resume point)")
            await self._wait_for_expiry()
            await self._play(viewer, first, 600)
            await self._play(viewer, second, 0)
            if third is not second:
                await self._play(viewer, third, 0)
            self._summary()
            if self.options.keep_running:
                click.echo(f"\nThe bridge keeps running: dashboard {self.result.dashboard_url}  "
                           f"token {self.result.token}\nFiles are in {self.options.workdir}. Ctrl-C stops it.")
                await asyncio.Event().wait()
        finally:
            await viewer.close()
            await self.http.close()
            await runner.cleanup()
            await self.jellyfin.close()
            await self.provider.close()
        return self.result

    def _summary(self) -> None:
        r = self.result
        self.timeline.say("demo", f"done: {r.failed_plays} failed play(s), {r.heals} healed by the bridge, "
                                  f"{r.refreshes} Jellyfin refresh(es), {self.provider.resolves} resolver call(s)")


def run_demo(options: DemoOptions) -> DemoResult:
    try:
        return asyncio.run(Demo(options).run())
    except KeyboardInterrupt:  # leaving the dashboard is the normal way out
        return DemoResult()


def default_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
