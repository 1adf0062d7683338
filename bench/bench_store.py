"""Mapping-store speed at a million rows: path and identity lookups (p50/p99) and the upsert rate.

Baselines, measured in the same run on the same file: a bare primary-key SELECT (the cheapest lookup SQLite
can do) and a bare executemany INSERT. Target: p99 of store lookups under 1 ms.
Usage: python bench/bench_store.py [--rows 1000000] [--lookups 20000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bridge.db import open_database
from bridge.mappings import Identity, MappingStore
from bridge.timeutil import now_iso


def row(i: int) -> tuple:
    slug = f"series-{i // 1000}"
    season, episode = (i // 100) % 10 + 1, i % 100 + 1
    path = f"/media/strm/{slug}/Season {season:02d}/{slug} S{season:02d}E{episode:03d}.strm"
    return (path, "aniworld.to", slug, season, episode, "German Dub", "", f"https://cdn.test/{i}.m3u8?e=14400",
            "ok", 0, now_iso(), now_iso())


def fill(store: MappingStore, rows: int) -> float:
    start = time.perf_counter()
    batch = 50_000
    with store.conn:
        for first in range(0, rows, batch):
            store.conn.executemany(
                "insert into mappings (strm_path, site, slug, season, episode, language, provider, resolved_url,"
                " state, fail_count, created_at, updated_at) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                [row(i) for i in range(first, min(rows, first + batch))],
            )
    return rows / (time.perf_counter() - start)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def timed(fn, args: list) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for a in args:
        t0 = time.perf_counter()
        result = fn(a)
        out.append(time.perf_counter() - t0)
        assert result, f"lookup found nothing for {a!r}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--upserts", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "bench.db")
        store = MappingStore(db)
        insert_rate = fill(store, args.rows)
        rng = random.Random(7)
        picks = [rng.randrange(args.rows) for _ in range(args.lookups)]
        paths = [row(i)[0] for i in picks]
        idents = [Identity(*row(i)[1:7]) for i in picks]
        ids = [i + 1 for i in picks]
        pk = timed(lambda i: store.conn.execute("select * from mappings where id = ?", (i,)).fetchone(), ids)
        by_path = timed(store.by_path, paths)
        by_identity = timed(store.by_identity, idents)
        by_url = timed(store.by_url, [row(i)[7] for i in picks])
        t0 = time.perf_counter()
        with store.conn:
            for n, i in enumerate(picks[: args.upserts]):
                store.upsert({"strm_path": row(i)[0], "resolved_url": f"https://cdn.test/new/{n}.m3u8"}, commit=False)
        upsert_batched = args.upserts / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        single = min(2000, args.upserts)
        for n, i in enumerate(picks[:single]):
            store.upsert({"strm_path": row(i)[0], "resolved_url": f"https://cdn.test/again/{n}.m3u8"})
        upsert_committed = single / (time.perf_counter() - t0)
        print(f"rows: {store.count():,}")
        base50, base99 = percentiles(pk)
        print(f"baseline primary-key select  p50 {base50:.4f} ms  p99 {base99:.4f} ms")
        for name, samples in (("by_path", by_path), ("by_identity", by_identity), ("by_url", by_url)):
            p50, p99 = percentiles(samples)
            verdict = "OK" if p99 < 1.0 else "OVER TARGET"
            print(f"{name:<12} p50 {p50:.4f} ms  p99 {p99:.4f} ms  ratio to baseline p50 {p50 / base50:.2f}x  [{verdict}: p99 < 1 ms]")
        print(f"bare executemany insert: {insert_rate:,.0f} rows/s (baseline)")
        print(f"upsert, one transaction: {upsert_batched:,.0f} rows/s  ratio {upsert_batched / insert_rate:.2f}")
        print(f"upsert, commit each:     {upsert_committed:,.0f} rows/s")


if __name__ == "__main__":
    main()
