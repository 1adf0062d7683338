"""From a Plex (or Tautulli) event to the mapping behind the item.

Plex webhooks carry no path, so the item's part files are fetched from PMS. What Plex stores as the part
"file" depends on how the user makes Plex play .strm files (research/plex.md §2):
- the .strm path itself (no bridge, or a reverse proxy such as plex-strm-proxy): map it with path_map;
- a plex-strm-assistant proxy URL `http://strm-proxy:3000/<path relative to the .strm root>`: the relative
  path leads back to the file;
- the stream URL itself (cgnl/plex-strm writes it into Plex's database): only the URL we wrote matches it.
When none of these match, the identity hints (series, season, episode) are the last resort.
"""
from __future__ import annotations

import logging
import posixpath
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from bridge.events import PlaybackEvent
from bridge.mappings import Mapping as MappingRow
from bridge.mappings import MappingStore
from bridge.matching import Match, match_mapping
from bridge.pathmap import PathMap
from integrations.plex.client import PlexClient, PlexError

log = logging.getLogger(__name__)


def safe_url(url: str) -> str:
    """A URL fit for logs: provider URLs carry their secrets in the query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _inside(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root.rstrip("/") + "/")


class PlexLocator:
    """`strm_roots` (our library roots) and `proxy_bases` ({proxy base URL: local .strm root}) are only
    needed for plex-strm-assistant setups; without a configured base every root is tried."""

    def __init__(
        self,
        client: PlexClient | None,
        store: MappingStore,
        path_map: PathMap,
        *,
        strm_roots: Sequence[str] = (),
        proxy_bases: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.path_map = path_map
        self.strm_roots = [posixpath.normpath(r) for r in strm_roots]
        self.proxy_bases = sorted(
            ((base.rstrip("/") + "/", posixpath.normpath(root)) for base, root in (proxy_bases or {}).items()),
            key=lambda pair: -len(pair[0]),
        )

    async def locate(self, event: PlaybackEvent) -> Match:
        if event.path:  # Tautulli sends the part file: no need to ask Plex when it is already known
            match = self._match_file(event.path)
            if match.refused:  # outside the library: nothing else may be matched for this item
                return match
            if match.mapping is not None:
                return self._remember(match, event.item_id)
        if not event.item_id or not event.item_id.isdigit():
            return self._by_identity(event.hints, event.item_id, "event names no Plex item")
        if self.client is None:
            return self._offline(event, "no Plex connection is configured")
        try:
            info = await self.client.item_parts(int(event.item_id))
        except PlexError as exc:  # down, bad token, refused: fall back on what we already know
            return self._offline(event, str(exc))
        if info is None:
            return Match(None, None, f"Plex has no item {event.item_id}")
        if not info.files:
            return Match(None, None, "item has no media part")
        for file in info.files:
            match = self._match_file(file)
            if match.refused:
                return match
            if match.mapping is not None:
                return self._remember(match, event.item_id)
        hints = {**event.hints, **info.hints()}
        described = ", ".join(safe_url(f) if _is_url(f) else f for f in info.files)
        return self._by_identity(hints, event.item_id, f"no mapping for part(s) {described}")

    # ---- rules ---------------------------------------------------------------------------------------
    def _match_file(self, file: str) -> Match:
        """One part file (or Tautulli `file`): a server path, a strm-proxy URL or a stream URL."""
        if _is_url(file):
            for candidate in self._proxy_candidates(file):
                match = match_mapping(self.store, local_path=candidate)
                if match.mapping is not None:
                    return Match(match.mapping, match.rule, f"strm proxy URL {safe_url(file)}")
            return match_mapping(self.store, url=file)
        return match_mapping(self.store, local_path=self.path_map.to_local(file))

    def _proxy_candidates(self, url: str) -> list[str]:
        """Local .strm paths a plex-strm-assistant URL may stand for (it encodes the relative path)."""
        path = unquote(urlsplit(url).path)
        if not path.lower().endswith(".strm"):
            return []
        out: list[str] = []
        for base, root in self.proxy_bases:
            if url.startswith(base):
                rel = unquote(urlsplit(url[len(base) - 1:]).path).lstrip("/")
                out.append(posixpath.normpath(posixpath.join(root, rel)))
                return [c for c in out if _inside(c, root)]
        rel = path.lstrip("/")
        for root in self.strm_roots:
            candidate = posixpath.normpath(posixpath.join(root, rel))
            if _inside(candidate, root):
                out.append(candidate)
        out.append(self.path_map.to_local("/" + rel))  # the proxy may carry the full server path
        return list(dict.fromkeys(out))

    def _by_identity(self, hints: dict[str, Any], item_id: str, why: str) -> Match:
        match = match_mapping(self.store, hints=hints)
        if match.mapping is not None:
            return self._remember(match, item_id)
        return Match(None, None, f"{why}; {match.detail}" if match.detail else why)

    def _offline(self, event: PlaybackEvent, why: str) -> Match:
        """Plex cannot be asked: a rating key seen before still identifies the mapping."""
        known = self.store.by_plex_rating_key(event.item_id) if event.item_id else None
        if known is not None:
            return Match(known, "item_id", f"Plex not asked ({why})")
        return self._by_identity(event.hints, event.item_id, f"Plex not asked ({why})")

    def _remember(self, match: Match, item_id: str) -> Match:
        """Store the rating key on the mapping so later events match even while Plex is down."""
        mapping: MappingRow | None = match.mapping
        if mapping is None or not item_id or not item_id.isdigit() or mapping.get("plex_rating_key") == item_id:
            return match
        previous = self.store.by_plex_rating_key(item_id)
        if previous is not None and previous["id"] != mapping["id"]:
            self.store.update(previous["id"], {"plex_rating_key": None}, commit=False)
        self.store.update(mapping["id"], {"plex_rating_key": item_id})
        return Match(self.store.get(mapping["id"]), match.rule, match.detail)
