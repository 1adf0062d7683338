"""Helpers every built-in resolver shares: option validation and reading a resolver's JSON answer.

Options are checked when the resolver is created, so a typo in `[resolvers.<name>]` stops start-up with a
message naming the key instead of failing on the first playback.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from bridge.resolvers.base import Resolved, ResolverError
from bridge.timeutil import from_epoch, parse_iso, to_iso

log = logging.getLogger(__name__)

_MISSING: Any = object()
MIB = 1024 * 1024


class Options:
    """A resolver's options section; every accessor names `resolvers.<name>.<key>` when a value is wrong."""

    def __init__(self, name: str, raw: Mapping[str, Any] | None, known: Iterable[str]) -> None:
        self.name = name
        self.raw = dict(raw or {})
        known_keys = sorted(known)
        for key in self.raw:
            if key not in known_keys:
                raise ValueError(f"{self.key(key)}: unknown option (known: {', '.join(known_keys)})")

    def key(self, key: str) -> str:
        return f"resolvers.{self.name}.{key}"

    def string(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.raw:
            return self._default(key, default)
        value = self.raw[key]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{self.key(key)}: expected a non-empty string, got {value!r}")
        return value.strip()

    def http_url(self, key: str, default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if value is not None and not is_http_url(value):
            raise ValueError(f"{self.key(key)}: expected an absolute http(s) URL, got {redact_url(value)!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        """A positive number (int or float); booleans are refused because TOML `true` is not a timeout."""
        if key not in self.raw:
            return default
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > minimum:
            raise ValueError(f"{self.key(key)}: expected a number greater than {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        if key not in self.raw:
            return default
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{self.key(key)}: expected an integer >= {minimum}, got {value!r}")
        return value

    def string_list(self, key: str, default: Any = _MISSING, *, allow_empty: bool = False) -> Any:
        if key not in self.raw:
            return self._default(key, default)
        value = self.raw[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{self.key(key)}: expected a list of strings, got {value!r}")
        if not value and not allow_empty:
            raise ValueError(f"{self.key(key)}: must not be empty")
        return list(value)

    def string_dict(self, key: str) -> dict[str, str]:
        """Header and environment tables: string keys to string values, nothing nested."""
        if key not in self.raw:
            return {}
        value = self.raw[key]
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError(f"{self.key(key)}: expected a table of string values")
        return dict(value)

    def _default(self, key: str, default: Any) -> Any:
        if default is _MISSING:
            raise ValueError(f"{self.key(key)}: required option is missing")
        return default


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def source_url_of(request: Any, resolver: str, missing: str) -> str:
    """The http(s) `source_url` a resolver follows or extracts from; `missing` says what it would have been."""
    source = request.source_url
    if not source:
        raise ResolverError(f"{resolver}: the mapping has no source_url {missing}")
    if not is_http_url(source):
        raise ResolverError(f"{resolver}: source_url is not an http(s) URL: {redact_url(source)!r}")
    return str(source)


def redact_url(url: str) -> str:
    """Errors end up in the refresh log and in logs: keep the host and path, never the signed query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))


_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """Messages from third-party code may quote signed URLs; mask every query before it reaches a log."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def request_fields(request: Any) -> dict[str, Any]:
    """The flat request both the http and the command resolver hand to their helper."""
    identity = request.identity
    return {
        "site": identity.site,
        "slug": identity.slug,
        "season": identity.season,
        "episode": identity.episode,
        "language": identity.language,
        "provider": identity.provider or None,
        "source_url": request.source_url,
        "strm_path": request.strm_path,
        "previous_url": request.previous_url,
        "reason": request.reason,
    }


def parse_expiry(value: Any) -> str | None:
    """ISO-8601 or a Unix epoch; a malformed expiry only costs us the hint, never the fresh URL."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, (int, float)):
            return from_epoch(float(value) / 1000 if value > 1e11 else float(value))
        if isinstance(value, str):
            return to_iso(parse_iso(value))
    except (ValueError, OverflowError, OSError):
        pass
    log.warning("ignoring unparseable expires_at %r", value)
    return None


def resolved_from_answer(answer: Any, resolver: str, where: str) -> Resolved:
    """The JSON answer shared by the http and command protocols: {"url", "headers"?, "provider"?, "expires_at"?}."""
    if not isinstance(answer, dict):
        raise ResolverError(f"{where}: expected a JSON object, got {type(answer).__name__}")
    url = answer.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ResolverError(f"{where}: answer has no string 'url'")
    url = url.strip()
    if not is_http_url(url):
        raise ResolverError(f"{where}: 'url' is not an absolute http(s) URL: {redact_url(url)!r}")
    headers = answer.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ResolverError(f"{where}: 'headers' must be an object of strings")
        headers = dict(headers) or None
    provider = answer.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ResolverError(f"{where}: 'provider' must be a string")
    return Resolved(
        url=url,
        headers=headers,
        provider=provider or None,
        expires_at=parse_expiry(answer.get("expires_at")),
        resolver=resolver,
    )


def parse_json_answer(body: bytes, resolver: str, where: str) -> Resolved:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ResolverError(f"{where}: answer is not JSON") from None
    return resolved_from_answer(answer, resolver, where)


def tail(data: bytes, limit: int = 300) -> str:
    """The end of stderr is where tracebacks say what went wrong; keep error messages short."""
    text = data.decode("utf-8", "replace").strip()
    if len(text) > limit:
        text = "…" + text[-limit:]
    return text


def client_session(egress: Any, **kwargs: Any) -> aiohttp.ClientSession:
    """Through the bridge's egress guard when the registry handed one over (never a call to the bridge itself)."""
    if egress is not None:
        return egress.session(**kwargs)
    return aiohttp.ClientSession(**kwargs)
