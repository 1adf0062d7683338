"""A database locked by another process never freezes the server, loses an accepted webhook or answers 500."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.config import load_config
from bridge.wiring import build_services
from tests.appfactory import AUTH, write_config

HOOK = "hook-token-0123456789"
FIXTURE = Path(__file__).parent / "fixtures" / "jellyfin" / "send_all_playback_start.json"
HOLDER = Path(__file__).parent / "dblock_holder.py"
HEADERS = {"Content-Type": "application/json", "X-Api-Key": HOOK}


def start_body() -> bytes:
    data = json.loads(FIXTURE.read_text())
    data.update(ItemId=uuid.uuid4().hex)
    return json.dumps(data).encode()


class ForeignLock:
    """A child process that holds the write lock until released (or `seconds` pass)."""

    def __init__(self, db: Path, seconds: float = 60) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HOLDER), str(db), str(seconds)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0
        self.proc.stdout.close()


def config_path(tmp_path: Path, limit: int) -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    return write_config(tmp_path, f'[jellyfin]\nwebhook_token = "{HOOK}"\n', roots=[tmp_path / "lib"])


def services_for(tmp_path: Path, limit: int = 10_000) -> Any:
    config = load_config(config_path(tmp_path, limit), env={"STRM_BRIDGE_DATABASE_HELD_EVENTS_LIMIT": str(limit)})
    return build_services(config)


async def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def timed(client: Any, method: str, path: str, **kwargs: Any) -> tuple[int, float, Any]:
    started = time.perf_counter()
    async with client.request(method, path, **kwargs) as response:
        body = await response.read()
        return response.status, time.perf_counter() - started, (response.headers, body)


def event_count(services: Any) -> int:
    return services.db.conn.execute("select count(*) from events").fetchone()[0]


async def test_healthz_and_webhooks_answer_during_a_foreign_write_lock(aiohttp_client: Any, tmp_path: Path) -> None:
    services = services_for(tmp_path)
    client = await aiohttp_client(create_app(services))
    db_path = Path(services.config.database.path)
    assert (await timed(client, "POST", "/webhooks/jellyfin", data=start_body(), headers=HEADERS))[0] == 202
    before = event_count(services)

    lock = ForeignLock(db_path)
    try:
        answers = await asyncio.gather(*(
            [timed(client, "POST", "/webhooks/jellyfin", data=start_body(), headers=HEADERS) for _ in range(40)]
            + [timed(client, "GET", "/healthz") for _ in range(10)]
            + [timed(client, "POST", "/api/mappings", headers=AUTH,
                     json={"strm_path": str(tmp_path / "lib" / "x.strm"), "resolved_url": "http://cdn.test/x"})]))
        hooks, health, api = answers[:40], answers[40:50], answers[50]
        assert [status for status, _, _ in hooks] == [202] * 40
        assert all(json.loads(body)["held"] is True for _, _, (_, body) in hooks)
        assert [status for status, _, _ in health] == [200] * 10
        status, seconds, (_, body) = await timed(client, "GET", "/healthz")
        assert status == 200 and seconds < 1.0 and json.loads(body)["held_webhooks"] == 40
        assert api[0] == 503 and api[2][0]["Retry-After"] and json.loads(api[2][1])["error"] == "database_busy"
        assert max(seconds for _, seconds, _ in answers) < 1.0
        assert event_count(services) == before  # nothing could be stored yet
    finally:
        lock.release()
    await wait_until(lambda: not services.holding.active)
    assert event_count(services) == before + 40
    journal = Path(str(db_path) + ".held-events")
    assert journal.read_bytes() == b""
    assert (await timed(client, "POST", "/webhooks/jellyfin", data=start_body(), headers=HEADERS))[0] == 202


async def test_past_the_bound_the_answer_is_503_with_retry_after(aiohttp_client: Any, tmp_path: Path) -> None:
    services = services_for(tmp_path, limit=5)
    client = await aiohttp_client(create_app(services))
    lock = ForeignLock(Path(services.config.database.path))
    try:
        statuses = []
        for _ in range(8):
            status, seconds, (headers, body) = await timed(client, "POST", "/webhooks/jellyfin", data=start_body(),
                                                          headers=HEADERS)
            statuses.append(status)
            assert seconds < 1.0
            if status == 503:
                assert headers["Retry-After"] == "2"
                assert json.loads(body)["error"] == "service_unavailable"
        assert statuses == [202] * 5 + [503] * 3
    finally:
        lock.release()
    await wait_until(lambda: not services.holding.active)
    assert event_count(services) == 5


async def test_held_webhooks_survive_a_stop_while_still_locked(aiohttp_client: Any, tmp_path: Path) -> None:
    """Accepted is durable: the journal beside the database brings them back on the next start."""
    services = services_for(tmp_path)
    client = await aiohttp_client(create_app(services))
    lock = ForeignLock(Path(services.config.database.path))
    try:
        for _ in range(3):
            assert (await timed(client, "POST", "/webhooks/jellyfin", data=start_body(), headers=HEADERS))[0] == 202
        await client.close()  # the server stops while the lock is still held: nothing can be stored
    finally:
        lock.release()
    db_path = str(services.config.database.path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("select count(*) from events").fetchone()[0] == 0
    assert len(Path(db_path + ".held-events").read_bytes().splitlines()) == 3
    again = services_for(tmp_path)
    client = await aiohttp_client(create_app(again))
    assert event_count(again) == 3
    assert (await timed(client, "GET", "/healthz"))[0] == 200
