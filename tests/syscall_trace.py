"""Recording the order of the write path's system calls (and the database's commits) in one list.

SIGKILL cannot show a missing fsync (the page cache survives the process), so the crash test also records
what the write path asks the kernel for, in order, and asserts that order: temp file written, temp file
fsynced, renamed over the target, folder fsynced; the row marked `refreshing` and committed before, the new
row committed after.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bridge.strm import is_temp_name

Event = tuple[str, str]
"""(operation, what): ("write", name), ("fsync", name), ("fsync_dir", folder), ("replace", "temp>name"), ("sql", s)"""


class SyscallTrace:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._fds: dict[int, str] = {}
        self._lock = threading.Lock()
        self.on_event: Callable[[Event], None] | None = None

    def add(self, op: str, what: str) -> None:
        with self._lock:
            self.events.append((op, what))
        if self.on_event is not None:
            self.on_event((op, what))

    @contextmanager
    def installed(self, conn: sqlite3.Connection | None = None) -> Iterator[SyscallTrace]:
        """Wrap os.open/write/fsync/replace/close for the duration (the write path calls them through `os`)."""
        real = {name: getattr(os, name) for name in ("open", "write", "fsync", "replace", "close")}

        def traced_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            is_dir = bool(flags & getattr(os, "O_DIRECTORY", 0))
            self._fds[fd] = ("dir:" if is_dir else "") + os.fsdecode(path)
            return fd

        def traced_write(fd: int, data: Any) -> int:
            written = real["write"](fd, data)
            if fd in self._fds:
                self.add("write", self._fds[fd])
            return written

        def traced_fsync(fd: Any) -> None:
            real["fsync"](fd)
            name = self._fds.get(fd if isinstance(fd, int) else fd.fileno(), "?")
            self.add("fsync_dir" if name.startswith("dir:") else "fsync", name.removeprefix("dir:"))

        def traced_replace(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
            real["replace"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            self.add("replace", f"{os.fsdecode(src)}>{os.fsdecode(dst)}")

        def traced_close(fd: int) -> None:
            # forgotten before the close: once closed, another writer thread may be handed the same number
            self._fds.pop(fd, None)
            real["close"](fd)

        os.open, os.write, os.fsync, os.replace, os.close = (  # type: ignore[assignment]
            traced_open, traced_write, traced_fsync, traced_replace, traced_close)
        if conn is not None:
            conn.set_trace_callback(lambda statement: self.add("sql", statement))
        try:
            yield self
        finally:
            for name, function in real.items():
                setattr(os, name, function)
            if conn is not None:
                conn.set_trace_callback(None)


def order_violations(events: list[Event], new_urls: dict[str, str], mapping_ids: dict[str, int] | None = None) -> list[str]:
    """Every target's sequence must be: write temp, fsync temp, replace temp>target, fsync folder; the commit
    of its `refreshing` mark before the temp write, the update carrying its new URL after the folder fsync,
    and a commit after that. `new_urls`: target name (as renamed, relative to its folder) -> the URL it got;
    `mapping_ids`: target name -> its row, so the mark is the row's own (batches overlap)."""
    problems: list[str] = []
    commits = [i for i, (op, what) in enumerate(events) if op == "sql" and what.strip().upper().startswith("COMMIT")]
    replaces = [(i, what.split(">", 1)) for i, (op, what) in enumerate(events) if op == "replace"]
    if not replaces:
        return ["no file was replaced"]
    for i, (temp, target) in replaces:
        if not is_temp_name(os.path.basename(temp)):
            problems.append(f"{target}: renamed from a name that is not a temp name ({temp})")
        writes = [j for j, (op, what) in enumerate(events[:i]) if op == "write" and what == temp]
        syncs = [j for j, (op, what) in enumerate(events[:i]) if op == "fsync" and what == temp]
        if not writes:
            problems.append(f"{target}: replaced before its temp file was written")
            continue
        if not syncs or syncs[-1] < writes[-1]:
            problems.append(f"{target}: replaced without an fsync of the temp file after its last write")
        dir_syncs = [j for j, (op, _) in enumerate(events) if op == "fsync_dir" and j > i]
        if not dir_syncs:
            problems.append(f"{target}: the folder was not fsynced after the rename")
            continue
        row = (mapping_ids or {}).get(target)
        marks = [j for j, (op, what) in enumerate(events[:writes[0]]) if op == "sql" and "'refreshing'" in what
                 and (row is None or what.rstrip().endswith(f"where id = {row}"))]
        if not marks or not any(marks[-1] < c < writes[0] for c in commits):
            problems.append(f"{target}: the temp file was written before its refreshing mark was committed")
        url = new_urls.get(target)
        stored = [j for j, (op, what) in enumerate(events) if op == "sql" and url and url in what
                  and what.lstrip().upper().startswith("UPDATE")]
        if not stored:
            problems.append(f"{target}: no update stored its new URL")
        elif stored[0] < dir_syncs[0]:
            problems.append(f"{target}: the new URL was stored before the folder fsync")
        elif not any(c > stored[0] for c in commits):
            problems.append(f"{target}: the update with the new URL was never committed")
    return problems
