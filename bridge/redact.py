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


class RedactingFilter(logging.Filter):
    """Installed on the root handlers so no module can leak a token or a signed URL by accident."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact_text(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        return True


def install(secrets: Iterable[str]) -> RedactingFilter:
    log_filter = RedactingFilter(secrets)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        handler.addFilter(log_filter)
    return log_filter
