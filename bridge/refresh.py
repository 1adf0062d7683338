"""The refresh pipeline: from "this mapping's link is dead (or about to be)" to a fresh URL in the file.

Order of work, chosen so a crash at any instant loses nothing: the row is marked `refreshing` first, the
file is replaced atomically, then the row and the refresh log are updated in one transaction. A restart
finds `refreshing` rows and reconciles them with what the file holds (`recover`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from bridge.breaker import CircuitBreaker, MassFailureGuard
from bridge.cache import ResolveCache
from bridge.config import RefreshConfig
from bridge.mappings import Identity, Mapping, MappingStore
from bridge.metrics import Metrics
from bridge.probe import ProbeResult, expiry_iso, probe
from bridge.redact import redact_url
from bridge.resolvers.base import EpisodeNotFound, ResolveRequest, Resolved, Resolver, ResolverError
from bridge.strm import InvalidUrl, Library, StrmError, read_strm, remove_temp_files, validate_url
from bridge.timeutil import now_iso, to_epoch

log = logging.getLogger(__name__)

# reasons that mean "the URL is known to be bad or about to be": no need to probe the current one first
NO_PROBE_REASONS = ("expiring", "expired", "forced")
MAX_PROVIDER_SWITCHES = 3
WRITE_THREADS = 4
"""File writes are fsync-bound: past a few threads each write only waits longer; own pool, so a hung resolver
thread or a slow media-server call never delays a write."""
MAX_COOLDOWN_ENTRIES = 20_000
"""Bulk jobs refresh far more than this within one cooldown; the oldest simply lose their cooldown early."""


@dataclass
class RefreshOutcome:
    mapping_id: int
    outcome: str
    """refreshed | unchanged | alive | cooldown | backoff | guarded | not_found | failed | would_refresh | in_progress"""
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
    ) -> None:
        self.store = store
        self.library = library
        self.resolvers = resolvers
        self.config = config
        self.cache = cache if cache is not None else ResolveCache(0)
        self.metrics = metrics
        self.on_rewritten = on_rewritten
        self.resolver_timeout = resolver_timeout
        self.clock = clock
        self.breakers = {r.name: CircuitBreaker(config.breaker_threshold, config.breaker_reset_seconds, clock) for r in resolvers}
        self.guard = MassFailureGuard(config.mass_failure_window_seconds, config.mass_failure_min_attempts,
                                      config.mass_failure_ratio, clock)
        self._inflight: dict[int, asyncio.Future[RefreshOutcome]] = {}
        self._last_success: OrderedDict[int, float] = OrderedDict()
        self._backoff_until: dict[int, float] = {}
        self._timeout_retried: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._writer: ThreadPoolExecutor | None = None
        self.resolver_calls = 0

    # ---- lifecycle ---------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                headers={"User-Agent": "strm-bridge"},
            )
        return self._session

    @property
    def writer(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="strm-write")
        return self._writer

    async def close(self) -> None:
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
        running = self._inflight.get(mapping_id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[RefreshOutcome] = asyncio.get_running_loop().create_future()
        self._inflight[mapping_id] = future
        try:
            outcome = await self._refresh(mapping_id, trigger=trigger, reason=reason, force=force)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters, if any, re-raise it themselves
            raise
        finally:
            del self._inflight[mapping_id]

    # ---- decisions ---------------------------------------------------------------------------------
    def _expired(self, mapping: Mapping) -> bool:
        expires = mapping.get("expires_at")
        return bool(expires) and to_epoch(expires) <= time.time()

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
            return "resolve", f"current URL answered {result.http_status}"
        if status == "forbidden":
            if self._expired(mapping) or not mapping.get("expires_at"):
                return "resolve", "403 and the URL is past its predicted expiry"
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
        gated = self._gate(mapping, force)
        if gated is not None:
            return gated
        if self._needs_probe(mapping, reason, force):
            result = await self._probe(mapping["resolved_url"], mapping)
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

    # ---- the refresh itself ------------------------------------------------------------------------
    async def _refresh(self, mapping_id: int, *, trigger: str, reason: str, force: bool) -> RefreshOutcome:
        started = time.perf_counter()
        started_at = now_iso()
        mapping = self.store.get(mapping_id)
        if mapping is None:
            return RefreshOutcome(mapping_id, "not_found", "no such mapping")
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
            new_url = resolved.url
            if new_url == old_url:
                if known_bad:
                    raise _Failed("failed", "resolver returned the same URL that failed")
                return self._finish(RefreshOutcome(mapping_id, "unchanged", "resolver returned the current URL",
                                                   old_url=old_url, new_url=new_url), trigger, started)
            self.store.update(mapping_id, {"state": "refreshing"}, commit=False)
            await self.store.group_commit.wait()  # durable before the file changes; shared with concurrent refreshes
            try:
                await asyncio.get_running_loop().run_in_executor(self.writer, self.library.write,
                                                                 mapping["strm_path"], new_url)
            except (StrmError, OSError) as exc:
                self.store.update(mapping_id, {"state": mapping.get("state") or "unknown"})
                detail = f"{exc.code}: {exc}" if isinstance(exc, StrmError) else f"write failed: {exc}"
                raise _Failed("failed", detail) from None
        except _Failed as failure:
            self.guard.record(False)
            self._record_failure(mapping, trigger, reason, failure, started_at, started)
            return self._finish(RefreshOutcome(mapping_id, failure.outcome, failure.detail, old_url=old_url),
                                trigger, started)
        self.guard.record(True)
        expires = resolved.expires_at or expiry_iso(new_url, time.time())
        now = now_iso()
        finished_ms = (time.perf_counter() - started) * 1000
        written = {
            "resolved_url": new_url,
            "resolved_headers": resolved.headers,
            "provider_used": resolved.provider or mapping.get("provider_used"),
            "resolved_at": now,
            "expires_at": expires,
            "state": "ok",
            "last_status": "alive" if self.config.probe_new_url else None,
            "last_checked_at": now,
            "fail_count": 0,
        }
        # row and log land in the same commit (no await between them); concurrent refreshes share it
        self.store.update(mapping_id, written, commit=False)
        self.store.log_refresh(mapping_id, trigger=trigger, reason=reason, outcome="refreshed", old_url=old_url,
                               new_url=new_url, duration_ms=finished_ms, started_at=started_at,
                               finished_at=now, commit=False)
        await self.store.group_commit.wait()
        self._note_success(mapping_id)
        self._backoff_until.pop(mapping_id, None)
        self._timeout_retried.discard(mapping_id)
        outcome = RefreshOutcome(mapping_id, "refreshed", reason, old_url=old_url, new_url=new_url,
                                 provider=resolved.provider, resolver=resolved.resolver)
        if self.on_rewritten is not None:
            outcome.rescans = await self.on_rewritten({**mapping, **written})
        return self._finish(outcome, trigger, started)

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
        with self.store.conn:
            self.store.update(mapping["id"], {"state": state, "fail_count": fail_count,
                                              "last_checked_at": now_iso()}, commit=False)
            self.store.log_refresh(mapping["id"], trigger=trigger, reason=reason, outcome=failure.outcome,
                                   old_url=mapping.get("resolved_url"), error=failure.detail[:1000],
                                   duration_ms=(time.perf_counter() - started) * 1000, started_at=started_at,
                                   commit=False)
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
            raise _Failed("failed", "no resolvers configured (refresh.resolvers is empty)")
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
                    if self.config.probe_new_url:
                        check = await self._probe(resolved.url, {"resolved_headers": resolved.headers})
                        if check.status == "legal" and resolved.provider:
                            excluded.append(resolved.provider)
                            errors.append(f"{resolver.name}: provider {resolved.provider} answered 451")
                            continue
                        if check.status != "alive":
                            raise ResolverError(f"new URL does not answer: {check.status} {check.http_status or ''}".strip())
                except EpisodeNotFound as exc:
                    breaker.success()  # an authoritative answer is not a resolver fault
                    not_found += 1
                    errors.append(f"{resolver.name}: episode not found ({exc})")
                    break
                except (ResolverError, InvalidUrl, TimeoutError) as exc:
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
    def recover(self) -> list[dict[str, Any]]:
        """Reconcile rows a crash left `refreshing`: adopt the URL the file now holds, or restore the state."""
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
            with self.store.conn:
                if current and current != mapping.get("resolved_url"):
                    self.store.update(mapping["id"], {"resolved_url": current, "resolved_at": now_iso(),
                                                      "expires_at": expiry_iso(current), "state": "ok",
                                                      "fail_count": 0}, commit=False)
                    self.store.log_refresh(mapping["id"], trigger="recovery", reason="restart after crash",
                                           outcome="recovered", old_url=mapping.get("resolved_url"),
                                           new_url=current, commit=False)
                    action = "adopted file URL"
                else:
                    self.store.update(mapping["id"], {"state": "unknown"}, commit=False)
                    action = "restored"
            report.append({"mapping_id": mapping["id"], "action": action, "temp_files_removed": removed})
        return report

