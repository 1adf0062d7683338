"""Stable links under load, on 127.0.0.1: redirect throughput, proxy throughput and CPU, time to first byte.

(a) Redirect: `GET /play/{id}?sig=` for a cached fresh mapping (redirect mode) against a bare aiohttp handler
    answering the same 302, 50 concurrent connections from this process (aiohttp client), each server alone in
    its own child process; order bare, bridge, bridge, bare so a drifting machine cancels out. The bridge runs
    as `serve` does (create_app, the redacting access logger, logging at INFO into a file).
    Target: throughput ratio >= 0.5; p99 reported.
(b) Proxy: a 1 GiB file served by an aiohttp origin (FileResponse, sendfile) in its own process, downloaded by
    curl (a C client, like a player) directly and through `/play/{id}` in proxy mode, with 1, 4 and 16
    concurrent streams: the file is split into N equal ranges, one per stream, so every run moves exactly 1 GiB.
    MB/s is 1 GiB over the wall time of the run; CPU s/GB is the serving process's user+system CPU (the origin
    for direct, the bridge for proxy) per GiB moved. When nginx is installed (Debian's nginx-light), the same
    runs go through nginx as a reference reverse proxy (one worker, in-memory buffers, keep-alive upstream):
    on loopback the second TCP hop's kernel work lands on the same cores as the client and the origin, and
    nginx shows what that hop costs this machine whoever the proxy is. Order direct, bridge, nginx, nginx,
    bridge, direct per N. Target: bridge >= 0.9 of direct.
(c) Time to first byte of a 1 MiB range in the middle of the file, direct and through the proxy (curl's
    time_starttransfer, 40 requests each).
Usage: python bench/bench_play.py [--requests 20000] [--connections 50] [--size-mib 1024] [--parts abc]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from benchutil import add_repo_to_path, percentile

add_repo_to_path()

API_TOKEN = "bench-api-token-0123456789abcdef"
SECRET = "bench-play-secret-0123456789abcdef"
MIB = 1024 * 1024


# ---- servers (child processes) ---------------------------------------------------------------------------
async def _serve(kind: str, options: dict[str, Any], conn: Any) -> None:
    if kind == "origin":
        path = Path(options["file"])

        async def send_file(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path)

        app = web.Application()
        app.router.add_get("/f/file.bin", send_file)
        runner = web.AppRunner(app, access_log=None)
    elif kind == "bare":
        location = options["location"]

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

        app = web.Application()
        app.router.add_get("/play/{id}", redirect)
        runner = web.AppRunner(app, access_log=None)
    else:
        from bridge.app import RedactingAccessLogger, create_app
        from bridge.config import load_config
        from bridge.wiring import build_services

        folder = Path(options["folder"])
        logging.basicConfig(filename=folder / f"{kind}.log", level=logging.INFO)
        config_path = folder / f"{kind}.toml"
        config_path.write_text(f'[server]\napi_token = "{API_TOKEN}"\n[database]\npath = "{folder / kind / "b.db"}"\n'
                               f'[library]\nroots = ["{folder / "lib"}"]\n[play]\nmode = "{options["mode"]}"\n'
                               f'secret = "{SECRET}"\n')
        services = build_services(load_config(config_path, env={}))
        services.store.upsert({"strm_path": str(folder / "lib" / "ep.strm"), "resolved_url": options["location"],
                               "site": "bench", "slug": "ep", "season": 1, "episode": 1, "state": "ok"})
        runner = web.AppRunner(create_app(services), access_log_class=RedactingAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    conn.send((runner.addresses[0][1], os.getpid()))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await runner.cleanup()


def _child(kind: str, options: dict[str, Any], conn: Any) -> None:
    asyncio.run(_serve(kind, options, conn))


class Server:
    def __init__(self, kind: str, **options: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(kind, options, child), daemon=True)
        self.process.start()
        self.port, self.pid = self.conn.recv()

    def cpu_seconds(self) -> float:
        return _cpu(self.pid)

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


class Nginx:
    """A reference reverse proxy (nginx, one worker, in-memory buffers): what a second hop costs this machine."""

    def __init__(self, folder: Path, origin_port: int) -> None:
        self.folder = folder / "nginx"
        self.folder.mkdir()
        with socket_bound() as port:
            self.port = port
        (self.folder / "nginx.conf").write_text(f"""daemon off; worker_processes 1; pid {self.folder}/pid;
error_log {self.folder}/error.log; events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {self.folder}; proxy_temp_path {self.folder};
  fastcgi_temp_path {self.folder}; uwsgi_temp_path {self.folder}; scgi_temp_path {self.folder};
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 32; }}
  server {{ listen 127.0.0.1:{self.port};
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffers 8 256k; proxy_max_temp_file_size 0; }} }} }}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(self.folder / "nginx.conf"), "-p", str(self.folder)])
        deadline = time.monotonic() + 10
        while not (self.folder / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        self.pid = int((self.folder / "pid").read_text())

    def cpu_seconds(self) -> float:
        """The worker's CPU (the master only supervises)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return sum(_cpu(int(pid)) for pid in children)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A free loopback port (nginx binds it right after: the small race is acceptable in a bench)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def play_url(port: int) -> str:
    from bridge.play.signing import PlaySigner

    return PlaySigner(SECRET).play_url(f"http://127.0.0.1:{port}", 1)


# ---- (a) redirect throughput ------------------------------------------------------------------------------
async def redirect_round(url: str, requests: int, connections: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    counter = iter(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker() -> None:
            for _ in counter:
                started = time.perf_counter()
                async with session.get(url, allow_redirects=False) as response:
                    await response.read()
                    assert response.status == 302, response.status
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return requests / elapsed, statistics.median(ordered) * 1000, percentile(ordered, 0.99) * 1000


# ---- (b) and (c) with curl --------------------------------------------------------------------------------
def curl_ranges(url: str, size: int, streams: int) -> float:
    part = size // streams
    commands = []
    for i in range(streams):
        last = size - 1 if i == streams - 1 else (i + 1) * part - 1
        commands.append(["curl", "-sS", "-L", "-o", "/dev/null", "-r", f"{i * part}-{last}", "-w", "%{size_download}", url])
    started = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE) for c in commands]
    moved = sum(int(p.communicate()[0] or 0) for p in processes)
    elapsed = time.perf_counter() - started
    if moved != size:
        raise SystemExit(f"moved {moved} bytes, expected {size}: {url}")
    return elapsed


def ttfb(url: str, size: int, count: int) -> tuple[float, float]:
    middle = size // 2
    samples = []
    for _ in range(count):
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-r", f"{middle}-{middle + MIB - 1}", "-w",
                              "%{time_starttransfer}", url], capture_output=True, text=True, check=True).stdout
        samples.append(float(out) * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), percentile(ordered, 0.99)


def part_redirect(origin_url: str, folder: Path, requests: int, connections: int) -> None:
    print(f"(a) redirect: {requests} requests, {connections} connections")
    figures: dict[str, list[tuple[float, float, float]]] = {"bare": [], "bridge": []}
    for kind in ("bare", "bridge", "bridge", "bare"):
        server = Server(kind, mode="redirect", location=origin_url, folder=str(folder))
        url = play_url(server.port)
        asyncio.run(redirect_round(url, 500, connections))  # warm-up
        rps, p50, p99 = asyncio.run(redirect_round(url, requests, connections))
        server.stop()
        figures[kind].append((rps, p50, p99))
        print(f"    {kind:<6} {rps:8.0f} req/s   p50 {p50:5.2f} ms   p99 {p99:5.2f} ms")
    bare = statistics.mean(r for r, _, _ in figures["bare"])
    bridge = statistics.mean(r for r, _, _ in figures["bridge"])
    print(f"    ratio bridge/bare {bridge / bare:.2f} (target >= 0.5); bridge p99 "
          f"{max(p for _, _, p in figures['bridge']):.2f} ms")


def part_proxy(origin: Server, origin_url: str, proxy: Server, proxy_url: str, size: int, folder: Path) -> None:
    print(f"(b) proxy: {size // MIB} MiB file, curl clients; MB/s = MiB moved / wall s; CPU s/GB of the serving process")
    servers: dict[str, tuple[Any, str]] = {"direct": (origin, origin_url), "bridge": (proxy, proxy_url)}
    nginx = None
    if shutil.which("nginx"):
        nginx = Nginx(folder, origin.port)
        servers["nginx"] = (nginx, f"http://127.0.0.1:{nginx.port}/f/file.bin")
    try:
        for _, url in servers.values():
            curl_ranges(url, size, 4)  # warm the page cache and every server
        for streams in (1, 4, 16):
            runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in servers}
            for kind in [*servers, *reversed(servers)]:  # direct, bridge, nginx, nginx, bridge, direct
                server, url = servers[kind]
                cpu = server.cpu_seconds()
                elapsed = curl_ranges(url, size, streams)
                used = server.cpu_seconds() - cpu
                runs[kind].append((size / MIB / elapsed, used / (size / 1024 ** 3)))
            mbs = {kind: statistics.mean(r for r, _ in figures) for kind, figures in runs.items()}
            line = f"    {streams:>2} stream(s):"
            for kind, figures in runs.items():
                line += f" {kind} {mbs[kind]:5.0f} MB/s {statistics.mean(c for _, c in figures):.2f} s/GB;"
            line += f" bridge/direct {mbs['bridge'] / mbs['direct']:.2f} (target >= 0.9)"
            if nginx is not None:
                line += f", nginx/direct {mbs['nginx'] / mbs['direct']:.2f}, bridge/nginx {mbs['bridge'] / mbs['nginx']:.2f}"
            print(line)
    finally:
        if nginx is not None:
            nginx.stop()


def part_ttfb(origin_url: str, proxy_url: str, size: int) -> None:
    print("(c) time to first byte, 1 MiB range from the middle of the file (40 requests)")
    for kind, url in (("direct", origin_url), ("proxy", proxy_url), ("direct", origin_url), ("proxy", proxy_url)):
        p50, p99 = ttfb(url, size, 40)
        print(f"    {kind:<6} p50 {p50:.2f} ms   p99 {p99:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. b")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "lib").mkdir()
        data = folder / "file.bin"
        block = os.urandom(MIB)
        with open(data, "wb") as fh:
            for _ in range(args.size_mib):
                fh.write(block)
        size = data.stat().st_size
        origin = Server("origin", file=str(data))
        origin_url = f"http://127.0.0.1:{origin.port}/f/file.bin"
        try:
            if "a" in args.parts:
                part_redirect(origin_url, folder, args.requests, args.connections)
            proxy = Server("proxy", mode="proxy", location=origin_url, folder=str(folder))
            proxy_url = play_url(proxy.port)
            if "b" in args.parts:
                part_proxy(origin, origin_url, proxy, proxy_url, size, folder)
            if "c" in args.parts:
                part_ttfb(origin_url, proxy_url, size)
            proxy.stop()
        finally:
            origin.stop()


if __name__ == "__main__":
    main()
