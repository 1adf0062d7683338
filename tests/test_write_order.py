"""The write path's order of system calls and commits, recorded and asserted (SIGKILL cannot show a missing fsync)."""
from __future__ import annotations

import builtins
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncio

import pytest

from bridge.config import RefreshConfig
from bridge.mappings import MappingStore
from bridge.refresh import RefreshPipeline
from bridge.strm import Library, read_strm
from tests.crash_worker import InstantResolver
from tests.syscall_trace import SyscallTrace, order_violations

FILES = 40  # more than one write batch (32), four writer threads


async def test_each_file_is_written_fsynced_renamed_and_its_folder_fsynced_between_two_commits(
    store: MappingStore, library_root: Path
) -> None:
    ids = []
    for i in range(FILES):
        folder = library_root / f"show-{i % 3}"
        folder.mkdir(exist_ok=True)
        path = folder / f"S01E{i:03d}.strm"
        path.write_text(f"http://cdn.test/old/{i}.mp4\n")
        ids.append(store.upsert({"strm_path": str(path), "resolved_url": f"http://cdn.test/old/{i}.mp4",
                                 "slug": f"show-{i % 3}", "season": 1, "episode": i})["id"])
    pipeline = RefreshPipeline(store, Library([str(library_root)]), [InstantResolver()],
                               replace(RefreshConfig(), probe_new_url=False))
    trace = SyscallTrace()
    try:
        with trace.installed(store.conn):
            outcomes = await asyncio.gather(*(pipeline.refresh(i, trigger="manual", reason="forced", force=True)
                                              for i in ids))
    finally:
        await pipeline.close()
    assert [o.outcome for o in outcomes] == ["refreshed"] * FILES
    new_urls = {f"S01E{i:03d}.strm": read_strm(library_root / f"show-{i % 3}" / f"S01E{i:03d}.strm") or ""
                for i in range(FILES)}
    assert len([e for e in trace.events if e[0] == "replace"]) == FILES
    rows = {f"S01E{i:03d}.strm": mapping_id for i, mapping_id in enumerate(ids)}
    assert order_violations(trace.events, new_urls, rows) == []


async def test_the_write_stage_reads_each_file_once(store: MappingStore, library_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the file holds is read once, right before the write: the ownership check and the /play/ check share it."""
    urls = {"direct.strm": "http://cdn.test/old/1.mp4", "stable.strm": "http://bridge.lan:8765/play/{id}?sig=abc"}
    ids = {}
    for episode, (name, url) in enumerate(urls.items(), start=1):
        path = library_root / name
        row = store.upsert({"strm_path": str(path), "resolved_url": "http://cdn.test/old/1.mp4", "slug": "show",
                            "season": 1, "episode": episode})
        path.write_text(url.format(id=row["id"]) + "\n")
        ids[name] = row["id"]
    stable_before = (library_root / "stable.strm").read_bytes()
    reads: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def counted_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path).endswith(".strm") and not flags & (os.O_WRONLY | os.O_RDWR | os.O_DIRECTORY):
            reads.append(os.path.basename(os.fsdecode(path)))
        return real_os_open(path, flags, *args, **kwargs)

    def counted_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(".strm") and not set(mode) & set("wax+"):
            reads.append(os.path.basename(os.fspath(file)))
        return real_open(file, mode, *args, **kwargs)

    pipeline = RefreshPipeline(store, Library([str(library_root)]), [InstantResolver()],
                               replace(RefreshConfig(), probe_new_url=False))
    monkeypatch.setattr(os, "open", counted_os_open)
    monkeypatch.setattr(builtins, "open", counted_open)
    try:
        outcomes = [await pipeline.refresh(i, trigger="manual", reason="forced", force=True) for i in ids.values()]
    finally:
        monkeypatch.undo()
        await pipeline.close()
    assert [o.outcome for o in outcomes] == ["refreshed", "refreshed"]
    assert sorted(reads) == ["direct.strm", "stable.strm"]
    assert (library_root / "stable.strm").read_bytes() == stable_before  # the stable link was still not replaced
    assert store.get(ids["stable.strm"])["resolved_url"] == outcomes[1].new_url


def test_the_order_check_finds_each_missing_step() -> None:
    """The assertion above can fail: each step left out of a correct sequence is reported."""
    temp = ".strm-bridge-E1.strm.1-abcd.tmp"
    url = "http://cdn.test/new"
    good = [("sql", "update mappings set state = 'refreshing' where id = 1"), ("sql", "COMMIT"),
            ("write", temp), ("fsync", temp), ("replace", f"{temp}>E1.strm"), ("fsync_dir", "/lib"),
            ("sql", f"update mappings set resolved_url = '{url}' where id = 1"), ("sql", "COMMIT")]
    assert order_violations(good, {"E1.strm": url}) == []
    for index, expected in ((1, "refreshing mark"), (3, "fsync of the temp file"), (5, "folder was not fsynced"),
                            (7, "never committed")):
        broken = good[:index] + good[index + 1:]
        problems = order_violations(broken, {"E1.strm": url})
        assert problems and expected in problems[0], (index, problems)
    swapped = good[:5] + [good[6], good[5]] + good[7:]
    assert "before the folder fsync" in order_violations(swapped, {"E1.strm": url})[0]
