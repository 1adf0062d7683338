"""The viewer's week, measured: what the viewer sees in each mode, in compressed time, against real HTTP.

Every mode gets the same library (>= 200 episodes), the same play trace and its own world on 127.0.0.1: the
real bridge (create_app on a loopback port, the `http` resolver), a provider whose signed links die after
`--ttl` seconds (tests/fakes/media_provider.py; one episode in five also requires a Referer, like hosters whose
links are bound to their embed page), and a simulated Jellyfin (tests/fakes/jellyfin.py) that, like the real
one, plays the URL it cached from the `.strm` (ShortcutPath) and re-reads it only when the bridge asks for an
item refresh. It sends the webhook plugin's PlaybackStart/PlaybackStop for every press.

Time: a link TTL of `--ttl` seconds stands for 4 hours, so a week is 42 TTLs. The trace: every episode is first
played at a random moment, most are resumed 1-3 times after random gaps (mostly longer than a TTL: the common
failure is a failed resume). A failed press is pressed again after `--retry-gap` (up to 3 presses; 2 s by
default: the player's error has to be read and dismissed first). The gap is real time, not compressed: it is
what the heal has to beat, and the heal's own latency (failed press to Jellyfin's item refresh) is printed
beside it, so a slower bridge shows as a higher p99 long before it shows as failures. Each
episode has one viewer on one device: a resume due while the previous play is still being pressed starts right
after it (one person does not press play twice at once; two presses in the same instant would both meet the
dead link before any failure had been reported, which no reactive heal can prevent).

Modes: no bridge (files keep the first URL), reactive heal only, reactive with `detector.probe_on_start`, the
proactive sweep (reactive too), stable redirect, stable proxy, auto (files converted to /play/ links).
Printed per mode: presses, viewer-visible failed presses (and how many of them were on Referer-bound links,
which no .strm rewrite can fix), expiries met (distinct dead links a press ran into) and failed presses per
expiry, resolver calls, bytes through the bridge.
Targets (links without a header requirement): 0 failed presses in stable and auto modes and with the sweep;
at most 1 per expiry with reactive heal alone.
Usage: python bench/bench_outcome.py [--episodes 240] [--ttl 4] [--days 7] [--seed 7] [--retry-gap 2]
       [--modes reactive,auto] [--explain]
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
from benchutil import REPO, add_repo_to_path, percentile

add_repo_to_path()

from bridge.app import create_app  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.strm import read_strm  # noqa: E402
from bridge.timeutil import from_epoch, to_epoch  # noqa: E402
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
    failures: list[tuple[float, int, str]] = field(default_factory=list)
    """(wall-clock time, episode, link) of each failed press on a link without a header requirement."""
    """Distinct dead links that presses on episodes without a header requirement ran into."""
    bridge_bytes: int = 0
    header_episodes: set[int] = field(default_factory=set)


async def build_world(mode: str, base: Path, episodes: int, ttl: float, media: Path) -> World:
    provider = MediaProvider(ttl=ttl)
    await provider.start()
    jellyfin = await CachingJellyfin(api_key=JF_KEY).start()
    root = base / "library"
    world = World(mode, provider, jellyfin, [])
    exp = int(time.time() + ttl)  # whole seconds, as the provider signs it
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
            world.failures.append((time.time(), play.episode, met))
    if hooks:
        stop_at = position if not ok else position + 600
        async with session.post(hooks, data=webhook("stop", item, device, stop_at), headers=headers) as r:
            await r.read()
    return ok


async def run_world(world: World, trace: list[Play], started: float, retry_gap: float) -> None:
    """One viewer per episode: a resume starts once the viewer's previous play of it is over (retries included)."""
    by_episode: dict[int, list[Play]] = {}
    for play in trace:
        by_episode.setdefault(play.episode, []).append(play)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        async def viewer(plays: list[Play]) -> None:
            device = uuid.uuid4().hex
            for play in plays:
                await asyncio.sleep(max(0.0, started + play.at - time.monotonic()))
                for _ in range(3):
                    if await press(world, session, play, device):
                        break
                    await asyncio.sleep(retry_gap)

        await asyncio.gather(*(viewer(plays) for plays in by_episode.values()))


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
        modes = [m for m in MODES if not args.modes or m in args.modes.split(",")]
        worlds = [await build_world(mode, Path(tmp) / mode.replace(" ", "_"), args.episodes, args.ttl, media)
                  for mode in modes]
        between = sum(1 for p in trace if p.offset)
        print(f"the viewer's week: {args.episodes} episodes ({len(worlds[0].header_episodes)} need a Referer), "
              f"{len(trace)} plays ({len(trace) - between} first plays, {between} resumes), link TTL {args.ttl:g} s = 4 h, "
              f"{args.days} days = {week:.0f} s; all modes side by side")
        started = time.monotonic()
        started_wall = time.time()
        await asyncio.gather(*(run_world(w, trace, started, args.retry_gap) for w in worlds))
        print(f"    ran {time.monotonic() - started:.0f} s")
        print(f"    {'mode':<16}{'presses':>8}{'failed':>8}{' (Referer)':>11}{'expiries met':>14}{'failed/expiry':>15}"
              f"{'resolver calls':>16}{'bridge MB':>11}{'heal p50/p99 s':>16}")
        for w in worlds:
            plain_failed = w.failed - w.failed_header
            per = (plain_failed / len(w.dead_links)) if w.dead_links else 0.0
            print(f"    {w.mode:<16}{w.presses:>8}{w.failed:>8}{w.failed_header:>11}{len(w.dead_links):>14}"
                  f"{per:>15.2f}{len(w.provider.resolve_calls):>16}{w.bridge_bytes / 1e6:>11.1f}{heal_figures(w):>16}")
        print("    failed/expiry: failed presses on links without a header requirement per distinct dead link they met")
        print("    heal: from a failed press to Jellyfin's item refresh that gives it the new URL (reactive modes)")
        if args.explain:
            for w in worlds:
                explain(w, started_wall)
        for w in worlds:
            await close_world(w)
            if w.services is not None:
                await w.services.stop()


def refreshes_of(world: World, item: str) -> list[float]:
    """Wall-clock times at which the simulated Jellyfin refreshed `item` (re-read its .strm)."""
    return [at for key, at in world.jellyfin.refreshed_at if key == item]


def heal_figures(world: World) -> str:
    latencies = []
    for at, episode, _ in world.failures:
        after = [t for t in refreshes_of(world, world.items[episode]) if t >= at]
        if after:
            latencies.append(after[0] - at)
    if not latencies:
        return "-"
    latencies.sort()
    return f"{percentile(latencies, 0.5):.2f}/{percentile(latencies, 0.99):.2f}"


def explain(world: World, started: float) -> None:
    """Every dead link that failed more than one press, with the press times: what a second failure waited on."""
    if world.services is not None:
        conn = world.services.db.conn
        stages: dict[str, list[float]] = {"stop stored -> processed": [], "refresh started -> finished": []}
        for received, processed in conn.execute(
                "select received_at, processed_at from events where kind = 'stop' and outcome = 'refreshed'"):
            stages["stop stored -> processed"].append(to_epoch(processed) - to_epoch(received))
        for begun, finished in conn.execute("select started_at, finished_at from refresh_log where outcome = 'refreshed'"):
            stages["refresh started -> finished"].append(to_epoch(finished) - to_epoch(begun))
        for stage, values in stages.items():
            values.sort()
            if values:
                print(f"    {world.mode}: {stage}: p50 {percentile(values, 0.5):.3f} s, p99 {percentile(values, 0.99):.3f} s,"
                      f" max {values[-1]:.3f} s over {len(values)}")
    by_link: dict[str, list[tuple[float, int]]] = {}
    for at, episode, link in world.failures:
        by_link.setdefault(link, []).append((at - started, episode))
    for link, presses in by_link.items():
        if len(presses) > 1:
            times = ", ".join(f"{at:.2f}" for at, _ in presses)
            item = world.items[presses[0][1]]
            refreshes = [at - started for at in refreshes_of(world, item) if at - started >= presses[0][0]]
            heal = f"; Jellyfin refreshed it {refreshes[0] - presses[0][0]:.2f} s after the first" if refreshes else ""
            print(f"    {world.mode}: episode {presses[0][1]} failed {len(presses)} presses on one link at {times} s{heal}")
            if not refreshes and world.services is not None:
                conn = world.services.db.conn
                events = conn.execute("select kind, outcome, error from events where item_id = ? order by id",
                                      (item,)).fetchall()
                row = conn.execute("select id, state from mappings where jellyfin_item_id = ?", (item,)).fetchone()
                log = world.services.store.refresh_history(row[0]) if row else []
                print(f"        never healed: mapping {row}, events {events}, refreshes "
                      f"{[(r['trigger'], r['outcome'], r.get('error')) for r in log]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=240)
    parser.add_argument("--ttl", type=float, default=4.0)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--retry-gap", type=float, default=2.0,
                        help="real seconds before a viewer presses play again after a failure (not compressed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--modes", default="", help="comma-separated subset of the modes (default: all)")
    parser.add_argument("--explain", action="store_true", help="list dead links that failed more than one press")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
