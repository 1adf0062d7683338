"""Opening the database for a read-only command: an existing file only, never created, never migrated.

`mappings list` run with the wrong data folder must say where it looked, not leave an empty database and a
new token behind; SQLite's `mode=ro` guarantees the command cannot write, whatever it calls.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from bridge.db import BUSY_TIMEOUT_MS


def open_existing(path: str | os.PathLike[str]) -> Database | None:
    """The database at `path` opened read-only, or None when there is no file there yet."""
    db_path = Path(path)
    if not db_path.is_file():
        return None
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return Database(conn)


def no_database_note(path: str | os.PathLike[str]) -> str:
    return (f"no database at {path} yet (nothing imported or served there); if yours lives elsewhere, "
            "pass --config or set STRM_BRIDGE_DATA / [database] path")
