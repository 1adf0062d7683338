"""The library health check: probe stored links and record what they answer, before anyone plays them.

A check never resolves and never writes a `.strm`; it only stores `state`, `last_status` and
`last_checked_at`, so the dashboard, `refresh --stale` and the metrics see a dead link as dead. The stored
row only changes if it still holds the URL that was probed: a refresh that lands meanwhile wins.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp

from bridge.egress import Egress
from bridge.holding import is_locked
from bridge.links import LinkRules
from bridge.mappings import Mapping, MappingStore
from bridge.probe import ProbeResult, probe
from bridge.timeutil import from_epoch, now_iso, to_epoch

PROBLEM_FINDINGS = ("dead", "missing", "error")
"""Findings that make `strm-bridge check` exit 1."""
RESOLVE_STATUSES = ("dead", "other", "legal")
"""Probe statuses on which the refresh pipeline would re-resolve at once (no backoff): the link is dead."""
_COMMIT_EVERY = 200
_STORE_ATTEMPTS = 40
_STORE_RETRY_SECONDS = 0.25
log = logging.getLogger(__name__)


def state_after_probe(mapping: Mapping, result: ProbeResult, now: float | None = None) -> str:
    """The state a probe's answer proves; a transient answer (timeout, 5xx, 429) leaves the state as it was."""
    current = mapping.get("state") or "unknown"
    if result.status == "alive":
        return "ok"
    dead = result.status in RESOLVE_STATUSES
    if result.status == "forbidden":
        expires = mapping.get("expires_at")
        dead = not expires or to_epoch(expires) <= (time.time() if now is None else now)
    if dead:
        return "broken" if current == "broken" else "dead"  # broken (resolvers gave up) is the stronger word
    return current


def finding_of(result: ProbeResult, state: str) -> str:
    """One word per checked link for reports: alive, dead, or error (could not tell, e.g. a timeout)."""
    if result.status == "alive":
        return "alive"
    return "dead" if state in ("dead", "broken") else "error"


@dataclass
class CheckItem:
    mapping_id: int
    finding: str
    """alive | dead | missing | error | skipped"""
    state: str
    status: str | None = None
    http_status: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"mapping_id": self.mapping_id, "finding": self.finding, "state": self.state, "status": self.status,
                "http_status": self.http_status, "detail": self.detail}


@dataclass
class CheckReport:
    total: int = 0
    items: list[CheckItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(i.finding for i in self.items).items()))

    @property
    def problems(self) -> list[CheckItem]:
        return [i for i in self.items if i.finding in PROBLEM_FINDINGS]


class LinkChecker:
    """Probes mappings with bounded concurrency and records each finding on its row."""

    def __init__(self, store: MappingStore, *, concurrency: int = 8, timeout: float = 5.0,
                 indirection_timeout: float | None = None, links: LinkRules | None = None,
                 egress: Egress | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.store = store
        self.conn = store.conn
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.indirection_timeout = indirection_timeout or timeout
        self.links = links or LinkRules()
        self.egress = egress if egress is not None else Egress()
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_config(cls, store: MappingStore, config: Any, links: LinkRules | None = None,
                    egress: Egress | None = None, **overrides: Any) -> "LinkChecker":
        if egress is None:
            egress = Egress.from_lists(config.refresh.deny_hosts, config.refresh.allow_hosts)
            egress.add_listener(config.server.host, config.server.port)
        options = {"concurrency": config.refresh.check_concurrency, "timeout": config.refresh.probe_timeout_seconds,
                   "indirection_timeout": config.refresh.indirection_timeout_seconds,
                   "links": links or LinkRules.from_config(config), "egress": egress}
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(store, **options)

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # every connection, redirect hops included, passes the egress guard (deny/allow hosts, never the bridge)
            self._session = self.egress.session(
                connector_args={"limit": max(64, self.concurrency), "ttl_dns_cache": 300},
                headers={"User-Agent": "strm-bridge"})
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self, ids: list[int], on_item: Callable[[CheckItem], None] | None = None) -> CheckReport:
        """Check these mappings; rows are read a page at a time so a million ids hold little memory."""
        report = CheckReport(total=len(ids))
        session = await self._get_session()
        pending: list[tuple[Any, ...]] = []
        queue: asyncio.Queue[Mapping | None] = asyncio.Queue(maxsize=self.concurrency * 4)

        def record(item: CheckItem, mapping: Mapping, url: str | None) -> None:
            report.items.append(item)
            if item.finding != "skipped":
                pending.append((item.state, item.status, now_iso(), now_iso(), mapping["id"], url))
                if len(pending) >= _COMMIT_EVERY:
                    self._store(pending)
            if on_item is not None:
                on_item(item)

        async def producer() -> None:
            for first in range(0, len(ids), 500):
                chunk = ids[first:first + 500]
                marks = ",".join("?" * len(chunk))
                cursor = self.conn.execute(f"select * from mappings where id in ({marks})", chunk)
                names = [c[0] for c in cursor.description]
                rows = {r[0]: dict(zip(names, r)) for r in cursor.fetchall()}
                for mapping_id in chunk:
                    row = rows.get(mapping_id)
                    if row is None:
                        report.items.append(CheckItem(mapping_id, "skipped", "", detail="no such mapping"))
                        continue
                    await queue.put(row)
            for _ in range(self.concurrency):
                await queue.put(None)

        async def worker() -> None:
            while (mapping := await queue.get()) is not None:
                url = mapping.get("resolved_url")
                state = mapping.get("state") or "unknown"
                if state == "refreshing":
                    record(CheckItem(mapping["id"], "skipped", state, detail="a refresh is running"), mapping, url)
                    continue
                if not url:
                    record(CheckItem(mapping["id"], "skipped", state, detail="no URL stored"), mapping, url)
                    continue
                link = self.links.classify(url)
                if link.kind == "own":
                    record(CheckItem(mapping["id"], "skipped", state, detail="the link points at strm-bridge itself"),
                           mapping, url)
                    continue
                if not os.path.exists(mapping["strm_path"]):
                    record(CheckItem(mapping["id"], "missing", "missing", detail=".strm file not found"), mapping, url)
                    continue
                headers = _headers_of(mapping)
                # a stable link (AniBridge) may resolve its upstream while it answers: it gets the longer budget
                timeout = self.timeout if link.kind == "direct" else self.indirection_timeout
                result = await probe(session, url, headers=headers, timeout=timeout)
                new_state = state_after_probe(mapping, result)
                finding = finding_of(result, new_state)
                detail = result.error or (f"HTTP {result.http_status}" if result.http_status else result.status)
                record(CheckItem(mapping["id"], finding, new_state, result.status, result.http_status, detail),
                       mapping, url)

        try:
            await asyncio.gather(producer(), *(worker() for _ in range(self.concurrency)))
        finally:
            for _ in range(_STORE_ATTEMPTS):  # another process may hold the write lock for a moment
                if self._store(pending):
                    break
                await asyncio.sleep(_STORE_RETRY_SECONDS)
            else:
                log.warning("link check: %d finding(s) not recorded, the database stayed locked", len(pending))
        report.items.sort(key=lambda i: i.mapping_id)
        return report

    def _store(self, pending: list[tuple[Any, ...]]) -> bool:
        """Record findings; False (kept for the next try) while another process holds the write lock."""
        if not pending:
            return True
        try:
            # only while the row still holds the probed URL and no refresh has claimed it meanwhile
            self.conn.executemany(
                "update mappings set state = ?, last_status = ?, last_checked_at = ?, updated_at = ?"
                " where id = ? and resolved_url is ? and state != 'refreshing'", pending)
            self.conn.commit()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            return False
        pending.clear()
        return True

    def due_ids(self, older_than_seconds: float, limit: int = 1000) -> list[int]:
        """Rows never checked, then those checked longest ago: what a scheduled check looks at next."""
        horizon = now_iso() if older_than_seconds <= 0 else _iso_ago(older_than_seconds)
        rows = self.conn.execute(
            "select id from mappings where last_checked_at is null and state != 'refreshing' limit ?",
            (limit,)).fetchall()
        ids = [r[0] for r in rows]
        if len(ids) < limit:
            rows = self.conn.execute(
                "select id from mappings where last_checked_at < ? and state != 'refreshing'"
                " order by last_checked_at limit ?", (horizon, limit - len(ids))).fetchall()
            ids += [r[0] for r in rows]
        return ids


def _iso_ago(seconds: float) -> str:
    return from_epoch(time.time() - seconds)


def _headers_of(mapping: Mapping) -> dict[str, str] | None:
    headers = mapping.get("resolved_headers")
    if isinstance(headers, str) and headers:
        try:
            headers = json.loads(headers)
        except ValueError:
            return None
    return headers if isinstance(headers, dict) else None


def record_probe(store: MappingStore, mapping: Mapping, result: ProbeResult) -> str:
    """Store one probe's finding on its row (same rule as the check); returns the state recorded."""
    state = mapping.get("state") or "unknown"
    if state == "refreshing":
        return state
    new_state = state_after_probe(mapping, result)
    now = now_iso()
    try:
        store.conn.execute(
            "update mappings set state = ?, last_status = ?, last_checked_at = ?, updated_at = ?"
            " where id = ? and resolved_url is ? and state != 'refreshing'",
            (new_state, result.status, now, now, mapping["id"], mapping.get("resolved_url")))
        store.conn.commit()
    except sqlite3.OperationalError as exc:
        if not is_locked(exc):
            raise
        log.info("mapping %s: probe finding not recorded, another process holds the database", mapping["id"])
        return state
    return new_state
