"""Dashboard server time at 100,000 mappings, and the link check's probe rate against a loopback server.

Part (a): the real app (build_services + create_app) on loopback with a logged-in session; each dashboard
request is timed from the client, and a bare aiohttp handler in the same app, timed the same way in the same
rounds, is the baseline (its time is what HTTP on loopback costs; the difference is the dashboard's own).
Target: p99 < 100 ms for the main page and for a search.
Part (b): LinkChecker probing N links on a loopback media server (HEAD, 200 video/mp4) and recording each
finding, against a bare loop of the same HEAD requests at the same concurrency (no classification, no writes).
Usage: python bench/bench_dashboard.py [--rows 100000] [--requests 200] [--links 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.app import create_app  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.db import open_database  # noqa: E402
from bridge.health import LinkChecker  # noqa: E402
from bridge.mappings import MappingStore  # noqa: E402
from bridge.timeutil import now_iso, to_iso  # noqa: E402
from bridge.web.session import COOKIE_NAME  # noqa: E402
from bridge.wiring import build_services  # noqa: E402

TOKEN = "bench-dashboard-token-0123456789"
STATES = ["ok"] * 90 + ["dead"] * 4 + ["broken"] * 2 + ["missing"] * 1 + ["unknown"] * 3


WORDS = ("frieren", "oshi", "spy", "family", "dandadan", "kaiju", "solo", "leveling", "mushoku", "tensei", "jujutsu",
         "kaisen", "chainsaw", "bocchi", "rock", "vinland", "saga", "mob", "psycho", "dungeon", "meshi", "blue",
         "lock", "haikyu", "mashle", "undead", "girl", "sakamoto", "days", "kusuriya", "hitorigoto", "ranma",
         "shangri", "frontier", "pon", "magilumiere", "tsuki", "michi", "orb", "wistoria", "gachiakuta", "sentai")


def series_slug(n: int) -> str:
    """Distinct, realistic-looking slugs (two title words and a number), so trigrams vary as in a real library."""
    return f"{WORDS[n % len(WORDS)]}-{WORDS[(n * 7 + 3) % len(WORDS)]}-{n:03d}"


def fill(db_path: Path, rows: int, url_base: str = "https://cdn.test") -> None:
    store = MappingStore(open_database(db_path))
    now = datetime.now(UTC)
    rnd = random.Random(7)
    batch = 20_000
    with store.conn:
        for first in range(0, rows, batch):
            values = []
            for i in range(first, min(rows, first + batch)):
                slug = series_slug(i // 100)
                season, episode = (i // 25) % 4 + 1, i % 25 + 1
                expires = to_iso(now + timedelta(seconds=rnd.uniform(-3600, 48 * 3600))) if i % 5 else None
                values.append((f"/media/strm/{slug}/Season {season:02d}/{slug} S{season:02d}E{episode:02d}.strm",
                               "aniworld.to", slug, season, episode, "German Dub", "", f"{url_base}/{i}.mp4?e=1",
                               "VOE", STATES[i % len(STATES)], 0, expires, now_iso(), now_iso(), now_iso()))
            store.conn.executemany(
                "insert into mappings (strm_path, site, slug, season, episode, language, provider, resolved_url,"
                " provider_used, state, fail_count, expires_at, resolved_at, created_at, updated_at)"
                " values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
    store.conn.close()


def pct(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


async def bench_pages(tmp: Path, rows: int, requests: int) -> None:
    db_path = tmp / "data" / "bridge.db"
    started = time.perf_counter()
    fill(db_path, rows)
    print(f"filled {rows:,} mappings in {time.perf_counter() - started:.1f} s")
    config_path = tmp / "strm-bridge.toml"
    config_path.write_text(f'[server]\napi_token = "{TOKEN}"\n[database]\npath = "{db_path}"\n'
                           "[refresh]\nsweep_interval_seconds = 0\n")
    services = build_services(load_config(config_path, env={}))
    app = create_app(services)

    async def bare(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/ui/bench-bare", bare)  # under /ui/: same guard path and middleware as the dashboard
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    cases = {
        "baseline: bare handler": ("/ui/bench-bare", {}),
        "main page (health)": ("/", {}),
        "mappings, page 1": ("/ui/mappings", {}),
        "mappings, page 1000": ("/ui/mappings?page=1000", {}),
        f"search {series_slug(421)!r} (one series)": (f"/ui/mappings?q={series_slug(421)}", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search 'frieren' (about 4,800 hits)": ("/ui/mappings?q=frieren", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search 'S03E07' (path, 4,000 hits)": ("/ui/mappings?q=S03E07", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search, no match": ("/ui/mappings?q=no-such-series", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search 'kaiju' + state=dead": ("/ui/mappings?q=kaiju&state=dead", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search '/media/strm/oshi' (path prefix, 2,400 rows)": ("/ui/mappings?q=/media/strm/oshi", {"HX-Request": "true", "HX-Target": "mapping-table"}),
        "search '/media/strm' (path prefix, every row)": ("/ui/mappings?q=/media/strm", {"HX-Request": "true", "HX-Target": "mapping-table"}),
    }
    async with aiohttp.ClientSession() as client:
        login = await client.post(f"{base}/login", data={"token": TOKEN}, allow_redirects=False)
        assert login.status == 303, login.status
        cookie = login.cookies[COOKIE_NAME].value
        jar = {COOKIE_NAME: cookie}
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for name, (path, headers) in cases.items():  # warm up: SQLite page cache, template compilation
            async with client.get(base + path, headers=headers, cookies=jar) as response:
                body = await response.text()
                assert response.status == 200, (name, response.status, body[:200])
        for _ in range(requests):  # interleaved rounds: drift on the shared machine hits every case alike
            for name, (path, headers) in cases.items():
                t0 = time.perf_counter()
                async with client.get(base + path, headers=headers, cookies=jar) as response:
                    await response.read()
                samples[name].append(time.perf_counter() - t0)
        page = await (await client.get(f"{base}/", cookies=jar)).text()
        dead = re.search(r'data-state="dead">\s*<span class="count">([0-9,]+)<', page)
        print(f"health page shows {dead.group(1) if dead else '?'} dead of {rows:,}")
    base_p50, base_p99 = pct(samples["baseline: bare handler"])
    print(f"\n(a) dashboard at {rows:,} mappings, {requests} requests per case, client-timed on loopback")
    print(f"{'case':<44} {'p50 ms':>8} {'p99 ms':>8} {'p99 - baseline':>15}")
    for name, values in samples.items():
        p50, p99 = pct(values)
        print(f"{name:<44} {p50:8.2f} {p99:8.2f} {p99 - base_p99:15.2f}")
    print("target: p99 < 100 ms for the main page and a search")
    await runner.cleanup()


async def bench_check(tmp: Path, links: int, concurrency: int) -> None:
    async def media(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"\x00\x00\x00\x18ftypisom", content_type="video/mp4")

    app = web.Application()
    app.router.add_route("*", "/{name}", media)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cdn = f"http://127.0.0.1:{runner.addresses[0][1]}"
    db_path = tmp / "check" / "bridge.db"
    fill(db_path, links, url_base=cdn)
    store = MappingStore(open_database(db_path))
    ids = [r[0] for r in store.conn.execute("select id from mappings order by id")]
    # the check skips rows whose .strm is gone; point every row at one real file
    real = tmp / "check" / "x.strm"
    real.write_text(f"{cdn}/x.mp4\n")
    store.conn.execute("update mappings set strm_path = ? || id || '.strm'", (str(tmp / "check") + "/f",))
    store.conn.commit()
    for i in ids:
        (tmp / "check" / f"f{i}.strm").write_text(f"{cdn}/{i}.mp4\n")
    urls = [f"{cdn}/{i}.mp4?e=1" for i in range(links)]

    async def bare_round() -> float:
        queue = list(urls)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            t0 = time.perf_counter()

            async def worker() -> None:
                while queue:
                    url = queue.pop()
                    async with session.head(url) as response:
                        assert response.status == 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return links / (time.perf_counter() - t0)

    async def check_round() -> float:
        checker = LinkChecker(store, concurrency=concurrency, timeout=5)
        t0 = time.perf_counter()
        report = await checker.check(ids)
        rate = links / (time.perf_counter() - t0)
        await checker.close()
        assert report.counts == {"alive": links}, report.counts
        return rate

    rates: dict[str, list[float]] = {"bare HEAD loop": [], "LinkChecker (probe + record)": []}
    for _ in range(3):  # interleaved: bare, check, bare, check, ...
        rates["bare HEAD loop"].append(await bare_round())
        rates["LinkChecker (probe + record)"].append(await check_round())
    recorded = store.conn.execute("select count(*) from mappings where last_checked_at is not null").fetchone()[0]
    print(f"\n(b) link check, {links:,} links on a loopback server, concurrency {concurrency}, three interleaved rounds")
    for name, values in rates.items():
        print(f"{name:<30} {' / '.join(f'{v:,.0f}' for v in values)} links/s")
    ratio = statistics.mean(rates["LinkChecker (probe + record)"]) / statistics.mean(rates["bare HEAD loop"])
    print(f"ratio check / bare: {ratio:.2f}; rows with last_checked_at recorded: {recorded:,}")
    store.conn.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--links", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_pages(Path(tmp), args.rows, args.requests))
        asyncio.run(bench_check(Path(tmp), args.links, args.concurrency))


if __name__ == "__main__":
    main()
