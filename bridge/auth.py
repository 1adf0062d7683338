"""Request authentication and the first-start API token."""
from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path

from aiohttp import web

TOKEN_FILE_NAME = "api-token"


def presented_token(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer`, `X-Api-Key` or `?token=` (Plex can only send the last)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    key = request.headers.get("X-Api-Key")
    if key:
        return key.strip()
    return request.query.get("token")


def token_matches(presented: str | None, accepted: list[str]) -> bool:
    """Constant-time comparison against every accepted token.

    aiohttp hands an undecodable header over with surrogate escapes; such a value cannot equal a configured
    token (which is text), so it is refused like a wrong one rather than failing to encode.
    """
    if not presented:
        return False
    try:
        given = presented.encode("utf-8")
    except UnicodeEncodeError:
        return False
    ok = False
    for token in accepted:
        if token:
            ok |= hmac.compare_digest(given, token.encode())  # no early exit: same time whichever matches
    return ok


def stored_secret(path: Path) -> tuple[str, bool]:
    """The secret kept at `path`, created (0600, fsynced) when absent; True when this call created it.

    A secret another process stored first is never replaced: tokens and links made with it stay valid.
    """
    try:
        stored = path.read_text().strip()
        if stored:
            return stored, False
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(temp, path)
    except FileExistsError:
        kept = path.read_text().strip()
        if kept:
            return kept, False
        os.replace(temp, path)  # an empty file left by an older version: take its place
        return secret, True
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return secret, True


def ensure_api_token(configured: str, db_path: str | os.PathLike[str]) -> str:
    """Use the configured token; otherwise load the stored one, or generate, store and print it once."""
    if configured:
        return configured
    path = Path(db_path).parent / TOKEN_FILE_NAME
    token, created = stored_secret(path)
    if created:
        print(f"strm-bridge: generated an API token, stored in {path} (shown only this once):\n  {token}",
              file=sys.stderr, flush=True)
    return token
