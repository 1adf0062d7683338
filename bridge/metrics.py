"""Prometheus metrics, on a registry per service instance so tests can build many apps in one process.

Counters move where things happen (webhooks, detected failures, refreshes, resolver calls, probes, rescans);
the state of the library and the queues is read from the database at scrape time by a collector, so it is
right after a restart and costs nothing between scrapes.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MAPPING_STATES = ("ok", "dead", "refreshing", "broken", "missing", "unknown")
LATENCY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class DatabaseCollector(Collector):
    """Mappings by state and the depth of each persisted queue, counted when Prometheus scrapes."""

    def __init__(self, conn: sqlite3.Connection, inflight: Any = None) -> None:
        self.conn = conn
        self.inflight = inflight  # callable -> int: events being processed right now

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql).fetchall())
        except sqlite3.Error as exc:  # a table another version has not created yet: report what exists
            log.debug("metrics query failed: %s", exc)
            return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = GaugeMetricFamily("strm_bridge_mappings", "Mappings by state", labels=["state"])
        counts = dict(self._rows("select state, count(*) from mappings group by state"))
        for state in (*MAPPING_STATES, *sorted(set(counts) - set(MAPPING_STATES))):
            states.add_metric([str(state)], counts.get(state, 0))
        yield states

        rescans = GaugeMetricFamily("strm_bridge_rescan_queue_depth", "Media-server refreshes waiting",
                                    labels=["server"])
        for target, count in self._rows("select target, count(*) from rescan_queue group by target"):
            rescans.add_metric([str(target)], count)
        yield rescans

        events = GaugeMetricFamily("strm_bridge_events_unprocessed", "Stored webhooks not yet processed")
        unprocessed = self._rows("select count(*) from events where processed_at is null")
        events.add_metric([], unprocessed[0][0] if unprocessed else 0)
        yield events

        jobs = GaugeMetricFamily("strm_bridge_job_items_pending", "Items of bulk refresh jobs still to do")
        pending = self._rows("select coalesce(sum(total - done), 0) from jobs where state in ('pending', 'running')")
        jobs.add_metric([], pending[0][0] if pending else 0)
        yield jobs

        if self.inflight is not None:
            busy = GaugeMetricFamily("strm_bridge_events_in_progress", "Events being processed now")
            busy.add_metric([], self.inflight())
            yield busy


PLAY_COUNTERS = {
    "forbidden": ("strm_bridge_play_forbidden", "Play requests refused for a missing or wrong signature"),
    "parts": ("strm_bridge_play_parts", "HLS playlists, segments and keys served through signed part links"),
    "parts_found_again": ("strm_bridge_play_parts_found_again",
                          "HLS parts whose upstream link had died, found again by re-reading the playlist"),
    "retries": ("strm_bridge_play_upstream_retries", "Upstream failures at the start of a request, re-resolved and retried"),
    "resumes": ("strm_bridge_play_resumes", "Bodies cut off mid-stream and resumed from the exact byte"),
    "spliced_bytes": ("strm_bridge_play_spliced_bytes", "Body bytes moved by the zero-copy path"),
}


class PlayCollector(Collector):
    """The stable-link counters, read from the play service's own tally when Prometheus scrapes.

    The play path counts into a plain dict (no label lookup per request); this turns it into counters."""

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = dict(self.stats)
        plays = CounterMetricFamily("strm_bridge_play_requests", "Requests for /play/ links by the mode that served them",
                                    labels=["mode"])
        for mode in ("redirect", "proxy"):
            plays.add_metric([mode], stats.get(f"plays_{mode}", 0))
        yield plays
        for key, (name, documentation) in PLAY_COUNTERS.items():
            yield CounterMetricFamily(name, documentation, value=stats.get(key, 0))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter("strm_bridge_webhooks_total", "Webhooks received", ["source", "kind", "outcome"],
                                registry=self.registry)
        self.failures = Counter("strm_bridge_failures_total", "Playback failures detected", ["source", "reason"], registry=self.registry)
        self.refreshes = Counter("strm_bridge_refreshes_total", "Refresh outcomes", ["trigger", "outcome"], registry=self.registry)
        self.refresh_seconds = Histogram(
            "strm_bridge_refresh_seconds", "Time to refresh one mapping", registry=self.registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
        )
        self.resolver_seconds = Histogram("strm_bridge_resolver_seconds", "Time of one resolver call",
                                          ["resolver", "outcome"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.probes = Counter("strm_bridge_probes_total", "Link probes by result", ["status"], registry=self.registry)
        self.rescans = Counter("strm_bridge_rescans_total", "Media-server refreshes", ["target", "outcome"],
                               registry=self.registry)
        self._webhook_children: dict[tuple[str, str, str], Any] = {}
        self._refresh_children: dict[tuple[str, str], Any] = {}
        self._collector: DatabaseCollector | None = None

    def watch_database(self, conn: sqlite3.Connection, inflight: Any = None) -> None:
        """Register the scrape-time collector once (mappings by state, queue depths)."""
        if self._collector is None:
            self._collector = DatabaseCollector(conn, inflight)
            self.registry.register(self._collector)

    def watch_play(self, stats: dict[str, int]) -> None:
        self.registry.register(PlayCollector(stats))

    def webhook(self, source: str, kind: str, outcome: str = "accepted") -> None:
        """Counted on every webhook: the labelled child is looked up once, not per request."""
        key = (source, kind, outcome)
        child = self._webhook_children.get(key)
        if child is None:
            child = self._webhook_children[key] = self.webhooks.labels(source, kind, outcome)
        child.inc()

    def refresh(self, trigger: str, outcome: str, seconds: float) -> None:
        child = self._refresh_children.get((trigger, outcome))
        if child is None:
            child = self._refresh_children[(trigger, outcome)] = self.refreshes.labels(trigger, outcome)
        child.inc()
        self.refresh_seconds.observe(seconds)

    def probe(self, status: str) -> None:
        self.probes.labels(status).inc()

    def rescan(self, target: str, outcome: str) -> None:
        self.rescans.labels(target, outcome).inc()


class MeasuredResolver:
    """A resolver with its call time and outcome recorded; everything else is the resolver's own."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.name = getattr(inner, "name", type(inner).__name__)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def resolve(self, request: Any) -> Any:
        from bridge.resolvers.base import EpisodeNotFound

        started = time.monotonic()
        outcome = "error"
        try:
            result = await self._inner.resolve(request)
            outcome = "ok"
            return result
        except EpisodeNotFound:
            outcome = "not_found"
            raise
        finally:
            self._metrics.resolver_seconds.labels(self.name, outcome).observe(time.monotonic() - started)

    async def close(self) -> None:
        await self._inner.close()


def measured(resolvers: list[Any], metrics: Metrics) -> list[Any]:
    return [r if isinstance(r, MeasuredResolver) else MeasuredResolver(r, metrics) for r in resolvers]
