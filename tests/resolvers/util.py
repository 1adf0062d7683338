"""Building requests the way the refresh pipeline does, without repeating every identity field."""
from __future__ import annotations

from typing import Any

from bridge.mappings import Identity
from bridge.resolvers.base import ResolveRequest


def make_request(
    slug: str | None = "show",
    season: int | None = 1,
    episode: int | None = 2,
    *,
    site: str | None = "example.org",
    language: str | None = "German Dub",
    provider: str = "",
    **kwargs: Any,
) -> ResolveRequest:
    identity = Identity(site=site, slug=slug, season=season, episode=episode, language=language, provider=provider)
    return ResolveRequest(identity=identity, **kwargs)
