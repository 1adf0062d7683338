"""Where strm-bridge keeps its data and looks for its configuration, independent of the current folder.

A command run from another folder must find the same database and token, never start an empty one beside
it; so the defaults come from the platform's user folders (platformdirs), `STRM_BRIDGE_DATA` overrides them
(the container sets it to `/data`), and a relative `[database] path` is read relative to its config file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import platformdirs

APP_NAME = "strm-bridge"
DATA_ENV = "STRM_BRIDGE_DATA"
CONFIG_ENV = "STRM_BRIDGE_CONFIG"
CONFIG_FILE_NAME = "strm-bridge.toml"
DATABASE_FILE_NAME = "strm-bridge.db"
CONTAINER_CONFIG = Path("/config") / CONFIG_FILE_NAME


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$STRM_BRIDGE_DATA`, else the user data folder (`~/.local/share/strm-bridge` on Linux)."""
    env = os.environ if env is None else env
    chosen = env.get(DATA_ENV, "").strip()
    if chosen:
        return Path(os.path.abspath(os.path.expanduser(chosen)))
    return Path(platformdirs.user_data_path(APP_NAME, appauthor=False))


def default_database_path(env: Mapping[str, str] | None = None) -> str:
    return str(data_dir(env) / DATABASE_FILE_NAME)


def database_path(configured: str, *, from_env: bool, config_file: str, env: Mapping[str, str] | None = None) -> str:
    """An absolute database path: empty means the data folder; relative means beside the config file."""
    if not configured.strip():
        return default_database_path(env)
    path = os.path.expanduser(configured)
    if os.path.isabs(path):
        return path
    base = os.getcwd() if from_env or not config_file else os.path.dirname(os.path.abspath(config_file))
    return os.path.normpath(os.path.join(base, path))


def config_candidates() -> list[Path]:
    """The documented places, in the order they are tried when neither --config nor $STRM_BRIDGE_CONFIG is set."""
    return [
        Path.cwd() / CONFIG_FILE_NAME,
        Path(platformdirs.user_config_path(APP_NAME, appauthor=False)) / CONFIG_FILE_NAME,
        CONTAINER_CONFIG,
    ]


def find_config(explicit: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The file to load: --config, then $STRM_BRIDGE_CONFIG, then the first documented place that exists."""
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get(CONFIG_ENV):
        return env[CONFIG_ENV]
    for candidate in config_candidates():
        if candidate.is_file():
            return str(candidate)
    return None
