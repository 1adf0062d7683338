"""Log output: readable lines by default, JSON lines for log collectors; neither ever carries a URL's query.

The redaction filter (bridge.redact) masks known secrets on the handler; the formatters here redact URL
queries once more on the final text, so a record that bypassed the filter still cannot leak a signature.
"""
from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO

import orjson

from bridge.redact import own, redact_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact_text(record.exc_text)
        return orjson.dumps(entry).decode()


def setup_logging(fmt: str = "text", level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Replace the root handlers with one stream handler in the chosen format."""
    handler = own(logging.StreamHandler(stream or sys.stderr))  # the bridge's: its secrets' redaction goes here
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    return handler
