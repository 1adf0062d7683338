"""Finding the mapping behind a media-server item, in a fixed order of trust.

1. the .strm path (after path_map); 2. the URL currently in that file against `resolved_url` (the file
moved, e.g. renamed by Sonarr: the mapping's path is corrected); 3. the identity hints from the payload.
The rule that matched is returned so it can be logged and stored on the event.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from bridge.mappings import Mapping, MappingStore
from bridge.strm import StrmError, read_strm

log = logging.getLogger(__name__)


def slugify(name: str) -> str:
    """"Attack on Titan: Final" -> "attack-on-titan-final", the aniworld/s.to slug style."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


@dataclass(frozen=True)
class Match:
    mapping: Mapping | None
    rule: str | None  # strm_path | file_url | stored_url | identity | item_id
    detail: str = ""
    refused: bool = False
    """The item's path was refused (outside the roots): a locator must not fall back on other rules for it."""


def match_mapping(
    store: MappingStore,
    *,
    local_path: str | None = None,
    url: str | None = None,
    hints: dict[str, Any] | None = None,
) -> Match:
    """`local_path` is the item's file as we see it; `url` a URL the server holds for it, if any."""
    if local_path:
        found = store.by_path(local_path)
        if found:
            return Match(found, "strm_path")
        if local_path.endswith(".strm"):
            try:  # before the file is even read: a webhook must not make us look outside the library
                store.check_path(local_path)
            except StrmError as exc:
                log.warning("item path %s refused: %s", local_path, exc)
                return Match(None, None, f"item path {local_path} is refused ({exc.code}: {exc});"
                                         " no mapping is matched or moved by it", refused=True)
            try:
                current = read_strm(local_path)
            except OSError:
                current = None
            if current:
                candidates = store.by_url(current)
                if len(candidates) == 1:
                    moved = candidates[0]
                    store.move(moved["id"], local_path)
                    log.info("mapping %s moved from %s to %s (matched by file URL)", moved["id"], moved["strm_path"], local_path)
                    return Match(store.get(moved["id"]), "file_url", f"moved from {moved['strm_path']}")
    if url:
        candidates = store.by_url(url)
        if len(candidates) == 1:
            return Match(candidates[0], "stored_url")
    hints = hints or {}
    slug = hints.get("slug") or (slugify(hints["series"]) if hints.get("series") else None)
    season, episode = hints.get("season"), hints.get("episode")
    if slug and season is not None and episode is not None:
        candidates = store.by_episode(hints.get("site"), str(slug), int(season), int(episode))
        if len(candidates) == 1:
            return Match(candidates[0], "identity")
        if len(candidates) > 1:
            return Match(None, None, f"identity is ambiguous ({len(candidates)} mappings)")
    return Match(None, None, "no mapping matches the item's path, URL or identity")
