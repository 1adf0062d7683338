"""A real bridge on a loopback port, the media provider, and media made by ffmpeg once per session."""
from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.app import create_app
from bridge.mappings import Mapping
from bridge.play.signing import ensure_play_secret
from bridge.services import Services
from bridge.timeutil import from_epoch
from tests.appfactory import make_services
from tests.fakes.loopback import serve
from tests.fakes.media_provider import MediaProvider
from tests.play.media import FFMPEG, FFPROBE, Media, make_media

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (.ci/run installs it)")


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
async def provider() -> AsyncIterator[MediaProvider]:
    fake = MediaProvider()
    await fake.start()
    yield fake
    await fake.close()


@dataclass
class Bridge:
    services: Services
    base_url: str
    root: Path
    provider: MediaProvider

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.services.store

    def plant(self, key: str, folder: Path, entry: str, *, referer: str | None = None, ttl: float | None = None,
              episode: int = 1) -> Mapping:
        """An episode at the provider, its mapping (current URL valid for `ttl`) and a .strm holding its /play/ link."""
        self.provider.add(key, folder, entry, referer=referer)
        slug, season, number = key.rsplit("-", 2)
        exp = int(time.time() + (ttl if ttl is not None else self.provider.ttl)) + 1
        url = self.provider.sign(key, expires_at=exp)
        path = self.root / slug / f"{slug} S{int(season):02d}E{int(number):02d}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        mapping = self.store.upsert({
            "strm_path": str(path), "resolved_url": url, "expires_at": from_epoch(exp), "site": "fake", "slug": slug,
            "season": int(season), "episode": int(number), "language": "German Dub", "state": "ok",
            "resolved_headers": {"Referer": referer} if referer else None,
        })
        path.write_text(self.link(mapping["id"]) + "\n")
        return mapping

    def age(self, mapping: Mapping, ttl: float) -> Mapping:
        """Give the mapping a fresh URL of the same stream that dies in `ttl` seconds (a link near its end)."""
        key = mapping["resolved_url"].split("/m/", 1)[1].split("/", 1)[0]
        exp = int(time.time() + ttl) + 1
        self.store.update(mapping["id"], {"resolved_url": self.provider.sign(key, expires_at=exp),
                                          "expires_at": from_epoch(exp)})
        return self.store.get(mapping["id"])

    def link(self, mapping_id: int) -> str:
        return self.services.play.signer.play_url(self.base_url, mapping_id)

    def play_refreshes(self, mapping_id: int) -> list[dict[str, Any]]:
        return [r for r in self.store.refresh_history(mapping_id, limit=100) if r["trigger"] == "play"]


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def make_bridge(tmp_path: Path, provider: MediaProvider) -> AsyncIterator[BridgeFactory]:
    runners: list[web.AppRunner] = []

    async def build(mode: str = "auto", margin: float = 0.0, extra: str = "") -> Bridge:
        root = tmp_path / "library"
        root.mkdir(exist_ok=True)
        config = f"""
[refresh]
resolvers = ["http"]
cooldown_seconds = 0
[resolvers.http]
url = "{provider.base_url}/resolve"
[play]
mode = "{mode}"
margin_seconds = {margin}
{extra}
"""
        services = make_services(tmp_path, config, roots=[root])
        runner, port = await serve(create_app(services))
        runners.append(runner)
        return Bridge(services, f"http://127.0.0.1:{port}", root, provider)

    yield build
    for runner in runners:
        await runner.cleanup()


@dataclass
class Played:
    returncode: int
    frames: int
    log: str

    @property
    def clean(self) -> bool:
        """Exit 0 and nothing the player complained about (HLS skips a failed segment with only a warning)."""
        return self.returncode == 0 and not re.search(r"error|failed|invalid|Server returned", self.log, re.IGNORECASE)


async def _run(args: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)  # noqa
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def ffplay_null(url: str, seek: float | None = None) -> Played:
    """`ffmpeg -i <url> -f null -` (optionally after `-ss`), decoding everything; counts the video frames."""
    args = [FFMPEG, "-nostdin", "-v", "warning", "-rw_timeout", "15000000", "-progress", "pipe:1"]
    if seek is not None:
        args += ["-ss", str(seek)]
    code, out, err = await _run([*args, "-i", url, "-map", "0:v:0", "-f", "null", "-"])
    frames = [int(m) for m in re.findall(r"^frame=([0-9]+)$", out, re.MULTILINE)]
    return Played(code, frames[-1] if frames else 0, err)


async def ffprobe(url: str) -> tuple[int, float, str]:
    code, out, err = await _run([FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", url])
    try:
        duration = float(out.strip().splitlines()[0])
    except (ValueError, IndexError):
        duration = 0.0
    return code, duration, err


__all__ = ["Bridge", "BridgeFactory", "Played", "ensure_play_secret", "ffplay_null", "ffprobe", "needs_ffmpeg"]
