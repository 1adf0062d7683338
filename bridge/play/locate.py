"""Which upstream URL a play request should use now, re-resolving through the refresh pipeline when needed.

Every re-resolve goes through `RefreshPipeline.refresh`, so it shares the single flight with webhooks and
the sweep (ten viewers pressing play on one dead episode make one resolver call), is logged with trigger
`play`, and heals a `.strm` that holds a direct URL. A `/play/` file itself is never rewritten (refresh.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bridge.mappings import Mapping, MappingStore
from bridge.play.signing import play_link_id
from bridge.probe import egress_bound
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.refresh import RefreshPipeline
from bridge.timeutil import to_epoch

log = logging.getLogger(__name__)

TRIGGER = "play"
EXPIRY_SLACK_SECONDS = 2.0
"""A link this close to its predicted expiry is treated as expired: the request would race the CDN's clock."""
USABLE_OUTCOMES = ("refreshed", "unchanged", "alive", "cooldown", "in_progress")


class PlayUnavailable(Exception):
    """No usable upstream for this mapping; `status` is what the player gets (404 gone, 502/504 upstream)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Upstream:
    url: str
    headers: dict[str, str]


def upstream_of(mapping: Mapping) -> Upstream:
    headers = mapping.get("resolved_headers")
    return Upstream(mapping["resolved_url"], dict(headers) if isinstance(headers, dict) else {})


def seconds_left(mapping: Mapping, now: float | None = None) -> float | None:
    expires = mapping.get("expires_at")
    if not expires:
        return None
    try:
        return to_epoch(expires) - (time.time() if now is None else now)
    except ValueError:
        return None


def needs_proxy(mapping: Mapping) -> bool:
    """`auto` mode: a 302 cannot carry headers, and an IP/ASN-bound link only works from the bridge's egress."""
    headers = mapping.get("resolved_headers")
    if isinstance(headers, dict) and headers:
        return True
    url = mapping.get("resolved_url")
    return bool(url) and egress_bound(url)


class Locator:
    def __init__(self, store: MappingStore, pipeline: "RefreshPipeline") -> None:
        self.store = store
        self.pipeline = pipeline

    def get(self, mapping_id: int) -> Mapping | None:
        return self.store.get(mapping_id)

    def why_refresh(self, mapping: Mapping, margin: float) -> tuple[str, bool] | None:
        """(reason, force) when the mapping's URL must be re-resolved before use; None when it can be used."""
        url = mapping.get("resolved_url")
        if not url:
            return "expired", True
        if play_link_id(url) is not None:
            return "expired", True  # a URL pointing at a bridge is never followed
        left = seconds_left(mapping)
        if left is not None and left <= EXPIRY_SLACK_SECONDS:
            return "expired", True
        if mapping.get("state") in ("dead", "broken"):
            return "dead", False  # the pipeline probes first: a link that answers again is kept
        if left is not None and left <= margin:
            return "expiring", False  # the cooldown may refuse; the link still works for a while
        return None

    async def current(self, mapping: Mapping, margin: float) -> Mapping:
        """The mapping with a URL worth using now, re-resolving first when it is expired, expiring or dead."""
        why = self.why_refresh(mapping, margin)
        if why is None:
            return mapping
        reason, force = why
        return await self._refresh(mapping, reason, force, required=force)

    async def after_failure(self, mapping: Mapping, failed_url: str, detail: str) -> Mapping:
        """The upstream failed during a request: one re-resolve, unless someone already replaced that URL."""
        fresh = self.store.get(mapping["id"])
        if fresh is None:
            raise PlayUnavailable(404, "not_found", "the mapping was deleted")
        if fresh.get("resolved_url") and fresh["resolved_url"] != failed_url and play_link_id(fresh["resolved_url"]) is None:
            return fresh
        return await self._refresh(fresh, f"upstream failed during play: {detail}", True, required=True)

    async def _refresh(self, mapping: Mapping, reason: str, force: bool, *, required: bool) -> Mapping:
        outcome = await self.pipeline.refresh(mapping["id"], trigger=TRIGGER, reason=reason, force=force)
        fresh = self.store.get(mapping["id"])
        if fresh is None:
            raise PlayUnavailable(404, "not_found", "the mapping was deleted")
        usable = fresh.get("resolved_url") and play_link_id(fresh["resolved_url"]) is None
        if outcome.outcome in USABLE_OUTCOMES and usable:
            return fresh
        if not required and usable:
            return fresh  # an expiring or suspect link that could not be replaced still beats no link
        if outcome.outcome == "not_found":
            raise PlayUnavailable(404, "episode_gone", "the resolvers say this episode no longer exists")
        raise PlayUnavailable(502, "upstream_unavailable", f"could not re-resolve: {outcome.outcome} {outcome.detail}"[:500])
