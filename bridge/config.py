"""Settings: a TOML file plus STRM_BRIDGE_<SECTION>_<KEY> overrides, typed and validated up front.

Start-up must fail on the first bad value with one line naming the key, so every section is a
dataclass and every value is checked against its annotation before the service touches anything.
"""
from __future__ import annotations

import json
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from bridge.egress import Egress
from bridge.links import compile_patterns
from bridge.locations import CONFIG_ENV, DATA_ENV, database_path

ENV_PREFIX = "STRM_BRIDGE_"


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


@dataclass(frozen=True)
class PathMapEntry:
    """One folder as the media server sees it (`server`) and as strm-bridge sees it (`local`)."""

    server: str
    local: str


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str = ""
    api_token: str = ""
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class DatabaseConfig:
    path: str = ""
    """Empty: `strm-bridge.db` in $STRM_BRIDGE_DATA or the user data folder; relative: beside the config file."""
    events_retention_days: int = 14
    held_events_limit: int = 10_000
    """Webhooks held in memory (and a journal) while another process locks the database; past it: 503."""


@dataclass(frozen=True)
class SeriesOverride:
    """`[[library.series]]`: identity for a series whose names carry no site or language (bridge.overrides)."""

    match: str
    site: str = ""
    slug: str = ""
    language: str = ""
    provider: str = ""


@dataclass(frozen=True)
class LibraryConfig:
    roots: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    stable_link_patterns: list[str] = field(default_factory=list)
    """Links strm-bridge never replaces (besides AniBridge's and its own): http(s) URL prefixes or regexes."""
    watch: bool = False
    watch_debounce_ms: int = 1600
    series: list[SeriesOverride] = field(default_factory=list)


@dataclass(frozen=True)
class JellyfinConfig:
    url: str = ""
    api_key: str = ""
    webhook_token: str = ""
    path_map: list[PathMapEntry] = field(default_factory=list)
    timeout_seconds: float = 10.0
    refresh_debounce_seconds: float = 1.0
    refresh_gap_seconds: float = 0.2


@dataclass(frozen=True)
class PlexConfig:
    url: str = ""
    token: str = ""
    webhook_token: str = ""
    path_map: list[PathMapEntry] = field(default_factory=list)
    listen_alerts: bool = False
    timeout_seconds: float = 10.0
    scan_debounce_seconds: float = 5.0
    scan_gap_seconds: float = 2.0
    sections_ttl_seconds: float = 300.0
    refresh_metadata: bool = False
    max_body_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class TautulliConfig:
    webhook_token: str = ""
    use_buffer: bool = False


@dataclass(frozen=True)
class EmbyConfig:
    url: str = ""
    api_key: str = ""
    webhook_token: str = ""
    path_map: list[PathMapEntry] = field(default_factory=list)
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ArrConfig:
    """`[sonarr]` / `[radarr]`: their Webhook connection (integrations/arr); `path_map` as Sonarr/Radarr see paths."""

    url: str = ""
    api_key: str = ""
    webhook_token: str = ""
    path_map: list[PathMapEntry] = field(default_factory=list)


@dataclass(frozen=True)
class DetectorConfig:
    failure_window_seconds: float = 30.0
    min_progress_seconds: float = 10.0
    """A stop within the window that advanced less than this from its start's position is a suspected failure."""
    max_position_seconds: float = 10.0
    """No longer used (detection looks at progress since the start, not at the absolute position); accepted so
    existing configuration files still load."""
    probe_on_start: bool = False


@dataclass(frozen=True)
class RefreshConfig:
    resolvers: list[str] = field(default_factory=list)
    concurrency: int = 4
    """Bulk jobs and the sweep: mappings probed and resolved at once (the provider's load). Writes are separate:
    batches of up to 32 files on 4 writer threads."""
    cooldown_seconds: float = 300.0
    probe_timeout_seconds: float = 5.0
    indirection_timeout_seconds: float = 30.0
    """Probe of a stable link (AniBridge): it may re-resolve its upstream while answering."""
    probe_new_url: bool = True
    backoff_seconds: float = 60.0
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 60.0
    mass_failure_window_seconds: float = 300.0
    mass_failure_min_attempts: int = 10
    mass_failure_ratio: float = 0.8
    sweep_interval_seconds: float = 300.0
    sweep_margin_seconds: float = 1800.0
    check_interval_seconds: float = 0.0
    """Scheduled link health check (0 = off): each round probes the rows checked longest ago and records them."""
    check_concurrency: int = 8
    deny_hosts: list[str] = field(default_factory=list)
    """Host names (`.example.com` for subdomains too), IPs and CIDR ranges never probed, followed or written."""
    allow_hosts: list[str] = field(default_factory=list)
    """When set, only these (same forms); empty allows every host not denied. The bridge itself: never."""


@dataclass(frozen=True)
class CacheConfig:
    ttl_seconds: float = 600.0


@dataclass(frozen=True)
class PlayConfig:
    secret: str = ""
    """HMAC key of /play/ links; empty: generated once and stored beside the database (file play-secret)."""
    old_secrets: list[str] = field(default_factory=list)
    """Earlier secrets whose links still open (rotation grace); drop them once every file is converted again."""
    mode: str = "auto"
    margin_seconds: float = 1800.0
    """Redirect: a link predicted to expire within this many seconds is re-resolved before the 302."""


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)
    jellyfin: JellyfinConfig = field(default_factory=JellyfinConfig)
    plex: PlexConfig = field(default_factory=PlexConfig)
    tautulli: TautulliConfig = field(default_factory=TautulliConfig)
    emby: EmbyConfig = field(default_factory=EmbyConfig)
    sonarr: ArrConfig = field(default_factory=ArrConfig)
    radarr: ArrConfig = field(default_factory=ArrConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    resolvers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: CacheConfig = field(default_factory=CacheConfig)
    play: PlayConfig = field(default_factory=PlayConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = ""  # where the file came from, for messages


SECTIONS: dict[str, type] = {
    name: hint for name, hint in typing.get_type_hints(Config).items() if is_dataclass(hint)
}
_CHOICES = {("play", "mode"): ("auto", "redirect", "proxy"), ("log", "format"): ("text", "json"),
            ("log", "level"): ("debug", "info", "warning", "error")}


def _coerce(key: str, hint: Any, value: Any, from_env: bool) -> Any:
    """Check one value against its annotation; environment strings are parsed first."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{key}: expected a boolean (true/false), got {value!r}")
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected a boolean, got {type(value).__name__}")
        return value
    if hint is int:
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__}")
        return value
    if hint is float:
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
        return value
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if from_env and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: not a valid JSON list ({exc.msg})") from None
            elif item_hint is str:
                value = [part.strip() for part in text.split(",") if part.strip()]
            else:
                raise ConfigError(f"{key}: expected a JSON list")
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        if item_hint is PathMapEntry:
            return [_path_map_entry(f"{key}[{i}]", item) for i, item in enumerate(value)]
        if item_hint is SeriesOverride:
            return [_series_override(f"{key}[{i}]", item) for i, item in enumerate(value)]
        return [_coerce(f"{key}[{i}]", item_hint, item, False) for i, item in enumerate(value)]
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover


def _path_map_entry(key: str, item: Any) -> PathMapEntry:
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: a path_map entry must be a table {{server = \"...\", local = \"...\"}}")
    extra = set(item) - {"server", "local"}
    if extra:
        raise ConfigError(f"{key}: unknown key {sorted(extra)[0]!r} in path_map entry (allowed: server, local)")
    for side in ("server", "local"):
        value = item.get(side)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}.{side}: missing or empty path")
        if not (value.startswith("/") or (len(value) > 2 and value[1] == ":")):
            raise ConfigError(f"{key}.{side}: must be an absolute path, got {value!r}")
    return PathMapEntry(server=item["server"], local=item["local"])


def _series_override(key: str, item: Any) -> SeriesOverride:
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: a [[library.series]] entry must be a table with match = \"...\"")
    allowed = {f.name for f in fields(SeriesOverride)}
    extra = set(item) - allowed
    if extra:
        raise ConfigError(f"{key}: unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(allowed))})")
    for name, value in item.items():
        if not isinstance(value, str):
            raise ConfigError(f"{key}.{name}: expected a string, got {type(value).__name__}")
    if not item.get("match", "").strip():
        raise ConfigError(f"{key}.match: missing or empty (a folder or title glob such as \"Spy*Family*\")")
    if not any(item.get(name) for name in allowed - {"match"}):
        raise ConfigError(f"{key}: sets nothing (give site, slug, language or provider)")
    return SeriesOverride(**item)


def _build_section(name: str, cls: type, raw: dict[str, Any], env: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for f in fields(cls):
        full = f"{name}.{f.name}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
        if env_name in env:
            values[f.name] = _coerce(f"{full} (from {env_name})", hints[f.name], env[env_name], True)
        elif f.name in raw:
            values[f.name] = _coerce(full, hints[f.name], raw[f.name], False)
        choices = _CHOICES.get((name, f.name))
        if choices and f.name in values and values[f.name] not in choices:
            raise ConfigError(f"{full}: must be one of {', '.join(choices)}, got {values[f.name]!r}")
    return cls(**values)


def _check_env_names(env: dict[str, str]) -> None:
    """A misspelt environment variable must fail as loudly as a misspelt file key."""
    for env_name in env:
        if not env_name.startswith(ENV_PREFIX) or env_name in (CONFIG_ENV, DATA_ENV):
            continue
        rest = env_name[len(ENV_PREFIX):].lower()
        if rest.startswith("resolvers_"):
            continue
        for section, cls in SECTIONS.items():
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                if key in {f.name for f in fields(cls)}:
                    break
                raise ConfigError(f"{section}.{key}: unknown key set by {env_name}")
        else:
            raise ConfigError(f"{env_name}: unknown section in environment variable")


def _resolver_sections(raw: Any, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("resolvers: expected a table of [resolvers.<name>] sections")
    out: dict[str, dict[str, Any]] = {}
    for name, section in raw.items():
        if not isinstance(section, dict):
            raise ConfigError(f"resolvers.{name}: expected a table")
        out[name] = dict(section)
    # STRM_BRIDGE_RESOLVERS_<NAME>_<KEY> works for names without underscores; values are JSON when they parse.
    for env_name, value in env.items():
        if not env_name.startswith(ENV_PREFIX + "RESOLVERS_"):
            continue
        rest = env_name[len(ENV_PREFIX + "RESOLVERS_"):].lower()
        if "_" not in rest:
            raise ConfigError(f"{env_name}: expected STRM_BRIDGE_RESOLVERS_<NAME>_<KEY>")
        name, key = rest.split("_", 1)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(name, {})[key] = parsed
    return out


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the file named by `path` or $STRM_BRIDGE_CONFIG (none is fine) and apply the environment."""
    env = dict(os.environ if env is None else env)
    source = str(path) if path else env.get(CONFIG_ENV, "")
    raw: dict[str, Any] = {}
    if source:
        try:
            with open(source, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {source}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source}: invalid TOML ({exc})") from None
    for key in raw:
        if key not in SECTIONS and key != "resolvers":
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted([*SECTIONS, 'resolvers']))})")
        if key != "resolvers" and not isinstance(raw[key], dict):
            raise ConfigError(f"{key}: expected a [{key}] table")
    _check_env_names(env)
    sections = {name: _build_section(name, cls, raw.get(name, {}), env) for name, cls in SECTIONS.items()}
    config = Config(**sections, resolvers=_resolver_sections(raw.get("resolvers"), env), source=source)
    db_path = database_path(config.database.path, from_env=f"{ENV_PREFIX}DATABASE_PATH" in env, config_file=source,
                            env=env)
    config = replace(config, database=replace(config.database, path=db_path))
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if not 0 < config.server.port < 65536:
        raise ConfigError(f"server.port: must be 1-65535, got {config.server.port}")
    if config.server.max_body_bytes < 1024:
        raise ConfigError("server.max_body_bytes: must be at least 1024")
    if config.refresh.concurrency < 1:
        raise ConfigError("refresh.concurrency: must be at least 1")
    if config.refresh.check_concurrency < 1:
        raise ConfigError("refresh.check_concurrency: must be at least 1")
    if config.refresh.check_interval_seconds < 0:
        raise ConfigError("refresh.check_interval_seconds: must be 0 (off) or more")
    if not config.detector.failure_window_seconds > 0 or not config.detector.min_progress_seconds >= 0:
        raise ConfigError("detector.failure_window_seconds: must be > 0, detector.min_progress_seconds: >= 0")
    if not 0 < config.refresh.mass_failure_ratio <= 1:
        raise ConfigError("refresh.mass_failure_ratio: must be in (0, 1]")
    try:
        Egress.from_lists(config.refresh.deny_hosts, config.refresh.allow_hosts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key, value in (("server.api_token", config.server.api_token),
                       ("jellyfin.webhook_token", config.jellyfin.webhook_token),
                       ("plex.webhook_token", config.plex.webhook_token),
                       ("tautulli.webhook_token", config.tautulli.webhook_token),
                       ("emby.webhook_token", config.emby.webhook_token),
                       ("sonarr.webhook_token", config.sonarr.webhook_token),
                       ("radarr.webhook_token", config.radarr.webhook_token)):
        if value and len(value) < 8:
            raise ConfigError(f"{key}: must be at least 8 characters (it is also masked in logs)")
    for name in ("jellyfin", "emby", "plex", "sonarr", "radarr"):
        url = getattr(config, name).url
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name}.url: must start with http:// or https://, got {url!r}")
    if config.play.margin_seconds < 0:
        raise ConfigError("play.margin_seconds: must not be negative")
    if config.play.secret and len(config.play.secret) < 16:
        raise ConfigError("play.secret: must be at least 16 characters (or empty to generate one)")
    if config.server.public_url and not config.server.public_url.startswith(("http://", "https://")):
        raise ConfigError(f"server.public_url: must start with http:// or https://, got {config.server.public_url!r}")
    for i, root in enumerate(config.library.roots):
        if not os.path.isabs(root):
            raise ConfigError(f"library.roots[{i}]: must be an absolute path, got {root!r}")
    try:
        compile_patterns(config.library.stable_link_patterns)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 100 <= config.library.watch_debounce_ms <= 60_000:
        raise ConfigError("library.watch_debounce_ms: must be 100-60000")
    for i, anchor in enumerate(config.library.anchors):
        if not os.path.isabs(anchor):
            raise ConfigError(f"library.anchors[{i}]: must be an absolute path, got {anchor!r}")

