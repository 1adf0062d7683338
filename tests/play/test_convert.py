"""`strm-bridge convert --to stable|direct`: dry run, there and back, rescans queued, public_url required."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bridge.cli import main
from bridge.config import load_config
from bridge.convert import convert
from bridge.play.signing import play_link_id
from bridge.rescan import RescanRequest
from bridge.timeutil import from_epoch
from bridge.wiring import build_services
from tests.appfactory import write_config

PUBLIC = "http://bridge.lan:8765"


class RecordingTarget:
    name = "recorder"
    debounce_seconds = 0.0
    gap_seconds = 0.0

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def requests_for(self, mapping: dict[str, Any]) -> list[RescanRequest]:
        return [RescanRequest(f"item-{mapping['id']}", {"path": mapping["strm_path"]})]

    async def send(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)

    async def close(self) -> None:
        pass


def library(tmp_path: Path, count: int = 3, public_url: str = PUBLIC) -> tuple[Path, Path, list[tuple[int, Path, str]]]:
    root = tmp_path / "library"
    config = write_config(tmp_path, f'[play]\nsecret = "convert-test-secret-0123"\n', roots=[root])
    if public_url:
        text = config.read_text().replace("[server]\n", f'[server]\npublic_url = "{public_url}"\n', 1)
        config.write_text(text)
    services = build_services(load_config(config, env={}))
    rows = []
    for n in range(1, count + 1):
        path = root / "Show" / f"Show S01E0{n}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"https://cdn.example/v/{n}.mp4?expires={int(time.time()) + 3600}&sig=abc{n}"
        path.write_text(url + "\n")
        row = services.store.upsert({"strm_path": str(path), "resolved_url": url, "site": "fake", "slug": "show",
                                     "season": 1, "episode": n, "expires_at": from_epoch(time.time() + 3600)})
        rows.append((row["id"], path, url))
    services.db.conn.close()
    return config, root, rows


def run(config: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["convert", "--config", str(config), *args], catch_exceptions=False, env={})


def test_dry_run_then_stable_then_back(tmp_path: Path) -> None:
    config, _root, rows = library(tmp_path)
    before = {path: path.read_bytes() for _, path, _ in rows}

    dry = run(config, "--to", "stable", "--all", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [i["outcome"] for i in json.loads(dry.output)["items"]] == ["would_convert"] * 3
    assert {path: path.read_bytes() for _, path, _ in rows} == before  # a dry run touches nothing

    done = run(config, "--to", "stable", "--all", "--json", "--no-progress")
    assert done.exit_code == 0, done.output
    assert [i["outcome"] for i in json.loads(done.output)["items"]] == ["converted"] * 3
    for mapping_id, path, _ in rows:
        text = path.read_text()
        assert text.startswith(f"{PUBLIC}/play/{mapping_id}?sig=") and text.endswith("\n")
        assert play_link_id(text.strip()) == mapping_id

    again = run(config, "--to", "stable", "--all", "--json")
    assert [i["outcome"] for i in json.loads(again.output)["items"]] == ["unchanged"] * 3

    one = run(config, "--to", "direct", "--id", str(rows[0][0]))
    assert one.exit_code == 0, one.output
    assert rows[0][1].read_text() == rows[0][2] + "\n"
    back = run(config, "--to", "direct", "--all", "--json")
    assert [i["outcome"] for i in json.loads(back.output)["items"]] == ["unchanged", "converted", "converted"]
    assert {path: path.read_bytes() for _, path, _ in rows} == before


def test_stable_needs_public_url(tmp_path: Path) -> None:
    config, _root, rows = library(tmp_path, count=1, public_url="")
    result = CliRunner().invoke(main, ["convert", "--config", str(config), "--to", "stable", "--all"], env={})
    assert result.exit_code == 2
    assert "server.public_url is not set" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert rows[0][1].read_text() == rows[0][2] + "\n"
    assert run(config, "--to", "direct", "--all").exit_code == 0  # direct needs no public URL


def test_no_selection_is_a_usage_error(tmp_path: Path) -> None:
    config, _root, _rows = library(tmp_path, count=1)
    result = CliRunner().invoke(main, ["convert", "--config", str(config), "--to", "stable"], env={})
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


async def test_each_changed_file_queues_its_media_server_refresh(tmp_path: Path) -> None:
    config, _root, rows = library(tmp_path)
    target = RecordingTarget()
    services = build_services(load_config(config, env={}), extra_targets={"recorder": target})
    try:
        rows[0][1].write_text(services.play.signer.play_url(PUBLIC, rows[0][0]) + "\n")  # already stable
        results = await convert(services, [r[0] for r in rows], "stable", public_url=PUBLIC)
        assert [r.outcome for r in results] == ["unchanged", "converted", "converted"]
        assert sorted(p["path"] for p in target.sent) == sorted(str(r[1]) for r in rows[1:])
    finally:
        await services.stop()


def test_import_after_convert_keeps_the_direct_url(tmp_path: Path) -> None:
    """Re-adopting converted files must not store the /play/ link as the URL it leads to (it would loop)."""
    config, root, rows = library(tmp_path)
    assert run(config, "--to", "stable", "--all").exit_code == 0
    imported = CliRunner().invoke(main, ["import", "--config", str(config), str(root), "--no-progress"], env={})
    assert imported.exit_code == 0, imported.output
    services = build_services(load_config(config, env={}))
    try:
        assert [services.store.get(i)["resolved_url"] for i, _, _ in rows] == [url for _, _, url in rows]
    finally:
        services.db.conn.close()
