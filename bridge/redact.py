"""Keeping secrets out of logs: URL query strings and known tokens are masked before anything is written."""
from __future__ import annotations

import logging
import re
from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

MIN_SECRET_LENGTH = 8
"""Shorter values are not masked as substrings ("hook" would mangle every "/webhooks/"); config refuses them."""
_URL = re.compile(r"https?://[^\s'\"<>]+")
_TOKEN_PARAM = re.compile(r"((?:token|api_key|apikey|x-plex-token|sig|signature)=)[^&\s'\"]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Keep scheme, host and path (enough to debug); drop the query, where signatures and tokens live."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on "host:9:" (a URL followed by a colon in a message)
    except ValueError:
        return "<unparseable url>"
    query = "…" if parts.query else ""
    netloc = parts.hostname or ""
    if port:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _redact_match(match: re.Match[str]) -> str:
    """A URL in running text; punctuation after it ("http://host:8096: refused") is not part of it."""
    url = match.group(0)
    core = url.rstrip(":,.;)")
    return redact_url(core) + url[len(core):]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    # every log line passes here (access lines too): skip the regexes when nothing could match
    if "://" in text:
        text = _URL.sub(_redact_match, text)
    if "=" in text:
        text = _TOKEN_PARAM.sub(r"\1…", text)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, "…")
    return text


_OWNED = "_strm_bridge_handler"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def own(handler: logging.Handler) -> logging.Handler:
    """Mark a handler as the bridge's own: only those carry the bridge's redaction."""
    setattr(handler, _OWNED, True)
    return handler


def bridge_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, _OWNED, False)]


class RedactingFormatter(logging.Formatter):
    """Masks the known secrets in the final text of the bridge's own handler.

    It wraps the handler's formatter instead of filtering the record: a filter that rewrote `record.msg` would
    change the record for every other handler too (a test's capture, an embedding application's), hiding from
    them what this redaction does, and leaving its mask behind after the bridge stopped.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.original = inner
        self.inner = inner if inner is not None else logging.Formatter()  # what the handler used without one
        self.layers: list[Redaction] = []

    def format(self, record: logging.LogRecord) -> str:
        secrets = [s for layer in self.layers for s in layer.secrets]
        return redact_text(self.inner.format(record), secrets)


class Redaction:
    """One running bridge's secrets on its handlers; `remove` (at shutdown) takes them off again."""

    def __init__(self, secrets: Iterable[str], handlers: Iterable[logging.Handler]) -> None:
        self.secrets = [s for s in secrets if s]
        self.handlers = list(handlers)
        for handler in self.handlers:
            formatter = handler.formatter
            if not isinstance(formatter, RedactingFormatter):
                formatter = RedactingFormatter(formatter)
                handler.setFormatter(formatter)
            formatter.layers.append(self)

    def remove(self) -> None:
        for handler in self.handlers:
            formatter = handler.formatter
            if isinstance(formatter, RedactingFormatter) and self in formatter.layers:
                formatter.layers.remove(self)
                if not formatter.layers:
                    handler.formatter = formatter.original
        self.handlers = []


def install(secrets: Iterable[str], handlers: Iterable[logging.Handler] | None = None) -> Redaction:
    """On the bridge's own handlers (`serve` sets one up); with no logging configured at all, it makes one.

    Handlers it does not own (pytest's capture, an application embedding the bridge) are left alone.
    """
    if handlers is None:
        root = logging.getLogger()
        handlers = bridge_handlers()
        if not handlers and not root.handlers:
            handler = own(logging.StreamHandler())
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))
            root.addHandler(handler)
            root.setLevel(logging.INFO)
            handlers = [handler]
    return Redaction(secrets, handlers)
