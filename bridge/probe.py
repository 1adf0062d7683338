"""Link probing and expiry prediction from URL markers.

`probe` asks a URL the way a player starts playback (HEAD, then a one-byte ranged GET when HEAD is refused), so
the refresh pipeline can tell a dead link from a rate limit or a flaky network before it spends a resolver call.
`predict_expiry` reads the expiry that signed CDN URLs carry in their query, so links can be refreshed before
they fail; `egress_bound` flags links tied to the client's IP or ASN, where a refresh from another egress fails.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from collections.abc import Callable
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp

from bridge.timeutil import from_epoch, to_epoch

__all__ = [
    "PROBE_STATUSES",
    "ProbeResult",
    "classify_status",
    "egress_bound",
    "expiry_iso",
    "media_kind",
    "parse_retry_after",
    "predict_expiry",
    "probe",
    "sniff_media",
]

PROBE_STATUSES = (
    "alive",
    "dead",
    "forbidden",
    "rate_limited",
    "legal",
    "server_error",
    "timeout",
    "connection_error",
    "other",
)

# HEAD refusals that mean "this server does not do HEAD", not "this link is bad".
_HEAD_REFUSED = frozenset({405, 501})
# A ranged GET should answer these bytes; a server that ignores Range gets at most _MAX_BODY_BYTES read.
_SNIFF_BYTES = 1024
_MAX_BODY_BYTES = 4096
_MAX_PLAYLIST_BYTES = 512 * 1024
"""A master or media playlist is text; past this it is not a playlist a player would load either."""

_HLS_TYPES = frozenset({
    "application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl",
    "application/mpegurl", "vnd.apple.mpegurl",
})
_MEDIA_TYPES = frozenset({
    "application/octet-stream", "binary/octet-stream", "application/mp4", "application/x-matroska",
    "application/dash+xml", "application/ogg", "application/x-mpegts", "application/vnd.rn-realmedia",
    "application/x-flv",
})
_TEXTUAL_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")


def media_kind(content_type: str | None, data: bytes | None) -> str:
    """'media', 'hls', 'not_media' or 'unknown' (nothing decisive seen yet: look at the first bytes).

    Expired links of real hosters often answer 200 with an HTML page ("file not found", a captcha); only a
    media content type or bytes that start like a container count as media.
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if data:
        stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
        if stripped.startswith(b"#EXTM3U"):
            return "hls"
        if sniff_media(data):
            return "media"
        if stripped[:9].lower().startswith(_TEXTUAL_STARTS):
            return "not_media"  # an error page, whatever the server calls it
    if ctype in _HLS_TYPES:
        return "hls"
    if ctype in _MEDIA_TYPES or ctype.startswith(("video/", "audio/")):
        return "media"
    return "not_media" if data else "unknown"


def sniff_media(data: bytes) -> bool:
    """Bytes that start like a media container: MP4/fMP4, Matroska/WebM, MPEG-TS, FLV, Ogg, AVI, MP3/AAC."""
    if len(data) >= 8 and data[4:8] in (b"ftyp", b"moof", b"styp", b"moov", b"sidx", b"free", b"mdat"):
        return True
    if data.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska and WebM
        return True
    if data[:1] == b"\x47" and (len(data) < 189 or data[188:189] == b"\x47"):  # MPEG-TS sync bytes
        return True
    if data.startswith((b"FLV\x01", b"OggS", b"ID3", b"fLaC")):
        return True
    if data.startswith(b"RIFF") and data[8:12] in (b"AVI ", b"WAVE"):
        return True
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF0) == 0xF0  # ADTS AAC / MPEG audio


@dataclass(frozen=True)
class ProbeResult:
    """What a player would meet when starting this URL; `status` is what the refresh pipeline decides on."""

    status: str
    http_status: int | None
    final_url: str
    error: str | None = None
    elapsed_ms: float = 0.0
    retry_after: float | None = None
    method: str = "HEAD"
    """The request that produced the answer: HEAD, or GET after the server refused HEAD or to see the bytes."""

    @property
    def alive(self) -> bool:
        return self.status == "alive"


def classify_status(code: int) -> str:
    """One place that maps an HTTP status to the pipeline's vocabulary, shared with the play proxy."""
    if 200 <= code < 300:
        return "alive"
    if code in (404, 410):
        return "dead"
    if code == 403:
        return "forbidden"
    if code == 429:
        return "rate_limited"
    if code == 451:
        return "legal"
    if 500 <= code < 600:
        return "server_error"
    return "other"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait; servers send either delta-seconds or an HTTP-date, and garbage must not break a probe."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


@dataclass(frozen=True)
class _Answer:
    code: int
    final_url: str
    retry_after: str | None
    content_type: str | None
    data: bytes | None
    """The first bytes of the body for a GET; None for HEAD."""


class _Soft(Exception):
    """A 2xx that is not media, or an HLS hop that fails: the probe's verdict, carried out of the walk."""

    def __init__(self, status: str, code: int | None, detail: str, answer: _Answer | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.answer = answer


_OBSERVERS: list[Callable[[str], None]] = []
"""Called with every probe's status (the running services count them in /metrics)."""


def add_observer(observer: Callable[[str], None]) -> None:
    _OBSERVERS.append(observer)


def remove_observer(observer: Callable[[str], None]) -> None:
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


async def probe(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> ProbeResult:
    result = await _probe(session, url, headers=headers, timeout=timeout)
    for observer in _OBSERVERS:
        observer(result.status)
    return result


async def _probe(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> ProbeResult:
    """Never raises for network trouble: the caller needs a classification, not an exception, to pick a remedy.

    Alive means a player would get media: a 2xx with a media content type or media-looking first bytes; for
    HLS, the playlist, its first variant and that variant's first segment must all answer so.
    """
    started = time.monotonic()
    deadline = started + timeout
    base_headers = dict(headers or {})

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000.0, 3)

    def remaining() -> float:
        # One shared budget: a slow HEAD must not double the time a player-like probe may take.
        return max(deadline - time.monotonic(), 0.05)

    method = "HEAD"
    final_url = url
    try:
        answer = await _ask(session, "HEAD", url, base_headers, timeout)
        if answer.code in _HEAD_REFUSED:
            method = "GET"
            answer = await _ask(session, "GET", url, _ranged(base_headers), remaining())
        final_url = answer.final_url
        if (refused := _refused(answer, elapsed, method)) is not None:
            return refused
        kind = media_kind(answer.content_type, answer.data)
        if kind == "unknown":
            method = "GET"
            answer = await _ask(session, "GET", url, _ranged(base_headers), remaining())
            final_url = answer.final_url
            if (refused := _refused(answer, elapsed, method)) is not None:
                return refused
            kind = media_kind(answer.content_type, answer.data)
        if kind == "hls":
            method = "GET"
            await _check_hls(session, answer, base_headers, remaining)
        elif kind != "media":
            raise _Soft("dead", answer.code, f"answered {answer.code} {_type_of(answer)}, not media", answer)
    except _Soft as soft:
        return ProbeResult(soft.status, soft.code, final_url, soft.detail, elapsed(), None, method)
    except asyncio.TimeoutError:
        return ProbeResult("timeout", None, url, f"no answer within {timeout:g}s", elapsed(), method=method)
    except aiohttp.TooManyRedirects as exc:
        return ProbeResult("other", exc.status or None, url, "too many redirects", elapsed(), method=method)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return ProbeResult("connection_error", None, url, _describe(exc), elapsed(), method=method)
    return ProbeResult("alive", answer.code, answer.final_url, None, elapsed(), None, method)


def _refused(answer: _Answer, elapsed: Callable[[], float], method: str) -> ProbeResult | None:
    """The result for an answer whose status is not alive (a 429's Retry-After kept); None for a 2xx."""
    status = classify_status(answer.code)
    if status == "alive":
        return None
    retry_after = parse_retry_after(answer.retry_after) if status == "rate_limited" else None
    return ProbeResult(status, answer.code, answer.final_url, None, elapsed(), retry_after, method)


def _ranged(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Range": f"bytes=0-{_SNIFF_BYTES - 1}"}


def _type_of(answer: _Answer) -> str:
    return (answer.content_type or "without a content type").split(";", 1)[0].strip()


async def _check_hls(
    session: aiohttp.ClientSession, answer: _Answer, headers: dict[str, str], remaining: Callable[[], float]
) -> None:
    """The playlist, its first variant (for a master) and the first segment, each as a player would load them."""
    playlist = await _playlist(session, answer, headers, remaining, "playlist")
    base = answer.final_url
    variant = _first_uri(playlist, after="#EXT-X-STREAM-INF")
    if variant is not None:
        variant_url = urljoin(base, variant)
        variant_answer = await _ask(session, "GET", variant_url, headers, remaining(), limit=_MAX_PLAYLIST_BYTES)
        _require_2xx(variant_answer, "HLS variant")
        playlist = await _playlist(session, variant_answer, headers, remaining, "HLS variant")
        base = variant_answer.final_url
        if _first_uri(playlist, after="#EXT-X-STREAM-INF") is not None:
            raise _Soft("dead", variant_answer.code, "HLS variant is another master playlist")
    segment = _first_uri(playlist, after=None)
    if segment is None:
        raise _Soft("dead", answer.code, "HLS playlist lists no segment")
    segment_url = urljoin(base, segment)
    seg = await _ask(session, "GET", segment_url, _ranged(headers), remaining())
    _require_2xx(seg, "HLS segment")
    if media_kind(seg.content_type, seg.data) != "media":
        raise _Soft("dead", seg.code, f"HLS segment answered {seg.code} {_type_of(seg)}, not media")


async def _playlist(session: aiohttp.ClientSession, answer: _Answer, headers: dict[str, str],
                    remaining: Callable[[], float], what: str) -> list[str]:
    data = answer.data
    if data is None or len(data) >= _SNIFF_BYTES:  # a HEAD or a ranged read: fetch the whole (bounded) text
        answer = await _ask(session, "GET", answer.final_url, headers, remaining(), limit=_MAX_PLAYLIST_BYTES)
        _require_2xx(answer, what)
        data = answer.data or b""
    text = data.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text.startswith("#EXTM3U"):
        raise _Soft("dead", answer.code, f"{what} answered {answer.code} {_type_of(answer)}, not a playlist")
    return text.splitlines()


def _require_2xx(answer: _Answer, what: str) -> None:
    status = classify_status(answer.code)
    if status != "alive":
        raise _Soft(status, answer.code, f"{what} answered {answer.code}")


def _first_uri(lines: list[str], *, after: str | None) -> str | None:
    """The first URI line; with `after`, the first one that follows a tag of that name (a master's variant)."""
    armed = after is None
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if after is not None and line.startswith(after):
                armed = True
            continue
        if armed:
            return line
    return None


async def _ask(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    timeout: float,
    *,
    limit: int = _MAX_BODY_BYTES,
) -> _Answer:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with session.request(
        method, url, headers=headers, allow_redirects=True, timeout=client_timeout
    ) as response:
        data: bytes | None = None
        if method != "HEAD":
            # Enough to judge the bytes; a server ignoring Range could otherwise stream a whole film at us.
            data = await _read_up_to(response, limit)
            if not response.content.at_eof():
                response.close()
        return _Answer(response.status, str(response.url), response.headers.get("Retry-After"),
                       response.headers.get("Content-Type"), data)


async def _read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = await response.content.read(limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------------
# Expiry prediction
# ---------------------------------------------------------------------------------------------------------------

_YEAR = 365 * 24 * 3600.0
_MONTH = 30 * 24 * 3600.0
_MAX_TTL = 7 * 24 * 3600
_ISSUE_SLACK = 60.0
# Values outside this window are not times at all (and would break datetime conversion later).
_MIN_EPOCH = 0.0
_MAX_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z

_GENERIC_EXPIRY_PARAMS = ("exp", "expires", "expire", "expiry")
_MARKER_HINTS = ("exp", "policy", "x-amz", "sign", "eyj", "s=")
"""Every marker below contains one of these (lower-cased); a URL with none of them and no percent-escape has none."""
_DIGITS = re.compile(r"[0-9]+")
_IPV4_PREFIX = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){1,3}(/[0-9]{1,2})?")
_IPV6ISH = re.compile(r"[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}(/[0-9]{1,3})?", re.IGNORECASE)
_GOOGLEVIDEO_PATH_PARAM = re.compile(r"/(expire|ip)/([^/]+)")


def predict_expiry(
    url: str,
    *,
    resolved_at: float | str | None = None,
    now: float | None = None,
) -> float | None:
    """Earliest expiry the URL advertises, so a refresh can happen before the player meets a 403.

    Known CDN markers are trusted as absolute times; bare generic parameters go through sanity windows because
    `exp=3` or `expires=1` in some random query is just as likely to mean something else.
    """
    lowered = url.lower()
    if "%" not in lowered and not any(hint in lowered for hint in _MARKER_HINTS):
        return None  # the common case on a bulk refresh; parsing the query costs ten times this
    split = _split(url)
    if split is None:
        return None
    host, path, query = split
    reference_now = time.time() if now is None else float(now)
    issued = _epoch_of(resolved_at)
    base = reference_now if issued is None else issued

    params: dict[str, list[str]] = {}
    for name, value in query:
        params.setdefault(name.lower(), []).append(value.strip())

    candidates: list[float] = []
    add = candidates.append

    is_googlevideo = host == "googlevideo.com" or host.endswith(".googlevideo.com")
    is_cloudfront = "key-pair-id" in params
    is_sigv2 = "awsaccesskeyid" in params and "signature" in params
    is_dood = "dood" in host or "/dood" in path.lower()

    # googlevideo: absolute `expire`, also in the path form that HLS manifests use (/expire/<unix>/).
    if is_googlevideo:
        for value in params.get("expire", []):
            _add_absolute(add, value)
        for name, value in _GOOGLEVIDEO_PATH_PARAM.findall(path):
            if name == "expire":
                _add_absolute(add, value)

    # CloudFront canned policy and S3 SigV2: `Expires` is an absolute epoch.
    if is_cloudfront or is_sigv2:
        for value in params.get("expires", []):
            _add_absolute(add, value)
    # CloudFront custom policy: the expiry lives in the signed policy document.
    for value in params.get("policy", []):
        policy_expiry = _cloudfront_policy_expiry(value)
        if policy_expiry is not None:
            add(policy_expiry)

    # S3 SigV4: signing time plus lifetime.
    sigv4 = _sigv4_expiry(params.get("x-amz-date", []), params.get("x-amz-expires", []))
    if sigv4 is not None:
        add(sigv4)

    # Alist / OpenList: sign=<b64>:<unix>, where 0 means the link never expires.
    for value in params.get("sign", []):
        _, colon, tail = value.rpartition(":")
        if colon and _int(tail) not in (None, 0):
            _add_absolute(add, tail)

    # VOE-style HLS CDNs: s=<issue unix>, e=<ttl seconds>.
    for issue in params.get("s", []):
        if not re.fullmatch(r"[0-9]{10}", issue):
            continue
        for ttl_text in params.get("e", []):
            ttl = _int(ttl_text)
            if ttl is not None and 0 < ttl <= _MONTH:
                add(float(int(issue) + ttl))

    # JWTs anywhere in the query: their `exp` claim is authoritative.
    for values in params.values():
        for value in values:
            if value.startswith("eyJ"):
                jwt_expiry = _jwt_expiry(value)
                if jwt_expiry is not None:
                    add(jwt_expiry)

    # Generic names, guarded by plausibility windows.
    for name in _GENERIC_EXPIRY_PARAMS:
        if name == "expiry" and is_dood:
            continue  # Doodstream's `expiry` is when the link was issued, not when it dies.
        if name == "expire" and is_googlevideo:
            continue  # already taken as absolute above
        if name == "expires" and (is_cloudfront or is_sigv2):
            continue
        for value in params.get(name, []):
            guess = _generic_expiry(value, base=base, now=reference_now)
            if guess is None:
                continue
            moment, absolute = guess
            if absolute and issued is not None and moment <= issued + _ISSUE_SLACK:
                # A resolver does not hand out links that are already dead: a bare "expiry" at or before the
                # resolution is an issue time (Doodstream behind a CDN host that does not say "dood").
                continue
            add(moment)

    return min(candidates) if candidates else None


def expiry_iso(url: str, resolved_at: float | str | None = None, *, now: float | None = None) -> str | None:
    """The stored form of `predict_expiry` (mappings.expires_at is a UTC ISO string)."""
    moment = predict_expiry(url, resolved_at=resolved_at, now=now)
    if moment is None:
        return None
    try:
        return from_epoch(moment)
    except (OverflowError, OSError, ValueError):
        return None


def _split(url: str) -> tuple[str, str, list[tuple[str, str]]] | None:
    """Lower-cased host, path and query pairs; None for a URL that does not parse."""
    try:
        parts = urlsplit(url)
        return (parts.hostname or "").lower(), parts.path or "", parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return None


def egress_bound(url: str) -> bool:
    """Whether the link is tied to the client's IP/ASN, so a refresh from another egress may yield a dead link."""
    split = _split(url)
    if split is None:
        return False
    host, path, query = split
    for name, value in query:
        key = name.lower()
        value = value.strip()
        if not value:
            continue
        if key in ("ip", "asn"):
            return True
        if key == "i" and (_IPV4_PREFIX.fullmatch(value) or _IPV6ISH.fullmatch(value)):
            return True
    if host == "googlevideo.com" or host.endswith(".googlevideo.com"):
        for name, value in _GOOGLEVIDEO_PATH_PARAM.findall(path):
            if name == "ip" and value:
                return True
    return False


def _epoch_of(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return to_epoch(value)
        except ValueError:
            return None
    moment = float(value)
    return moment if math.isfinite(moment) else None


def _sane(epoch: float) -> bool:
    return _MIN_EPOCH < epoch < _MAX_EPOCH


def _int(value: str, max_digits: int = 15) -> int | None:
    """Digits only and short: query values are attacker-sized, and int()/float() choke on huge ones."""
    if len(value) > max_digits or not _DIGITS.fullmatch(value):
        return None
    return int(value)


def _add_absolute(add: Callable[[float], None], value: str) -> None:
    number = _int(value)
    if number is not None and _sane(float(number)):
        add(float(number))


def _generic_expiry(value: str, *, base: float, now: float) -> tuple[float, bool] | None:
    """(moment, absolute): absolute epochs and relative TTLs need different sanity checks afterwards."""
    number = _int(value)
    if number is None:
        return None
    if len(value) == 13:
        seconds = number / 1000.0
        return (seconds, True) if now - _YEAR <= seconds <= now + _MONTH else None
    if len(value) == 10 and now - _YEAR <= number <= now + _MONTH:
        return float(number), True
    if 0 < number <= _MAX_TTL:
        return base + number, False
    return None


def _b64decode(text: str, *, urlsafe: bool) -> bytes | None:
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _cloudfront_policy_expiry(value: str) -> float | None:
    # CloudFront makes base64 URL-safe its own way: + becomes -, = becomes _, / becomes ~.
    # parse_qsl already turned any literal '+' into a space; undo that too.
    standard = value.replace(" ", "+").replace("-", "+").replace("_", "=").replace("~", "/")
    raw = _b64decode(standard.rstrip("="), urlsafe=False)
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        epoch = document["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float, str)):
        return None
    try:
        moment = float(epoch)
    except (ValueError, OverflowError):
        return None
    return moment if _sane(moment) else None


def _sigv4_expiry(dates: list[str], lifetimes: list[str]) -> float | None:
    found: list[float] = []
    for date_text in dates:
        try:
            signed = datetime.strptime(date_text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            continue
        for lifetime_text in lifetimes:
            lifetime = _int(lifetime_text)
            if lifetime is not None:
                moment = signed.timestamp() + lifetime
                if _sane(moment):
                    found.append(moment)
    return min(found) if found else None


def _jwt_expiry(token: str) -> float | None:
    pieces = token.split(".")
    if len(pieces) < 2:
        return None
    raw = _b64decode(pieces[1], urlsafe=True)
    if raw is None:
        return None
    try:
        claims = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    try:
        moment = float(exp)
    except OverflowError:
        return None
    return moment if _sane(moment) else None
