"""Renewing links before anyone sees them fail: mappings whose predicted expiry is near are refreshed."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from bridge.background import BackgroundLoop
from bridge.mappings import MappingStore
from bridge.refresh import RefreshOutcome, RefreshPipeline

if TYPE_CHECKING:
    from bridge.health import CheckReport, LinkChecker

log = logging.getLogger(__name__)


async def _repeat(step: Callable[[], Awaitable[object]], interval: Callable[[], float], failed: str) -> None:
    """`step` every `interval()` seconds until cancelled; one that raises is logged, and the loop keeps running."""
    while True:
        try:
            await step()
        except Exception:  # pragma: no cover - the sweep and the check must keep running
            log.exception(failed)
        await asyncio.sleep(interval())


class Sweeper:
    def __init__(self, store: MappingStore, pipeline: RefreshPipeline, *, interval_seconds: float,
                 margin_seconds: float, concurrency: int, batch: int = 1000,
                 checker: "LinkChecker | None" = None, check_interval_seconds: float = 0.0) -> None:
        self.store = store
        self.pipeline = pipeline
        self.interval = interval_seconds
        self.margin = margin_seconds
        self.concurrency = max(1, concurrency)
        self.batch = batch
        self._worker = BackgroundLoop("expiry-sweep", self._loop)
        self.checker = checker
        self.check_interval = check_interval_seconds
        self._checks = BackgroundLoop("link-check", self._check_loop)

    async def run_once(self) -> list[RefreshOutcome]:
        ids = self.store.expiring_ids(self.margin, limit=self.batch)
        if not ids:
            return []
        limit = asyncio.Semaphore(self.concurrency)

        async def one(mapping_id: int) -> RefreshOutcome:
            async with limit:
                return await self.pipeline.refresh(mapping_id, trigger="sweep", reason="expiring")

        outcomes = await asyncio.gather(*(one(i) for i in ids))
        refreshed = sum(1 for o in outcomes if o.outcome == "refreshed")
        log.info("sweep: %d expiring mapping(s), %d refreshed", len(ids), refreshed)
        return list(outcomes)

    async def _loop(self) -> None:
        await _repeat(self.run_once, lambda: self.interval, "sweep failed")

    async def check_once(self) -> "CheckReport | None":
        """Probe the rows checked longest ago (never checked first) and record what they answer."""
        if self.checker is None:
            return None
        ids = self.checker.due_ids(self.check_interval, limit=self.batch)
        if not ids:
            return None
        report = await self.checker.check(ids)
        log.info("link check: %d mapping(s): %s", len(ids), report.counts)
        return report

    async def _check_loop(self) -> None:
        await _repeat(self.check_once, lambda: self.check_interval, "link check failed")

    def start(self) -> None:
        if self.interval > 0:
            self._worker.start()
        if self.check_interval > 0 and self.checker is not None:
            self._checks.start()

    async def stop(self) -> None:
        await self._worker.stop()
        await self._checks.stop()
        if self.checker is not None:
            await self.checker.close()
