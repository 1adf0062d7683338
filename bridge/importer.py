"""Adopting .strm files: record path and URL, and derive the identity from what the file and its name say.

Used by `strm-bridge import`, the folder watcher and the Sonarr/Radarr webhooks, so they agree. For each
identity field the first source that has a value wins: an AniBridge stable link in the file
(`/strm/stream?site=&slug=&s=&e=&lang=`), then what is already stored, then Sonarr/Radarr's word, then
the file name (`bridge.names`), then per-series overrides, then command-line flags. Nothing stored is
erased (`overwrite_identity` skips the stored layer), and only files inside `library.roots` are adopted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from bridge import overrides as series_overrides
from bridge.links import anibridge_identity
from bridge.mappings import IDENTITY_FIELDS, Mapping, MappingStore
from bridge.names import NameInfo, parse_path, parse_release
from bridge.play.signing import play_link_id
from bridge.strm import (InvalidUrl, Library, NoRoots, OutsideRoots, StrmError, _within, is_temp_name, read_strm,
                         validate_url)
from bridge.timeutil import now_iso

Predict = Callable[[str], "str | None"]


@dataclass
class ImportReport:
    found: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [{"path": p, "error": e} for p, e in self.errors],
        }


def _empty(value: Any) -> bool:
    return value is None or value == ""


def derive_identity(
    path: str,
    url: str | None,
    *,
    stored: Mapping | None = None,
    sibling: Mapping | None = None,
    arr: dict[str, Any] | None = None,
    overrides: Iterable[series_overrides.Override] = (),
    flags: dict[str, Any] | None = None,
    overwrite: bool = False,
    info: NameInfo | None = None,
) -> dict[str, Any]:
    """The six identity fields (plus `source_url` for a stable link), each from the first layer that has it.

    `sibling` is another stored mapping holding the same URL (a copy or hardlink of the same file, e.g. the
    download-folder original of a file Sonarr copied): what is stored for that URL counts as stored.
    """
    info = info or parse_path(path)
    link = anibridge_identity(url) if url else None  # the classifier's rules: what it keeps is what gives an identity
    layers: list[dict[str, Any]] = [link or {}]
    if stored is not None and not overwrite:
        layers.append(stored)
    if sibling is not None:
        layers.append(sibling)
    layers += [arr or {}, info.identity(), series_overrides.find(overrides, path, info), flags or {}]
    identity: dict[str, Any] = {}
    for name in IDENTITY_FIELDS:
        identity[name] = next((layer[name] for layer in layers if not _empty(layer.get(name))), None)
    identity["provider"] = identity["provider"] or ""
    if link:
        identity["source_url"] = url
    return identity


def changes_for(existing: Mapping | None, path: str, url: str, identity: dict[str, Any],
                predict_expiry: Predict | None) -> dict[str, Any] | None:
    """The fields to store for `path`; None when the stored row already says all of it."""
    record: dict[str, Any] = {"strm_path": path, **identity}
    if existing is None:
        record.update(resolved_url=url, state="unknown",
                      expires_at=predict_expiry(url) if predict_expiry is not None else None)
        return record
    changed = {k: v for k, v in record.items() if k != "strm_path" and existing.get(k) != v}
    if existing.get("resolved_url") != url and play_link_id(url) != existing.get("id"):
        # (a file holding this mapping's own /play/ link keeps the row's direct URL: it is what the link leads to)
        # a new URL is a new link: its own expiry prediction and a fresh resolved_at, state unknown until probed
        changed.update(resolved_url=url, resolved_at=now_iso(), state="unknown", last_status=None,
                       expires_at=predict_expiry(url) if predict_expiry is not None else None)
    if existing.get("state") == "missing" and "state" not in changed:
        changed["state"] = "unknown"  # the file is back
    if not changed:
        return None
    return {"strm_path": path, **changed}


def find_strm_files(roots: Iterable[str]) -> Iterator[str]:
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".strm") and not is_temp_name(name):
                    yield os.path.join(folder, name)


class Adopter:
    """One place that turns a file on disk into a mapping row (import, watcher, *arr webhooks)."""

    def __init__(self, store: MappingStore, library: Library, *,
                 overrides: Iterable[series_overrides.Override] = (), predict_expiry: Predict | None = None,
                 flags: dict[str, Any] | None = None, overwrite_identity: bool = False) -> None:
        self.store = store
        self.library = library
        self.overrides = list(overrides)
        self.predict_expiry = predict_expiry
        self.flags = {k: v for k, v in (flags or {}).items() if not _empty(v)}
        self.overwrite_identity = overwrite_identity

    def check(self, path: str) -> str:
        """The normalised path if it may hold a mapping (inside the roots, no symlink escape); else StrmError."""
        normal = os.path.normpath(path)
        self.library.check_path(normal)
        return normal

    def read(self, path: str) -> str:
        """The file's URL, validated; raises OSError, or ValueError with a message for the report."""
        url = read_strm(path)
        if not url:
            raise ValueError("file holds no URL")
        try:
            validate_url(url)
        except InvalidUrl as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        return url

    def sibling(self, path: str, url: str) -> Mapping | None:
        return next((m for m in self.store.by_url(url) if m["strm_path"] != path), None)

    def plan(self, path: str, url: str, *, existing: Mapping | None = None, arr: dict[str, Any] | None = None,
             info: NameInfo | None = None, sibling: Mapping | None = None,
             find_sibling: bool = True) -> dict[str, Any] | None:
        """`sibling`: another row holding the same URL; looked up here unless given or `find_sibling` is off."""
        if sibling is None and find_sibling:
            sibling = self.sibling(path, url)
        identity = derive_identity(path, url, stored=existing, sibling=sibling, arr=arr, overrides=self.overrides,
                                   flags=self.flags, overwrite=self.overwrite_identity, info=info)
        return changes_for(existing, path, url, identity, self.predict_expiry)

    def moved_from(self, path: str, url: str, others: list[Mapping] | None = None) -> Mapping | None:
        """The mapping this new file is a move of: the one row holding the same URL whose own file is gone."""
        candidates = others if others is not None else [m for m in self.store.by_url(url) if m["strm_path"] != path]
        if len(candidates) != 1 or os.path.exists(candidates[0]["strm_path"]):
            return None
        return candidates[0]

    def adopt(self, path: str, *, arr: dict[str, Any] | None = None, commit: bool = True,
              skip_states: tuple[str, ...] = ()) -> tuple[str, Mapping | None]:
        """Adopt one file: ('created' | 'updated' | 'moved' | 'unchanged' | 'skipped', row). Raises StrmError,
        OSError, ValueError for a file that cannot be adopted (outside the roots, unreadable, no URL).
        A row in one of `skip_states` is left alone (the watcher skips rows the refresh pipeline is writing)."""
        path = self.check(path)
        existing = self.store.by_path(path)
        if existing is not None and existing["state"] in skip_states:
            return "skipped", existing
        url = self.read(path)
        outcome = "updated"
        others = [m for m in self.store.by_url(url) if m["strm_path"] != path]
        if existing is None:
            moved = self.moved_from(path, url, others)
            if moved is not None:
                self.store.update(moved["id"], {"strm_path": path}, commit=False)
                existing = self.store.get(moved["id"])
                others = []
                outcome = "moved"
            elif is_handed_off(self.store, path, url):
                return "unchanged", None
        record = self.plan(path, url, existing=existing, arr=arr, sibling=others[0] if others else None,
                           find_sibling=False)
        if record is None:
            if commit:
                self.store.conn.commit()
            return ("moved" if outcome == "moved" else "unchanged"), existing
        row = self.store.upsert(record, commit=commit)
        return ("created" if existing is None else outcome), row


def is_handed_off(store: MappingStore, path: str, url: str) -> bool:
    """A download-folder file Sonarr/Radarr imported by copy or hardlink, unchanged since: not adopted again."""
    row = store.conn.execute("select url from handoffs where source_path = ?", (path,)).fetchone()
    return row is not None and row[0] == url


def record_handoff(store: MappingStore, source_path: str, url: str | None, target_path: str) -> None:
    store.conn.execute(
        "insert into handoffs (source_path, url, target_path, created_at) values (?, ?, ?, ?)"
        " on conflict(source_path) do update set url = excluded.url, target_path = excluded.target_path,"
        " created_at = excluded.created_at",
        (source_path, url, target_path, now_iso()),
    )


def check_folder(library: Library, folder: str) -> None:
    """A folder to import must lie inside `library.roots` (after symlinks too)."""
    if not library.roots:
        raise NoRoots("library.roots is not configured: set the folders strm-bridge may adopt files in", folder)
    real = os.path.realpath(folder)
    if not any(_within(folder, str(root)) for root in library.roots) or not any(
            _within(real, str(root)) for root in library.real_roots):
        roots = ", ".join(str(r) for r in library.roots)
        raise OutsideRoots(f"{folder} is outside the library roots ({roots})", folder)


def import_tree(
    store: MappingStore,
    roots: Iterable[str],
    *,
    library: Library,
    overrides: Iterable[series_overrides.Override] = (),
    site: str | None = None,
    slug: str | None = None,
    language: str | None = None,
    provider: str | None = None,
    overwrite_identity: bool = False,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
    batch_size: int = 500,
    predict_expiry: Predict | None = None,
) -> ImportReport:
    """Idempotent: a second run over the same files reports them unchanged and writes nothing.

    Every given root must lie inside `library.roots` (StrmError otherwise); a file that resolves outside
    them (a symlink) is reported and skipped.
    """
    adopter = Adopter(store, library, overrides=overrides, predict_expiry=predict_expiry,
                      flags={"site": site, "slug": slug, "language": language, "provider": provider},
                      overwrite_identity=overwrite_identity)
    absolute = [os.path.normpath(os.path.abspath(r)) for r in roots]
    for root in absolute:
        check_folder(library, root)
    report = ImportReport()
    # files whose name or link tells most go first, so a renamed copy can take its identity from its original
    paths: list[str] = sorted(find_strm_files(absolute), key=lambda p: parse_release(p) is None)
    report.found = len(paths)
    iterable: Iterable[str] = progress(paths) if progress else paths
    pending: dict[str, dict[str, Any]] = {}
    pending_by_url: dict[str, dict[str, Any]] = {}

    def flush() -> None:
        store.upsert_many(pending.values())
        pending.clear()
        pending_by_url.clear()

    for path in iterable:
        try:
            adopter.check(path)
            url = adopter.read(path)
        except StrmError as exc:
            report.errors.append((path, f"refused: {exc}"))
            continue
        except OSError as exc:
            report.errors.append((path, f"cannot read: {exc.strerror or exc}"))
            continue
        except ValueError as exc:
            report.errors.append((path, str(exc)))
            continue
        existing = store.by_path(path)
        if existing is None and is_handed_off(store, path, url):
            report.unchanged += 1
            continue
        record = adopter.plan(path, url, existing=existing, sibling=pending_by_url.get(url))
        if record is None:
            report.unchanged += 1
            continue
        if existing is None:
            report.created += 1
        else:
            report.updated += 1
        pending[path] = record
        pending_by_url.setdefault(url, {**(existing or {}), **record})
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return report
