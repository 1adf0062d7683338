"""A bulk-refresh process for the crash test: `run` starts a forced job over every mapping, `resume` restarts.

Uses an instant in-process resolver so the process spends its time in the write path, where a kill hurts.
With `STRM_CRASH_AT=<n>:<step>` (step: write, fsync, replace, fsync_dir or commit) the process stops at the
n-th such step of the job, says so on stdout and waits to be killed: the kill lands at a point of the job's
progress, not of the clock.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import replace

from bridge.config import RefreshConfig
from bridge.db import open_database
from bridge.jobs import JobRunner
from bridge.mappings import MappingStore
from bridge.refresh import RefreshPipeline
from bridge.resolvers.base import ResolveRequest, Resolved
from bridge.strm import Library
from tests.syscall_trace import Event, SyscallTrace


class InstantResolver:
    name = "instant"

    async def resolve(self, request: ResolveRequest) -> Resolved:
        i = request.identity
        return Resolved(f"http://cdn.test/{i.slug}/{i.season}/{i.episode}.mp4?v={uuid.uuid4().hex}", provider="instant")

    async def close(self) -> None:
        pass


def pause_at(spec: str) -> SyscallTrace:
    """Counts the steps of the write path; at the chosen one, reports it and blocks that thread for good."""
    count_text, step = spec.split(":", 1)
    target = int(count_text)
    seen = 0
    lock = threading.Lock()
    trace = SyscallTrace()

    def on_event(event: Event) -> None:
        nonlocal seen
        op, what = event
        name = "commit" if op == "sql" and what.strip().upper() == "COMMIT" else op
        if name != step:
            return
        with lock:
            seen += 1
            hit = seen == target
        if hit:
            sys.stdout.write(json.dumps({"paused": step, "at": target, "what": what[:80]}) + "\n")
            sys.stdout.flush()
            time.sleep(3600)

    trace.on_event = on_event
    return trace


async def main(db_path: str, root: str, mode: str) -> None:
    db = open_database(db_path)
    store = MappingStore(db)
    config = replace(RefreshConfig(), probe_new_url=False, concurrency=4, mass_failure_min_attempts=10**9)
    pipeline = RefreshPipeline(store, Library([root]), [InstantResolver()], config)
    jobs = JobRunner(db, pipeline, config.concurrency)
    if mode == "run":
        job_id = jobs.create(list(store.iter_ids()), {"force": True, "reason": "forced"})
        print(json.dumps({"job": job_id}), flush=True)
        spec = os.environ.get("STRM_CRASH_AT")
        if spec:
            with pause_at(spec).installed(db.conn):
                await jobs.run(job_id)
        else:
            await jobs.run(job_id)
    else:
        recovered = pipeline.recover()
        resumed = jobs.resume_all()
        while jobs._tasks:
            await asyncio.gather(*list(jobs._tasks.values()))
        print(json.dumps({"recovered": len(recovered), "resumed": resumed}), flush=True)
    await pipeline.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
