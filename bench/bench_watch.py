"""Adopting new files through the folder watcher, against `import` of the same tree, in the same run.

N AniBridge-named files (flat download folder, as AniBridge writes them: tmp + replace) are adopted
  - by `import_tree` (the baseline: a walk of a tree that is already on disk), run before and after;
  - by the watcher: it watches the empty folder; the files, written beforehand into a staging folder on the
    same file system, are renamed into it one by one (AniBridge's tmp + replace is such a rename), and the clock
    runs from the first rename until the last file is adopted.
Each phase runs in its own process so its peak RSS is its own. Every file must be adopted with its identity.
Target: watcher rate ≥ 0.5 of import's.
Usage: python bench/bench_watch.py [--files 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import add_repo_to_path, peak_rss_kb

add_repo_to_path()

LANGS = ["German Dub", "German Sub", "English Dub", "English Sub"]


def episodes(n: int):  # type: ignore[no-untyped-def]
    from tests.anibridge_library import Episode

    for i in range(n):
        site = "s.to" if i % 3 == 0 else "aniworld.to"
        yield Episode(site=site, slug=f"series-{i // 400}", title=f"Series {i // 400}", season=(i // 100) % 4 + 1,
                      episode=i % 100 + 1, language=LANGS[i % 4])


def write_all(folder: Path, n: int) -> None:
    from tests.anibridge_library import cdn_url, write_strm

    for i, ep in enumerate(episodes(n)):
        write_strm(folder, ep, cdn_url(ep, i))


def check(store, n: int) -> int:  # type: ignore[no-untyped-def]
    """How many rows carry the full identity their file name tells (site, slug, season, episode, language)."""
    return store.conn.execute(
        "select count(*) from mappings where site is not null and slug like 'series-%' and season is not null"
        " and episode is not null and language is not null").fetchone()[0]


def phase_import(work: Path, n: int) -> dict[str, float]:
    from bridge.db import open_database
    from bridge.importer import import_tree
    from bridge.mappings import MappingStore
    from bridge.probe import expiry_iso
    from bridge.strm import Library

    folder = work / "downloads"
    write_all(folder, n)
    store = MappingStore(open_database(work / "import.db"))
    start = time.perf_counter()
    report = import_tree(store, [str(work)], library=Library([str(work)]), predict_expiry=expiry_iso)
    elapsed = time.perf_counter() - start
    assert report.created == n, report
    return {"seconds": elapsed, "rate": n / elapsed, "adopted": check(store, n), "peak_rss_kb": peak_rss_kb()}


def phase_watch(work: Path, n: int) -> dict[str, float]:
    from bridge.db import open_database
    from bridge.importer import Adopter
    from bridge.mappings import MappingStore
    from bridge.probe import expiry_iso
    from bridge.strm import Library
    from bridge.watch import FolderWatcher

    folder = work / "watched" / "downloads"
    folder.mkdir(parents=True)
    staging = work / "staging"
    write_all(staging, n)
    store = MappingStore(open_database(work / "watch.db"))
    library = Library([str(work / "watched")])

    async def run() -> dict[str, float]:
        watcher = FolderWatcher(store, [str(work / "watched")], lambda: Adopter(store, library, predict_expiry=expiry_iso),
                                debounce_ms=1600)
        await watcher.start()
        staged = sorted(staging.iterdir())
        start = time.perf_counter()
        await asyncio.to_thread(lambda: [os.rename(p, folder / p.name) for p in staged])  # another process in real life
        written = time.perf_counter() - start
        while store.count() < n and time.perf_counter() - start < 600:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        await watcher.stop()
        return {"seconds": elapsed, "write_seconds": written, "rate": n / elapsed, "adopted": check(store, n),
                "batches": watcher.stats.batches, "peak_rss_kb": peak_rss_kb()}

    return asyncio.run(run())


def run_phase(name: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--phase", name, "--files", str(n), "--work", tmp],
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--phase", choices=["import", "watch"])
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.phase:
        result = (phase_import if args.phase == "import" else phase_watch)(Path(args.work), args.files)
        print(json.dumps(result))
        return
    n = args.files
    before = run_phase("import", n)
    watch = run_phase("watch", n)
    after = run_phase("import", n)
    baseline = (before["rate"] + after["rate"]) / 2
    print(f"import of {n:,} files: {before['rate']:,.0f} / {after['rate']:,.0f} files/s before / after "
          f"({before['seconds']:.2f} s / {after['seconds']:.2f} s), peak RSS {before['peak_rss_kb'] / 1024:.0f} / "
          f"{after['peak_rss_kb'] / 1024:.0f} MB, adopted with identity {before['adopted']:,} / {after['adopted']:,}")
    print(f"watcher, {n:,} new files: {watch['rate']:,.0f} files/s ({watch['seconds']:.2f} s from the first rename to "
          f"the last adoption; the renames alone {watch['write_seconds']:.2f} s; {watch['batches']} batches), peak RSS "
          f"{watch['peak_rss_kb'] / 1024:.0f} MB, adopted with identity {watch['adopted']:,} of {n:,}")
    ratio = watch["rate"] / baseline
    print(f"ratio watcher / import: {ratio:.2f} (target >= 0.5) {'OK' if ratio >= 0.5 and watch['adopted'] == n else 'MISSED'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
