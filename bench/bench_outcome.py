"""The viewer's week, measured: what the viewer sees in each mode, in compressed time, against real HTTP.

Every mode gets the same library (>= 200 episodes), the same play trace and its own world on 127.0.0.1: the
real bridge (create_app on a loopback port, the `http` resolver), a provider whose signed links die after
`--ttl` seconds (tests/fakes/media_provider.py; one episode in five also requires a Referer, like hosters whose
links are bound to their embed page), and a simulated Jellyfin (tests/fakes/jellyfin.py) that, like the real
one, plays the URL it cached from the `.strm` (ShortcutPath) and re-reads it only when the bridge asks for an
item refresh. It sends the webhook plugin's PlaybackStart/PlaybackStop for every press.

Time: a link TTL of `--ttl` seconds stands for 4 hours, so a week is 42 TTLs. The trace: every episode is first
played at a random moment, most are resumed 1-3 times after random gaps (mostly longer than a TTL: the common
failure is a failed resume). A failed press is pressed again after `--retry-gap` (up to 3 presses).

Modes: no bridge (files keep the first URL), reactive heal only, reactive with `detector.probe_on_start`, the
proactive sweep (reactive too), stable redirect, stable proxy, auto (files converted to /play/ links).
Printed per mode: presses, viewer-visible failed presses (and how many of them were on Referer-bound links,
which no .strm rewrite can fix), expiries met (distinct dead links a press ran into) and failed presses per
expiry, resolver calls, bytes through the bridge.
Targets (links without a header requirement): 0 failed presses in stable and auto modes and with the sweep;
at most 1 per expiry with reactive heal alone.
Usage: python bench/bench_outcome.py [--episodes 240] [--ttl 4] [--days 7] [--seed 7]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from benchutil import REPO, add_repo_to_path

add_repo_to_path()

from bridge.app import create_app  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.strm import read_strm  # noqa: E402
from bridge.timeutil import from_epoch  # noqa: E402
from bridge.wiring import build_services  # noqa: E402
from tests.fakes.jellyfin import FakeJellyfin, guid  # noqa: E402
from tests.fakes.loopback import serve  # noqa: E402
from tests.fakes.media_provider import MediaProvider  # noqa: E402

MODES = ("no bridge", "reactive", "probe_on_start", "sweep", "stable redirect", "stable proxy", "auto")
FIXTURES = REPO / "tests" / "fixtures" / "jellyfin"
HOOK = "bench-webhook-token-0123456789"
JF_KEY = "bench-jellyfin-key-0123456789abcdef"
API_TOKEN = "bench-api-token-0123456789abcdef"
EPISODE_BYTES = 64 * 1024
REFERER = "https://embed.example/e/"
TICKS = 10_000_000


@dataclass
class Play:
    at: float
    episode: int
    offset: int
    """Byte a resume starts at (0: a first play)."""


def make_trace(episodes: int, week: float, ttl: float, seed: int) -> list[Play]:
    rng = random.Random(seed)
    plays = []
    for episode in range(episodes):
        at = rng.uniform(0, week * 0.85)
        plays.append(Play(at, episode, 0))
        for _ in range(rng.choices((0, 1, 2, 3), (0.25, 0.4, 0.25, 0.1))[0]):
            gap = ttl * 0.3 if rng.random() < 0.15 else rng.expovariate(1 / (week / 8))  # a quick resume, or later
            at += gap
            if at >= week:
                break
            plays.append(Play(at, episode, rng.randrange(4096, EPISODE_BYTES - 4096)))
    return sorted(plays, key=lambda p: p.at)


class CachingJellyfin(FakeJellyfin):
    """Plays what it cached from each .strm; an item refresh re-reads the file (as ShortcutPath does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cached: dict[str, str] = {}
        self.paths: dict[str, str] = {}

    def scan(self, key: str, path: str) -> None:
        self.paths[key] = path
        self.cached[key] = read_strm(path) or ""

    async def _refresh(self, request: web.Request, groups: list[str]) -> web.Response:
        response = await super()._refresh(request, groups)
        if response.status == 204:
            key = guid(groups[0])
            self.cached[key] = read_strm(self.paths[key]) or self.cached[key]
        return response


def webhook(kind: str, item: str, device: str, position: float, completed: bool = False) -> bytes:
    data = json.loads((FIXTURES / f"send_all_playback_{kind}.json").read_text())
    data.update(ItemId=item, MediaSourceId=item, DeviceId=device, PlaybackPositionTicks=int(position * TICKS))
    if kind == "stop":
        data.update(PlayedToCompletion=completed)
    return json.dumps(data).encode()


@dataclass
class World:
    mode: str
    provider: MediaProvider
    jellyfin: CachingJellyfin
    items: list[str]
    services: Any = None
    runner: web.AppRunner | None = None
    bridge_port: int = 0
    presses: int = 0
    failed: int = 0
    failed_header: int = 0
    dead_links: set[str] = field(default_factory=set)
    """Distinct dead links that presses on episodes without a header requirement ran into."""
    bridge_bytes: int = 0
    header_episodes: set[int] = field(default_factory=set)


async def build_world(mode: str, base: Path, episodes: int, ttl: float, media: Path) -> World:
    provider = MediaProvider(ttl=ttl)
    await provider.start()
    jellyfin = await CachingJellyfin(api_key=JF_KEY).start()
    root = base / "library"
    world = World(mode, provider, jellyfin, [])
    exp = time.time() + ttl
    files = []
    for episode in range(episodes):
        season, number = episode // 24 + 1, episode % 24 + 1
        key = f"show-{season}-{number}"
        referer = REFERER + key if episode % 5 == 4 else None
        if referer:
            world.header_episodes.add(episode)
        provider.add(key, media, "e.mp4", referer=referer)
        path = root / "Show" / f"Season {season:02d}" / f"Show S{season:02d}E{number:02d}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = provider.sign(key, expires_at=exp)
        path.write_text(url + "\n")
        files.append((path, key, url, referer, season, number))
        world.items.append(jellyfin.add_item(uuid.uuid4().hex, str(path), Type="Episode", SeriesName="Show",
                                             ParentIndexNumber=season, IndexNumber=number))
    if mode != "no bridge":
        sweep = mode == "sweep"
        config = base / "bridge.toml"
        config.write_text(f"""
[server]
api_token = "{API_TOKEN}"
[database]
path = "{base / 'data' / 'bridge.db'}"
[library]
roots = ["{root}"]
[jellyfin]
url = "{jellyfin.url}"
api_key = "{JF_KEY}"
webhook_token = "{HOOK}"
path_map = [{{server = "{root}", local = "{root}"}}]
refresh_debounce_seconds = 0
refresh_gap_seconds = 0
[detector]
probe_on_start = {"true" if mode == "probe_on_start" else "false"}
[refresh]
resolvers = ["http"]
cooldown_seconds = 0
probe_timeout_seconds = 2
sweep_interval_seconds = {ttl / 16 if sweep else 1e9}
sweep_margin_seconds = {ttl * 0.75 if sweep else 0}
concurrency = 16
[resolvers.http]
url = "{provider.base_url}/resolve"
[cache]
ttl_seconds = 0
[play]
mode = "{ {'stable redirect': 'redirect', 'stable proxy': 'proxy'}.get(mode, 'auto') }"
margin_seconds = {ttl / 8}
""")
        services = build_services(load_config(config, env={}))
        for (path, key, url, referer, season, number), item in zip(files, world.items):
            services.store.upsert({"strm_path": str(path), "resolved_url": url, "expires_at": from_epoch(exp),
                                   "site": "fake", "slug": "show", "season": season, "episode": number,
                                   "language": "German Dub", "state": "ok", "jellyfin_item_id": item,
                                   "resolved_headers": {"Referer": referer} if referer else None})
        world.runner, world.bridge_port = await serve(create_app(services))
        world.services = services
        if mode.startswith("stable") or mode == "auto":  # what `strm-bridge convert --to stable` writes
            public = f"http://127.0.0.1:{world.bridge_port}"
            for (path, *_), row in zip(files, services.store.search(limit=100_000)[0]):
                services.library.write(str(path), services.play.signer.play_url(public, row["id"]))
    for (path, *_), item in zip(files, world.items):
        jellyfin.scan(item, str(path))  # the library scan: Jellyfin caches every file's URL
    return world


async def press(world: World, session: aiohttp.ClientSession, play: Play, device: str) -> bool:
    """One press of play: the webhooks Jellyfin sends, the player's request for the URL Jellyfin cached."""
    item = world.items[play.episode]
    url = world.jellyfin.cached[item]
    position = play.offset / EPISODE_BYTES * 1440
    hooks = f"http://127.0.0.1:{world.bridge_port}/webhooks/jellyfin" if world.services else None
    headers = {"Content-Type": "application/json", "X-Api-Key": HOOK}
    if hooks:
        async with session.post(hooks, data=webhook("start", item, device, position), headers=headers) as r:
            await r.read()
    world.presses += 1
    ok = False
    try:
        range_header = {"Range": f"bytes={play.offset}-"} if play.offset else {}
        async with session.get(url, headers=range_header) as response:
            body = await response.read()
            ok = response.status in (200, 206) and len(body) == EPISODE_BYTES - play.offset
            if response.url.port == world.bridge_port:
                world.bridge_bytes += len(body)
            met = str(response.url) if response.history else url
    except aiohttp.ClientError:
        met = url
    if not ok:
        world.failed += 1
        if play.episode in world.header_episodes:
            world.failed_header += 1
        else:
            world.dead_links.add(met)
    if hooks:
        stop_at = position if not ok else position + 600
        async with session.post(hooks, data=webhook("stop", item, device, stop_at), headers=headers) as r:
            await r.read()
    return ok


async def run_world(world: World, trace: list[Play], started: float, retry_gap: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        async def viewer(play: Play) -> None:
            await asyncio.sleep(max(0.0, started + play.at - time.monotonic()))
            device = uuid.uuid4().hex
            for _ in range(3):
                if await press(world, session, play, device):
                    return
                await asyncio.sleep(retry_gap)

        await asyncio.gather(*(viewer(p) for p in trace))


async def close_world(world: World) -> None:
    if world.runner is not None:
        await world.runner.cleanup()
    await world.jellyfin.close()
    await world.provider.close()


async def amain(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    week = args.ttl * 6 * args.days  # one TTL stands for 4 hours
    trace = make_trace(args.episodes, week, args.ttl, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media"
        media.mkdir()
        (media / "e.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + random.Random(1).randbytes(EPISODE_BYTES - 12))
        worlds = [await build_world(mode, Path(tmp) / mode.replace(" ", "_"), args.episodes, args.ttl, media)
                  for mode in MODES]
        between = sum(1 for p in trace if p.offset)
        print(f"the viewer's week: {args.episodes} episodes ({len(worlds[0].header_episodes)} need a Referer), "
              f"{len(trace)} plays ({len(trace) - between} first plays, {between} resumes), link TTL {args.ttl:g} s = 4 h, "
              f"{args.days} days = {week:.0f} s; all modes side by side")
        started = time.monotonic()
        await asyncio.gather(*(run_world(w, trace, started, args.retry_gap) for w in worlds))
        print(f"    ran {time.monotonic() - started:.0f} s")
        print(f"    {'mode':<16}{'presses':>8}{'failed':>8}{' (Referer)':>11}{'expiries met':>14}{'failed/expiry':>15}"
              f"{'resolver calls':>16}{'bridge MB':>11}")
        for w in worlds:
            plain_failed = w.failed - w.failed_header
            per = (plain_failed / len(w.dead_links)) if w.dead_links else 0.0
            print(f"    {w.mode:<16}{w.presses:>8}{w.failed:>8}{w.failed_header:>11}{len(w.dead_links):>14}"
                  f"{per:>15.2f}{len(w.provider.resolve_calls):>16}{w.bridge_bytes / 1e6:>11.1f}")
        print("    failed/expiry: failed presses on links without a header requirement per distinct dead link they met")
        for w in worlds:
            await close_world(w)
            if w.services is not None:
                await w.services.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=240)
    parser.add_argument("--ttl", type=float, default=4.0)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--retry-gap", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
