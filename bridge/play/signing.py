"""Signatures of stable links: an HMAC of the mapping id (and, for HLS parts, of the upstream reference).

A `.strm` must stay valid for as long as the file exists, so the signature carries no expiry; rotating
`play.secret` keeps the old secrets in `play.old_secrets` for a grace period, and links signed under any of
them still open. The id is the only thing a stable link names: a signature for one id opens no other.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from bridge.auth import stored_secret

SECRET_FILE_NAME = "play-secret"
SIG_LENGTH = 24
"""base64url characters kept from the HMAC-SHA256: 144 bits, short enough for a tidy .strm line."""
_PLAY_PATH = re.compile(r"(?:^|/)play/([0-9]{1,18})(?:/r/[^/]*)?$")


def _mac(secret: str, message: bytes) -> str:
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIG_LENGTH]


class PlaySigner:
    """Signs with the current secret; verifies against it and every old secret (rotation grace)."""

    def __init__(self, secret: str, old_secrets: list[str] | tuple[str, ...] = ()) -> None:
        if not secret:
            raise ValueError("play secret must not be empty")
        self.secret = secret
        self.accepted = [secret, *[s for s in old_secrets if s and s != secret]]

    @staticmethod
    def _id_message(mapping_id: int) -> bytes:
        return b"play\n%d" % mapping_id

    @staticmethod
    def _part_message(mapping_id: int, ref: str, chain: str) -> bytes:
        return b"part\n%d\n%s\n%s" % (mapping_id, ref.encode(), chain.encode())

    def sign(self, mapping_id: int) -> str:
        return _mac(self.secret, self._id_message(mapping_id))

    def sign_part(self, mapping_id: int, ref: str, chain: str) -> str:
        return _mac(self.secret, self._part_message(mapping_id, ref, chain))

    def verify(self, mapping_id: int, sig: str | None) -> bool:
        return self._check(self._id_message(mapping_id), sig)

    def verify_part(self, mapping_id: int, ref: str, chain: str, sig: str | None) -> bool:
        return self._check(self._part_message(mapping_id, ref, chain), sig)

    def _check(self, message: bytes, sig: str | None) -> bool:
        if not sig or len(sig) != SIG_LENGTH:
            return False
        given = sig.encode()
        ok = False
        for secret in self.accepted:  # no early exit: the time taken does not tell which secret matched
            ok |= hmac.compare_digest(given, _mac(secret, message).encode())
        return ok

    def play_url(self, public_url: str, mapping_id: int) -> str:
        return f"{public_url.rstrip('/')}/play/{mapping_id}?sig={self.sign(mapping_id)}"


def play_link_id(url: str | None) -> int | None:
    """The mapping id when `url` has the shape of a bridge stable link (`.../play/<id>?sig=`), else None.

    Shape only, wherever it is hosted: a URL that looks like ours is never overwritten or followed.
    """
    if not url or "/play/" not in url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    match = _PLAY_PATH.search(parts.path)
    if match is None or not any(name == "sig" for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return None
    return int(match.group(1))


def ensure_play_secret(configured: str, db_path: str | os.PathLike[str]) -> str:
    """The configured secret, else the one stored beside the database, else a new one stored there (0600)."""
    if configured:
        return configured
    return stored_secret(Path(db_path).parent / SECRET_FILE_NAME)[0]
