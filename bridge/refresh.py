"""The refresh pipeline: from "this mapping's link is dead (or about to be)" to a fresh URL in the file.

Order of work, chosen so a crash at any instant loses nothing: the row is marked `refreshing` first, the
file is replaced atomically, then the row and the refresh log are updated in one transaction. A restart
finds `refreshing` rows and reconciles them with what the file holds (`recover`).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from bridge.breaker import CircuitBreaker, MassFailureGuard
from bridge.cache import ResolveCache
from bridge.config import RefreshConfig
from bridge.db import atomic
from bridge.health import record_probe
from bridge.links import Link, LinkRules
from bridge.egress import Egress, EgressDenied
from bridge.mappings import Identity, Mapping, MappingStore
from bridge.metrics import Metrics
from bridge.play.signing import play_link_id
from bridge.probe import ProbeResult, expiry_iso, probe
from bridge.redact import redact_url
from bridge.resolvers.base import EpisodeNotFound, ResolveRequest, Resolved, Resolver, ResolverError
from bridge.strm import (AnchorMissing, FileMissing, InvalidUrl, KeptLink, Library, StrmError, read_strm,
                         remove_temp_files, validate_url)
from bridge.timeutil import now_iso, to_epoch

log = logging.getLogger(__name__)

KEPT_OWN_LINK = "kept_own_link"
"""Write result for a file holding the bridge's own /play/ link: never overwritten by a direct URL."""


class _HoldsOwnLink(Exception):
    """Ends a write whose file holds the bridge's own /play/ link: left as it is, and not a failure."""

# reasons that mean "the URL is known to be bad or about to be": no need to probe the current one first
NO_PROBE_REASONS = ("expiring", "expired", "forced")
MAX_PROVIDER_SWITCHES = 3
NO_RESOLVER = "no resolvers configured (refresh.resolvers is empty): nothing was changed"
INDIRECTION_DOWN = frozenset({500, 501, 503})
"""A stable link's own server failing (its upstream answers are passed on as 4xx or 502)."""
WRITE_THREADS = 4
"""File writes are fsync-bound: past a few threads each write only waits longer; own pool, so a hung resolver
thread or a slow media-server call never delays a write."""
MAX_WRITE_BATCH = 32
"""Rows per write batch: large enough that two commits serve many files, small enough that the writer threads
never idle while a batch is being stored."""
MAX_COOLDOWN_ENTRIES = 20_000
"""Bulk jobs refresh far more than this within one cooldown; the oldest simply lose their cooldown early."""
EXPIRY_SKEW_SECONDS = 60.0
"""A 403 this close to the predicted expiry is the expiry (the provider's clock, or an expiry it rounded down),
not a refusal to back off from: backing off there would leave the episode dead for `backoff_seconds`."""


@dataclass
class RefreshOutcome:
    mapping_id: int
    outcome: str
    """refreshed | unchanged | alive | cooldown | backoff | guarded | not_found | failed | would_refresh | in_progress
    | no_resolver | missing | anchor_missing | not_owned (a stable link: dry run, or found at write time)
    | upstream_dead | indirection_down | link_refused | own_link (a stable link's probe; its file is never written)"""
    detail: str = ""
    old_url: str | None = None
    new_url: str | None = None
    provider: str | None = None
    resolver: str | None = None
    probe_status: str | None = None
    retry_after: float | None = None
    duration_ms: float = 0.0
    rescans: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if redact:
            data["old_url"] = redact_url(self.old_url) if self.old_url else None
            data["new_url"] = redact_url(self.new_url) if self.new_url else None
        return data


@dataclass
class _Write:
    """A refresh that has its new URL and waits for the write stage."""

    mapping: Mapping
    trigger: str
    reason: str
    resolved: Resolved
    started: float
    started_at: str
    done: asyncio.Future[RefreshOutcome]


class _Failed(Exception):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class RefreshPipeline:
    def __init__(
        self,
        store: MappingStore,
        library: Library,
        resolvers: list[Resolver],
        config: RefreshConfig,
        *,
        cache: ResolveCache | None = None,
        metrics: Metrics | None = None,
        on_rewritten: Callable[[Mapping], Awaitable[list[tuple[str, str]]]] | None = None,
        resolver_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        links: LinkRules | None = None,
        egress: Egress | None = None,
    ) -> None:
        self.store = store
        self.library = library
        self.resolvers = resolvers
        self.config = config
        self.cache = cache if cache is not None else ResolveCache(0)
        self.metrics = metrics
        self.on_rewritten = on_rewritten
        """Called with each rewritten row before the batch's commit; must not commit: its writes ride on that one."""
        self.resolver_timeout = resolver_timeout
        self.clock = clock
        self.links = links if links is not None else LinkRules()
        """Which links are ours to replace: AniBridge's, stable_link_patterns and our own are never written."""
        self.egress = egress if egress is not None else Egress()
        self.breakers = {r.name: CircuitBreaker(config.breaker_threshold, config.breaker_reset_seconds, clock) for r in resolvers}
        self.guard = MassFailureGuard(config.mass_failure_window_seconds, config.mass_failure_min_attempts,
                                      config.mass_failure_ratio, clock)
        self._inflight: dict[int, asyncio.Future[RefreshOutcome]] = {}
        self._last_success: OrderedDict[int, float] = OrderedDict()
        self._backoff_until: dict[int, float] = {}
        self._timeout_retried: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._forming: list[_Write] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.resolver_calls = 0

    # ---- lifecycle ---------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # every connection, each redirect hop included, passes the egress guard (never the bridge itself)
            self._session = self.egress.session(connector_args={"limit": 64, "ttl_dns_cache": 300},
                                                headers={"User-Agent": "strm-bridge"})
        return self._session

    @property
    def writer(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="strm-write")
        return self._writer

    async def close(self) -> None:
        while self._batches:  # writes already started are finished and stored, never dropped half way
            await asyncio.gather(*list(self._batches), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # a write in flight finishes; it is never abandoned half way
            self._writer = None
        for resolver in self.resolvers:
            try:
                await resolver.close()
            except Exception:  # pragma: no cover - closing is best effort
                log.exception("closing resolver %s", resolver.name)

    # ---- entry point -------------------------------------------------------------------------------
    async def refresh(self, mapping_id: int, *, trigger: str, reason: str, force: bool = False,
                      dry_run: bool = False) -> RefreshOutcome:
        """One refresh per mapping at a time: concurrent callers share the running attempt's result."""
        if dry_run:
            return await self._plan(mapping_id, reason=reason, force=force)
        done = await self.submit(mapping_id, trigger=trigger, reason=reason, force=force)
        return await asyncio.shield(done)  # a caller giving up does not stop a write half way

    async def submit(self, mapping_id: int, *, trigger: str, reason: str, force: bool = False,
                     known: tuple[Mapping | None, float] | None = None) -> asyncio.Future[RefreshOutcome]:
        """Decide and resolve now; the write joins the next batch. The future resolves once the row is stored.

        Bulk jobs use this to resolve the next items while earlier ones are being written, so the writer threads
        never wait for a resolver and one commit serves a whole batch of rows. `known` is the row as a bulk read
        returned it and when (this pipeline's clock): used unless this pipeline has refreshed the row since.
        """
        running = self._inflight.get(mapping_id)
        if running is not None and not running.done():  # a done one only waits for its callback to leave
            return running
        done: asyncio.Future[RefreshOutcome] = asyncio.get_running_loop().create_future()
        self._inflight[mapping_id] = done
        done.add_done_callback(lambda _: self._inflight.pop(mapping_id) if self._inflight.get(mapping_id) is done
                               else None)
        try:
            staged = await self._prepare(mapping_id, done, trigger=trigger, reason=reason, force=force, known=known)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # mark retrieved: the waiters, if any, re-raise it themselves
            raise
        if isinstance(staged, RefreshOutcome):
            done.set_result(staged)
        else:
            self._stage(staged)
        return done

    # ---- decisions ---------------------------------------------------------------------------------
    def _expired(self, mapping: Mapping, slack: float = 0.0) -> bool:
        expires = mapping.get("expires_at")
        return bool(expires) and to_epoch(expires) - slack <= time.time()

    def _gate(self, mapping: Mapping, force: bool) -> RefreshOutcome | None:
        mapping_id = mapping["id"]
        now = self.clock()
        if not force:
            last = self._last_success.get(mapping_id)
            if last is not None and now - last < self.config.cooldown_seconds:
                return RefreshOutcome(mapping_id, "cooldown", f"refreshed {now - last:.0f}s ago",
                                      old_url=mapping.get("resolved_url"))
        until = self._backoff_until.get(mapping_id)
        if until is not None and now < until and not force:
            return RefreshOutcome(mapping_id, "backoff", "backing off after the provider refused",
                                  old_url=mapping.get("resolved_url"), retry_after=until - now)
        return None

    def _decide(self, mapping: Mapping, result: ProbeResult, remember: bool = True) -> tuple[str, str]:
        """Map the current URL's probe to an action: (resolve|alive|backoff|resolve_other_provider, detail)."""
        status = result.status
        if status == "alive":
            return "alive", "current URL answers"
        if status in ("dead", "other"):
            return "resolve", f"current URL answered {result.http_status}" + (f" ({result.error})" if result.error else "")
        if status == "forbidden":
            if self._expired(mapping, EXPIRY_SKEW_SECONDS) or not mapping.get("expires_at"):
                return "resolve", "403 and the URL is past (or within a minute of) its predicted expiry"
            return "backoff", "403 before the predicted expiry: likely rate limiting or egress binding"
        if status == "rate_limited":
            return "backoff", "429 from the provider"
        if status == "legal":
            return "resolve_other_provider", "451 from the provider"
        # timeout, connection_error, server_error: one re-resolve, then back off
        if mapping["id"] in self._timeout_retried:
            return "backoff", f"{status} again after a re-resolve"
        if remember:
            self._timeout_retried.add(mapping["id"])
        return "resolve", f"{status} on the current URL"

    async def _plan(self, mapping_id: int, *, reason: str, force: bool) -> RefreshOutcome:
        mapping = self.store.get(mapping_id)
        if mapping is None:
            return RefreshOutcome(mapping_id, "not_found", "no such mapping")
        absent = self._absent(mapping)
        if absent is not None:
            return RefreshOutcome(mapping_id, absent[0], absent[1], old_url=mapping.get("resolved_url"))
        link = self.links.classify(mapping.get("resolved_url"))
        if not link.owned:
            return RefreshOutcome(mapping_id, "not_owned", f"{link.detail}: a refresh probes it and never rewrites"
                                  " the file", old_url=link.url)
        gated = self._gate(mapping, force)
        if gated is not None:
            return gated
        if not self.resolvers and self.cache.get(Identity.of(mapping)) is None:
            return RefreshOutcome(mapping_id, "no_resolver", NO_RESOLVER, old_url=mapping.get("resolved_url"))
        if self._needs_probe(mapping, reason, force):
            result = await self._probe(mapping["resolved_url"], mapping)
            record_probe(self.store, mapping, result)  # a dry run writes no file but keeps what it learned
            action, detail = self._decide(mapping, result, remember=False)
            if action not in ("resolve", "resolve_other_provider"):
                return RefreshOutcome(mapping_id, "alive" if action == "alive" else action, detail,
                                      old_url=mapping.get("resolved_url"), probe_status=result.status)
            return RefreshOutcome(mapping_id, "would_refresh", detail, old_url=mapping.get("resolved_url"),
                                  probe_status=result.status)
        return RefreshOutcome(mapping_id, "would_refresh", reason, old_url=mapping.get("resolved_url"))

    def _needs_probe(self, mapping: Mapping, reason: str, force: bool) -> bool:
        if force or reason in NO_PROBE_REASONS or not mapping.get("resolved_url"):
            return False
        return not self._expired(mapping)

    async def _probe(self, url: str, mapping: Mapping) -> ProbeResult:
        headers = mapping.get("resolved_headers") if isinstance(mapping.get("resolved_headers"), dict) else None
        return await probe(self.session, url, headers=headers, timeout=self.config.probe_timeout_seconds)

    # ---- the refresh itself: decide and resolve (per mapping) ---------------------------------------
    async def _prepare(self, mapping_id: int, done: asyncio.Future[RefreshOutcome], *, trigger: str, reason: str,
                       force: bool, known: tuple[Mapping | None, float] | None = None) -> RefreshOutcome | _Write:
        """Everything before the write: gates, probe, decision, resolution. Returns an outcome or a staged write."""
        started = time.perf_counter()
        started_at = now_iso()
        if known is not None and self._last_success.get(mapping_id, -math.inf) < known[1]:
            mapping = known[0]
        else:
            mapping = self.store.get(mapping_id)
        if mapping is None:
            return RefreshOutcome(mapping_id, "not_found", "no such mapping")
        absent = self._absent(mapping)
        if absent is not None:
            return self._leave(mapping, trigger, reason, absent[0], absent[1], started, started_at,
                               {"state": "missing"} if absent[0] == "missing" else {})
        if not self.links.owned(mapping.get("resolved_url")):  # with force too: never replaced as a side effect
            link = self.links.classify(mapping.get("resolved_url"))
            return await self._judge_indirection(mapping, link, trigger, reason, started, started_at)
        gated = self._gate(mapping, force)
        if gated is not None:
            return self._finish(gated, trigger, started)
        old_url = mapping.get("resolved_url")
        identity = Identity.of(mapping)
        exclude: list[str] = []
        known_bad = not force or self._expired(mapping)
        if self._needs_probe(mapping, reason, force):
            current = await self._probe(old_url, mapping)
            action, detail = self._decide(mapping, current)
            # informational: rides on the next commit instead of costing one on the heal's critical path
            self.store.update(mapping_id, {"last_status": current.status, "last_checked_at": now_iso()}, commit=False)
            if action == "alive":
                self._timeout_retried.discard(mapping_id)
                self.store.update(mapping_id, {"state": "ok"})
                return self._finish(RefreshOutcome(mapping_id, "alive", detail, old_url=old_url,
                                                   probe_status=current.status), trigger, started)
            if action == "backoff":
                wait = current.retry_after or self.config.backoff_seconds
                self._backoff_until[mapping_id] = self.clock() + wait
                self.store.log_refresh(mapping_id, trigger=trigger, reason=reason, outcome="backoff", old_url=old_url,
                                       error=detail, started_at=started_at)
                return self._finish(RefreshOutcome(mapping_id, "backoff", detail, old_url=old_url,
                                                   probe_status=current.status, retry_after=wait), trigger, started)
            if action == "resolve_other_provider" and mapping.get("provider_used"):
                exclude.append(mapping["provider_used"])
            if old_url:
                cached = self.cache.get(identity)
                if cached is not None and cached.url == old_url:
                    self.cache.invalidate(identity)
            reason = f"{reason}: {detail}"
        if self.guard.tripped:
            stats = self.guard.stats()
            detail = f"mass-failure guard: {stats['failures']} of {stats['attempts']} recent refreshes failed"
            self.store.log_refresh(mapping_id, trigger=trigger, reason=reason, outcome="guarded", old_url=old_url,
                                   error=detail, started_at=started_at)
            return self._finish(RefreshOutcome(mapping_id, "guarded", detail, old_url=old_url), trigger, started)
        try:
            resolved = await self._resolve(mapping, identity, reason, tuple(exclude))
            if resolved.url == old_url:
                if known_bad:
                    raise _Failed("failed", "resolver returned the same URL that failed")
                return self._finish(RefreshOutcome(mapping_id, "unchanged", "resolver returned the current URL",
                                                   old_url=old_url, new_url=resolved.url), trigger, started)
        except _Failed as failure:
            if failure.outcome == "no_resolver":  # nothing could be tried: not a failure of the link or the row
                return self._leave(mapping, trigger, reason, "no_resolver", failure.detail, started, started_at, {})
            return self._failed(mapping, trigger, reason, failure, started_at, started)
        return _Write(mapping, trigger, reason, resolved, started, started_at, done)

    def _absent(self, mapping: Mapping) -> tuple[str, str] | None:
        """("missing", why) when the file is gone while its library is there; ("anchor_missing", why) when the
        library itself is not (an unmounted share is not a deleted file); None when the file exists."""
        path = mapping.get("strm_path") or ""
        if not path or os.path.lexists(path):
            return None
        try:
            self.library.check_anchors()
        except AnchorMissing as exc:
            return "anchor_missing", f"{exc}: {path} not judged"
        root = next((r for r in self.library.roots if path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep)),
                    None)
        if root is None:
            return None  # outside the roots: the write refuses it with the precise reason
        if not root.is_dir():
            return "anchor_missing", f"library root {root} is not there (unmounted?): {path} not judged"
        return "missing", (f"{path} is gone (deleted or moved): not re-created;"
                           " `strm-bridge mappings prune --missing` retires the mapping")

    def _leave(self, mapping: Mapping, trigger: str, reason: str, outcome: str, detail: str, started: float,
               started_at: str, fields: dict[str, Any], probe_status: str | None = None) -> RefreshOutcome:
        """An attempt that writes no file: the row gets `fields` (and the check time), the log gets its line."""
        self.store.update(mapping["id"], {**fields, "last_checked_at": now_iso()}, commit=False)
        self.store.log_refresh(mapping["id"], trigger=trigger, reason=reason, outcome=outcome,
                               old_url=mapping.get("resolved_url"), error=None if outcome == "alive" else detail[:1000],
                               duration_ms=(time.perf_counter() - started) * 1000, started_at=started_at)
        return self._finish(RefreshOutcome(mapping["id"], outcome, detail, old_url=mapping.get("resolved_url"),
                                           probe_status=probe_status), trigger, started)

    async def _judge_indirection(self, mapping: Mapping, link: Link, trigger: str, reason: str, started: float,
                                 started_at: str) -> RefreshOutcome:
        """A link strm-bridge does not own: ask it once (AniBridge re-resolves its upstream on that very request
        when it is dead), record what it answered, and leave the file byte for byte as it is."""
        # such a link does not expire the way a signed CDN URL does: no predicted expiry keeps the sweep asking it
        if link.kind == "own":
            return self._leave(mapping, trigger, reason, "own_link", f"the file holds {link.detail}: never probed,"
                               " followed or rewritten", started, started_at, {"expires_at": None})
        headers = mapping.get("resolved_headers") if isinstance(mapping.get("resolved_headers"), dict) else None
        result = await probe(self.session, link.url, headers=headers, timeout=self.config.indirection_timeout_seconds)
        outcome, detail, state = indirection_verdict(link, result)
        fields: dict[str, Any] = {"last_status": result.status, "expires_at": None}
        if state:
            fields["state"] = state
        if outcome != "alive":
            log.warning("mapping %s: %s", mapping["id"], detail)
        return self._leave(mapping, trigger, reason, outcome, detail, started, started_at, fields, result.status)

    def _failed(self, mapping: Mapping, trigger: str, reason: str, failure: _Failed, started_at: str,
                started: float) -> RefreshOutcome:
        self.guard.record(False)
        self._record_failure(mapping, trigger, reason, failure, started_at, started)
        return self._finish(RefreshOutcome(mapping["id"], failure.outcome, failure.detail,
                                           old_url=mapping.get("resolved_url")), trigger, started)

    # ---- the write stage: batched, in the order that makes a crash at any instant harmless -------------
    def _stage(self, write: _Write) -> None:
        """Join the batch being formed; a batch starts on the next loop pass with whatever joined it by then."""
        if self._forming is None or len(self._forming) >= MAX_WRITE_BATCH:
            self._forming = []
            task = asyncio.create_task(self._write_batch(self._forming), name="refresh-write-batch")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        self._forming.append(write)

    async def _write_batch(self, batch: list[_Write]) -> None:
        """Mark every row `refreshing` (committed), replace the files, then store rows and log (committed).

        A crash before the first commit changes nothing; between the commits it leaves rows marked
        `refreshing`, which `recover` reconciles with what the files hold; after the second, all is done.
        """
        if self._forming is batch:
            self._forming = None
        try:
            await self._apply(batch)
        except BaseException as exc:
            for write in batch:
                if not write.done.done():
                    if isinstance(exc, asyncio.CancelledError):
                        write.done.cancel()
                    else:
                        write.done.set_exception(exc)
                        write.done.exception()
            raise

    async def _apply(self, batch: list[_Write]) -> None:
        self.store.update_many([(w.mapping["id"], {"state": "refreshing"}) for w in batch])
        await self.store.group_commit.wait()  # durable before any file changes; shared with concurrent batches
        loop = asyncio.get_running_loop()
        # one hand-off per writer thread, not per file: each wake-up of the loop costs as much as a small write
        chunks = [batch[first::WRITE_THREADS] for first in range(min(WRITE_THREADS, len(batch)))]
        written_chunks = await asyncio.gather(*(loop.run_in_executor(self.writer, self._write_files, chunk)
                                                for chunk in chunks))
        results = {id(w): result for chunk, outcome in zip(chunks, written_chunks) for w, result in zip(chunk, outcome)}
        stored: list[tuple[_Write, dict[str, Any]]] = []
        for write in batch:
            result = results[id(write)]
            if isinstance(result, BaseException):
                write.done.set_result(self._write_failed(write, result))
            else:
                stored.append((write, self._written_fields(write)))
        if not stored:
            return
        # rows and their log lines go into the same commit: no await between these two statements
        self.store.update_many([(w.mapping["id"], fields) for w, fields in stored])
        self.store.log_refresh_many([
            {"mapping_id": w.mapping["id"], "trigger": w.trigger, "reason": w.reason, "outcome": "refreshed",
             "old_url": w.mapping.get("resolved_url"), "new_url": w.resolved.url, "started_at": w.started_at,
             "finished_at": fields["resolved_at"], "duration_ms": (time.perf_counter() - w.started) * 1000}
            for w, fields in stored])
        rescans: list[list[tuple[str, str]]] = []
        for write, written in stored:  # the media servers' rescans are queued in the same commit as the rows
            changed = results[id(write)] is not KEPT_OWN_LINK  # a kept /play/ file needs no rescan
            rescans.append(await self.on_rewritten({**write.mapping, **written}) if self.on_rewritten and changed else [])
        await self.store.group_commit.wait()
        for (write, written), queued in zip(stored, rescans):
            mapping_id = write.mapping["id"]
            self.guard.record(True)
            self._note_success(mapping_id)
            self._backoff_until.pop(mapping_id, None)
            self._timeout_retried.discard(mapping_id)
            outcome = RefreshOutcome(mapping_id, "refreshed", write.reason, old_url=write.mapping.get("resolved_url"),
                                     new_url=write.resolved.url, provider=write.resolved.provider,
                                     resolver=write.resolved.resolver, rescans=queued)
            write.done.set_result(self._finish(outcome, write.trigger, write.started))

    def _write_files(self, chunk: list[_Write]) -> list[bool | str | BaseException]:
        """Runs in a writer thread: each file on its own, a refusal or error for one does not stop the next."""
        results: list[bool | BaseException] = []
        for write in chunk:
            try:
                # the resolver's URL differs from the row's, so the read that spots an unchanged file is skipped;
                # the one read left is `keep`'s, on the write's own folder descriptor right before the write
                results.append(self.library.write(write.mapping["strm_path"], write.resolved.url, compare=False,
                                                  create=False, keep=self._kept))
            except _HoldsOwnLink:
                results.append(KEPT_OWN_LINK)  # the file points at /play/: only the row takes the new URL
            except Exception as exc:
                results.append(exc)
        return results

    def _written_fields(self, write: _Write) -> dict[str, Any]:
        new_url = write.resolved.url
        now = now_iso()
        return {
            "resolved_url": new_url,
            "resolved_headers": write.resolved.headers,
            "provider_used": write.resolved.provider or write.mapping.get("provider_used"),
            "resolved_at": now,
            "expires_at": write.resolved.expires_at or expiry_iso(new_url, time.time()),
            "state": "ok",
            "last_status": "alive" if self.config.probe_new_url else None,
            "last_checked_at": now,
            "fail_count": 0,
        }

    def _kept(self, current_url: str) -> bool:
        """Runs in a writer thread on what the file holds right before the write: True leaves it alone.

        A stable link of the bridge's own is never replaced by a direct URL either, but that is the expected
        case rather than a refusal: `_HoldsOwnLink` ends the write without a KeptLink.
        """
        if play_link_id(current_url) is not None:
            raise _HoldsOwnLink
        return not self.links.owned(current_url)

    def _write_failed(self, write: _Write, exc: BaseException) -> RefreshOutcome:
        mapping = write.mapping
        if isinstance(exc, (FileMissing, KeptLink)):  # deleted, or given a stable link, since the decision
            missing = isinstance(exc, FileMissing)
            state = "missing" if missing else (mapping.get("state") or "unknown")
            return self._leave(mapping, write.trigger, write.reason, "missing" if missing else "not_owned", str(exc),
                               write.started, write.started_at, {"state": state})
        self.store.update(mapping["id"], {"state": mapping.get("state") or "unknown"}, commit=False)
        if isinstance(exc, StrmError):
            detail = f"{exc.code}: {exc}"
        elif isinstance(exc, OSError):
            detail = f"write failed: {exc}"
        else:  # a bug, not a refusal: keep the traceback, still fail only this item
            log.error("writing %s failed", mapping["strm_path"], exc_info=exc)
            detail = f"write failed: {type(exc).__name__}: {exc}"
        return self._failed(mapping, write.trigger, write.reason, _Failed("failed", detail), write.started_at,
                            write.started)

    def _note_success(self, mapping_id: int) -> None:
        """Remember for the cooldown only: oldest first, so expired entries leave from the front in O(1)."""
        now = self.clock()
        self._last_success.pop(mapping_id, None)
        self._last_success[mapping_id] = now
        horizon = now - self.config.cooldown_seconds
        while self._last_success and (len(self._last_success) > MAX_COOLDOWN_ENTRIES
                                      or next(iter(self._last_success.values())) < horizon):
            self._last_success.popitem(last=False)

    def _record_failure(self, mapping: Mapping, trigger: str, reason: str, failure: _Failed, started_at: str,
                        started: float) -> None:
        fail_count = int(mapping.get("fail_count") or 0) + 1
        state = "broken" if failure.outcome == "not_found" or fail_count >= 3 else "dead"
        self.store.update(mapping["id"], {"state": state, "fail_count": fail_count,
                                          "last_checked_at": now_iso()}, commit=False)
        self.store.log_refresh(mapping["id"], trigger=trigger, reason=reason, outcome=failure.outcome,
                               old_url=mapping.get("resolved_url"), error=failure.detail[:1000],
                               duration_ms=(time.perf_counter() - started) * 1000, started_at=started_at,
                               commit=False)
        # a plain commit, not `with conn`: a rollback would also undo other refreshes' uncommitted marks
        self.store.conn.commit()
        log.warning("refresh of mapping %s failed: %s", mapping["id"], failure.detail)

    def _finish(self, outcome: RefreshOutcome, trigger: str, started: float) -> RefreshOutcome:
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        if self.metrics is not None:
            self.metrics.refresh(trigger, outcome.outcome, outcome.duration_ms / 1000)
        return outcome

    async def _resolve(self, mapping: Mapping, identity: Identity, reason: str, exclude: tuple[str, ...]) -> Resolved:
        """Cache, then each resolver in order (skipping open breakers), then validate and probe the answer."""
        cached = self.cache.get(identity)
        if cached is not None and cached.url != mapping.get("resolved_url") and not (
            cached.provider and cached.provider in exclude
        ):
            return cached
        if not self.resolvers:
            raise _Failed("no_resolver", NO_RESOLVER)
        errors: list[str] = []
        not_found = 0
        for resolver in self.resolvers:
            breaker = self.breakers[resolver.name]
            if not breaker.allow():
                errors.append(f"{resolver.name}: circuit open")
                continue
            excluded = list(exclude)
            for _ in range(MAX_PROVIDER_SWITCHES):
                request = ResolveRequest(identity=identity, source_url=mapping.get("source_url"),
                                         previous_url=mapping.get("resolved_url"), reason=reason,
                                         strm_path=mapping.get("strm_path"), exclude_providers=tuple(excluded))
                try:
                    self.resolver_calls += 1
                    async with asyncio.timeout(self.resolver_timeout):  # cheaper than wait_for: no extra task
                        resolved = await resolver.resolve(request)
                    resolved = replace(resolved, resolver=resolver.name)
                    validate_url(resolved.url)
                    await self.egress.check_url(resolved.url)
                    if self.config.probe_new_url:
                        check = await self._probe(resolved.url, {"resolved_headers": resolved.headers})
                        if check.status == "legal" and resolved.provider:
                            excluded.append(resolved.provider)
                            errors.append(f"{resolver.name}: provider {resolved.provider} answered 451")
                            continue
                        if check.status != "alive":
                            raise ResolverError(f"new URL does not answer: {check.status} {check.http_status or ''}".strip()
                                                + (f" ({check.error})" if check.error else ""))
                except EpisodeNotFound as exc:
                    breaker.success()  # an authoritative answer is not a resolver fault
                    not_found += 1
                    errors.append(f"{resolver.name}: episode not found ({exc})")
                    break
                except (ResolverError, InvalidUrl, EgressDenied, TimeoutError) as exc:
                    breaker.failure()
                    self.cache.invalidate(identity)
                    detail = str(exc) or type(exc).__name__
                    if isinstance(exc, TimeoutError):
                        detail = f"timed out after {self.resolver_timeout:.0f}s"
                    errors.append(f"{resolver.name}: {detail[:300]}")
                    break
                except Exception as exc:  # a crashing plugin must not take the pipeline down
                    breaker.failure()
                    self.cache.invalidate(identity)
                    errors.append(f"{resolver.name}: crashed with {type(exc).__name__}: {str(exc)[:200]}")
                    log.exception("resolver %s crashed", resolver.name)
                    break
                else:
                    breaker.success()
                    previous = self.cache.get(identity)
                    if previous is not None and urlsplit(previous.url).hostname != urlsplit(resolved.url).hostname:
                        self.cache.invalidate(identity)
                    self.cache.put(identity, resolved)
                    return resolved
        outcome = "not_found" if not_found and not_found == len(errors) else "failed"
        raise _Failed(outcome, "; ".join(errors) or "no resolver could run")

    # ---- crash recovery ----------------------------------------------------------------------------
    async def recover(self) -> list[dict[str, Any]]:
        """Reconcile rows a crash left `refreshing`: adopt the URL the file now holds, or restore the state.

        A file replaced before the crash changed after its media servers last read it, and its rescans were to be
        queued in the commit the crash prevented: they are queued now, with the adopted row. Without them the
        server keeps playing the old, dead URL it cached, and the next failure finds the file's link alive.
        A file holding the bridge's own /play/ link was never written (only its row takes new URLs): the row keeps
        the URL the link leads to.
        """
        report = []
        for mapping in self.store.search(state="refreshing", limit=100_000)[0]:
            path = mapping["strm_path"]
            folder = path.rsplit("/", 1)[0]
            removed = remove_temp_files(folder) if folder else 0
            try:
                current = read_strm(path)
            except OSError:
                current = None
            if current and current != mapping.get("resolved_url"):
                try:
                    validate_url(current)
                except InvalidUrl:
                    current = None
            adopt = bool(current) and current != mapping.get("resolved_url") and play_link_id(current) is None
            fields = {"resolved_url": current, "resolved_at": now_iso(), "expires_at": expiry_iso(current),
                      "state": "ok", "fail_count": 0} if adopt and current else {}
            rescans: list[tuple[str, str]] = []
            if adopt and self.on_rewritten is not None:
                # uncommitted, so they land with the row below; a crash before that commit recovers it all again
                rescans = await self.on_rewritten({**mapping, **fields})
            with atomic(self.store.conn):
                if adopt:
                    self.store.update(mapping["id"], fields, commit=False)
                    self.store.log_refresh(mapping["id"], trigger="recovery", reason="restart after crash",
                                           outcome="recovered", old_url=mapping.get("resolved_url"),
                                           new_url=current, commit=False)
                    action = "adopted file URL"
                elif current is None and (self._absent(mapping) or ("",))[0] == "missing":
                    self.store.update(mapping["id"], {"state": "missing"}, commit=False)  # deleted meanwhile
                    action = "missing"
                else:
                    self.store.update(mapping["id"], {"state": "unknown"}, commit=False)
                    action = "restored"
            report.append({"mapping_id": mapping["id"], "action": action, "temp_files_removed": removed,
                           "rescans": rescans})
        return report



def indirection_verdict(link: Link, result: ProbeResult) -> tuple[str, str, str | None]:
    """(outcome, detail, new state or None) for the probe of a link strm-bridge does not own."""
    code = result.http_status
    kept = "the file is left as it is"
    if result.status == "alive":
        return "alive", f"{link.detail} answers {code}; {kept}", "ok"
    if code is None or code in INDIRECTION_DOWN:
        why = result.error or f"{code}"
        return "indirection_down", f"{link.detail}: its server is down or failing ({why}); {kept}", None
    if code == 401:
        return "link_refused", (f"{link.detail} refused the link (401: its signature or API key is no longer"
                                f" accepted); {kept}"), "dead"
    again = " after re-resolving it for this request" if link.re_resolves else ""
    return "upstream_dead", f"{link.detail} answered {code}{again}: its upstream is dead; {kept}", "dead"
