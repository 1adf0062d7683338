"""Retiring mappings: one by id or path, or every mapping whose .strm is gone (`prune --missing`).

Only rows go; a file is never deleted. A file counts as gone only while its library is there: with an anchor
missing nothing is judged (an unmounted share is not a deleted library), and a row whose root folder is absent
is skipped, so a mount hiccup can never retire a whole library.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bridge.mappings import Mapping, MappingStore
from bridge.strm import Library

PAGE = 1000


class RetireError(ValueError):
    """A refusal the caller can act on; `code` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PruneReport:
    dry_run: bool
    missing: list[Mapping] = field(default_factory=list)
    skipped: list[tuple[Mapping, str]] = field(default_factory=list)
    deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "missing": [{"id": m["id"], "strm_path": m["strm_path"], "state": m["state"]} for m in self.missing],
            "skipped": [{"id": m["id"], "strm_path": m["strm_path"], "reason": why} for m, why in self.skipped],
            "deleted": self.deleted,
        }


def find(store: MappingStore, ref: str) -> Mapping | None:
    """A mapping by id (digits) or by its .strm path."""
    ref = ref.strip()
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:  # "¹".isdigit() is true and int() refuses it
        return store.get(int(ref))
    return store.by_path(os.path.normpath(ref) if ref.startswith("/") else ref)


def delete_one(store: MappingStore, mapping: Mapping) -> None:
    if mapping.get("state") == "refreshing":
        raise RetireError("refreshing", f"mapping {mapping['id']} is being refreshed right now; try again in a moment")
    store.delete([mapping["id"]])


def _root_of(library: Library, path: str) -> str | None:
    for root in library.roots:
        text = str(root)
        if path == text or path.startswith(text.rstrip(os.sep) + os.sep):
            return text
    return None


def prune_missing(store: MappingStore, library: Library, *, dry_run: bool) -> PruneReport:
    """Every mapping whose file does not exist now (checked on disk, whatever its state says)."""
    try:
        library.check_anchors()
    except Exception as exc:  # AnchorMissing: nothing may be judged while the library is not mounted
        raise RetireError("anchor_missing", f"{exc}; nothing pruned") from None
    report = PruneReport(dry_run=dry_run)
    roots_present: dict[str, bool] = {}
    last = 0
    while True:
        rows = store.conn.execute("select id, strm_path, state from mappings where id > ? order by id limit ?",
                                  (last, PAGE)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        for mapping_id, path, state in rows:
            if os.path.lexists(path):
                continue
            mapping = {"id": mapping_id, "strm_path": path, "state": state}
            root = _root_of(library, path)
            if root is not None:
                if root not in roots_present:
                    roots_present[root] = os.path.isdir(root)
                if not roots_present[root]:
                    report.skipped.append((mapping, f"library root {root} is not there (unmounted?)"))
                    continue
            if state == "refreshing":
                report.skipped.append((mapping, "being refreshed right now"))
                continue
            report.missing.append(mapping)
    if not dry_run and report.missing:
        report.deleted = store.delete([m["id"] for m in report.missing])
    return report
