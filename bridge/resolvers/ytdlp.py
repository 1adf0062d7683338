"""The `ytdlp` resolver: let yt-dlp re-extract the media URL from the mapping's page URL (`source_url`).

Uses yt-dlp as a library (extra `strm-bridge[ytdlp]`), imported when this resolver is created. yt-dlp
refuses the common anime hosters (Doodstream, Filemoon) and has no extractor for VOE, Vidoza or Vidmoly, so
this is for sites it does support and for plain pages with a <video> or og:video (its generic extractor,
which also works on 127.0.0.1 without `force_generic_extractor`). Extraction is synchronous and can take
seconds, so it runs in a worker thread under a deadline.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterator

from bridge.resolvers._common import Options, is_http_url, parse_expiry, redact_text, redact_url, source_url_of
from bridge.resolvers.base import EpisodeNotFound, Resolved, ResolverContext, ResolveRequest, ResolverError

OPTIONS = ("format", "timeout_seconds", "params")
NOT_INSTALLED = "resolvers.ytdlp: the 'yt-dlp' package is not installed; pip install 'strm-bridge[ytdlp]'"
_EXPIRY_KEYS = ("expires_at", "expire", "expires")

log = logging.getLogger(__name__)


class _Logger:
    """yt-dlp prints to stdout unless given a logger; its messages quote signed URLs, so redact them."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", redact_text(message))

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", redact_text(message))

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", redact_text(message))

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", redact_text(message))


class _NotFound(Exception):
    pass


class YtdlpResolver:
    name: str

    def __init__(self, options: dict[str, Any], context: ResolverContext | None = None, name: str = "ytdlp") -> None:
        opts = Options(name, options, OPTIONS)
        self.name = name
        self.format: str = opts.string("format", "best")
        self.timeout = opts.number("timeout_seconds", 60.0)
        extra = opts.raw.get("params", {})
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise ValueError(f"{opts.key('params')}: expected a table of YoutubeDL parameters")
        try:
            import yt_dlp
        except ImportError:
            raise ValueError(NOT_INSTALLED) from None
        self._yt_dlp = yt_dlp
        self.params: dict[str, Any] = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "skip_download": True,
            "noplaylist": True,
            "cachedir": False,
            "socket_timeout": min(self.timeout, 30.0),
            "logger": _Logger(),
            **extra,
            "format": self.format,
        }

    async def resolve(self, request: ResolveRequest) -> Resolved:
        source = source_url_of(request, self.name, "(page URL) to extract from")
        try:
            info = await asyncio.wait_for(asyncio.to_thread(self._extract, source), self.timeout)
        except asyncio.TimeoutError:
            raise ResolverError(f"{self.name}: {redact_url(source)}: no result within {self.timeout:g}s") from None
        except _NotFound as exc:
            raise EpisodeNotFound(f"{self.name}: {redact_url(source)}: {exc}") from None
        except self._yt_dlp.utils.YoutubeDLError as exc:
            raise ResolverError(f"{self.name}: {redact_url(source)}: {_short(str(exc))}") from None
        return self._resolved(info, source)

    def _extract(self, source: str) -> dict[str, Any]:
        with self._yt_dlp.YoutubeDL(dict(self.params)) as ydl:
            try:
                info = ydl.extract_info(source, download=False)
            except self._yt_dlp.utils.DownloadError as exc:
                _close_error_responses(exc)
                status = _http_status(exc)
                if status in (404, 410):
                    raise _NotFound(f"page answered {status}") from None
                raise
        if not isinstance(info, dict):
            raise self._yt_dlp.utils.YoutubeDLError("yt-dlp returned no information")
        return info

    def _resolved(self, info: dict[str, Any], source: str) -> Resolved:
        chosen = info
        if not info.get("url"):
            if info.get("requested_formats"):
                raise ResolverError(
                    f"{self.name}: format {self.format!r} selects separate video and audio streams;"
                    " a .strm holds one URL, use a single-file format such as 'best'"
                )
            if info.get("_type") in ("playlist", "multi_video"):
                raise ResolverError(f"{self.name}: {redact_url(source)} is a playlist, not one video")
            formats = [f for f in info.get("formats") or [] if isinstance(f, dict) and f.get("url")]
            if not formats:
                raise ResolverError(f"{self.name}: {redact_url(source)}: no playable URL found")
            chosen = formats[-1]  # yt-dlp sorts formats worst to best
        url = chosen.get("url")
        if not isinstance(url, str) or not is_http_url(url):
            raise ResolverError(f"{self.name}: extracted URL is not http(s): {redact_url(str(url))!r}")
        headers = chosen.get("http_headers") or info.get("http_headers") or None
        if headers is not None:
            headers = {str(k): str(v) for k, v in headers.items()}
        expiry = next((chosen.get(k) or info.get(k) for k in _EXPIRY_KEYS if chosen.get(k) or info.get(k)), None)
        return Resolved(
            url=url,
            headers=headers,
            provider=info.get("extractor_key") or info.get("extractor") or None,
            expires_at=parse_expiry(expiry),
            resolver=self.name,
        )

    async def close(self) -> None:
        """Each extraction opens and closes its own YoutubeDL; nothing is kept."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """yt-dlp wraps the network error a few layers deep (DownloadError → ExtractorError → HTTPError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        info = getattr(current, "exc_info", None)
        nested = info[1] if isinstance(info, tuple) and len(info) > 1 else None
        current = nested or getattr(current, "cause", None) or current.__cause__ or current.__context__


def _http_status(exc: BaseException) -> int | None:
    for current in _chain(exc):
        status = getattr(current, "status", None)
        if isinstance(status, int):
            return status
    return None


def _close_error_responses(exc: BaseException) -> None:
    """Close the response an HTTP error carries (a 404 page, say).

    yt-dlp leaves that to whoever catches the HTTPError; its generic extractor only wraps it, so the
    response's connection stayed open, out of its pool, until the garbage collector found it.
    """
    for current in _chain(exc):
        response = getattr(current, "response", None)
        close = getattr(response, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing a broken connection: nothing left to release
                pass


def _short(text: str, limit: int = 300) -> str:
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"
