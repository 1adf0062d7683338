"""Bulk refresh jobs: persisted with per-item outcomes, so a restart resumes them instead of losing them."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Callable, Iterator

from sqlite_utils import Database

from bridge.db import atomic
from bridge.mappings import Mapping
from bridge.refresh import RefreshOutcome, RefreshPipeline
from bridge.timeutil import now_iso

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 128
"""Items resolved but not yet written: about four write batches, so the writer threads always have the next one."""


class JobRunner:
    def __init__(self, db: Database, pipeline: RefreshPipeline, concurrency: int) -> None:
        self.db = db
        self.conn = db.conn
        self.pipeline = pipeline
        self.store = pipeline.store
        self.concurrency = concurrency
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def create(self, ids: list[int], params: dict[str, Any], kind: str = "refresh") -> str:
        job_id = uuid.uuid4().hex[:16]
        now = now_iso()
        with atomic(self.conn):
            self.conn.execute(
                "insert into jobs (id, kind, params, state, total, done, created_at, updated_at) values (?,?,?,?,?,0,?,?)",
                (job_id, kind, json.dumps(params, sort_keys=True), "running", len(ids), now, now),
            )
            self.conn.executemany("insert into job_items (job_id, mapping_id) values (?, ?)", [(job_id, i) for i in ids])
        return job_id

    def start(self, job_id: str, on_item: Callable[[RefreshOutcome], None] | None = None) -> asyncio.Task[None]:
        task = asyncio.create_task(self.run(job_id, on_item), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return task

    async def run(self, job_id: str, on_item: Callable[[RefreshOutcome], None] | None = None) -> None:
        row = self.conn.execute("select params from jobs where id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        params = json.loads(row[0])
        options = {"trigger": params.get("trigger", "manual"), "reason": params.get("reason", "manual"),
                   "force": bool(params.get("force"))}
        dry_run = bool(params.get("dry_run"))
        next_ids = self._pending_pages(job_id)
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        writing: set[asyncio.Future[RefreshOutcome]] = set()
        progress: list[tuple[str, str, str, str, int]] = []
        since_commit = 0

        def store_progress() -> None:
            nonlocal since_commit
            if not progress:
                return
            # progress rides on the next commit: after a crash an item is at worst refreshed again
            self.conn.executemany(
                "update job_items set outcome = ?, detail = ?, finished_at = ? where job_id = ? and mapping_id = ?",
                progress)
            since_commit += len(progress)
            progress.clear()
            if since_commit >= 100:
                self.conn.commit()
                since_commit = 0

        def record(mapping_id: int, outcome: RefreshOutcome) -> None:
            if not progress:  # a whole write batch finishes in one loop pass: one statement for all of it
                asyncio.get_running_loop().call_soon(store_progress)
            progress.append((outcome.outcome, outcome.detail[:500], now_iso(), job_id, mapping_id))
            if on_item is not None:
                on_item(outcome)

        def written(mapping_id: int, done: asyncio.Future[RefreshOutcome]) -> None:
            in_flight.release()
            writing.discard(done)
            if done.cancelled():
                return  # shutting down: the item stays pending and is done again on resume
            exc = done.exception()
            record(mapping_id, done.result() if exc is None else self._crashed(job_id, mapping_id, exc))

        async def worker() -> None:
            """Resolves one item after another; each item's write finishes in the background, in a batch."""
            for mapping_id, mapping, read_at in next_ids:
                await in_flight.acquire()
                try:
                    if dry_run:
                        outcome = await self.pipeline.refresh(mapping_id, dry_run=True, **options)
                    else:
                        done = await self.pipeline.submit(mapping_id, known=(mapping, read_at), **options)
                        writing.add(done)
                        done.add_done_callback(lambda d, i=mapping_id: written(i, d))  # type: ignore[misc]
                        continue
                except Exception as exc:  # one item must not stop the job
                    outcome = self._crashed(job_id, mapping_id, exc)
                in_flight.release()
                record(mapping_id, outcome)

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, self.concurrency))))
            while writing:
                await asyncio.wait(list(writing))
        except asyncio.CancelledError:
            store_progress()  # what finished is kept; the rest resumes at the next start
            raise
        store_progress()
        with atomic(self.conn):
            self.conn.execute("update jobs set state = 'done', done = total, updated_at = ? where id = ?",
                              (now_iso(), job_id))

    @staticmethod
    def _crashed(job_id: str, mapping_id: int, exc: BaseException) -> RefreshOutcome:
        log.error("job %s item %s", job_id, mapping_id, exc_info=exc)
        return RefreshOutcome(mapping_id, "failed", f"{type(exc).__name__}: {exc}")

    def _pending_pages(self, job_id: str, page: int = 500) -> Iterator[tuple[int, Mapping | None, float]]:
        """Pending items and their rows a page at a time: a job over a million files holds 500, not a million,
        and one read serves 500 refreshes (the pipeline re-reads a row it has itself changed since)."""
        last = -1
        while True:
            read_at = self.pipeline.clock()
            rows = self.store.job_page(job_id, last, page)
            if not rows:
                return
            for mapping_id, mapping in rows:
                yield mapping_id, mapping, read_at
            last = rows[-1][0]

    def resume_all(self) -> list[str]:
        """Restart every job a previous process left running."""
        ids = [r[0] for r in self.conn.execute("select id from jobs where state = 'running' order by created_at")]
        for job_id in ids:
            self.start(job_id)
        return ids

    def get(self, job_id: str, *, items_limit: int = 1000, items_offset: int = 0) -> dict[str, Any] | None:
        cursor = self.conn.execute("select * from jobs where id = ?", (job_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        job = dict(zip([c[0] for c in cursor.description], row))
        job["params"] = json.loads(job["params"] or "{}")
        job["counts"] = dict(self.conn.execute(
            "select coalesce(outcome, 'pending'), count(*) from job_items where job_id = ? group by 1", (job_id,)).fetchall())
        job["done"] = job["total"] - job["counts"].get("pending", 0)  # derived: no per-item write to the job row
        cursor = self.conn.execute(
            "select mapping_id, outcome, detail, finished_at from job_items where job_id = ? order by mapping_id"
            " limit ? offset ?", (job_id, items_limit, items_offset))
        names = [c[0] for c in cursor.description]
        job["items"] = [dict(zip(names, r)) for r in cursor.fetchall()]
        job["progress"] = job["done"] / job["total"] if job["total"] else 1.0
        return job

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
