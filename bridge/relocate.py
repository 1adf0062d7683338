"""Following a file that moved (an *arr import, a rename) and retiring the mapping of a file that was deleted.

The invariant every order of events must keep: exactly one live mapping at the library path, carrying the
identity the download had. The watcher and the Sonarr/Radarr webhooks may see the same move in either order;
both end here, so whichever comes second finds the work done and only fills what is still empty.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from bridge.importer import Adopter, _empty, record_handoff
from bridge.mappings import IDENTITY_FIELDS, Mapping, MappingStore
from bridge.strm import StrmError

log = logging.getLogger(__name__)


class FollowError(ValueError):
    """A move that cannot be followed (the new file is outside the roots or not there); the caller answers 4xx."""


@dataclass(frozen=True)
class Followed:
    outcome: str  # created | moved | merged | updated | unchanged
    mapping: Mapping | None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "mapping_id": self.mapping["id"] if self.mapping else None,
                "strm_path": self.mapping["strm_path"] if self.mapping else None, "detail": self.detail}


def retire(store: MappingStore, mapping_id: int, *, commit: bool = True) -> None:
    """Remove a mapping whose file is gone for good (deleted by Sonarr/Radarr or by an upgrade): the same
    retirement as `DELETE /api/mappings/{id}` (its refresh log goes with it; committed)."""
    store.delete([mapping_id])


def retire_path(store: MappingStore, path: str, *, commit: bool = True) -> str:
    """Retire the mapping at `path` if its file is gone: 'retired', 'kept' (a file is there) or 'unknown'."""
    row = store.by_path(os.path.normpath(path))
    if row is None:
        return "unknown"
    if os.path.lexists(row["strm_path"]):
        return "kept"
    retire(store, row["id"], commit=commit)
    log.info("mapping %s retired: %s was deleted", row["id"], row["strm_path"])
    return "retired"


def retire_folder(store: MappingStore, folder: str, *, commit: bool = True) -> tuple[int, int]:
    """Retire every mapping below `folder` whose file is gone; returns (retired, kept)."""
    prefix = os.path.normpath(folder).rstrip(os.sep) + os.sep
    rows = store.conn.execute("select id, strm_path from mappings where strm_path >= ? and strm_path < ?",
                              (prefix, prefix + "\uffff")).fetchall()
    retired = kept = 0
    for mapping_id, path in rows:
        if os.path.lexists(path):
            kept += 1
        else:
            retire(store, mapping_id, commit=False)
            retired += 1
    if commit:
        store.conn.commit()
    return retired, kept


def _merge_into(store: MappingStore, keep: Mapping, drop: Mapping) -> Mapping:
    """`drop`'s identity onto `keep` (drop's values win: it is the download's), history kept, `drop` removed."""
    fields = {k: drop[k] for k in IDENTITY_FIELDS if not _empty(drop.get(k)) and drop.get(k) != keep.get(k)}
    for name in ("source_url", "jellyfin_item_id", "plex_rating_key", "emby_item_id"):
        if _empty(keep.get(name)) and not _empty(drop.get(name)):
            fields[name] = drop[name]
    store.conn.execute("update refresh_log set mapping_id = ? where mapping_id = ?", (keep["id"], drop["id"]))
    store.conn.execute("delete from mappings where id = ?", (drop["id"],))
    if fields:
        store.update(keep["id"], fields, commit=False)
    merged = store.get(keep["id"])
    assert merged is not None
    return merged


def follow(adopter: Adopter, new_path: str, *, old_path: str | None = None, arr: dict[str, Any] | None = None,
           handoff: bool = False) -> Followed:
    """The file at `new_path` came from `old_path` (a download's source, a rename's previous path).

    The mapping at `old_path`, or else the one holding the same URL, moves to `new_path` with its identity;
    if the watcher already adopted `new_path`, the two rows are merged into the one at `new_path`. With
    `handoff` (an import that may have copied or hardlinked), a file left at `old_path` is not adopted again.
    """
    store = adopter.store
    try:
        new = adopter.check(new_path)
    except StrmError as exc:
        raise FollowError(str(exc)) from None
    try:
        url = adopter.read(new)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FollowError(f"cannot read {new}: {reason} (is the path_map right?)") from None
    old = os.path.normpath(old_path) if old_path else None
    source = store.by_path(old) if old and old != new else None
    if source is None:
        others = [m for m in store.by_url(url) if m["strm_path"] != new]
        # a copy the bridge knows under another path: moved only on an import (or when its file is gone)
        if len(others) == 1 and (handoff or not os.path.exists(others[0]["strm_path"])):
            source = others[0]
    left_behind = {p for p in (old, source["strm_path"] if source else None) if p and p != new}
    target = store.by_path(new)
    outcome = "updated"
    if source is not None and target is not None and source["id"] != target["id"]:
        existing = _merge_into(store, target, source)
        outcome = "merged"
    elif source is not None:
        store.update(source["id"], {"strm_path": new}, commit=False)
        existing = store.get(source["id"])
        outcome = "moved"
    else:
        existing = target
    record = adopter.plan(new, url, existing=existing, arr=arr, sibling=None if existing else adopter.sibling(new, url))
    if record is not None:
        row = store.upsert(record, commit=False)
    else:
        row = existing  # type: ignore[assignment]
    if existing is None:
        outcome = "created"
    elif record is None and outcome == "updated":
        outcome = "unchanged"
    if handoff:
        for path in left_behind:
            record_handoff(store, path, url, new)
    store.conn.commit()
    if outcome in ("moved", "merged"):
        log.info("mapping %s follows its file to %s (%s)", row["id"], new, outcome)
    return Followed(outcome, row)
