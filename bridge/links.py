"""What kind of link a `.strm` holds, and so whether strm-bridge may ever replace it.

Only a direct provider/CDN URL is the bridge's to rewrite. A generator's stable link (AniBridge's
`<base>/strm/stream?site=&slug=&s=&e=&lang=[&provider=]&sig=|&apikey=`), a link the user declared stable
(`library.stable_link_patterns`) and the bridge's own `/play/{id}` links resolve at play time: writing the
direct URL they currently lead to over them makes the file worse (that URL is IP/ASN-bound and expires).
Any URL that points at the bridge itself is never probed, followed or written either.

AniBridge facts (Zzackllack/AniBridge `app/core/strm_proxy/urls.py`, `auth.py`, `app/api/strm.py`): the
query is the identity sorted by key plus `sig` (HMAC-SHA256 hex, no expiry) or `apikey` or nothing; `site`
defaults to aniworld.to; on a 403/404/410/451/429 upstream answer or a request error it re-resolves and
retries once, per request (HEAD included); it never redirects, it streams 200/206.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Link", "LinkRules", "StablePattern", "anibridge_identity", "compile_patterns"]

ANIBRIDGE_PATH = "/strm/stream"
ANIBRIDGE_RE_RESOLVES_ON = (403, 404, 410, 451, 429)
"""Upstream answers on which AniBridge drops its cached URL and resolves again (once per request)."""
KINDS = ("direct", "anibridge", "pattern", "own")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "ip6-localhost"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Link:
    """A classified link. `kind`: direct | anibridge | pattern | own."""

    url: str
    kind: str
    detail: str
    re_resolves: bool = False
    """The indirection resolves again by itself when a request meets a dead upstream (AniBridge does)."""
    identity: dict[str, Any] | None = None

    @property
    def owned(self) -> bool:
        """True only for a direct URL: the one kind strm-bridge may replace."""
        return self.kind == "direct"


@dataclass(frozen=True)
class StablePattern:
    """One `library.stable_link_patterns` entry: an http(s) URL prefix, or else a regular expression (searched)."""

    text: str
    prefix: str | None
    regex: re.Pattern[str] | None

    def matches(self, url: str) -> bool:
        if self.prefix is not None:
            return _prefix_key(url).startswith(self.prefix)
        assert self.regex is not None
        return self.regex.search(url) is not None


def _prefix_key(url: str) -> str:
    """Scheme and host compare case-insensitively; the rest byte for byte."""
    split = _fast_split(url)
    if split is None:
        return url
    scheme, _netloc, end = split
    return url[:end].lower() + url[end:]


def _fast_split(url: str) -> tuple[str, str, int] | None:
    """(scheme, netloc lower-cased without userinfo, index where the path starts) of an http(s) URL, else None.

    A refresh classifies every URL it writes (in the event loop and again in a writer thread): this costs a
    fraction of `urlsplit`, which only runs once per distinct netloc (`LinkRules._bridge_netloc`)."""
    colon = url.find("://")
    if colon not in (4, 5):
        return None
    scheme = url[:colon].lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    start = colon + 3
    end = len(url)
    for mark in "/?#":
        found = url.find(mark, start, end)
        if found != -1:
            end = found
    netloc = url[start:end]
    at = netloc.rfind("@")
    return scheme, (netloc[at + 1:] if at != -1 else netloc).lower(), end


def compile_patterns(patterns: Sequence[str], key: str = "library.stable_link_patterns") -> list[StablePattern]:
    """Validate at start-up; raises ValueError naming the entry (`key[i]`) and what is wrong with it."""
    compiled: list[StablePattern] = []
    for i, text in enumerate(patterns):
        name = f"{key}[{i}]"
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}: empty pattern (give a URL prefix such as 'https://alist.example/d/' or a regex)")
        if text.lower().startswith(("http://", "https://")):
            parts = urlsplit(text)
            if not parts.hostname:
                raise ValueError(f"{name}: URL prefix {text!r} has no host")
            compiled.append(StablePattern(text, _prefix_key(text), None))
            continue
        try:
            regex = re.compile(text)
        except re.error as exc:
            raise ValueError(f"{name}: {text!r} is neither an http(s) URL prefix nor a valid regular expression"
                             f" ({exc})") from None
        if regex.search(""):
            raise ValueError(f"{name}: regular expression {text!r} matches every URL")
        compiled.append(StablePattern(text, None, regex))
    return compiled


def anibridge_identity(url: str) -> dict[str, Any] | None:
    """The identity an AniBridge stable link carries; None when the URL does not have that shape.

    Same rules as AniBridge's own `_parse_identity`: slug, lang, s and e required (s, e integers), `site`
    defaults to aniworld.to, `language`/`season`/`episode` are accepted as long names.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.path.rstrip("/").endswith(ANIBRIDGE_PATH):
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    slug = query.get("slug", "").strip()
    language = (query.get("lang") or query.get("language") or "").strip()
    season_raw = query.get("s") or query.get("season")
    episode_raw = query.get("e") or query.get("episode")
    if not slug or not language or season_raw is None or episode_raw is None:
        return None
    try:
        season, episode = int(season_raw), int(episode_raw)
    except ValueError:
        return None
    return {
        "site": (query.get("site") or "aniworld.to").strip(),
        "slug": slug,
        "season": season,
        "episode": episode,
        "language": language,
        "provider": (query.get("provider") or "").strip(),
        "auth": "sig" if query.get("sig") else "apikey" if query.get("apikey") else "none",
    }


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme.lower() not in _DEFAULT_PORTS:
        return None
    return parts.hostname.lower().strip("[]"), port or _DEFAULT_PORTS[parts.scheme.lower()]


@lru_cache(maxsize=1)
def _local_names() -> frozenset[str]:
    """This machine's own names: a URL naming them with the bridge's port is the bridge."""
    names = set(_LOOPBACK)
    try:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
    except OSError:  # pragma: no cover - no hostname at all
        pass
    return frozenset(n for n in names if n)


class LinkRules:
    """Classifies URLs; built once from the configuration (`from_config`) and shared by every component."""

    def __init__(self, patterns: Sequence[str] = (), *, public_url: str = "", host: str = "", port: int | None = None,
                 extra_addresses: Iterable[tuple[str, int]] = ()) -> None:
        self.patterns = compile_patterns(patterns)
        self.public_url = public_url.rstrip("/")
        self._public = _host_port(self.public_url) if self.public_url else None
        self._public_path = urlsplit(self.public_url).path.rstrip("/") if self.public_url else ""
        self._port = port
        names = set(_local_names()) if port is not None else set()
        if host and port is not None:
            names.add(host.lower())
        self._names = frozenset(names)
        self._extra = frozenset((h.lower(), p) for h, p in extra_addresses)
        self._netlocs: dict[tuple[str, str], bool] = {}
        """scheme and netloc -> points at the bridge; a library has few distinct hosts, so this stays small."""

    @classmethod
    def from_config(cls, config: Any) -> "LinkRules":
        return cls(config.library.stable_link_patterns, public_url=config.server.public_url,
                   host=config.server.host, port=config.server.port)

    def points_at_bridge(self, url: str) -> bool:
        """The URL names this bridge: its public URL's host:port, or this machine with the bridge's port."""
        split = _fast_split(url)
        return split is not None and self._bridge_netloc(split[0], split[1])

    def _bridge_netloc(self, scheme: str, netloc: str) -> bool:
        key = (scheme, netloc)
        known = self._netlocs.get(key)
        if known is None:
            if len(self._netlocs) >= 4096:
                self._netlocs.clear()
            known = self._netlocs[key] = self._names_bridge(f"{scheme}://{netloc}/")
        return known

    def _names_bridge(self, url: str) -> bool:
        address = _host_port(url)
        if address is None:
            return False
        if self._public is not None and address == self._public:
            return True
        if address in self._extra:
            return True
        return self._port is not None and address[1] == self._port and address[0] in self._names

    def is_play_link(self, url: str) -> bool:
        """One of the bridge's own stable links: `/play/{id}` on the bridge."""
        if not self.points_at_bridge(url):
            return False
        path = urlsplit(url).path
        prefix = self._public_path if self._public is not None and _host_port(url) == self._public else ""
        return path.startswith(f"{prefix}/play/")

    def classify(self, url: str | None) -> Link:
        """Own links first (never touched), then AniBridge's shape, then the configured patterns."""
        if not url:
            return Link("", "direct", "no URL")
        if self.points_at_bridge(url):
            what = "strm-bridge's own /play/ link" if self.is_play_link(url) else "a URL that points at strm-bridge itself"
            return Link(url, "own", what)
        identity = anibridge_identity(url) if ANIBRIDGE_PATH in url else None
        if identity is not None:
            return Link(url, "anibridge", "AniBridge stable link", re_resolves=True, identity=identity)
        index = self._pattern_index(url)
        if index is not None:
            return Link(url, "pattern", f"matches library.stable_link_patterns[{index}] ({self.patterns[index].text!r})")
        return Link(url, "direct", "direct URL")

    def _pattern_index(self, url: str) -> int | None:
        for i, pattern in enumerate(self.patterns):
            if pattern.matches(url):
                return i
        return None

    def owned(self, url: str | None) -> bool:
        """`classify(url).owned` without building the answer: the writer asks this for every file it replaces."""
        if not url:
            return True
        if self.points_at_bridge(url):
            return False
        if ANIBRIDGE_PATH in url and anibridge_identity(url) is not None:
            return False
        return self._pattern_index(url) is None
