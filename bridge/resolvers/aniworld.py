"""The `aniworld` resolver: re-extract a hoster stream for an aniworld.to or s.to episode.

Uses the `aniworld` package 5.x (extra `strm-bridge[aniworld]`). It is imported when this resolver is
created, never before: it is heavy, and importing it writes `~/.aniworld/.env` (its settings file; set
ANIWORLD_INSTALL_FOLDER to move it). Its network code is synchronous (niquests; VOE may even start a browser
for a captcha), so every extraction runs in a worker thread with an overall deadline.

Episode pages (checked against aniworld 5.3.0 `config.py`):
  aniworld.to  https://aniworld.to/anime/stream/<slug>/staffel-<n>/episode-<m>   (ANIWORLD_EPISODE_PATTERN)
  s.to         https://serienstream.to/serie/<slug>/staffel-<n>/episode-<m>     (SERIENSTREAM_EPISODE_PATTERN;
               s.to is a retired host the package rewrites onto serienstream.to, and there is no /stream/)
Season 0 on aniworld.to means the films page: .../<slug>/filme/film-<m>.
  megakino     only from the page URL (`source_url`): the package's MegaKinoEpisode takes
               https://megakino<...>/(films|serials|action)/<id>-<name>.html (MEGAKINO_SERIES_PATTERN) and picks a
               serial's episode with a `#mkep=<n>` suffix; German Dub only. There is no slug-to-page rule (AniBridge
               looks slugs up in the site's sitemap), so a megakino identity without that URL is refused.
Any other site is refused with an error that names it: it must never be sent to another site's pages.
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from bridge.resolvers._common import Options, redact_text, redact_url
from bridge.resolvers.base import Resolved, ResolverContext, ResolveRequest, ResolverError

OPTIONS = ("language", "providers", "timeout_seconds")
DEFAULT_PROVIDERS = ("VOE", "Filemoon", "Vidmoly", "Vidoza", "Doodstream")
NOT_INSTALLED = "resolvers.aniworld: the 'aniworld' package is not installed; pip install 'strm-bridge[aniworld]'"

ANIWORLD_SITES = ("aniworld.to", "aniworld", "www.aniworld.to")
STO_SITES = ("s.to", "sto", "serienstream.to", "serienstream", "serienstream.cx")
MEGAKINO_SITE = re.compile(r"^(?:www\.)?megakino[\w-]*(?:\.[a-z0-9.-]+)?$")
"""AniBridge's site name `megakino`, or one of the site's rotating hostnames (megakino1.to, megakino.cx, ...)."""

# Our identities carry a language as a code or a label; the package wants its own labels (config.LANG_LABELS).
_LANGUAGE_ALIASES = {
    "German Dub": ("german dub", "german", "deutsch", "de", "deu", "ger", "dub de", "de dub", "1"),
    "English Sub": ("english sub", "en sub", "eng sub", "ensub", "sub en", "jpn en", "ja en", "2"),
    "German Sub": ("german sub", "de sub", "ger sub", "gersub", "sub de", "jpn de", "ja de", "3"),
    "English Dub": ("english dub", "english", "englisch", "en", "eng", "dub en", "en dub", "4"),
}
_LANGUAGES = {alias: label for label, aliases in _LANGUAGE_ALIASES.items() for alias in aliases}
STO_LANGUAGES = ("German Dub", "English Dub")


def language_label(value: str) -> str | None:
    """'de', 'GER-SUB', 'German Sub', '3' → the package's label; None when we cannot tell."""
    key = re.sub(r"[\s_\-/]+", " ", value.strip().lower())
    return _LANGUAGES.get(key)


def site_kind(site: str | None) -> str | None:
    """aniworld | sto | megakino for the sites this resolver knows; None for any other."""
    name = (site or "").strip().lower()
    if name in ANIWORLD_SITES:
        return "aniworld"
    if name in STO_SITES:
        return "sto"
    if MEGAKINO_SITE.match(name):
        return "megakino"
    return None


def episode_url(site: str, slug: str, season: int, episode: int) -> str:
    """The episode page for aniworld.to and s.to; ValueError for any other site (megakino has no such rule)."""
    kind = site_kind(site)
    if kind == "aniworld":
        if season == 0:
            return f"https://aniworld.to/anime/stream/{slug}/filme/film-{episode}"
        return f"https://aniworld.to/anime/stream/{slug}/staffel-{season}/episode-{episode}"
    if kind == "sto":
        return f"https://serienstream.to/serie/{slug}/staffel-{season}/episode-{episode}"
    raise ValueError(f"no episode page rule for site {site!r}")


class AniworldResolver:
    name: str

    def __init__(self, options: dict[str, Any], context: ResolverContext | None = None, name: str = "aniworld") -> None:
        opts = Options(name, options, OPTIONS)
        self.name = name
        language = opts.string("language", None)
        self.language = None if language is None else language_label(language)
        if language is not None and self.language is None:
            raise ValueError(
                f"{opts.key('language')}: unknown language {language!r} (use one of {', '.join(_LANGUAGE_ALIASES)})"
            )
        self.timeout = opts.number("timeout_seconds", 90.0)
        try:
            import aniworld.config as aniworld_config
            from aniworld.models import AniworldEpisode, SerienstreamEpisode
        except ImportError:
            raise ValueError(NOT_INSTALLED) from None
        self._config = aniworld_config
        self._episode_classes: dict[str, type] = {"aniworld": AniworldEpisode, "sto": SerienstreamEpisode}
        megakino = _megakino_support()
        if megakino is not None:  # aniworld 5.x ships it; an older package simply does not offer the site
            self._episode_classes["megakino"] = megakino
        supported = tuple(getattr(aniworld_config, "SUPPORTED_PROVIDERS", ())) + DEFAULT_PROVIDERS
        self._canonical = {provider.lower(): provider for provider in supported}
        providers = opts.string_list("providers", list(DEFAULT_PROVIDERS))
        unknown = [p for p in providers if p.lower() not in self._canonical]
        if unknown:
            raise ValueError(
                f"{opts.key('providers')}: unknown provider(s) {', '.join(unknown)} "
                f"(aniworld supports: {', '.join(dict.fromkeys(supported))})"
            )
        self.providers: list[str] = [self._canonical[p.lower()] for p in providers]

    def provider_order(self, request: ResolveRequest) -> list[str]:
        """The identity's own provider first (it is what the user picked), then the configured order."""
        excluded = {p.lower() for p in request.exclude_providers}
        order: list[str] = []
        preferred: list[str] = [request.identity.provider] if request.identity.provider else []
        for provider in preferred + self.providers:
            canonical = self._canonical.get(provider.lower(), provider)
            if canonical.lower() not in excluded and canonical not in order:
                order.append(canonical)
        return order

    def supported_sites(self) -> str:
        return ", ".join(["aniworld.to", "s.to (serienstream.to)", *(["megakino"] if "megakino" in
                                                                   self._episode_classes else [])])

    def _target(self, request: ResolveRequest) -> tuple[type, str, str]:
        identity = request.identity
        site = (identity.site or "").strip().lower()
        kind = site_kind(site)
        if kind is None or kind not in self._episode_classes:
            raise ResolverError(f"{self.name}: site {identity.site!r} is not supported (it resolves"
                                f" {self.supported_sites()}); nothing was sent anywhere")
        if kind == "megakino":
            return self._megakino_target(request)
        if not identity.slug or identity.season is None or identity.episode is None:
            raise ResolverError(f"{self.name}: identity needs slug, season and episode")
        wanted = self.language or identity.language or "German Dub"
        label = language_label(wanted)
        if label is None:
            raise ResolverError(f"{self.name}: unknown language {wanted!r}")
        if kind == "sto" and label not in STO_LANGUAGES:
            raise ResolverError(f"{self.name}: s.to offers only German Dub and English Dub, not {label}")
        url = episode_url(site, identity.slug, int(identity.season), int(identity.episode))
        return self._episode_classes[kind], url, label

    def _megakino_target(self, request: ResolveRequest) -> tuple[type, str, str]:
        page = (request.source_url or "").strip()
        pattern = getattr(self._config, "MEGAKINO_SERIES_PATTERN", None)
        if not page or pattern is None or not pattern.match(page.split("#", 1)[0]):
            raise ResolverError(f"{self.name}: megakino resolves only from the title's page URL as source_url"
                                " (https://megakino.../films/<id>-<name>.html or .../serials/...), got"
                                f" {redact_url(page) if page else 'none'}")
        wanted = self.language or request.identity.language or "German Dub"
        label = language_label(wanted)
        if label != "German Dub":
            raise ResolverError(f"{self.name}: megakino offers only German Dub, not {wanted}")
        page = page.split("#", 1)[0]
        episode = request.identity.episode
        if "/serials/" in page.lower() and episode is not None:
            page = f"{page}#mkep={int(episode)}"
        return self._episode_classes["megakino"], page, label

    async def resolve(self, request: ResolveRequest) -> Resolved:
        episode_cls, url, label = self._target(request)
        order = self.provider_order(request)
        if not order:
            raise ResolverError(f"{self.name}: every provider is excluded ({', '.join(request.exclude_providers)})")
        try:
            episode = episode_cls(url, selected_language=label, selected_provider=order[0])
        except ValueError as exc:
            raise ResolverError(f"{self.name}: {exc}") from None
        deadline = time.monotonic() + self.timeout
        # The page first, once: when it cannot be fetched every provider would fail the same way, slowly.
        try:
            offered = await asyncio.wait_for(asyncio.to_thread(_offered, episode), self.timeout)
        except asyncio.TimeoutError:
            raise ResolverError(f"{self.name}: {redact_url(url)}: no answer within {self.timeout:g}s") from None
        except Exception as exc:
            raise ResolverError(f"{self.name}: {redact_url(url)}: {type(exc).__name__}: {_short(str(exc))}") from None
        if not offered:
            raise ResolverError(
                f"{self.name}: {redact_url(url)} lists no hosters (missing episode, captcha or a changed page layout)"
            )
        failures: list[str] = []
        for provider in order:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failures.append(f"{provider}: out of time")
                continue
            try:
                # One episode object for all providers: the page is fetched once and kept by the package.
                stream = await asyncio.wait_for(asyncio.to_thread(_extract, episode, provider), remaining)
            except asyncio.TimeoutError:
                failures.append(f"{provider}: no answer within the {self.timeout:g}s budget")
                continue
            except Exception as exc:  # the package raises ValueError, niquests errors, RuntimeError, ...
                failures.append(f"{provider}: {type(exc).__name__}: {_short(str(exc))}")
                continue
            if not isinstance(stream, str) or not stream.startswith(("http://", "https://")):
                failures.append(f"{provider}: no http(s) stream URL")
                continue
            headers = dict(getattr(self._config, "PROVIDER_HEADERS_W", {}).get(provider, {})) or None
            return Resolved(url=stream, headers=headers, provider=provider, resolver=self.name)
        raise ResolverError(f"{self.name}: {redact_url(url)} [{label}]: all providers failed: " + "; ".join(failures))

    async def close(self) -> None:
        """The package keeps one global session for the process; nothing of ours to release."""


def _megakino_support() -> type | None:
    try:
        import aniworld.config as aniworld_config
        from aniworld.models import MegaKinoEpisode
    except ImportError:
        return None
    return MegaKinoEpisode if getattr(aniworld_config, "MEGAKINO_SERIES_PATTERN", None) is not None else None


def _offered(episode: Any) -> int:
    """Runs in a worker thread: fetches and parses the episode page, which the package then keeps."""
    if episode.provider_data is None:  # megakino: a page without player sources
        return 0
    return sum(len(links) for links in dict(getattr(episode.provider_data, "_data", episode.provider_data)).values())


def _extract(episode: Any, provider: str) -> str:
    """Runs in a worker thread: the setter drops the previous provider's redirect and embed URLs."""
    episode.selected_provider = provider
    return episode.stream_url  # type: ignore[no-any-return]


def _short(text: str, limit: int = 200) -> str:
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"
