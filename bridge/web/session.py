"""Dashboard sessions: a cookie signed with a key derived from the API token, and a CSRF token per session.

The cookie carries only a random session id and an expiry, HMAC-signed, so a restart keeps people logged in
and a new API token logs everyone out. Logging out revokes the id in this process. The CSRF token is an HMAC
of the session id under another label: a form or htmx request must send it back on every POST.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "strm_bridge_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 7 * 24 * 3600
_MAX_COOKIE_CHARS = 512


@dataclass(frozen=True)
class Session:
    sid: str
    expires: int
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, api_token: str, lifetime_seconds: int = SESSION_SECONDS) -> None:
        self._key = hmac.new(api_token.encode(), b"strm-bridge dashboard session v1", hashlib.sha256).digest()
        self.lifetime = lifetime_seconds
        self._revoked: dict[str, int] = {}

    def _mac(self, label: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, label + b"\0" + data, hashlib.sha256).digest()

    def csrf_for(self, sid: str) -> str:
        return _b64(self._mac(b"csrf", sid.encode()))[:32]

    def issue(self, now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value."""
        sid = secrets.token_urlsafe(18)
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = _b64(json.dumps({"sid": sid, "exp": expires}, separators=(",", ":")).encode())
        cookie = f"{payload}.{_b64(self._mac(b'session', payload.encode()))}"
        return Session(sid, expires, self.csrf_for(sid)), cookie

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie proves, or None (unsigned, tampered, expired, revoked or malformed)."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        try:
            given = _unb64(mac)
            if not hmac.compare_digest(given, self._mac(b"session", payload.encode())):
                return None
            data = json.loads(_unb64(payload))
            sid, expires = data["sid"], data["exp"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(sid, str) or not isinstance(expires, int) or isinstance(expires, bool):
            return None
        if expires <= (time.time() if now is None else now) or sid in self._revoked:
            return None
        return Session(sid, expires, self.csrf_for(sid))

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(), session.csrf.encode())

    def revoke(self, session: Session, now: float | None = None) -> None:
        moment = time.time() if now is None else now
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > moment}  # forget expired ones
        self._revoked[session.sid] = session.expires
