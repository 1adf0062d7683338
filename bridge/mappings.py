"""The mapping store: one row per .strm file, linking the file, its identity and its current URL.

Every hot lookup (path, URL, identity, item ids) is served by an index, so they stay sub-millisecond at a
million rows. Writes stamp `updated_at`; refresh attempts go to `refresh_log` in the same transaction as
the mapping change they explain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Iterable, Iterator

from sqlite_utils import Database

from bridge.db import GroupCommit, atomic
from bridge.strm import Library
from bridge.timeutil import now_iso, to_iso

IDENTITY_FIELDS = ("site", "slug", "season", "episode", "language", "provider")
WRITABLE_FIELDS = (
    "strm_path",
    *IDENTITY_FIELDS,
    "source_url",
    "resolved_url",
    "resolved_headers",
    "provider_used",
    "resolved_at",
    "expires_at",
    "state",
    "last_status",
    "last_checked_at",
    "fail_count",
    "jellyfin_item_id",
    "plex_rating_key",
    "emby_item_id",
)
STATES = ("ok", "dead", "refreshing", "broken", "missing", "unknown")
_INSERT_LOG = (
    "insert into refresh_log (mapping_id, trigger, reason, old_url, new_url, outcome, error, duration_ms,"
    " started_at, finished_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Mapping = dict[str, Any]


@dataclass(frozen=True)
class Identity:
    """What an episode is, independent of where its file lives or which URL it has now."""

    site: str | None
    slug: str | None
    season: int | None
    episode: int | None
    language: str | None = None
    provider: str = ""

    @classmethod
    def of(cls, mapping: Mapping) -> "Identity":
        return cls(*(mapping.get(name) if name != "provider" else (mapping.get(name) or "") for name in IDENTITY_FIELDS))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    @property
    def complete(self) -> bool:
        return bool(self.site and self.slug) and self.season is not None and self.episode is not None


def _decode(row: dict[str, Any] | None) -> Mapping | None:
    if row is None:
        return None
    headers = row.get("resolved_headers")
    if isinstance(headers, str) and headers:
        try:
            row["resolved_headers"] = json.loads(headers)
        except json.JSONDecodeError:
            row["resolved_headers"] = None
    return row


class MappingStore:
    """All reads and writes of `mappings` and `refresh_log` go through here."""

    def __init__(self, db: Database, library: "Library | None" = None) -> None:
        self.db = db
        self.conn = db.conn
        self.group_commit = GroupCommit(db.conn)
        self.library = library
        """The roots guard for `move`; None only in tests that build a bare store."""

    # ---- reads -------------------------------------------------------------------------------------
    def _one(self, sql: str, params: Iterable[Any]) -> Mapping | None:
        cursor = self.conn.execute(sql, tuple(params))
        row = cursor.fetchone()
        if row is None:
            return None
        return _decode(dict(zip([c[0] for c in cursor.description], row)))

    def _many(self, sql: str, params: Iterable[Any]) -> list[Mapping]:
        cursor = self.conn.execute(sql, tuple(params))
        names = [c[0] for c in cursor.description]
        return [_decode(dict(zip(names, row))) for row in cursor.fetchall()]  # type: ignore[misc]

    def get(self, mapping_id: int) -> Mapping | None:
        return self._one("select * from mappings where id = ?", [mapping_id])

    def by_path(self, strm_path: str) -> Mapping | None:
        return self._one("select * from mappings where strm_path = ?", [strm_path])

    def by_url(self, url: str) -> list[Mapping]:
        return self._many("select * from mappings where resolved_url = ? order by id", [url])

    def by_identity(self, identity: Identity) -> list[Mapping]:
        return self._many(
            "select * from mappings where site is ? and slug is ? and season is ? and episode is ?"
            " and language is ? and provider = ? order by id",
            [identity.site, identity.slug, identity.season, identity.episode, identity.language, identity.provider],
        )

    def by_episode(self, site: str | None, slug: str, season: int | None, episode: int | None) -> list[Mapping]:
        """Identity without language/provider, for sources that only know the episode."""
        sql = "select * from mappings where slug = ? and season is ? and episode is ?"
        params: list[Any] = [slug, season, episode]
        if site:
            sql += " and site = ?"
            params.append(site)
        return self._many(sql + " order by id", params)

    def by_series(self, site: str, slug: str, season: int | None = None) -> list[Mapping]:
        if season is None:
            return self._many("select * from mappings where site = ? and slug = ? order by season, episode, id", [site, slug])
        return self._many(
            "select * from mappings where site = ? and slug = ? and season = ? order by episode, id", [site, slug, season]
        )

    def by_jellyfin_item(self, item_id: str) -> Mapping | None:
        return self._one("select * from mappings where jellyfin_item_id = ?", [item_id])

    def by_plex_rating_key(self, rating_key: str) -> Mapping | None:
        return self._one("select * from mappings where plex_rating_key = ?", [rating_key])

    def stale(self, margin_seconds: float = 0.0, now: datetime | None = None, limit: int | None = None) -> list[Mapping]:
        """Dead or broken rows, and rows whose predicted expiry falls within `margin_seconds` from now."""
        horizon = to_iso((now or datetime.now(UTC)) + timedelta(seconds=margin_seconds))
        sql = (
            "select * from mappings where expires_at is not null and expires_at <= ?"
            " union select * from mappings where state in ('dead', 'broken') order by id"
        )
        params: list[Any] = [horizon]
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        return self._many(sql, params)

    def expiring_ids(self, margin_seconds: float, now: datetime | None = None, limit: int = 1000) -> list[int]:
        horizon = to_iso((now or datetime.now(UTC)) + timedelta(seconds=margin_seconds))
        rows = self.conn.execute(
            "select id from mappings where expires_at is not null and expires_at <= ?"
            " and state not in ('refreshing', 'missing')"
            " order by expires_at limit ?",
            (horizon, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def search(
        self,
        *,
        path: str | None = None,
        slug: str | None = None,
        season: int | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Mapping], int]:
        """Filtered page plus the total count; `path` matches a prefix so a folder lists its files."""
        where, params = [], []  # type: ignore[var-annotated]
        if path:
            where.append("strm_path >= ? and strm_path < ?")
            params += [path, path + "\uffff"]
        if slug:
            where.append("slug = ?")
            params.append(slug)
        if season is not None:
            where.append("season = ?")
            params.append(season)
        if state:
            where.append("state = ?")
            params.append(state)
        clause = (" where " + " and ".join(where)) if where else ""
        total = self.conn.execute(f"select count(*) from mappings{clause}", tuple(params)).fetchone()[0]
        rows = self._many(f"select * from mappings{clause} order by id limit ? offset ?", [*params, limit, offset])
        return rows, total

    def job_page(self, job_id: str, after: int, limit: int) -> list[tuple[int, Mapping | None]]:
        """A bulk job's next pending items with their rows, read in one statement (None: the row is gone)."""
        cursor = self.conn.execute(
            "select j.mapping_id, m.* from job_items j left join mappings m on m.id = j.mapping_id"
            " where j.job_id = ? and j.outcome is null and j.mapping_id > ? order by j.mapping_id limit ?",
            (job_id, after, limit))
        names = [c[0] for c in cursor.description][1:]
        return [(row[0], _decode(dict(zip(names, row[1:]))) if row[1] is not None else None)
                for row in cursor.fetchall()]

    def iter_ids(self, batch: int = 1000) -> Iterator[int]:
        last = 0
        while True:
            rows = self.conn.execute("select id from mappings where id > ? order by id limit ?", (last, batch)).fetchall()
            if not rows:
                return
            yield from (r[0] for r in rows)
            last = rows[-1][0]

    def count(self) -> int:
        return self.conn.execute("select count(*) from mappings").fetchone()[0]

    # ---- writes ------------------------------------------------------------------------------------
    @staticmethod
    def _prepare(fields: dict[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - set(WRITABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown mapping field(s): {', '.join(sorted(unknown))}")
        out = dict(fields)
        if "resolved_headers" in out and out["resolved_headers"] is not None and not isinstance(out["resolved_headers"], str):
            out["resolved_headers"] = json.dumps(out["resolved_headers"], sort_keys=True)
        if "provider" in out and out["provider"] is None:
            out["provider"] = ""
        if "state" in out and out["state"] not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        return out

    def upsert(self, fields: dict[str, Any], *, commit: bool = True) -> Mapping:
        """Insert or update by `strm_path`; fields not given keep their stored values."""
        data = self._prepare(fields)
        if not data.get("strm_path"):
            raise ValueError("strm_path is required")
        now = now_iso()
        if data.get("resolved_url") and "resolved_at" not in data:
            data["resolved_at"] = now
        columns = list(data)
        insert_cols = [*columns, "created_at", "updated_at"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "strm_path")
        sql = (
            f"insert into mappings ({', '.join(insert_cols)}) values ({', '.join('?' for _ in insert_cols)})"
            f" on conflict(strm_path) do update set {updates + ', ' if updates else ''}updated_at = excluded.updated_at"
        )
        self.conn.execute(sql, (*data.values(), now, now))
        if commit:
            self.conn.commit()
        result = self.by_path(data["strm_path"])
        assert result is not None
        return result

    def upsert_many(self, rows: Iterable[dict[str, Any]]) -> int:
        count = 0
        with atomic(self.conn):
            for row in rows:
                self.upsert(row, commit=False)
                count += 1
        return count

    def update(self, mapping_id: int, fields: dict[str, Any], *, commit: bool = True) -> None:
        self.update_many([(mapping_id, fields)])
        if commit:
            self.conn.commit()

    def update_many(self, changes: list[tuple[int, dict[str, Any]]]) -> None:
        """Several rows in one statement per shape of change (a write batch stores its rows this way); no commit."""
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for mapping_id, fields in changes:
            data = self._prepare(fields)
            if not data:
                continue
            data["updated_at"] = data.get("resolved_at") or now_iso()
            shapes.setdefault(tuple(data), []).append((*data.values(), mapping_id))
        for columns, rows in shapes.items():
            assignments = ", ".join(f"{c} = ?" for c in columns)
            self.conn.executemany(f"update mappings set {assignments} where id = ?", rows)

    def check_path(self, strm_path: str) -> None:
        """Raise the StrmError that says why `strm_path` may not be a mapping's path (outside the roots, ...)."""
        if self.library is not None:
            self.library.check_path(strm_path)

    def move(self, mapping_id: int, strm_path: str, *, commit: bool = True) -> None:
        """Change a mapping's path; only ever to a path inside `library.roots` (raises StrmError otherwise)."""
        self.check_path(strm_path)
        self.update(mapping_id, {"strm_path": strm_path}, commit=commit)

    def delete(self, mapping_ids: list[int]) -> int:
        """Retire mappings (never their files); their refresh log goes with them (it references the row), in one
        commit. Events and job items keep the id as history: a job reads a retired row as gone."""
        total = 0
        with atomic(self.conn):
            for first in range(0, len(mapping_ids), 500):
                chunk = mapping_ids[first:first + 500]
                marks = ", ".join("?" for _ in chunk)
                self.conn.execute(f"delete from refresh_log where mapping_id in ({marks})", chunk)
                total += self.conn.execute(f"delete from mappings where id in ({marks})", chunk).rowcount
        return total

    def log_refresh_many(self, entries: list[dict[str, Any]]) -> None:
        """Refresh-log lines for a write batch in one statement; keys as `log_refresh` takes them; no commit."""
        now = now_iso()
        self.conn.executemany(
            _INSERT_LOG,
            [(e["mapping_id"], e["trigger"], e["reason"], e.get("old_url"), e.get("new_url"), e["outcome"],
              e.get("error"), e.get("duration_ms"), e.get("started_at") or e.get("finished_at") or now,
              e.get("finished_at") or now) for e in entries])

    def log_refresh(
        self,
        mapping_id: int,
        *,
        trigger: str,
        reason: str,
        outcome: str,
        old_url: str | None = None,
        new_url: str | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
        commit: bool = True,
    ) -> int:
        finished_at = finished_at or now_iso()
        cursor = self.conn.execute(
            _INSERT_LOG,
            (mapping_id, trigger, reason, old_url, new_url, outcome, error, duration_ms, started_at or finished_at,
             finished_at),
        )
        if commit:
            self.conn.commit()
        return int(cursor.lastrowid or 0)

    def refresh_history(self, mapping_id: int, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "select * from refresh_log where mapping_id = ? order by id desc limit ?", (mapping_id, limit)
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
