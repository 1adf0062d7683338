"""Stable-link conversions started from the dashboard: run in the background, progress kept in memory to poll.

Each file is written by `bridge.convert.convert` through the safe writer, so a restart mid-run loses nothing: a
file is either converted or not, and running the same conversion again finishes the rest.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bridge.convert import Converted, convert

log = logging.getLogger(__name__)
KEEP_RUNS = 20
MAX_SHOWN_PROBLEMS = 20


@dataclass
class ConvertRun:
    id: str
    to: str
    total: int
    done: int = 0
    rescans: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[Converted] = field(default_factory=list)
    state: str = "running"  # running | done | failed
    error: str = ""

    def note(self, item: Converted) -> None:
        self.done += 1
        self.rescans += item.rescans
        self.counts[item.outcome] += 1
        if item.outcome in ("failed", "skipped") and len(self.problems) < MAX_SHOWN_PROBLEMS:
            self.problems.append(item)


class ConvertRuns:
    def __init__(self) -> None:
        self._runs: OrderedDict[str, ConvertRun] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        """One conversion at a time: two clicks on overlapping seasons must not race on the same files."""

    def start(self, services: Any, ids: list[int], to: str, public_url: str) -> ConvertRun:
        run = ConvertRun(secrets.token_hex(8), to, len(ids))
        self._runs[run.id] = run
        while len(self._runs) > KEEP_RUNS:
            self._runs.popitem(last=False)

        async def body() -> None:
            try:
                async with self._lock:
                    await convert(services, ids, to, public_url=public_url, on_item=run.note)
                run.state = "done"
            except asyncio.CancelledError:
                run.state, run.error = "failed", "stopped"
                raise
            except Exception as exc:  # shown on the page; the service keeps running
                log.exception("dashboard conversion failed")
                run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"

        task = asyncio.create_task(body(), name=f"convert-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    def get(self, run_id: str) -> ConvertRun | None:
        return self._runs.get(run_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
