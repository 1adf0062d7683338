"""Building a refresh pipeline against the fake provider, with real files on disk."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.config import RefreshConfig
from bridge.mappings import MappingStore
from bridge.refresh import RefreshPipeline
from bridge.resolvers.base import ResolveRequest, Resolved, ResolverError
from bridge.resolvers.registry import create_resolver
from bridge.strm import Library
from tests.fakes.provider import FakeProvider

FAST = RefreshConfig(probe_timeout_seconds=1.0, cooldown_seconds=300, backoff_seconds=30,
                     mass_failure_min_attempts=1000)


def pipeline(store: MappingStore, library: Library, resolvers: list[Any], **overrides: Any) -> RefreshPipeline:
    timeout = overrides.pop("resolver_timeout", 5.0)
    clock = overrides.pop("clock", time.monotonic)
    cache = overrides.pop("cache", None)
    return RefreshPipeline(store, library, resolvers, replace(FAST, **overrides), resolver_timeout=timeout,
                           clock=clock, cache=cache)


def http_resolver(provider: FakeProvider, timeout: float = 2.0) -> Any:
    return create_resolver("http", {"url": f"{provider.base_url}/resolve", "timeout_seconds": timeout})


def add_mapping(store: MappingStore, root: Path, provider: FakeProvider, episode: int, *, url: str | None = None,
                slug: str = "show", expired: bool = True, **extra: Any) -> dict[str, Any]:
    """An episode the provider knows, whose .strm holds a URL that expired a minute ago (unless told otherwise)."""
    key = f"{slug}/1/{episode}"
    provider.add_episode(key)
    if url is None:
        url = provider.sign(key, expires_at=time.time() - 60) if expired else provider.sign(key, ttl=1800)
    path = root / slug / f"S01E{episode:02d}.strm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")
    return store.upsert({"strm_path": str(path), "resolved_url": url, "site": "fake", "slug": slug, "season": 1,
                         "episode": episode, "language": "German Dub", "state": "ok", **extra})


class ScriptedResolver:
    """An in-process resolver whose answers a test scripts; records every request."""

    def __init__(self, name: str, answers: list[Any]) -> None:
        self.name = name
        self.answers = answers
        self.requests: list[ResolveRequest] = []

    async def resolve(self, request: ResolveRequest) -> Resolved:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return await answer(request)
        return answer

    async def close(self) -> None:
        pass


def failing(name: str = "broken") -> ScriptedResolver:
    return ScriptedResolver(name, [ResolverError("upstream down")])
