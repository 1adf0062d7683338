"""The server while another process holds the database's write lock for 15 s.

`strm-bridge serve` runs in its own process on 127.0.0.1. This process sends paced Jellyfin PlaybackStart
webhooks (Send-All-Properties body, a different ItemId each) on `--connections` connections and polls
`GET /healthz` every 50 ms: first for `--baseline` seconds with the database free (the baseline, same run),
then for the whole `--lock` seconds during which tests/dblock_holder.py holds a write transaction open. It then
waits until the held webhooks are stored and counts the rows. Targets during the lock: p99 < 1 s, 0 lost
(every 202 is a stored row), 0 5xx (a 503 with Retry-After past `database.held_events_limit` is counted on
its own line; at the default pace the bound is not reached).
Usage: python bench/bench_dblock.py [--lock 15] [--baseline 5] [--connections 10] [--rate 200]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from benchutil import REPO, add_repo_to_path, p50_p99_ms

add_repo_to_path()

HOOK = "bench-webhook-token-0123456789"
FIXTURE = REPO / "tests" / "fixtures" / "jellyfin" / "send_all_playback_start.json"
HOLDER = REPO / "tests" / "dblock_holder.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body() -> bytes:
    data = json.loads(FIXTURE.read_text())
    data["ItemId"] = uuid.uuid4().hex
    return json.dumps(data).encode()


class Phase:
    def __init__(self) -> None:
        self.hooks: list[float] = []
        self.health: list[float] = []
        self.statuses: dict[int, int] = {}
        self.accepted = 0
        self.errors = 0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def run_phase(base: str, seconds: float, connections: int, rate: float) -> Phase:
    phase = Phase()
    deadline = time.monotonic() + seconds
    interval = connections / rate
    headers = {"Content-Type": "application/json", "X-Api-Key": HOOK}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections + 2)) as session:
        async def hooks() -> None:
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(f"{base}/webhooks/jellyfin", data=body(), headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=30)) as response:
                        await response.read()
                        phase.count(response.status)
                        if response.status == 202:
                            phase.accepted += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    phase.errors += 1
                phase.hooks.append(time.perf_counter() - started)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async def health() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=30)) as response:
                        await response.read()
                        phase.count(response.status)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    phase.errors += 1
                phase.health.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        await asyncio.gather(health(), *(hooks() for _ in range(connections)))
    return phase


def stored_events(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("select count(*) from events").fetchone()[0])


async def wait_until_stored(base: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            async with session.get(f"{base}/healthz") as response:
                if "held_webhooks" not in await response.json():
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
    raise RuntimeError("held webhooks were not stored within a minute of the lock's end")


def describe(label: str, phase: Phase) -> str:
    every = phase.hooks + phase.health
    p50, p99 = p50_p99_ms(every)
    h50, h99 = p50_p99_ms(phase.health)
    return (f"    {label:<28} {len(every):6,} answered  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {max(every) * 1000:7.1f} ms"
            f"  (healthz p99 {h99:.2f} ms)  statuses {dict(sorted(phase.statuses.items()))}"
            + (f"  client errors {phase.errors}" if phase.errors else ""))


async def amain(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dblock-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "bridge.db"
        config = tmp / "bridge.toml"
        port = free_port()
        config.write_text(f'[server]\nport = {port}\napi_token = "bench-api-token-0123456789"\n'
                          f'[database]\npath = "{db}"\n[jellyfin]\nwebhook_token = "{HOOK}"\n')
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(tmp / "server.log", "w") as log:
            server = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(config)],
                                      stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        async with session.get(f"{base}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not start: " + (tmp / "server.log").read_text()[-2000:])
                    await asyncio.sleep(0.1)
            free = await run_phase(base, args.baseline, args.connections, args.rate)
            before = stored_events(db)
            holder = subprocess.Popen([sys.executable, str(HOLDER), str(db), str(args.lock)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            locked_at = time.monotonic()
            locked = await run_phase(base, args.lock - 0.2, args.connections, args.rate)
            assert holder.stdout.readline().strip() == "released"
            holder.wait(30)
            lock_seconds = time.monotonic() - locked_at
            drained = await wait_until_stored(base)
            after = stored_events(db)
        finally:
            server.terminate()
            server.wait(30)
    stored_during = after - before
    lost = locked.accepted - stored_during
    five_xx = sum(n for status, n in locked.statuses.items() if status >= 500 and status != 503)
    p99_locked = p50_p99_ms(locked.hooks + locked.health)[1]
    p99_free = p50_p99_ms(free.hooks + free.health)[1]
    print(f"database lock: another process holds a write transaction for {lock_seconds:.1f} s; `strm-bridge serve`"
          f" in its own process; {args.connections} connections pacing {args.rate:.0f} Jellyfin PlaybackStart"
          f" webhooks/s, GET /healthz every 50 ms")
    print(describe(f"database free ({args.baseline:.0f} s, baseline)", free))
    print(describe(f"database locked ({lock_seconds:.0f} s)", locked))
    print(f"    p99 locked / free: {p99_locked / p99_free:.2f}   p99 during the lock {p99_locked:.2f} ms"
          f" [{'OK' if p99_locked < 1000 else 'OVER TARGET'}: < 1000 ms]")
    print(f"    webhooks accepted (202) during the lock: {locked.accepted:,}; stored after it: {stored_during:,}"
          f" (all stored {drained * 1000:.0f} ms after the lock's end); lost: {lost}"
          f" [{'OK' if lost == 0 else 'LOST'}]; 503 past the bound: {locked.statuses.get(503, 0)};"
          f" other 5xx: {five_xx} [{'OK' if five_xx == 0 else 'FAIL'}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=float, default=15.0)
    parser.add_argument("--baseline", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks per second, all connections together")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
