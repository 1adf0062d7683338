"""`strm-bridge demo` in its shortened mode: the real command, in its own process, runs to the end and heals."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_to_the_end_and_heals(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("STRM_BRIDGE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--ttl", "2", "--episodes", "3", "--exit", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    out = done.stdout
    summary = re.search(r"done: (\d+) failed play\(s\), (\d+) healed by the bridge, (\d+) Jellyfin refresh", out)
    assert summary, out + done.stderr
    failed, healed, refreshed = map(int, summary.groups())
    # a failed resume (the common real failure) and two failed first plays, each healed and refreshed once
    assert (failed, healed, refreshed) == (3, 3, 3), out
    assert "plays Demo Show S01E01 at 10:00: HTTP 403, the player gives up" in out
    assert "presses play again on Demo Show S01E01 at 10:00: HTTP 206, playing" in out
    assert "presses play again" in out and ", playing" in out.split("presses play again", 1)[1].splitlines()[0]
    # the library it built holds fresh links written by the bridge, and nothing outside the folder was touched
    strm = sorted((tmp_path / "library").rglob("*.strm"))
    assert len(strm) == 3 and all(p.read_text().startswith("http://127.0.0.1:") for p in strm)
    assert done.returncode == 0, out
    assert "Traceback" not in done.stderr
