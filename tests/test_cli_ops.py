"""The command line as a user and a script meet it: locations, read-only commands, one-line errors, exit codes."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.api import MAX_PAGE
from bridge.cli import main
from bridge.config import load_config
from bridge.db import open_database
from bridge.mappings import MappingStore
from tests.appfactory import AUTH, make_services
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping

REPO = Path(__file__).resolve().parents[1]
CLEAN = {"STRM_BRIDGE_CONFIG": None, "STRM_BRIDGE_DATA": None, "XDG_DATA_HOME": None, "XDG_CONFIG_HOME": None}


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def user_env(tmp_path: Path) -> dict[str, str | None]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**CLEAN, "HOME": str(home)}


def cli(args: list[str], env: dict[str, str | None], cwd: Path) -> tuple[int, str, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, env=env)
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def run_process(args: list[str], env: dict[str, str | None], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("STRM_BRIDGE_")}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("strm-bridge, version ")


def test_read_only_commands_in_an_empty_folder_create_nothing(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    for args in (["mappings", "list"], ["mappings", "list", "--json"], ["mappings", "show", "3"],
                 ["mappings", "show", "/media/x.strm"], ["migrate", "--list"]):
        code, out, err = cli(args, env, work)
        assert "no database at" in err and str(tmp_path / "home" / ".local" / "share" / "strm-bridge") in err
        assert code == (1 if args[1] == "show" else 0), (args, out, err)
    code, out, _ = cli(["mappings", "list", "--json"], env, work)
    assert json.loads(out) == {"items": [], "total": 0}
    code, out, _ = cli(["migrate", "--list"], env, work)
    assert "[ ] m001_initial  (pending)" in out
    assert files_under(tmp_path) == []


def test_read_only_commands_leave_an_existing_database_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = MappingStore(open_database(data / "strm-bridge.db"))
    store.upsert({"strm_path": "/media/a/S01E01.strm", "resolved_url": "https://cdn.test/1.mp4"})
    store.conn.close()
    before = {name: (data / name).stat().st_mtime_ns for name in os.listdir(data)}
    env = {**user_env(tmp_path), "STRM_BRIDGE_DATA": str(data)}
    code, out, _ = cli(["mappings", "list"], env, tmp_path)
    assert code == 0 and "1 of 1 mapping(s)" in out
    code, out, _ = cli(["mappings", "show", "/media/a/S01E01.strm", "--json"], env, tmp_path)
    assert code == 0 and json.loads(out)["resolved_url"] == "https://cdn.test/1.mp4"
    code, out, _ = cli(["migrate", "--list"], env, tmp_path)
    assert code == 0 and "[x] m001_initial" in out and "pending" not in out
    assert "api-token" not in os.listdir(data)
    after = {name: (data / name).stat().st_mtime_ns for name in os.listdir(data) if name in before}
    assert after == before


def test_data_location_does_not_depend_on_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).database.path == str(tmp_path / "xdg-data" / "strm-bridge" / "strm-bridge.db")
    chosen = load_config(env={"STRM_BRIDGE_DATA": str(tmp_path / "mine")}).database.path
    assert chosen == str(tmp_path / "mine" / "strm-bridge.db")
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "strm-bridge.toml").write_text('[database]\npath = "db/bridge.db"\n')
    assert load_config(conf_dir / "strm-bridge.toml", env={}).database.path == str(conf_dir / "db" / "bridge.db")
    from_env = load_config(env={"STRM_BRIDGE_DATABASE_PATH": "rel/x.db"}).database.path
    assert from_env == str(tmp_path / "rel" / "x.db")


def test_config_is_found_at_the_documented_places(tmp_path: Path) -> None:
    env = {**user_env(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    library = tmp_path / "library" / "Show" / "Season 1"
    library.mkdir(parents=True)
    (library / "Show S01E01.strm").write_text("https://cdn.test/show/1.mp4\n")
    user_config = tmp_path / "xdg-config" / "strm-bridge" / "strm-bridge.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(f'[database]\npath = "{tmp_path / "db" / "bridge.db"}"\n'
                           f'[library]\nroots = ["{tmp_path / "library"}"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, out, err = cli(["import", str(tmp_path / "library")], env, elsewhere)
    assert code == 0 and "created 1" in out, out + err
    for cwd in (tmp_path, elsewhere, library):  # the issue: another folder used to show "(no mappings)"
        code, out, _ = cli(["mappings", "list"], env, cwd)
        assert code == 0 and "1 of 1 mapping(s)" in out
    local = tmp_path / "local"
    local.mkdir()
    (local / "strm-bridge.toml").write_text(f'[database]\npath = "{tmp_path / "other.db"}"\n')
    code, _, err = cli(["mappings", "list"], env, local)  # ./strm-bridge.toml comes before the user folder
    assert f"no database at {tmp_path / 'other.db'}" in err
    code, out, _ = cli(["mappings", "list"], {**env, "STRM_BRIDGE_CONFIG": str(user_config)}, local)
    assert "1 of 1 mapping(s)" in out


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_start_up_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    resolver = tmp_path / "resolver.toml"
    resolver.write_text(f'[database]\npath = "{tmp_path / "d1" / "db"}"\n[refresh]\nresolvers = ["http"]\n')
    proc = run_process(["serve", "--config", str(resolver)], env, tmp_path)
    assert_one_line_exit_2(proc, "resolvers.http.url", "required", str(resolver))
    assert not (tmp_path / "d1").exists()

    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[refresh]\nresolvers = ["nosuch"]\n')
    assert_one_line_exit_2(run_process(["serve", "--config", str(unknown)], env, tmp_path), "nosuch")

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dbpath = tmp_path / "dbpath.toml"
    dbpath.write_text(f'[database]\npath = "{blocker / "sub" / "strm-bridge.db"}"\n')
    proc = run_process(["serve", "--config", str(dbpath)], env, tmp_path)
    assert_one_line_exit_2(proc, "database.path", "cannot create", "STRM_BRIDGE_DATA")

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        portfile = tmp_path / "port.toml"
        portfile.write_text(f'[database]\npath = "{tmp_path / "d2" / "db"}"\n[server]\nport = {port}\n')
        proc = run_process(["serve", "--config", str(portfile)], env, tmp_path)
        assert_one_line_exit_2(proc, "server.port", f"127.0.0.1:{port}", "already in use")
        assert files_under(tmp_path / "d2") == []  # checked before the database or a token exists
    finally:
        busy.close()

    badvalue = tmp_path / "bad.toml"
    badvalue.write_text('[server]\nport = "eighty"\n')
    assert_one_line_exit_2(run_process(["mappings", "list", "--config", str(badvalue)], env, tmp_path), "server.port")
    assert_one_line_exit_2(run_process(["serve", "--config", str(tmp_path / "nope.toml")], env, tmp_path), "not found")

    debug = run_process(["--debug", "serve", "--config", str(resolver)], env, tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


async def test_refresh_exit_codes_and_order(tmp_path: Path, library_root: Path, fake_provider: FakeProvider) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: a resolver that always fails
    good = f'[refresh]\nresolvers = ["http"]\nprobe_timeout_seconds = 2\n[resolvers.http]\nurl = "{fake_provider.base_url}/resolve"\n'
    services = make_services(tmp_path, good, roots=[library_root])
    ms = [add_mapping(services.store, library_root, fake_provider, n) for n in range(1, 6)]
    services.db.conn.close()
    config = tmp_path / "strm-bridge.toml"
    text = config.read_text()
    failing = tmp_path / "failing.toml"
    failing.write_text(text.replace(fake_provider.base_url, f"http://127.0.0.1:{dead_port}"))

    def run(conf: Path, *args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["refresh", *args, "--config", str(conf)], env=CLEAN)

    result = await asyncio.to_thread(run, failing, "--series", "fake/show", "--json")
    assert result.exit_code == 1, result.output  # every resolve failed: cron must notice
    items = json.loads(result.stdout)["items"]
    assert [i["mapping_id"] for i in items] == sorted(m["id"] for m in ms)
    assert {i["outcome"] for i in items} == {"failed"}
    result = await asyncio.to_thread(run, failing, "--id", str(ms[0]["id"]))
    assert result.exit_code == 1 and "failed" in result.stdout

    result = await asyncio.to_thread(run, config, "--series", "fake/show", "--json")
    assert result.exit_code == 0, result.output
    assert [i["mapping_id"] for i in json.loads(result.stdout)["items"]] == sorted(m["id"] for m in ms)
    result = await asyncio.to_thread(run, config, "--stale")
    assert result.exit_code == 0 and "nothing to refresh" in result.stderr  # nothing stale is not an error
    result = await asyncio.to_thread(run, config, "--series", "fake/nosuch")
    assert result.exit_code == 0
    result = await asyncio.to_thread(run, config, "--id", "99999")
    assert result.exit_code == 1 and "no mapping" in result.stderr
    result = await asyncio.to_thread(run, config, "--id", "1", "--all")
    assert result.exit_code == 2
    result = await asyncio.to_thread(run, config, "--series", "one-part")
    assert result.exit_code == 2


async def test_list_limit_matches_the_api(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    from bridge.app import create_app

    services = make_services(tmp_path)
    client = await aiohttp_client(create_app(services))
    assert (await client.get(f"/api/mappings?limit={MAX_PAGE}", headers=AUTH)).status == 200
    assert (await client.get(f"/api/mappings?limit={MAX_PAGE + 1}", headers=AUTH)).status == 400
    config = tmp_path / "strm-bridge.toml"
    ok = await asyncio.to_thread(CliRunner().invoke, main, ["mappings", "list", "--limit", str(MAX_PAGE), "--config", str(config)])
    assert ok.exit_code == 0
    too_many = await asyncio.to_thread(CliRunner().invoke, main,
                                       ["mappings", "list", "--limit", str(MAX_PAGE + 1), "--config", str(config)])
    assert too_many.exit_code == 2 and str(MAX_PAGE) in too_many.stderr


def test_import_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "Show" / "Season 1").mkdir(parents=True)
    (root / "Show" / "Season 1" / "Show S01E01.strm").write_text("https://cdn.test/1.mp4\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{root}"]\n')
    code, out, err = cli(["import", str(root), "--config", str(config)], CLEAN, tmp_path)
    assert code == 0
    (root / "Show" / "Season 1" / "Show S01E02.strm").write_text("not a url\n")
    code, out, err = cli(["import", str(root), "--config", str(config)], CLEAN, tmp_path)
    assert code == 1 and "S01E02.strm" in err


def test_serve_summary_says_what_is_missing(tmp_path: Path) -> None:
    from bridge.startup import is_on_this_host, summary

    bare = summary(load_config(env={"STRM_BRIDGE_DATA": str(tmp_path)}), "127.0.0.1", 8765, local=lambda: set())
    text = "\n".join(bare)
    assert "no roots ([library] roots): nothing can be healed" in text
    assert "resolvers: none ([refresh] resolvers)" in text
    assert "media servers: none" in text and "warning" not in text
    conf = tmp_path / "c.toml"
    conf.write_text('[library]\nroots = ["/media/tv"]\n[refresh]\nresolvers = ["redirect"]\n'
                    '[jellyfin]\nurl = "http://jellyfin.lan:8096/?api_key=secret-in-url"\napi_key = "k-0123456789"\n'
                    '[plex]\nurl = "http://127.0.0.1:32400"\ntoken = "t-0123456789"\n')
    config = load_config(conf, env={"STRM_BRIDGE_DATA": str(tmp_path)})
    lines = summary(config, "127.0.0.1", 8765, local=lambda: {"mybox"})
    text = "\n".join(lines)
    assert "library: 1 root(s): /media/tv" in text and "resolvers: redirect" in text
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "jellyfin" in warnings[0] and "0.0.0.0" in warnings[0]  # plex is local: fine
    assert "secret-in-url" not in text
    assert not [line for line in summary(config, "0.0.0.0", 8765, local=lambda: set()) if line.startswith("warning")]
    assert is_on_this_host("http://mybox:8096", local=lambda: {"mybox"})
    assert is_on_this_host("http://[::1]:8096", local=lambda: set())
    assert not is_on_this_host("http://10.0.0.5:8096", local=lambda: {"mybox"})


def test_usage_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    for args in (["mappings", "list", "--limit", "5000"], ["import", str(tmp_path / "nonexistent")],
                 ["refresh", "--id", "1", "--all"], ["nosuchcommand"], ["serve", "--port", "x"],
                 ["mappings", "list", "--state", "weird"]):
        result = CliRunner().invoke(main, args, env=CLEAN)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2, (args, result.output)
        assert len(lines) == 1 and lines[0].startswith("strm-bridge: ") and "--help" in lines[0], (args, lines)
        assert "Traceback" not in result.output
