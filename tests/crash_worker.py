"""Child processes for the crash tests, killed with SIGKILL by the test.

`DB ROOT run` starts a forced job over every mapping, `DB ROOT resume` restarts: an instant in-process resolver,
so the process spends its time in the write path, where a kill hurts. With `STRM_CRASH_AT=<n>:<step>` (step:
write, fsync, replace, fsync_dir or commit) the process stops at the n-th such step of the job, says so on
stdout and waits to be killed: the kill lands at a point of the job's progress, not of the clock.

`serve CONFIG` runs the real bridge (the wiring and app `strm-bridge serve` uses) on 127.0.0.1, prints
`{"port": ...}` once started (crash recovery, replay and resumed jobs begin there), then reads commands on
stdin: `arm <n>:<step>` installs the same pause from then on (so the mixed-load test kills at the n-th step
of the load, not of the start-up), `stop` (or end of input) shuts it down cleanly.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

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


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


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
            say({"paused": step, "at": target, "what": what[:80], "thread": threading.current_thread().name})
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
        recovered = await pipeline.recover()
        resumed = jobs.resume_all()
        while jobs._tasks:
            await asyncio.gather(*list(jobs._tasks.values()))
        print(json.dumps({"recovered": len(recovered), "resumed": resumed}), flush=True)
    await pipeline.close()


async def serve(config_path: str) -> None:
    """The real app on a loopback port, armed for a kill by a command on stdin."""
    from aiohttp import web

    from bridge.app import create_app
    from bridge.config import load_config
    from bridge.startup import bind_socket
    from bridge.wiring import build_services

    config = load_config(Path(config_path), env={})
    sock = bind_socket("127.0.0.1", 0)
    services = build_services(config)
    services.egress.add_listener(*sock.getsockname()[:2])  # as `serve` does: never a probe target
    runner = web.AppRunner(create_app(services), handle_signals=False, access_log=None, shutdown_timeout=2)
    await runner.setup()  # the services' start: recovery, held webhooks, replay, resumed jobs
    await web.SockSite(runner, sock).start()
    say({"port": sock.getsockname()[1], "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    with ExitStack() as armed:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line.startswith("arm "):
                spec = line.removeprefix("arm ")
                armed.enter_context(pause_at(spec).installed(services.db.conn))
                say({"armed": spec})
            elif line in ("stop", ""):
                break
        await runner.cleanup()
    say({"stopped": True})


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2]))
    else:
        asyncio.run(main(*sys.argv[1:4]))
