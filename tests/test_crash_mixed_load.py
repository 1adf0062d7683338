"""SIGKILL of the real bridge under mixed load: Jellyfin webhooks, a bulk job and rescans at once.

Each round re-plants 200 expired episodes, starts `tests.crash_worker serve` (the real wiring and app on a
loopback port, the fake provider as its `http` resolver, a fake Jellyfin that records item refreshes) and arms
it to stop at the n-th write step (temp write, its fsync, the rename, the folder fsync, a commit) or, with a
foreign process holding the database's write lock, at the n-th write of the held-webhook journal. The load
runs until that step; SIGKILL; then a second process starts on the same files and database and is left to
finish. What the round then asserts:
- right after the kill: every .strm is one complete line with a valid URL, the database passes
  `PRAGMA integrity_check`;
- after the restart: no temp file, no row left `refreshing`, every row matches its file; every webhook that was
  answered 2xx is in `events` (answered with its id: by that id; answered "held": by its player and kind) and
  processed; every file holds a fresh link the provider signed (healed); and Jellyfin received a refresh of
  each item after its file last changed, so nobody keeps playing a cached dead URL.

"Accepted" is the 2xx: a 202 with an event id goes out only after the group commit that stores the row; a
202 "held" (the database is locked by another process, see bridge/holding.py) only after the event is written
to the journal beside the database, which survives the kill and is stored at the next start. A request that
got no answer (killed in flight, refused with 503) was not accepted: its sender retries, and so does this test
for the bulk job (re-posted after the restart when the crashed run never answered it).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.strm import read_strm
from tests.appfactory import AUTH, write_config
from tests.crash_checks import check_invariants, integrity, temp_files
from tests.e2e import plant_expired, refresh_config
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.provider import FakeProvider
from tests.fuzz import figures
from tests.test_dblock import ForeignLock

ROOT_DIR = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "jellyfin"
API_KEY = "jf-api-key-0123456789abcdef"
HOOK = "jf-webhook-token-abcdef"
FILES = 200
SERIES = 10
PAIRS = 40
"""Failed playbacks (a start, then a stop one second in) per round, each on its own player."""
RESCANS = 20
HELD = "held"
"""A round whose webhooks meet a foreign write lock; the kill lands at the n-th journal write."""
ROUNDS = [("write", 1, 150), ("replace", 1, 150), ("fsync_dir", 1, 150), ("commit", 1, 250), (HELD, 20, 2 * PAIRS - 1)]
"""(step, lowest n, highest n): each round draws its n. The temp file's fsync is left to the long run: killed
there, a process leaves what a kill after the temp write leaves (the page cache outlives it)."""
LONG_ROUNDS = [("write", 1, 150), ("fsync", 1, 150), ("replace", 1, 150), ("fsync_dir", 1, 150), ("commit", 1, 250),
               (HELD, 1, 2 * PAIRS - 1)] * 5
SETTLE_SECONDS = 60.0


@dataclass
class Sent:
    """One request of the load and what came back (status None: no answer, the process was killed)."""

    kind: str
    item: str = ""
    device: str = ""
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


@dataclass
class Tally:
    """The figures the README quotes, summed over the rounds."""

    rounds: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    webhooks_sent: int = 0
    webhooks_accepted: int = 0
    webhooks_held: int = 0
    webhooks_stored: int = 0
    stored_unanswered: int = 0
    stored_twice: int = 0
    jobs_accepted: int = 0
    jobs_reposted: int = 0
    jobs_resumed: int = 0
    files_healed: int = 0
    rows_adopted: int = 0
    rescans_accepted: int = 0
    item_refreshes: int = 0
    refreshes_checked: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        steps = ", ".join(f"{step} {n}" for step, n in sorted(self.kills.items()))
        return "; ".join([
            f"{self.rounds} rounds, {sum(self.kills.values())} SIGKILLs mid-load ({steps})",
            f"webhooks: {self.webhooks_sent} sent, {self.webhooks_accepted} answered 202 ({self.webhooks_held} of them"
            f" held during a foreign lock), {self.webhooks_stored} of those stored and processed"
            f" ({self.stored_twice} twice), {self.stored_unanswered} more stored though killed before the answer",
            f"bulk jobs: {self.jobs_accepted} accepted, {self.jobs_resumed} resumed after the kill, {self.jobs_reposted}"
            f" re-posted (the kill came before the answer)",
            f"files: {self.files_healed} healed, {self.rows_adopted} rows adopted the URL their file got just before"
            f" the kill",
            f"rescans: {self.rescans_accepted} API rescans accepted and sent, {self.item_refreshes} Jellyfin item"
            f" refreshes received, {self.refreshes_checked} of {self.refreshes_checked} files refreshed after their"
            f" last change",
            f"{self.seconds:.1f} s"])


class Bridge:
    """One `crash_worker serve` process; its log goes to a file (a full pipe would stall it)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, config: Path, log: Path) -> "Bridge":
        env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
        env.pop("STRM_CRASH_AT", None)
        with open(log, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.crash_worker", "serve", str(config), cwd=ROOT_DIR, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err)
        started = await cls._read(proc, 60)
        assert "port" in started, (started, log.read_text()[-3000:])
        return cls(proc, int(started["port"]))

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        return json.loads(line) if line.strip() else {}

    async def say(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def arm(self, spec: str) -> None:
        await self.say(f"arm {spec}")
        assert (await self._read(self.proc, 10)) == {"armed": spec}

    async def paused(self, timeout: float) -> dict[str, Any]:
        return await self._read(self.proc, timeout)

    async def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        await self.say("stop")
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0


class World:
    """The library, the fakes and the bridge's configuration, shared by every round."""

    def __init__(self, tmp_path: Path, provider: FakeProvider, jellyfin: FakeJellyfin) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "library"
        self.provider = provider
        self.jellyfin = jellyfin
        self.config = write_config(tmp_path, f"""
[jellyfin]
url = "{jellyfin.url}"
api_key = "{API_KEY}"
webhook_token = "{HOOK}"
refresh_debounce_seconds = 0
refresh_gap_seconds = 0
path_map = [{{server = "/data/tv", local = "{self.root}"}}]
{refresh_config(provider)}""", roots=[self.root])
        self.db_path = tmp_path / "data" / "bridge.db"
        self.log = tmp_path / "bridge.log"
        self.paths: list[Path] = []
        self.items: dict[str, str] = {}
        """.strm path -> Jellyfin item id"""
        self.planted: dict[str, str] = {}
        """.strm path -> the expired URL this round started with"""
        for i in range(FILES):
            series, episode = i % SERIES, i // SERIES + 1
            path = self.root / f"series-{series:02d}" / f"S01E{episode:03d}.strm"
            item_id = jellyfin.add_item(f"{i + 1:032x}", f"/data/tv/series-{series:02d}/S01E{episode:03d}.strm",
                                        Type="Episode")
            self.paths.append(path)
            self.items[str(path)] = item_id

    def plant(self) -> None:
        """Every episode expired again, its row linked to its Jellyfin item (as earlier webhooks left it)."""
        store = MappingStore(open_database(self.db_path))
        try:
            for path in self.paths:
                slug, episode = path.parent.name, int(path.stem[4:])
                self.planted[str(path)] = plant_expired(
                    self.provider, store, path, slug, episode, jellyfin_item_id=self.items[str(path)],
                    expires_at=None, fail_count=0, last_status=None)
        finally:
            store.conn.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def webhook_body(kind: str, item_id: str, device: str) -> bytes:
    """The plugin's real "send all properties" payload; the stop comes one second in, not played to the end."""
    data = json.loads((FIXTURES / f"send_all_playback_{kind}.json").read_text())
    data.update(ItemId=item_id, DeviceId=device)
    return json.dumps(data).encode()


async def send(http: aiohttp.ClientSession, sent: Sent, method: str, url: str, **kwargs: Any) -> Sent:
    sent.at = time.time()
    try:
        async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=30), **kwargs) as response:
            sent.status = response.status
            sent.body = await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
        pass  # the process was killed under this request: no answer, so not accepted
    return sent


async def failed_playback(http: aiohttp.ClientSession, url: str, item_id: str, device: str, delay: float,
                          ledger: list[Sent]) -> None:
    """Start, then the stop one second in; the stop only after the start was accepted (a player's order)."""
    await asyncio.sleep(delay)
    headers = {"Content-Type": "application/json", "X-Api-Key": HOOK}
    for kind in ("start", "stop"):
        sent = Sent(kind, item_id, device)
        ledger.append(sent)
        await send(http, sent, "POST", f"{url}/webhooks/jellyfin", data=webhook_body(kind, item_id, device),
                   headers=headers)
        if sent.status != 202:
            return


async def bulk_job(http: aiohttp.ClientSession, url: str, delay: float, ledger: list[Sent]) -> None:
    await asyncio.sleep(delay)
    sent = Sent("job")
    ledger.append(sent)
    await send(http, sent, "POST", f"{url}/api/refresh", json={"all": True}, headers=AUTH)


async def api_rescan(http: aiohttp.ClientSession, url: str, path: str, item_id: str, delay: float,
                     ledger: list[Sent]) -> None:
    await asyncio.sleep(delay)
    sent = Sent("rescan", item_id)
    ledger.append(sent)
    await send(http, sent, "POST", f"{url}/api/rescan", json={"path": path}, headers=AUTH)


async def crash_round(world: World, rng: random.Random, number: int, step: str, at: int,
                      ledger: list[Sent]) -> dict[str, Any]:
    """Start, arm, load until the armed step, SIGKILL. Returns what the paused process reported."""
    bridge = await Bridge.start(world.config, world.log)
    held = step == HELD
    await bridge.arm(f"{at}:{'write' if held else step}")
    lock = ForeignLock(world.db_path) if held else None
    picked = rng.sample(range(FILES), PAIRS)
    http_session = aiohttp.ClientSession()
    load: list[Any] = [failed_playback(http_session, bridge.url, world.items[str(world.paths[i])], f"r{number}-p{i}",
                                       rng.uniform(0, 0.4), ledger) for i in picked]
    if not held:  # under the lock the job and the rescans could only be refused (503): they come after it
        load.append(bulk_job(http_session, bridge.url, rng.uniform(0, 0.2), ledger))
        load += [api_rescan(http_session, bridge.url, str(world.paths[i]), world.items[str(world.paths[i])],
                            rng.uniform(0, 0.6), ledger) for i in rng.sample(range(FILES), RESCANS)]
    tasks = [asyncio.create_task(coro) for coro in load]
    try:
        try:
            paused = await bridge.paused(30)
        except asyncio.TimeoutError:
            paused = {}  # the load ended before the armed step: reported below
        returncode = await bridge.kill()
        await asyncio.wait_for(asyncio.gather(*tasks), 40)
    finally:
        for task in tasks:
            task.cancel()
        await http_session.close()
        if lock is not None:
            lock.release()
    assert returncode == -signal.SIGKILL
    expected = "write" if held else step
    assert paused.get("paused") == expected and paused.get("at") == at, (
        f"round {number}: the load ended before its {at}th {expected} step: {paused}", world.log.read_text()[-3000:])
    return paused


async def settle(world: World, bridge: Bridge) -> None:
    """Wait until the restarted bridge has nothing left: jobs done, events processed, rescans sent."""
    journal = Path(str(world.db_path) + ".held-events")
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet = 0
    while quiet < 3:
        left = world.query(
            "select (select count(*) from jobs where state = 'running'),"
            " (select count(*) from events where processed_at is null), (select count(*) from rescan_queue),"
            " (select count(*) from mappings where state = 'refreshing')")[0]
        held = journal.exists() and journal.stat().st_size > 0
        quiet = quiet + 1 if not any(left) and not held else 0
        assert time.monotonic() < deadline, f"not settled: jobs, events, rescans, refreshing = {left}, held {held}"
        await asyncio.sleep(0.1)


def check_webhooks(world: World, ledger: list[Sent], tally: Tally) -> None:
    """Every webhook answered 202 is stored, once at least, and processed; held ones found by player and kind."""
    rows = world.query("select id, kind, item_id, payload, processed_at, outcome from events where source = 'jellyfin'")
    by_id = {row[0]: row for row in rows}
    by_player: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        by_player.setdefault((json.loads(row[3])["session_key"], row[1]), []).append(row)
    for sent in (s for s in ledger if s.kind in ("start", "stop")):
        tally.webhooks_sent += 1
        stored = by_player.get((sent.device, sent.kind), [])
        if sent.status != 202:
            tally.stored_unanswered += bool(stored)
            continue
        tally.webhooks_accepted += 1
        if sent.body.get("held"):
            tally.webhooks_held += 1
            assert stored, f"held {sent.kind} webhook of {sent.device} was answered 202 and is not stored"
        else:
            row = by_id.get(sent.body["event_id"])
            assert row is not None, (f"{sent.kind} webhook of {sent.device} answered 202 as event"
                                     f" {sent.body['event_id']}, which is not stored")
            assert row in stored, (row, sent)
        assert all(row[4] is not None for row in stored), stored
        if sent.kind == "stop":
            outcomes = {row[5] for row in stored}
            assert outcomes <= {"refreshed", "alive", "cooldown"}, (sent, outcomes)
        tally.webhooks_stored += 1
        tally.stored_twice += len(stored) > 1


def check_healed(world: World, tally: Tally) -> None:
    """Every file holds a link the provider signed and that has not expired, not the one the round began with."""
    now = time.time()
    for path in world.paths:
        url = read_strm(path) or ""
        exp = world.provider.issued_exp(url)
        assert url != world.planted[str(path)] and exp is not None and exp > now, (path, url)
    states = dict(world.query("select state, count(*) from mappings group by state"))
    assert states == {"ok": FILES}, states
    tally.files_healed += FILES


def check_refreshed_after_change(world: World, ledger: list[Sent], tally: Tally) -> None:
    """Jellyfin got a refresh of each item after its file last changed, and after each accepted API rescan."""
    last: dict[str, float] = {}
    for item, at in world.jellyfin.refreshed_at:
        last[item] = max(at, last.get(item, 0.0))
    stale = [str(path) for path in world.paths
             if last.get(world.items[str(path)], 0.0) < path.stat().st_mtime_ns / 1e9]
    assert not stale, f"{len(stale)} rewritten files never got a Jellyfin refresh after the change: {stale[:3]}"
    tally.refreshes_checked += len(world.paths)
    for sent in (s for s in ledger if s.kind == "rescan" and s.status == 202):
        tally.rescans_accepted += 1
        assert last.get(sent.item, 0.0) >= sent.at, f"accepted rescan of {sent.item} never sent"


async def run_rounds(tmp_path: Path, rounds: list[tuple[str, int, int]], seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    started = time.monotonic()
    async with FakeProvider() as provider, FakeJellyfin(api_key=API_KEY) as jellyfin:
        world = World(tmp_path, provider, jellyfin)
        for number, (step, low, high) in enumerate(rounds):
            world.plant()
            refreshes_before = len(jellyfin.refreshed_at)
            recovered_before = world.query("select count(*) from refresh_log where trigger = 'recovery'")[0][0]
            ledger: list[Sent] = []
            at = rng.randint(low, high)
            await crash_round(world, rng, number, step, at, ledger)
            tally.kills[step] += 1
            check_invariants(world.root, world.db_path, FILES)  # one complete line per file, rows agree
            for path in world.paths:  # the round's old URL or a new one, nothing else
                url = read_strm(path) or ""
                assert url == world.planted[str(path)] or provider.issued_exp(url) is not None, (path, url)
            assert integrity(world.db_path) == ["ok"]

            running = world.query("select count(*) from jobs where state = 'running'")[0][0]
            bridge = await Bridge.start(world.config, world.log)
            try:
                jobs = [s for s in ledger if s.kind == "job"]
                if not any(s.status == 202 for s in jobs):  # never accepted: the client sends it again
                    async with aiohttp.ClientSession() as http:
                        again = await send(http, Sent("job"), "POST", f"{bridge.url}/api/refresh",
                                           json={"all": True}, headers=AUTH)
                    assert again.status == 202, again
                    tally.jobs_reposted += 1
                tally.jobs_accepted += sum(s.status == 202 for s in jobs)
                tally.jobs_resumed += running
                await settle(world, bridge)
                refreshing, _ = check_invariants(world.root, world.db_path, FILES)
                assert refreshing == 0 and temp_files(world.root) == []
                assert integrity(world.db_path) == ["ok"]
                check_webhooks(world, ledger, tally)
                check_healed(world, tally)
                check_refreshed_after_change(world, ledger, tally)
            finally:
                await bridge.stop()
            tally.item_refreshes += len(jellyfin.refreshed_at) - refreshes_before
            tally.rows_adopted += world.query(
                "select count(*) from refresh_log where trigger = 'recovery'")[0][0] - recovered_before
            tally.rounds += 1
    tally.seconds = time.monotonic() - started
    return tally


def report(name: str, tally: Tally) -> None:
    line = tally.line()
    print(f"\n{name}: {line}")
    figures.note(name, line)


async def test_sigkill_under_mixed_load(tmp_path: Path) -> None:
    tally = await run_rounds(tmp_path, ROUNDS, seed=2611)
    report("crash, mixed load", tally)
    assert tally.rounds == len(ROUNDS) and sum(tally.kills.values()) == len(ROUNDS)
    assert set(tally.kills) == {step for step, _, _ in ROUNDS}
    assert tally.webhooks_held > 0 and tally.webhooks_accepted == tally.webhooks_stored


@pytest.mark.crash_long
async def test_sigkill_under_mixed_load_long(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "crash_long" not in (request.config.option.markexpr or ""):
        pytest.skip("long crash run: select it with -m crash_long")
    tally = await run_rounds(tmp_path, LONG_ROUNDS, seed=2612)
    report("crash, mixed load (long)", tally)
    assert tally.rounds == len(LONG_ROUNDS) and tally.webhooks_accepted == tally.webhooks_stored
