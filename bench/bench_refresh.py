"""Bulk refresh speed at 100,000 mappings: a forced JobRunner job over every id, in files/s with fsync included.

Baseline, measured in the same run on the same library: bare atomic writes written out here, not the bridge's own
(temp file in the same folder, write, fsync, os.replace, fsync the folder), with a fresh URL per file,
single-threaded and with 4 threads, each measured before and after the job; the baseline is the better thread count,
averaged over its two measurements (the disk's fsync speed drifts during a run). Target: bulk refresh rate / baseline >= 0.4, and peak RSS < 200 MB that does
not grow with the library size (the same run is repeated at a smaller size in its own process to show it).

The resolver is instant and in process (no network) and `refresh.probe_new_url` is off, since there is no server
to probe: the figure is the bridge's own cost per file (database, single-flight, write, log, job bookkeeping).
Library creation (executemany into the database, plain file writes, then one sync) is not counted.
The baselines run on an evenly spread sample of the files (`--baseline-files`), because on a disk where one fsync
costs a few ms, rewriting all 100,000 files twice more would take many minutes.

Each size runs in a child process so its ru_maxrss is its own.
Usage: python bench/bench_refresh.py [--files 100000] [--concurrency 4] [--small 20000] [--dir /tmp] [--profile]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchutil import InstantResolver, current_rss_kb, peak_rss_kb

from bridge.config import load_config
from bridge.timeutil import now_iso
from bridge.wiring import build_services

FOLDER_SIZE = 25  # a season folder
SEASONS_PER_SERIES = 10


def layout(root: Path, i: int) -> tuple[str, str, int, int]:
    """File i: (path, slug, season, episode), 25 episodes per season folder, 10 seasons per series."""
    folder = i // FOLDER_SIZE
    slug = f"series-{folder // SEASONS_PER_SERIES:05d}"
    season, episode = folder % SEASONS_PER_SERIES + 1, i % FOLDER_SIZE + 1
    return str(root / slug / f"Season {season:02d}" / f"{slug} S{season:02d}E{episode:02d}.strm"), slug, season, episode


def create_library(services, root: Path, files: int) -> float:  # type: ignore[no-untyped-def]
    """Plain writes and one executemany per batch; returns seconds (reported, never counted)."""
    started = time.perf_counter()
    conn = services.store.conn
    now = now_iso()
    batch = 10_000
    for first in range(0, files, batch):
        rows = []
        for i in range(first, min(files, first + batch)):
            path, slug, season, episode = layout(root, i)
            if episode == 1:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            url = f"https://cdn.test/{slug}/{season}/{episode}.m3u8?token=old&expires=1"
            with open(path, "w") as fh:
                fh.write(url + "\n")
            rows.append((path, "bench", slug, season, episode, "German Dub", "", url, "ok", 0, now, now))
        with conn:
            conn.executemany(
                "insert into mappings (strm_path, site, slug, season, episode, language, provider, resolved_url,"
                " state, fail_count, created_at, updated_at) values (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    os.sync()  # the creation's dirty pages must not be flushed by the first timed fsyncs
    return time.perf_counter() - started


def bare_write(path: str, data: bytes) -> None:
    """The bare atomic write the issue names, nothing more: temp file, write, fsync, rename, fsync the folder."""
    folder = os.path.dirname(path)
    temp = f"{folder}/.bench-{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def baseline(root: Path, files: int, sample: int, threads: int) -> tuple[float, int]:
    """Bare writes of `sample` files spread evenly over the library; returns (files/s, files written)."""
    sample = max(1, min(sample, files))
    step = files / sample
    targets = [layout(root, int(k * step)) for k in range(sample)]
    jobs = [(p, f"http://cdn.test/{slug}/{s}/{e}.mp4?v={uuid.uuid4().hex}\n".encode()) for p, slug, s, e in targets]
    os.sync()
    started = time.perf_counter()
    if threads == 1:
        for target, content in jobs:
            bare_write(target, content)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda job: bare_write(*job), jobs, chunksize=64):
                pass
    return sample / (time.perf_counter() - started), sample


async def bulk_refresh(services, files: int, profile: bool) -> dict:  # type: ignore[no-untyped-def]
    jobs = services.jobs
    ids = list(services.store.iter_ids())
    assert len(ids) == files, (len(ids), files)
    done = 0

    def on_item(_outcome) -> None:  # type: ignore[no-untyped-def]
        nonlocal done
        done += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(15)
            elapsed = time.perf_counter() - started
            print(f"  ... {done:,}/{files:,} refreshed in {elapsed:.0f} s ({done / elapsed:,.0f} files/s)",
                  file=sys.stderr, flush=True)

    os.sync()
    rss_before = current_rss_kb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu_before = time.thread_time()
    started = time.perf_counter()
    job_id = jobs.create(ids, {"force": True, "reason": "forced", "trigger": "manual"})
    created = time.perf_counter()
    reporter = asyncio.create_task(progress())
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        await jobs.run(job_id, on_item)
    finally:
        if profiler is not None:
            profiler.disable()
        reporter.cancel()
    finished = time.perf_counter()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu = time.thread_time() - loop_cpu_before
    counts = dict(services.db.conn.execute(
        "select coalesce(outcome, 'pending'), count(*) from job_items where job_id = ? group by 1", (job_id,)).fetchall())
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    return {
        "rate": files / (finished - started),
        "seconds": finished - started,
        "create_seconds": created - started,
        "outcomes": counts,
        "rss_before_job_kb": rss_before,
        "rss_after_job_kb": current_rss_kb(),
        "resolver_calls": services.pipeline.resolver_calls,
        "cpu_user_ms_per_file": (cpu_after.ru_utime - cpu_before.ru_utime) * 1000 / files,
        "loop_cpu_ms_per_file": loop_cpu * 1000 / files,
        "cpu_sys_ms_per_file": (cpu_after.ru_stime - cpu_before.ru_stime) * 1000 / files,
    }


def check_files(services, sample: int = 500) -> int:  # type: ignore[no-untyped-def]
    """Every sampled file must hold the URL its row says; returns the number of mismatches."""
    from bridge.strm import read_strm

    rows = services.db.conn.execute(
        "select strm_path, resolved_url from mappings where id % ? = 0", (max(1, services.store.count() // sample),)).fetchall()
    return sum(1 for path, url in rows if read_strm(path) != url)


async def child(args: argparse.Namespace) -> dict:
    result: dict = {"files": args.files}
    with tempfile.TemporaryDirectory(prefix="strm-bench-refresh-", dir=args.dir) as tmp:
        root = Path(tmp) / "library"
        root.mkdir()
        config_path = Path(tmp) / "bench.toml"
        config_path.write_text(
            f'[database]\npath = "{Path(tmp) / "bench.db"}"\n[library]\nroots = ["{root}"]\n'
            f"[refresh]\nprobe_new_url = false\nconcurrency = {args.concurrency}\n")
        config = load_config(config_path, env={})
        services = build_services(config, api_token="bench-token-0123456789", resolvers=[InstantResolver()])
        result["setup_seconds"] = create_library(services, root, args.files)
        result["rss_after_setup_kb"] = current_rss_kb()
        if not args.skip_baseline:
            result["single"] = baseline(root, args.files, args.baseline_files, 1)
            result["threaded"] = baseline(root, args.files, args.baseline_files * args.threads, args.threads)
        result["job"] = await bulk_refresh(services, args.files, args.profile)
        result["mismatches"] = check_files(services)
        if not args.skip_baseline:  # the disk's fsync speed drifts: measure again and average
            result["single_after"] = baseline(root, args.files, args.baseline_files, 1)
            result["threaded_after"] = baseline(root, args.files, args.baseline_files * args.threads, args.threads)
        await services.pipeline.close()
        services.db.conn.close()
    result["peak_rss_kb"] = peak_rss_kb()
    return result


def run_child(args: argparse.Namespace, files: int, skip_baseline: bool) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--files", str(files),
               "--concurrency", str(args.concurrency), "--baseline-files", str(args.baseline_files),
               "--threads", str(args.threads)]
    if args.dir:
        command += ["--dir", args.dir]
    if skip_baseline:
        command.append("--skip-baseline")
    if args.profile and not skip_baseline:
        command.append("--profile")
    print(f"running {files:,} files in a child process ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4, help="JobRunner workers (refresh.concurrency)")
    parser.add_argument("--small", type=int, default=20_000,
                        help="second library size, for the RSS comparison (0 to skip)")
    parser.add_argument("--baseline-files", type=int, default=2_000,
                        help="files in the single-thread baseline sample (the threaded one writes --threads times as many)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where the temp library goes (default: the system temp dir)")
    parser.add_argument("--profile", action="store_true", help="cProfile the event-loop thread during the job")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return

    big = run_child(args, args.files, skip_baseline=False)
    small = run_child(args, args.small, skip_baseline=True) if 0 < args.small < args.files else None

    job = big["job"]
    single = (big["single"][0] + big["single_after"][0]) / 2
    threaded = (big["threaded"][0] + big["threaded_after"][0]) / 2
    base_rate, base_name = max((single, "1 thread"), (threaded, f"{args.threads} threads"))
    folders = -(-args.files // FOLDER_SIZE)
    print(f"library: {args.files:,} .strm files in {folders:,} folders of {FOLDER_SIZE}, SQLite WAL"
          f" (creation {big['setup_seconds']:.1f} s, not counted); temp dir under {args.dir or tempfile.gettempdir()}")
    print("resolver: instant, in process, no network; refresh.probe_new_url = false (no server to probe);"
          " fsync included everywhere")
    for name, key, n in (("1 thread", "single", big["single"][1]), (f"{args.threads} threads", "threaded", big["threaded"][1])):
        print(f"baseline bare atomic write, {name:>9}: {big[key][0]:8,.0f} files/s before the job,"
              f" {big[key + '_after'][0]:8,.0f} after  ({n:,} files spread over the library each time)")
    print(f"baseline = the better one: {base_name}, mean {base_rate:,.0f} files/s")
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(job["outcomes"].items()))
    print(f"bulk refresh via JobRunner (force, concurrency {args.concurrency}): {job['rate']:8,.0f} files/s"
          f"  ({args.files:,} files in {job['seconds']:.1f} s incl. job creation {job['create_seconds']:.2f} s;"
          f" outcomes: {outcomes}; {big['mismatches']} file/row mismatches in a 500-file check)")
    print(f"CPU during the job (all threads): user {job['cpu_user_ms_per_file']:.2f} ms + sys {job['cpu_sys_ms_per_file']:.2f} ms"
          f" per file, of which the event-loop thread {job['loop_cpu_ms_per_file']:.2f} ms;"
          f" {(job['cpu_user_ms_per_file'] + job['cpu_sys_ms_per_file']) * job['rate'] / 1000:.2f} cores busy")
    ratio = job["rate"] / base_rate
    print(f"ratio bulk refresh / baseline: {ratio:.2f}  [{'OK' if ratio >= 0.4 else 'UNDER TARGET'}: >= 0.4]")
    mb = 1024
    for res in (big, small):
        if res is None:
            continue
        peak = res["peak_rss_kb"] / mb
        verdict = "OK" if peak < 200 else "OVER TARGET"
        print(f"peak RSS (ru_maxrss) at {res['files']:>7,} files: {peak:6.1f} MB  (after creation {res['rss_after_setup_kb'] / mb:.1f} MB,"
              f" before job {res['job']['rss_before_job_kb'] / mb:.1f} MB, after job {res['job']['rss_after_job_kb'] / mb:.1f} MB)"
              f"  [{verdict}: < 200 MB]")
    if small is not None:
        grow = (big["job"]["rss_after_job_kb"] - big["job"]["rss_before_job_kb"]) / mb
        grow_small = (small["job"]["rss_after_job_kb"] - small["job"]["rss_before_job_kb"]) / mb
        per_file = (big["peak_rss_kb"] - small["peak_rss_kb"]) * 1024 / (args.files - args.small)
        print(f"RSS growth during the job: {grow_small:.1f} MB at {args.small:,} files, {grow:.1f} MB at {args.files:,};"
              f" peak difference {(big['peak_rss_kb'] - small['peak_rss_kb']) / mb:.1f} MB = {per_file:.0f} bytes per extra file"
              f" (small-size job rate {small['job']['rate']:,.0f} files/s)")


if __name__ == "__main__":
    main()
