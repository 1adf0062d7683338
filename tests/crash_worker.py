"""A bulk-refresh process for the crash test: `run` starts a forced job over every mapping, `resume` restarts.

Uses an instant in-process resolver so the process spends its time in the write path, where a kill hurts.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import replace

from bridge.config import RefreshConfig
from bridge.db import open_database
from bridge.jobs import JobRunner
from bridge.mappings import MappingStore
from bridge.refresh import RefreshPipeline
from bridge.resolvers.base import ResolveRequest, Resolved
from bridge.strm import Library


class InstantResolver:
    name = "instant"

    async def resolve(self, request: ResolveRequest) -> Resolved:
        i = request.identity
        return Resolved(f"http://cdn.test/{i.slug}/{i.season}/{i.episode}.mp4?v={uuid.uuid4().hex}", provider="instant")

    async def close(self) -> None:
        pass


async def main(db_path: str, root: str, mode: str) -> None:
    db = open_database(db_path)
    store = MappingStore(db)
    config = replace(RefreshConfig(), probe_new_url=False, concurrency=4, mass_failure_min_attempts=10**9)
    pipeline = RefreshPipeline(store, Library([root]), [InstantResolver()], config)
    jobs = JobRunner(db, pipeline, config.concurrency)
    if mode == "run":
        job_id = jobs.create(list(store.iter_ids()), {"force": True, "reason": "forced"})
        print(json.dumps({"job": job_id}), flush=True)
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
