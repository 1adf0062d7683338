"""The link health check: `strm-bridge check` and LinkChecker record what links answer, and exit codes suit cron."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from bridge.config import RefreshConfig
from bridge.db import open_database
from bridge.health import LinkChecker
from bridge.links import LinkRules
from bridge.mappings import MappingStore
from bridge.sweep import Sweeper
from bridge.strm import read_strm
from tests.appfactory import write_config
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping, http_resolver, pipeline


async def run_cli(*args: str) -> tuple[int, str, str]:
    """The real command in its own process: it runs its own event loop, as it does for a user."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def library_with_one_dead(root: Path, store: MappingStore, provider: FakeProvider) -> tuple[dict, dict, dict]:
    alive = add_mapping(store, root, provider, 1, expired=False)
    dead = add_mapping(store, root, provider, 2, expired=False)
    provider.remove_episode("show/1/2")  # the CDN answers 404 now, while the row still says ok
    gone = add_mapping(store, root, provider, 3, expired=False)
    return alive, dead, gone


async def test_check_command_records_dead_links_and_exits_1(tmp_path: Path, library_root: Path,
                                                            fake_provider: FakeProvider) -> None:
    config = write_config(tmp_path, roots=[library_root])
    store = MappingStore(open_database(tmp_path / "data" / "bridge.db"))
    alive, dead, gone = library_with_one_dead(library_root, store, fake_provider)
    Path(gone["strm_path"]).unlink()
    before = {m["id"]: read_strm(m["strm_path"]) for m in (alive, dead)}

    code, out, err = await run_cli("check", "--json", "--config", str(config))
    assert code == 1, (out, err)
    report = json.loads(out)
    findings = {i["mapping_id"]: i["finding"] for i in report["items"]}
    assert findings == {alive["id"]: "alive", dead["id"]: "dead", gone["id"]: "missing"}
    assert report["counts"] == {"alive": 1, "dead": 1, "missing": 1}

    rows = {i: store.get(i) for i in findings}
    assert rows[dead["id"]]["state"] == "dead" and rows[dead["id"]]["last_status"] == "dead"
    assert rows[alive["id"]]["state"] == "ok" and rows[alive["id"]]["last_status"] == "alive"
    assert rows[gone["id"]]["state"] == "missing"
    assert all(rows[i]["last_checked_at"] for i in findings)
    # a check writes no file and asks no resolver
    assert {m["id"]: read_strm(m["strm_path"]) for m in (alive, dead)} == before
    assert fake_provider.resolve_calls == []
    # HEAD probes, the way a player starts
    assert {m for m, _, _ in fake_provider.media_requests} == {"HEAD"}

    # the dead row is now what --stale selects
    ids = [m["id"] for m in store.stale(0)]
    assert dead["id"] in ids and alive["id"] not in ids
    store.conn.close()


async def test_check_exit_codes(tmp_path: Path, library_root: Path, fake_provider: FakeProvider) -> None:
    config = write_config(tmp_path, roots=[library_root])
    store = MappingStore(open_database(tmp_path / "data" / "bridge.db"))

    code, out, _ = await run_cli("check", "--config", str(config))
    assert code == 0 and "nothing to check" in out  # empty library: nothing to do

    ok = add_mapping(store, library_root, fake_provider, 1, expired=False)
    code, out, _ = await run_cli("check", "--id", str(ok["id"]), "--config", str(config))
    assert code == 0 and "1 alive" in out

    code, out, err = await run_cli("check", "--id", "1", "--all", "--config", str(config))
    assert code == 2 and "exactly one of" in err and "Traceback" not in err

    code, out, err = await run_cli("check", "--series", "nonsense", "--config", str(config))
    assert code == 2 and "SITE/SLUG" in err and "Traceback" not in err

    code, out, _ = await run_cli("check", "--series", "fake/other", "--config", str(config))
    assert code == 0 and "nothing to check" in out

    fake_provider.set_mode("show/1/1", "error")  # 500: the check cannot tell, which is still a problem to look at
    code, out, _ = await run_cli("check", "--all", "--config", str(config))
    assert code == 1 and "1 error" in out
    assert store.get(ok["id"])["state"] == "ok" and store.get(ok["id"])["last_status"] == "server_error"
    store.conn.close()


async def test_checker_bounded_concurrency_and_refresh_race(tmp_path: Path, library_root: Path, db,  # type: ignore[no-untyped-def]
                                                            fake_provider: FakeProvider) -> None:
    store = MappingStore(db)
    rows = [add_mapping(store, library_root, fake_provider, e, expired=False) for e in range(1, 21)]
    in_flight = peak = 0
    original = fake_provider._media_answer

    async def counting(request):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)
            return await original(request)
        finally:
            in_flight -= 1

    fake_provider._media_answer = counting  # type: ignore[method-assign]
    checker = LinkChecker(store, concurrency=3, timeout=2)
    seen: list[int] = []
    report = await checker.check([r["id"] for r in rows], on_item=lambda item: seen.append(item.mapping_id))
    assert report.counts == {"alive": 20} and sorted(seen) == [r["id"] for r in rows]
    assert 1 <= peak <= 3

    # a refresh that changed the URL while the old one was being probed wins: its row is not overwritten
    victim = rows[0]
    fake_provider.remove_episode("show/1/1")
    store.update(victim["id"], {"state": "refreshing"})
    report = await checker.check([victim["id"]])
    assert report.items[0].finding == "skipped" and store.get(victim["id"])["state"] == "refreshing"
    await checker.close()


async def test_self_links_are_not_probed(tmp_path: Path, library_root: Path, db) -> None:  # type: ignore[no-untyped-def]
    store = MappingStore(db)
    path = library_root / "a.strm"
    path.write_text("http://127.0.0.1:8765/play/1\n")
    row = store.upsert({"strm_path": str(path), "resolved_url": "http://127.0.0.1:8765/play/1", "state": "ok"})
    checker = LinkChecker(store, links=LinkRules(host="127.0.0.1", port=8765))
    report = await checker.check([row["id"]])
    await checker.close()
    assert report.items[0].finding == "skipped" and store.get(row["id"])["last_checked_at"] is None


async def test_dry_run_records_what_the_probe_found(library_root: Path, library, db,  # type: ignore[no-untyped-def]
                                                    fake_provider: FakeProvider) -> None:
    store = MappingStore(db)
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    fake_provider.remove_episode("show/1/1")
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual", dry_run=True)
    await p.close()
    assert outcome.outcome == "would_refresh"
    row = store.get(m["id"])
    assert row["state"] == "dead" and row["last_status"] == "dead" and row["last_checked_at"]
    assert read_strm(m["strm_path"]) == m["resolved_url"] and fake_provider.resolve_calls == []
    assert [r["id"] for r in store.stale(0)] == [m["id"]]  # so --stale picks it up next


async def test_scheduled_check_in_the_sweep(library_root: Path, library, db,  # type: ignore[no-untyped-def]
                                            fake_provider: FakeProvider) -> None:
    store = MappingStore(db)
    rows = [add_mapping(store, library_root, fake_provider, e, expired=False) for e in (1, 2)]
    fake_provider.remove_episode("show/1/2")
    p = pipeline(store, library, [])
    sweeper = Sweeper(store, p, interval_seconds=0, margin_seconds=0, concurrency=2,
                      checker=LinkChecker(store, timeout=2), check_interval_seconds=0.05)
    sweeper.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and store.get(rows[1]["id"])["state"] != "dead":
        await asyncio.sleep(0.02)
    await sweeper.stop()
    await p.close()
    assert store.get(rows[1]["id"])["state"] == "dead" and store.get(rows[0]["id"])["last_status"] == "alive"


def test_check_interval_is_validated(tmp_path: Path) -> None:
    import pytest

    from bridge.config import ConfigError, load_config

    assert RefreshConfig().check_interval_seconds == 0
    path = write_config(tmp_path, "[refresh]\ncheck_interval_seconds = -1\n")
    with pytest.raises(ConfigError, match="refresh.check_interval_seconds"):
        load_config(path, env={})


async def test_check_respects_deny_hosts(library_root: Path, db, fake_provider: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    from bridge.egress import Egress

    store = MappingStore(db)
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    checker = LinkChecker(store, timeout=2, egress=Egress.from_lists(["127.0.0.1"]))
    report = await checker.check([m["id"]])
    await checker.close()
    assert report.items[0].finding == "error" and "refused to connect" in report.items[0].detail
    assert fake_provider.media_requests == [] and store.get(m["id"])["state"] == "ok"


async def test_findings_wait_for_another_process_lock(tmp_path: Path, library_root: Path,  # type: ignore[no-untyped-def]
                                                      fake_provider: FakeProvider) -> None:
    """The server's connection gives up on a lock after 50 ms: the check keeps its findings and retries."""
    import sqlite3

    db_path = tmp_path / "data" / "bridge.db"
    store = MappingStore(open_database(db_path))
    store.conn.execute("pragma busy_timeout = 50")
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    fake_provider.remove_episode("show/1/1")
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("begin immediate")  # another process (a CLI import) holds the write lock
    checker = LinkChecker(store, timeout=2)
    task = asyncio.create_task(checker.check([m["id"]]))
    await asyncio.sleep(0.6)
    assert not task.done()
    other.execute("commit")
    report = await asyncio.wait_for(task, 10)
    await checker.close()
    other.close()
    assert report.items[0].finding == "dead" and store.get(m["id"])["state"] == "dead"
    store.conn.close()
