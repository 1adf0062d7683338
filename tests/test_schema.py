import multiprocessing
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from bridge.db import atomic, connect, migration_status, open_database
from schema import migrations

TABLES = {"mappings", "refresh_log", "rescan_queue", "events", "jobs", "job_items"}


def test_fresh_database_gets_every_table_wal_and_busy_timeout(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    assert TABLES <= set(db.table_names())
    assert db.journal_mode == "wal"
    assert db.execute("pragma busy_timeout").fetchone()[0] >= 5000
    applied, pending = migration_status(db)
    assert [name for name, _ in applied] == [m.name for m in migrations._migrations]
    assert pending == []
    indexes = {i.name for i in db["mappings"].indexes}
    assert {"idx_mappings_strm_path", "idx_mappings_identity", "idx_mappings_resolved_url"} <= indexes


def test_upgrade_from_first_migration_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    first = migrations._migrations[0].name
    second = migrations._migrations[1].name
    migrations.apply(old, stop_before=second)
    assert [m.name for m in migrations.applied(old)] == [first]
    old["mappings"].insert({"strm_path": "/lib/a.strm", "resolved_url": "http://h/a", "provider": "",
                            "state": "ok", "fail_count": 0, "created_at": "x", "updated_at": "x"})
    old.conn.close()
    db = open_database(path)
    applied, pending = migration_status(db)
    assert pending == []
    assert len(applied) == len(migrations._migrations)
    assert "jobs" in db.table_names()
    assert db["mappings"].count == 1


def test_migrate_list_is_read_only(tmp_path: Path) -> None:
    db = connect(tmp_path / "b.db")
    applied, pending = migration_status(db)
    assert applied == []
    assert pending == [m.name for m in migrations._migrations]
    assert db.table_names() == []


def _start(path: str, barrier: "multiprocessing.synchronize.Barrier", results: "multiprocessing.Queue[str]") -> None:
    barrier.wait()
    try:
        db = open_database(path)
        db["mappings"].count  # noqa: B018 - touch the table
        results.put("ok")
    except Exception as exc:  # report, the parent asserts
        results.put(f"error: {exc!r}")


def test_four_processes_migrating_one_fresh_database(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_start, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["ok"] * 4
    conn = sqlite3.connect(path)
    names = [row[0] for row in conn.execute("select name from _sqlite_migrations order by id")]
    assert names == [m.name for m in migrations._migrations]


def test_atomic_undoes_only_its_own_statements(tmp_path: Path) -> None:
    """A failing block must not roll back what other coroutines left pending on the shared connection."""
    db = open_database(tmp_path / "bridge.db")
    conn = db.conn
    conn.execute("create table t (id integer primary key, v text unique)")
    conn.commit()
    conn.execute("insert into t (v) values ('pending mark')")  # another coroutine's, waiting for its group commit
    with pytest.raises(sqlite3.IntegrityError):
        with atomic(conn):
            conn.execute("insert into t (v) values ('mine')")
            conn.execute("insert into t (v) values ('mine')")  # fails: unique
    assert [r[0] for r in conn.execute("select v from t")] == ["pending mark"]
    with atomic(conn):
        conn.execute("insert into t (v) values ('second')")
    other = sqlite3.connect(tmp_path / "bridge.db")  # committed: another connection sees both
    assert sorted(r[0] for r in other.execute("select v from t")) == ["pending mark", "second"]
    other.close()
    db.conn.close()
