"""The proxy's fast path: a plain body moved socket → pipe → socket by the kernel (`os.splice`), not the loop.

Copying every byte through the event loop held the proxy at about half of a direct download. Once the
response headers are out, a plain (identity, fixed-length, unencrypted) body needs nothing from Python but
flow control, so the upstream transport is paused, what aiohttp already read is flushed first, and the rest
goes through a pipe. Both sockets are used through duplicated descriptors, so a transport closing underneath
(player gone) can never leave us splicing into a reused descriptor number. The upstream connection is closed
afterwards (aiohttp's parser never saw those bytes, so it cannot go back to the pool).

Wake-ups cost more than the splices themselves, so the loop waits for one side only: for the player while the
pipe is at least half full, otherwise for the upstream, and then only once a large chunk has arrived
(SO_RCVLOWAT). The player's socket buffer keeps it fed meanwhile. This took a 512 MiB stream from about 1,400
waits to about 100.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp import web

SPLICE_MIN_BYTES = 4 * 1024 * 1024
"""Smaller bodies (HLS segments, a player's probing ranges) are copied by the loop instead: a spliced upstream
connection cannot go back to the pool, and a new connection plus its close cost more than copying a few MiB."""
PIPE_BYTES = 1024 * 1024
"""Pipe capacity asked for (the unprivileged maximum by default); fewer, larger splices."""
_F_SETPIPE_SZ = 1031
LOW_WATER = 512 * 1024
"""Wake for the upstream only once this much has arrived (or it ended): fewer, larger splices per wakeup."""
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


@dataclass
class Spliced:
    moved: int
    """Body bytes handed to the player's socket (including what aiohttp had already buffered)."""
    complete: bool
    """False when the upstream ended, failed or stalled before `count` bytes: the caller resumes or gives up."""


def _plain_socket(transport: asyncio.BaseTransport | None) -> int | None:
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None and sock.fileno() >= 0 else None


def can_splice(request: web.Request, response: aiohttp.ClientResponse, out: web.StreamResponse) -> bool:
    """Only a plain body with a known length, between two unencrypted TCP sockets, takes the fast path."""
    if not hasattr(os, "splice") or request.method != "GET" or out.chunked or out.content_length is None \
            or response.content_length is None or response.content_length < SPLICE_MIN_BYTES:
        return False
    if "Content-Encoding" in response.headers or "Transfer-Encoding" in response.headers:
        return False
    connection = response.connection
    if connection is None or response.content.is_eof():
        return False
    return _plain_socket(connection.transport) is not None and _plain_socket(request.transport) is not None


async def _until_flushed(transport: asyncio.WriteTransport) -> bool:
    """aiohttp's own buffer must be empty before the kernel writes behind its back (order of bytes).

    No deadline: a paused player may not read for a long time, as with the loop's own drain()."""
    delay = 0.0005
    while transport.get_write_buffer_size():
        if transport.is_closing():
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return not transport.is_closing()


async def _ready(add: object, remove: object, fd: int, stall: float | None) -> bool:
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    add(fd, lambda: waiter.done() or waiter.set_result(None))  # type: ignore[operator]
    try:
        await asyncio.wait_for(waiter, stall)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        remove(fd)  # type: ignore[operator]


async def splice_body(request: web.Request, response: aiohttp.ClientResponse, out: web.StreamResponse,
                      count: int, stall: float) -> Spliced:
    """Send `count` body bytes of `response` to the player; `stall` seconds without progress is a failure."""
    loop = asyncio.get_running_loop()
    client = request.transport
    upstream = response.connection.transport if response.connection is not None else None
    assert client is not None and upstream is not None
    buffered = response.content.read_nowait(-1)[:count]  # may resume the transport: pause only afterwards
    upstream.pause_reading()
    await out.write(buffered)  # also sends the headers aiohttp holds back for the first body write
    moved = len(buffered)
    if moved >= count or not await _until_flushed(client):
        response.close()
        return Spliced(moved, moved >= count)
    up_fd = os.dup(_plain_socket(upstream) or -1)
    client_fd = os.dup(_plain_socket(client) or -1)
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    up_sock = socket.socket(fileno=up_fd)  # owns up_fd: for the low-water mark
    try:
        try:
            capacity = fcntl.fcntl(pipe_w, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            capacity = 64 * 1024
        in_pipe = 0
        upstream_done = False
        while moved < count:
            progress = False
            if not upstream_done and moved + in_pipe < count and in_pipe < capacity:
                try:
                    n = os.splice(up_fd, pipe_w, min(count - moved - in_pipe, capacity - in_pipe), flags=_FLAGS)
                    if n == 0:
                        upstream_done = True  # the upstream ended early: deliver what is in the pipe, then report
                    in_pipe += n
                    progress = n > 0
                except BlockingIOError:
                    pass
                except OSError:
                    upstream_done = True
            if in_pipe:
                if client.is_closing():
                    raise ConnectionResetError("player went away")
                try:
                    n = os.splice(pipe_r, client_fd, in_pipe, flags=_FLAGS)
                    in_pipe -= n
                    moved += n
                    progress = progress or n > 0
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise ConnectionResetError("player went away") from exc
            if upstream_done and not in_pipe:
                break
            if progress:
                continue
            if not upstream_done:
                _low_water(up_sock, min(LOW_WATER, capacity - in_pipe, count - moved - in_pipe))
            if in_pipe and (upstream_done or in_pipe >= capacity // 2 or moved + in_pipe >= count):
                ok = await _ready(loop.add_writer, loop.remove_writer, client_fd, None)  # a paused player may wait
            else:
                # the player's socket still holds what it was last given: wait for a large upstream chunk
                ok = await _ready(loop.add_reader, loop.remove_reader, up_fd, stall)
                if not ok and in_pipe:
                    upstream_done = True  # stalled: deliver what the pipe holds, then report the break-off
                    continue
            if not ok:
                break  # an upstream stall counts as a break-off: the caller resumes from `moved`
        return Spliced(moved, moved >= count)
    finally:
        up_sock.close()
        for fd in (pipe_r, pipe_w, client_fd):
            os.close(fd)
        response.close()


def _low_water(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, size))
    except OSError:
        pass
