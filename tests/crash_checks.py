"""What must hold after a SIGKILL at any instant: the crash tests' shared checks of the library and the database."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.strm import is_temp_name, validate_url


def check_invariants(root: Path, db_path: Path, expected: int) -> tuple[int, int]:
    """Every .strm holds exactly one valid URL line; every row not marked refreshing matches its file.

    Returns (rows marked refreshing, .strm files); `expected` is how many .strm files the library must hold."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            assert not name.endswith(".strm") or not is_temp_name(name), path
            if is_temp_name(name):
                continue
            content = Path(path).read_text()
            assert content.endswith("\n") and content.count("\n") == 1, f"partial file {path}: {content!r}"
            files[path] = validate_url(content.strip())
    assert len(files) == expected
    store = MappingStore(open_database(db_path, migrate=False))
    refreshing = mismatched = 0
    try:
        for mapping_id in store.iter_ids():
            row = store.get(mapping_id)
            if row["state"] == "refreshing":
                refreshing += 1
                continue
            if files[row["strm_path"]] != row["resolved_url"]:
                mismatched += 1
    finally:
        store.conn.close()
    assert mismatched == 0, f"{mismatched} rows point at a URL no file holds"
    return refreshing, len(files)


def temp_files(root: Path) -> list[str]:
    return [n for _, _, names in os.walk(root) for n in names if is_temp_name(n)]


def integrity(db_path: Path) -> list[str]:
    """`PRAGMA integrity_check` of a database a killed process left (its WAL included): ["ok"] when sound."""
    conn = sqlite3.connect(db_path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()
