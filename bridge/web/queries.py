"""The dashboard's reads: few statements per page, each served by an index or one pass, so 100,000 rows stay fast."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.timeutil import to_iso

SHOWN_STATES = ("ok", "dead", "broken", "missing", "refreshing", "unknown")
PAGE_SIZE = 50
MAX_QUERY_CHARS = 200


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Mappings by state in one statement; every shown state is present (0 when none)."""
    counts = {state: 0 for state in SHOWN_STATES}
    for state, count in conn.execute("select state, count(*) from mappings group by state"):
        counts[state or "unknown"] = counts.get(state or "unknown", 0) + count
    return counts


@dataclass
class Horizon:
    expired: int
    soon: int
    """expiring within the margin (the sweep's horizon)"""
    buckets: list[tuple[str, int]]
    """(label, count) per hour for the next `hours`"""
    later: int
    unknown: int
    hours: int

    @property
    def peak(self) -> int:
        return max([c for _, c in self.buckets] + [1])


def expiry_horizon(conn: sqlite3.Connection, margin_seconds: float, hours: int = 24,
                   now: datetime | None = None, total: int | None = None) -> Horizon:
    """Counts by predicted expiry hour, for the chart; ranges of the expires_at index only."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    now_text = to_iso(moment)
    start = moment.replace(minute=0, second=0)
    end = start + timedelta(hours=hours)
    soon_text = to_iso(moment + timedelta(seconds=margin_seconds))
    # every count is a range of the expires_at index, never a scan of the table (24 ranges cost less than
    # one group-by over the day, which has to compute each row's hour)
    count = "select count(*) from mappings where expires_at > ? and expires_at <= ?"
    expired = conn.execute("select count(*) from mappings where expires_at <= ?", (now_text,)).fetchone()[0]
    soon = conn.execute(count, (now_text, soon_text)).fetchone()[0]
    later = conn.execute("select count(*) from mappings where expires_at > ?", (to_iso(end),)).fetchone()[0]
    buckets = []
    for offset in range(hours):
        slot = start + timedelta(hours=offset)
        low = max(moment, slot)
        n = conn.execute(count, (to_iso(low), to_iso(slot + timedelta(hours=1)))).fetchone()[0]
        buckets.append((slot.strftime("%H:00"), int(n)))
    dated = expired + sum(n for _, n in buckets) + later
    total = total if total is not None else conn.execute("select count(*) from mappings").fetchone()[0]
    return Horizon(expired, soon, buckets, later, max(0, total - dated), hours)


@dataclass
class MappingPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    q: str
    state: str


def mapping_page(conn: sqlite3.Connection, *, q: str = "", state: str = "", page: int = 1,
                 page_size: int = PAGE_SIZE) -> MappingPage:
    """Mappings in series/season/episode order (the identity index), filtered by a search and a state."""
    where, params = [], []  # type: ignore[var-annotated]
    phrase = None
    order = "site, slug, season, episode, language, provider, id"  # the identity index: series, then season
    if q.startswith("/"):  # a folder or file path: a prefix, served by the strm_path index like the API's ?path=
        where.append("strm_path >= ? and strm_path < ?")
        params += [q, q + "\uffff"]
        order = "strm_path"  # a folder tree in path order (series and season folders stay together), no sort
    elif len(q) >= 3:  # the trigram index answers substrings of three characters or more
        phrase = '"' + q.replace('"', '""') + '"'
        where.append("id in (select rowid from mappings_search where mappings_search match ?)")
        params.append(phrase)
    elif q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(slug like ? escape '\\' or strm_path like ? escape '\\')")
        params += [pattern, pattern]
    if state:
        where.append("state = ?")
        params.append(state)
    clause = (" where " + " and ".join(where)) if where else ""
    if phrase is not None and not state:  # the index counts its own matches, without visiting the table
        total = conn.execute("select count(*) from mappings_search where mappings_search match ?",
                             (phrase,)).fetchone()[0]
    else:
        total = conn.execute(f"select count(*) from mappings{clause}", tuple(params)).fetchone()[0]
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    rows = _rows(conn,
                 "select id, strm_path, site, slug, season, episode, language, provider, provider_used, state,"
                 " last_status, last_checked_at, resolved_at, expires_at, fail_count from mappings"
                 f"{clause} order by {order} limit ? offset ?",
                 (*params, page_size, (page - 1) * page_size))
    return MappingPage(rows, total, page, pages, q, state)


def one_mapping(conn: sqlite3.Connection, mapping_id: int) -> dict[str, Any] | None:
    rows = _rows(conn,
                 "select id, strm_path, site, slug, season, episode, language, provider, provider_used, state,"
                 " last_status, last_checked_at, resolved_at, expires_at, fail_count from mappings where id = ?",
                 (mapping_id,))
    return rows[0] if rows else None


def refresh_log(conn: sqlite3.Connection, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    return _rows(conn,
                 "select r.id, r.mapping_id, r.trigger, r.reason, r.old_url, r.new_url, r.outcome, r.error,"
                 " r.duration_ms, r.finished_at, m.slug, m.season, m.episode, m.strm_path from refresh_log r"
                 " left join mappings m on m.id = r.mapping_id order by r.id desc limit ? offset ?", (limit, offset))


def recent_events(conn: sqlite3.Connection, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    return _rows(conn,
                 "select id, source, kind, item_id, received_at, processed_at, outcome, match_rule, mapping_id, error"
                 " from events order by id desc limit ? offset ?", (limit, offset))


def last_event_of(conn: sqlite3.Connection, source: str) -> dict[str, Any] | None:
    rows = _rows(conn, "select received_at, kind, outcome from events where source = ? order by id desc limit 1",
                 (source,))
    return rows[0] if rows else None
