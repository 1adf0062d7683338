"""SIGKILL during a bulk refresh of 2,000 files, 20 times: no empty, partial or stray file; DB and files agree."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from bridge.db import open_database
from bridge.mappings import MappingStore
from tests.crash_checks import check_invariants, temp_files

FILES = 2000
REPEATS = 20
ROOT_DIR = Path(__file__).resolve().parent.parent


def build_library(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "lib"
    db_path = tmp_path / "crash.db"
    store = MappingStore(open_database(db_path))
    rows = []
    for i in range(FILES):
        folder = root / f"series-{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"S01E{i % 100:03d}.strm"
        url = f"http://cdn.test/old/{i}.mp4"
        path.write_text(url + "\n")
        rows.append({"strm_path": str(path), "resolved_url": url, "site": "t", "slug": f"series-{i // 100:02d}",
                     "season": 1, "episode": i % 100, "state": "ok"})
    store.upsert_many(rows)
    store.conn.close()
    return root, db_path


STEPS = ("write", "fsync", "replace", "fsync_dir", "commit")
"""Where in the write path a kill lands: after the temp file's write, its fsync, the rename, the folder's fsync,
or just before a commit (of the `refreshing` marks or of the stored rows: the trace sees a statement as it starts)."""


def test_sigkill_during_bulk_refresh(tmp_path: Path) -> None:
    root, db_path = build_library(tmp_path)
    rng = random.Random(2026)
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    killed_mid_job = 0
    landed: list[tuple[str, int]] = []
    for round_ in range(REPEATS):
        step = STEPS[round_ % len(STEPS)]
        # commits come a few per batch of 32 files; the file steps once per file
        at = rng.randint(1, 8) if step == "commit" else rng.randint(1, FILES - 1)
        # the with block closes the pipes (left to the garbage collector, each one warns)
        with subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(db_path), str(root), "run"],
                              cwd=ROOT_DIR, env={**env, "STRM_CRASH_AT": f"{at}:{step}"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                json.loads(proc.stdout.readline())  # the job exists
                paused = json.loads(proc.stdout.readline() or "{}")  # the worker reached the chosen step of the job
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            assert paused.get("paused") == step and paused.get("at") == at, (step, at, paused,
                                                                             proc.stderr.read()[-2000:])
        killed_mid_job += proc.returncode == -signal.SIGKILL
        landed.append((step, at))
        check_invariants(root, db_path, FILES)
    assert killed_mid_job == REPEATS  # every kill interrupted a running job at its chosen step
    assert {step for step, _ in landed} == set(STEPS)

    done = subprocess.run([sys.executable, "-m", "tests.crash_worker", str(db_path), str(root), "resume"],
                          cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["resumed"]) >= killed_mid_job
    refreshing, _ = check_invariants(root, db_path, FILES)
    assert refreshing == 0
    assert temp_files(root) == []
    store = MappingStore(open_database(db_path))
    states = dict(store.conn.execute("select state, count(*) from jobs group by state").fetchall())
    assert states == {"done": REPEATS}
    assert store.conn.execute("select count(*) from job_items where outcome is null").fetchone()[0] == 0
