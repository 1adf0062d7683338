"""`strm-bridge init` writes a configuration that `config check` then tests against real HTTP fakes."""
from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from bridge.config import load_config
from bridge.db import open_database
from bridge.mappings import MappingStore
from tests.fakes.emby import FakeEmby
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.plex import FakePlex
from tests.fakes.provider import FakeProvider


def invoke(args: list[str], data: Path, input: str | None = None):  # type: ignore[no-untyped-def]
    env = {"STRM_BRIDGE_DATA": str(data), "STRM_BRIDGE_CONFIG": None}
    return CliRunner().invoke(main, args, env=env, input=input)


async def run(args: list[str], data: Path, input: str | None = None):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(invoke, args, data, input)


def lines_of(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


async def test_init_then_check_against_jellyfin_and_a_resolver(tmp_path: Path, library_root: Path,
                                                               fake_provider: FakeProvider) -> None:
    data = tmp_path / "data"
    target = tmp_path / "conf" / "strm-bridge.toml"
    async with FakeJellyfin() as jellyfin:
        result = await run(["init", "--path", str(target), "--root", str(library_root), "--server", "jellyfin",
                            "--url", jellyfin.url, "--key", jellyfin.api_key,
                            "--resolver-url", f"{fake_provider.base_url}/resolve", "--no-input"], data)
        assert result.exit_code == 0, result.output
        assert f"wrote {target}" in result.stdout and "webhooks/jellyfin" in result.stdout
        assert stat.S_IMODE(target.stat().st_mode) == 0o600  # it holds the API key
        text = target.read_text()
        assert text.startswith("# strm-bridge configuration") and "# the media server is on this machine" in text
        config = load_config(target, env={})
        assert config.jellyfin.url == jellyfin.url and config.jellyfin.api_key == jellyfin.api_key
        assert config.library.roots == [str(library_root)] and config.refresh.resolvers == ["http"]
        assert len(config.server.api_token) >= 32 and len(config.jellyfin.webhook_token) >= 24

        result = await run(["config", "check", "--config", str(target)], data)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert lines_of(out, "ok    jellyfin: ") and "Fake Jellyfin answered, API key accepted" in out
        assert "ok    resolver http: answers (a test episode: not found" in out
        assert "ok    library root: " + str(library_root) in out and "everything answered" in out
        assert jellyfin.calls, "the check really talked to Jellyfin"
        assert fake_provider.resolve_calls[-1]["reason"] == "check"
        assert not data.exists(), "config check created the data folder"

        # With a mapping in the database the resolver is asked for that real episode.
        store = MappingStore(open_database(data / "strm-bridge.db"))
        fake_provider.add_episode("frieren/1/3")
        store.upsert({"strm_path": str(library_root / "S01E03.strm"), "resolved_url": "https://old.test/3.mp4",
                      "site": "aniworld.to", "slug": "frieren", "season": 1, "episode": 3})
        store.conn.close()
        before = sorted(os.listdir(data))
        result = await run(["config", "check", "--config", str(target)], data)
        assert result.exit_code == 0, result.output
        assert "ok    resolver http: resolved mapping 1 (frieren S1E3) to http://127.0.0.1:" in result.stdout
        assert "sig=" not in result.stdout and "/media/frieren/1/3?…" in result.stdout  # signed query redacted
        sidecars = {"strm-bridge.db-wal", "strm-bridge.db-shm"}  # SQLite's own files for reading a WAL database
        assert set(os.listdir(data)) - sidecars == set(before) - sidecars and "api-token" not in os.listdir(data)

        target.write_text(text.replace(jellyfin.api_key, "wrong-key-0123456789"))
        result = await run(["config", "check", "--config", str(target)], data)
        assert result.exit_code == 1
        assert "FAIL  jellyfin: " in result.stdout and "refused the API key" in result.stdout
        assert "wrong-key-0123456789" not in result.stdout  # keys never echoed

    result = await run(["config", "check", "--config", str(target)], data)  # Jellyfin is gone now
    assert result.exit_code == 1 and "FAIL  jellyfin: " in result.stdout


async def test_init_then_check_against_plex_and_emby(tmp_path: Path, library_root: Path) -> None:
    data = tmp_path / "data"
    plex = await FakePlex().start()
    emby = await FakeEmby().start()
    try:
        plex.add_section(1, "TV", [str(library_root)])
        plex_conf = tmp_path / "plex.toml"
        result = await run(["init", "--path", str(plex_conf), "--root", str(library_root), "--server", "plex",
                            "--url", plex.url, "--key", plex.token, "--no-input"], data)
        assert result.exit_code == 0, result.output
        assert "?token=<webhook_token>" in result.stdout
        result = await run(["config", "check", "--config", str(plex_conf)], data)
        out = result.stdout
        assert "ok    plex: " in out and "token accepted, 1 library section(s)" in out
        assert "FAIL  resolvers: none" in out and result.exit_code == 1  # no resolver is a problem worth exit 1

        plex_conf.write_text(plex_conf.read_text().replace(f'token = "{plex.token}"', 'token = "not-the-token-123"'))
        result = await run(["config", "check", "--config", str(plex_conf)], data)
        assert "FAIL  plex: " in result.stdout and "refused the token" in result.stdout

        emby_conf = tmp_path / "emby.toml"
        result = await run(["init", "--path", str(emby_conf), "--root", str(library_root), "--server", "emby",
                            "--url", emby.url, "--key", emby.token, "--no-input"], data)
        assert result.exit_code == 0, result.output
        result = await run(["config", "check", "--config", str(emby_conf)], data)
        assert "ok    emby: " in result.stdout and "fake-emby answered, API key accepted" in result.stdout
        emby_conf.write_text(emby_conf.read_text().replace(f'api_key = "{emby.token}"', 'api_key = "bad-key-12345678"'))
        result = await run(["config", "check", "--config", str(emby_conf)], data)
        assert "FAIL  emby: " in result.stdout and "refused the API key (401)" in result.stdout
    finally:
        await plex.stop()
        await emby.stop()
    assert not data.exists()


def test_init_asks_on_a_terminal_and_refuses_to_overwrite(tmp_path: Path, library_root: Path) -> None:
    data = tmp_path / "data"
    target = tmp_path / "strm-bridge.toml"
    answers = f"{library_root}\njellyfin\nhttp://192.0.2.10:8096\nsecret-key-123456\n\n"
    result = invoke(["init", "--path", str(target)], data, input=answers)
    assert result.exit_code == 0, result.output
    config = load_config(target, env={})
    assert config.jellyfin.url == "http://192.0.2.10:8096" and config.jellyfin.api_key == "secret-key-123456"
    assert config.server.host == "0.0.0.0"  # a media server on another host could not reach 127.0.0.1
    assert config.refresh.resolvers == []
    assert "secret-key-123456" not in result.stdout  # typed without echo

    again = invoke(["init", "--path", str(target), "--root", str(library_root), "--server", "none", "--no-input"], data)
    assert again.exit_code == 2 and "already exists" in again.stderr and "--force" in again.stderr
    forced = invoke(["init", "--path", str(target), "--root", str(library_root), "--server", "none", "--no-input",
                     "--force"], data)
    assert forced.exit_code == 0 and load_config(target, env={}).jellyfin.url == ""

    missing = invoke(["init", "--path", str(tmp_path / "x.toml"), "--no-input"], data)
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
    relative = invoke(["init", "--path", str(tmp_path / "y.toml"), "--root", "media", "--server", "none",
                       "--no-input"], data)
    assert relative.exit_code == 2 and "library.roots[0]" in relative.stderr
    assert not (tmp_path / "y.toml").exists()


def test_config_check_on_an_invalid_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[refresh]\nresolvers = ["http"]\n')
    result = invoke(["config", "check", "--config", str(bad)], tmp_path / "data")
    assert result.exit_code == 2 and "resolvers.http.url" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
