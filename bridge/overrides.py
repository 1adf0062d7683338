"""Per-series identity for names that carry no site or language: `[[library.series]]` and the API's series call.

An override matches a file when its `match` glob (case-insensitive) fits the series folder's name, the
series folder's full path, the title read from the file name (as written and with dots as spaces) or the
slug. The first matching override wins: configuration entries first, then the ones stored through the API.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Iterable

from sqlite_utils import Database

from bridge.config import SeriesOverride
from bridge.names import NameInfo, series_folder
from bridge.timeutil import now_iso

OVERRIDE_FIELDS = ("site", "slug", "language", "provider")


@dataclass(frozen=True)
class Override:
    match: str
    values: dict[str, str]

    def matches(self, path: str, info: NameInfo | None) -> bool:
        pattern = self.match.lower()
        folder = series_folder(path)
        candidates = [os.path.basename(folder), folder]
        if info is not None:
            if info.title:
                candidates += [info.title, info.title.replace(".", " ")]
            if info.slug:
                candidates.append(info.slug)
        return any(fnmatch.fnmatchcase(c.lower(), pattern) for c in candidates if c)


def from_config(entries: Iterable[SeriesOverride]) -> list[Override]:
    return [Override(e.match, {k: getattr(e, k) for k in OVERRIDE_FIELDS if getattr(e, k)}) for e in entries]


def stored(db: Database) -> list[Override]:
    if "series_overrides" not in db.table_names():
        return []
    rows = db.conn.execute("select match, site, slug, language, provider from series_overrides order by id").fetchall()
    return [Override(r[0], {k: v for k, v in zip(OVERRIDE_FIELDS, r[1:]) if v}) for r in rows]


def all_overrides(config_entries: Iterable[SeriesOverride], db: Database) -> list[Override]:
    return from_config(config_entries) + stored(db)


def find(overrides: Iterable[Override], path: str, info: NameInfo | None) -> dict[str, str]:
    for override in overrides:
        if override.matches(path, info):
            return dict(override.values)
    return {}


def save(db: Database, match: str, values: dict[str, Any]) -> int:
    """Store (or replace) the API override for `match`; returns its id."""
    row = {"match": match, **{k: values.get(k) or None for k in OVERRIDE_FIELDS}, "created_at": now_iso()}
    db.conn.execute(
        "insert into series_overrides (match, site, slug, language, provider, created_at) values (?, ?, ?, ?, ?, ?)"
        " on conflict(match) do update set site = excluded.site, slug = excluded.slug,"
        " language = excluded.language, provider = excluded.provider",
        (row["match"], row["site"], row["slug"], row["language"], row["provider"], row["created_at"]),
    )
    found = db.conn.execute("select id from series_overrides where match = ?", (match,)).fetchone()
    return int(found[0])
