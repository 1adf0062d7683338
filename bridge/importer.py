"""Adopting existing .strm files: record path and URL, and derive the identity where the file tells it.

Identity comes from an AniBridge stable link inside the file (`/strm/stream?site=&slug=&s=&e=&lang=`)
or from an `S01E02`-style file name plus the site/slug/language the user gives for that folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from bridge.mappings import MappingStore
from bridge.matching import slugify
from bridge.strm import InvalidUrl, is_temp_name, read_strm, validate_url

EPISODE_PATTERN = re.compile(r"(?i)(?:^|[^a-z0-9])s(\d{1,3})[ ._-]?e(\d{1,4})(?:\D|$)")
SEASON_FOLDER = re.compile(r"(?i)^(season|staffel|s)[ ._-]?\d+$")


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


def anibridge_identity(url: str) -> dict[str, Any] | None:
    """Identity from an AniBridge stable link; None when the URL is not one."""
    parts = urlsplit(url)
    if not parts.path.rstrip("/").endswith("/strm/stream"):
        return None
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if not query.get("slug"):
        return None
    try:
        season = int(query["s"]) if query.get("s") else None
        episode = int(query["e"]) if query.get("e") else None
    except ValueError:
        return None
    return {
        "site": query.get("site") or None,
        "slug": query["slug"],
        "season": season,
        "episode": episode,
        "language": query.get("lang") or None,
        "provider": query.get("provider") or "",
        "source_url": url,
    }


def filename_identity(path: str, *, site: str | None, slug: str | None, language: str | None) -> dict[str, Any]:
    name = os.path.basename(path)
    identity: dict[str, Any] = {"site": site, "language": language}
    match = EPISODE_PATTERN.search(name)
    if match:
        identity["season"], identity["episode"] = int(match.group(1)), int(match.group(2))
    identity["slug"] = slug or _series_slug(path)
    return identity


def _series_slug(path: str) -> str | None:
    """The series folder: the parent, or the grandparent when the parent is a season folder."""
    folder = os.path.dirname(path)
    if SEASON_FOLDER.match(os.path.basename(folder)):
        folder = os.path.dirname(folder)
    name = re.sub(r"\s*[\(\[].*?[\)\]]", "", os.path.basename(folder))
    return slugify(name) or None


def find_strm_files(roots: Iterable[str]) -> Iterator[str]:
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".strm") and not is_temp_name(name):
                    yield os.path.join(folder, name)


def import_tree(
    store: MappingStore,
    roots: Iterable[str],
    *,
    site: str | None = None,
    slug: str | None = None,
    language: str | None = None,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
    batch_size: int = 500,
    predict_expiry: Callable[[str], str | None] | None = None,
) -> ImportReport:
    """Idempotent: a second run over the same files reports them unchanged and writes nothing."""
    report = ImportReport()
    paths: list[str] = list(find_strm_files(os.path.abspath(r) for r in roots))
    report.found = len(paths)
    iterable: Iterable[str] = progress(paths) if progress else paths
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        store.upsert_many(pending)
        pending.clear()

    for path in iterable:
        try:
            url = read_strm(path)
        except OSError as exc:
            report.errors.append((path, f"cannot read: {exc.strerror or exc}"))
            continue
        if not url:
            report.errors.append((path, "file holds no URL"))
            continue
        try:
            validate_url(url)
        except InvalidUrl as exc:
            report.errors.append((path, f"invalid URL: {exc}"))
            continue
        record: dict[str, Any] = {"strm_path": path, "resolved_url": url}
        record.update(anibridge_identity(url) or filename_identity(path, site=site, slug=slug, language=language))
        record["provider"] = record.get("provider") or ""
        existing = store.by_path(path)
        if existing is not None:
            if all(existing.get(k) == v for k, v in record.items()):
                report.unchanged += 1
                continue
            report.updated += 1
            if existing.get("resolved_url") == url:
                record.pop("resolved_url")  # keep resolved_at: the URL did not change
        else:
            report.created += 1
            record["state"] = "unknown"
            if predict_expiry is not None:
                record["expires_at"] = predict_expiry(url)
        pending.append(record)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return report
