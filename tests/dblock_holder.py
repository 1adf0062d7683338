"""Another process holding the database's write lock: `python tests/dblock_holder.py DB SECONDS`.

Prints "locked" once it holds the lock (BEGIN IMMEDIATE plus a write), then holds it for SECONDS or until its
standard input closes, and commits. The lock tests and bench/bench_dblock.py drive it.
"""
from __future__ import annotations

import select
import sqlite3
import sys
import time


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("create table if not exists foreign_lock_probe (at real)")
    conn.execute("insert into foreign_lock_probe values (?)", (time.time(),))
    print("locked", flush=True)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sys.stdin], [], [], min(left, 0.5))
        if ready and not sys.stdin.read(1):
            break  # the driver closed our stdin: release now
    conn.execute("COMMIT")
    print("released", flush=True)


if __name__ == "__main__":
    main()
