"""The resolver contract: given what an episode is and why its link failed, produce a fresh URL."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bridge.mappings import Identity


@dataclass(frozen=True)
class ResolveRequest:
    identity: Identity
    source_url: str | None = None
    previous_url: str | None = None
    reason: str = "manual"
    strm_path: str | None = None
    exclude_providers: tuple[str, ...] = ()
    """Providers that already failed for this refresh (e.g. answered 451); try the next one."""


@dataclass(frozen=True)
class Resolved:
    url: str
    headers: dict[str, str] | None = None
    provider: str | None = None
    expires_at: str | None = None
    """UTC ISO-8601 when the resolver knows it; otherwise predicted from the URL."""
    resolver: str = ""


class ResolverError(Exception):
    """The resolver could not produce a URL this time (counts toward its circuit breaker)."""


class EpisodeNotFound(ResolverError):
    """The resolver answered authoritatively that the episode does not exist there."""


@runtime_checkable
class Resolver(Protocol):
    name: str

    async def resolve(self, request: ResolveRequest) -> Resolved: ...

    async def close(self) -> None: ...


@dataclass
class ResolverContext:
    """What the registry hands to a resolver factory besides its own options section."""

    user_agent: str = "strm-bridge"
    egress: Any = None
    """A bridge.egress.Egress: resolvers that make HTTP calls open their sessions through it."""
    extra: dict[str, Any] = field(default_factory=dict)
