"""Prometheus metrics, on a registry per service instance so tests can build many apps in one process."""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter("strm_bridge_webhooks_total", "Webhooks received", ["source", "kind"], registry=self.registry)
        self.failures = Counter("strm_bridge_failures_total", "Playback failures detected", ["source", "reason"], registry=self.registry)
        self.refreshes = Counter("strm_bridge_refreshes_total", "Refresh outcomes", ["trigger", "outcome"], registry=self.registry)
        self.refresh_seconds = Histogram(
            "strm_bridge_refresh_seconds", "Time to refresh one mapping", registry=self.registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
        )
        self.rescans = Counter("strm_bridge_rescans_total", "Media-server refreshes sent", ["target"], registry=self.registry)
        self._webhook_children: dict[tuple[str, str], Any] = {}
        self._refresh_children: dict[tuple[str, str], Any] = {}

    def webhook(self, source: str, kind: str) -> None:
        """Counted on every webhook: the labelled child is looked up once, not per request."""
        child = self._webhook_children.get((source, kind))
        if child is None:
            child = self._webhook_children[(source, kind)] = self.webhooks.labels(source, kind)
        child.inc()

    def refresh(self, trigger: str, outcome: str, seconds: float) -> None:
        child = self._refresh_children.get((trigger, outcome))
        if child is None:
            child = self._refresh_children[(trigger, outcome)] = self.refreshes.labels(trigger, outcome)
        child.inc()
        self.refresh_seconds.observe(seconds)
