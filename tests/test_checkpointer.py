"""WAL checkpoints run on their own thread: the writer's commits only append, and the WAL stays bounded."""
from __future__ import annotations

import time
from pathlib import Path

from bridge.db import AUTOCHECKPOINT_PAGES, Checkpointer, open_database


def test_background_checkpoints_keep_the_wal_small(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    db = open_database(path)
    db.conn.execute("create table filler (id integer primary key, data text)")
    checkpointer = Checkpointer(path, interval=0.02, min_pages=50)
    checkpointer.start(db.conn)
    try:
        assert db.conn.execute("pragma wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_PAGES
        payload = "x" * 3000
        for batch in range(60):  # ~60 commits of ~6 pages each: far more than min_pages in all
            db.conn.executemany("insert into filler (data) values (?)", [(payload,)] * 8)
            db.conn.commit()
            if batch % 10 == 9:
                time.sleep(0.05)
        deadline = time.monotonic() + 5
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints > 0
    # the rows reached the database file itself: read it ignoring the WAL (the writer's own checkpoint would
    # only have run past 10,000 pages, so nothing else could have put them there)
    import sqlite3

    snapshot = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        assert snapshot.execute("select count(*) from filler").fetchone()[0] >= 8
    finally:
        snapshot.close()
    assert db.conn.execute("select count(*) from filler").fetchone()[0] == 480
    db.conn.close()


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    db = open_database(path)
    checkpointer = Checkpointer(path, interval=0.01)
    checkpointer.start(db.conn)
    time.sleep(0.05)
    checkpointer.stop()
    assert checkpointer._thread is None
    db.conn.close()
