"""Link checks started from the dashboard: run in the background, progress kept in memory for the page to poll.

A check only records findings on the rows, so losing its progress on a restart loses nothing; unlike a refresh
job it is not persisted or resumed.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from bridge.health import PROBLEM_FINDINGS, CheckItem, LinkChecker

log = logging.getLogger(__name__)
KEEP_RUNS = 20
MAX_SHOWN_PROBLEMS = 20


@dataclass
class CheckRun:
    id: str
    total: int
    done: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[CheckItem] = field(default_factory=list)
    state: str = "running"  # running | done | failed
    error: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 1.0

    def note(self, item: CheckItem) -> None:
        self.done += 1
        self.counts[item.finding] += 1
        if item.finding in PROBLEM_FINDINGS and len(self.problems) < MAX_SHOWN_PROBLEMS:
            self.problems.append(item)


class CheckRuns:
    def __init__(self) -> None:
        self._runs: OrderedDict[str, CheckRun] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, ids: list[int], checker: LinkChecker) -> CheckRun:
        run = CheckRun(secrets.token_hex(8), len(ids))
        self._runs[run.id] = run
        while len(self._runs) > KEEP_RUNS:
            self._runs.popitem(last=False)

        async def body() -> None:
            try:
                await checker.check(ids, on_item=run.note)
                run.state = "done"
            except asyncio.CancelledError:
                run.state = "failed"
                run.error = "stopped"
                raise
            except Exception as exc:  # shown on the page; the service keeps running
                log.exception("dashboard link check failed")
                run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                await checker.close()

        task = asyncio.create_task(body(), name=f"check-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    def get(self, run_id: str) -> CheckRun | None:
        return self._runs.get(run_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
