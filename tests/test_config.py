from pathlib import Path

import pytest

from bridge.config import ConfigError, PathMapEntry, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strm-bridge.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_configuration() -> None:
    config = load_config(env={})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8765
    assert config.database.path.endswith("/strm-bridge/strm-bridge.db")
    assert config.library.roots == []


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, """
[server]
port = 9000
[library]
roots = ["/media/tv"]
[jellyfin]
url = "http://127.0.0.1:8096"
path_map = [{server = "/data/tv", local = "/media/tv"}]
[refresh]
resolvers = ["http"]
cooldown_seconds = 30
[resolvers.http]
url = "http://127.0.0.1:9/resolve"
""")
    config = load_config(path, env={})
    assert config.server.port == 9000
    assert config.jellyfin.path_map == [PathMapEntry(server="/data/tv", local="/media/tv")]
    assert config.refresh.cooldown_seconds == 30.0
    assert config.resolvers["http"]["url"] == "http://127.0.0.1:9/resolve"


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9100\n")
    assert load_config(env={"STRM_BRIDGE_CONFIG": str(path)}).server.port == 9100


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    env = {
        "STRM_BRIDGE_SERVER_PORT": "9001",
        "STRM_BRIDGE_LIBRARY_ROOTS": "/a,/b",
        "STRM_BRIDGE_PLEX_LISTEN_ALERTS": "true",
        "STRM_BRIDGE_JELLYFIN_PATH_MAP": '[{"server": "/data", "local": "/media"}]',
        "STRM_BRIDGE_RESOLVERS_HTTP_URL": "http://127.0.0.1:1/r",
    }
    config = load_config(path, env=env)
    assert config.server.port == 9001
    assert config.library.roots == ["/a", "/b"]
    assert config.plex.listen_alerts is True
    assert config.jellyfin.path_map[0].local == "/media"
    assert config.resolvers["http"]["url"] == "http://127.0.0.1:1/r"


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[sevrer]\nport = 1\n", {}, "sevrer"),
        ('[server]\nport = "80"\n', {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ('[library]\nroots = "/a"\n', {}, "library.roots"),
        ('[library]\nroots = ["relative"]\n', {}, "library.roots[0]"),
        ('[jellyfin]\npath_map = [{server = "/a"}]\n', {}, "jellyfin.path_map[0].local"),
        ('[plex]\npath_map = ["/a:/b"]\n', {}, "plex.path_map[0]"),
        ('[plex]\npath_map = [{server = "/a", local = "/b", extra = 1}]\n', {}, "plex.path_map[0]"),
        ('[play]\nmode = "teleport"\n', {}, "play.mode"),
        ("", {"STRM_BRIDGE_SERVER_PORT": "eighty"}, "server.port"),
        ("", {"STRM_BRIDGE_SERVER_PROT": "1"}, "server.prot"),
        ("", {"STRM_BRIDGE_PLEX_LISTEN_ALERTS": "maybe"}, "plex.listen_alerts"),
        ('[jellyfin]\nurl = "jellyfin:8096"\n', {}, "jellyfin.url"),
        ('[plex]\nwebhook_token = "abc"\n', {}, "plex.webhook_token"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[server\n"), env={})
