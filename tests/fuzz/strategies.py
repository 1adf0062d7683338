"""Hostile inputs for the property tests: JSON of wrong types, huge and deep values, lone surrogates, bad bytes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# text that includes lone surrogates (category Cs), NUL and every other code point
HOSTILE_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "a\udfffb", "²", "１２", "٣", "9" * 30, "9" * 400, "-1", "1e400", "NaN", "inf",
     "../../etc/passwd", "/media/strm/x.strm", "{ItemId}", "\u202e", "0x10", " 12 ", "+5"])
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 2**70, -(2**100), 10**400])
NUMBERS = (st.integers(-(2**80), 2**80) | HUGE_INTS | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, -1, 1, 1e308, -1e308, 5e-324]))
SCALARS = st.none() | st.booleans() | NUMBERS | HOSTILE_TEXT
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(HOSTILE_TEXT, inner, max_size=4), max_leaves=12)
HUGE_NUMBER_TEXT = st.sampled_from(["9" * 400, "9" * 5000, "1e400", "-1e400", "18446744073709551616", "²"])
NUMBER_LIKE = HUGE_INTS | HUGE_NUMBER_TEXT | NUMBERS | st.from_regex(r"\A-?[0-9]{1,500}\Z") | HOSTILE_TEXT
"""Biased to the values that broke the parsers: past 64 bits, past float range, Unicode digits."""
VALID_KEY = st.sampled_from(["12", 12, "7"])
ANY_VALUE = JSON_VALUES | NUMBER_LIKE


def deep(n: int, kind: str) -> str:
    return "[" * n + "]" * n if kind == "array" else '{"a":' * n + "1" + "}" * n


DEEP_JSON = st.builds(deep, st.integers(1, 20_000), st.sampled_from(["array", "object"]))


def encode(value: Any) -> bytes:
    """Python's lenient encoder: NaN/Infinity literals and `\\udXXX` escapes for lone surrogates pass through."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "application/json; charset=utf-16", "application/json; charset=x-no-such", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=zz",
    "image/jpeg", "", "application/json; charset=\"", "*/*; q=0.1", "application/json;;;",
])

RAW_BODIES = (st.binary(max_size=300) | DEEP_JSON.map(str.encode)
              | st.builds(encode, JSON_VALUES) | st.sampled_from([
                  b"", b"\xff\xfe\x00", b"\xef\xbb\xbf{}", b"null", b"[]", b'{"a": 1', b'{"a": NaN}',
                  b'{"a": "\\ud800"}', b'{"id": ' + b"7" * 5000 + b"}", b"\x00" * 64, b'{"a":1}{"b":2}']))


def body_of(keys: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the expected keys (each maybe missing) holding values of any type."""
    return st.fixed_dictionaries({}, optional={k: v for k, v in keys.items()})


JELLYFIN = st.fixed_dictionaries(
    {"NotificationType": st.sampled_from(["PlaybackStart", "PlaybackStop", "PlaybackProgress", "ItemAdded"]) | HOSTILE_TEXT},
    optional={
        "ItemId": st.sampled_from(["5b8c3a1f0e2d4c6b8a9f7e1d2c3b4a59", "5b8c3a1f-0e2d-4c6b-8a9f-7e1d2c3b4a59",
                                   "0" * 32]) | ANY_VALUE,
        "PlaybackPositionTicks": NUMBER_LIKE, "RunTimeTicks": NUMBER_LIKE, "SeasonNumber": NUMBER_LIKE,
        "EpisodeNumber": NUMBER_LIKE, "DeviceId": ANY_VALUE, "PlayedToCompletion": ANY_VALUE,
        "IsPaused": ANY_VALUE, "NotificationUsername": ANY_VALUE, "SeriesName": ANY_VALUE,
        "Provider_tvdb": ANY_VALUE, "SeriesId": ANY_VALUE, "ServerId": ANY_VALUE, "Path": ANY_VALUE,
        "Name": ANY_VALUE, "ItemType": ANY_VALUE, "Client": ANY_VALUE,
    })

PLEX_METADATA = body_of({"ratingKey": VALID_KEY | NUMBER_LIKE, "viewOffset": NUMBER_LIKE, "duration": NUMBER_LIKE,
                         "parentIndex": NUMBER_LIKE, "index": NUMBER_LIKE, "librarySectionID": NUMBER_LIKE,
                         "type": ANY_VALUE, "title": ANY_VALUE, "grandparentTitle": ANY_VALUE, "guid": ANY_VALUE,
                         "year": NUMBER_LIKE, "librarySectionType": ANY_VALUE})
PLEX = st.fixed_dictionaries(
    {"event": st.sampled_from(["media.play", "media.stop", "media.pause", "media.resume", "library.new"]) | ANY_VALUE},
    optional={"Metadata": PLEX_METADATA | ANY_VALUE, "Player": body_of({"uuid": ANY_VALUE}) | ANY_VALUE,
              "Account": body_of({"title": ANY_VALUE}) | ANY_VALUE, "Server": ANY_VALUE, "owner": ANY_VALUE})

TAUTULLI_KEYS = ["action", "rating_key", "view_offset", "duration", "duration_sec", "season_num", "episode_num",
                 "section_id", "machine_id", "player", "session_key", "file", "title", "show_name", "media_type",
                 "guid", "user"]
TAUTULLI = st.fixed_dictionaries(
    {"action": st.sampled_from(["play", "stop", "error", "on_error", "buffer", "watched"]) | ANY_VALUE},
    optional={"rating_key": VALID_KEY.map(str) | NUMBER_LIKE, **{k: NUMBER_LIKE | ANY_VALUE for k in TAUTULLI_KEYS[2:]}})

EMBY = st.fixed_dictionaries(
    {"Event": st.sampled_from(["playback.start", "playback.stop", "playback.pause", "item.rate"]) | ANY_VALUE},
    optional={
        "Item": body_of({"Id": VALID_KEY | ANY_VALUE, "Path": ANY_VALUE, "Type": ANY_VALUE, "IndexNumber": NUMBER_LIKE,
                         "ParentIndexNumber": NUMBER_LIKE, "ProductionYear": NUMBER_LIKE, "RunTimeTicks": NUMBER_LIKE,
                         "ProviderIds": ANY_VALUE, "SeriesName": ANY_VALUE, "Name": ANY_VALUE}) | ANY_VALUE,
        "PlaybackInfo": body_of({"PositionTicks": NUMBER_LIKE, "PlayedToCompletion": ANY_VALUE}) | ANY_VALUE,
        "Session": body_of({"DeviceId": ANY_VALUE, "Id": ANY_VALUE}) | ANY_VALUE,
        "User": body_of({"Name": ANY_VALUE}) | ANY_VALUE,
    })

MAPPING_BODY = body_of({k: ANY_VALUE for k in (
    "strm_path", "resolved_url", "site", "slug", "season", "episode", "language", "provider", "provider_used",
    "source_url", "resolved_headers", "expires_at", "unknown")})
SELECTION_PART = body_of({"site": ANY_VALUE, "slug": ANY_VALUE, "season": NUMBER_LIKE, "episode": NUMBER_LIKE,
                          "language": ANY_VALUE, "provider": ANY_VALUE})
REFRESH_BODY = body_of({"id": NUMBER_LIKE, "path": ANY_VALUE, "identity": SELECTION_PART | ANY_VALUE,
                        "series": SELECTION_PART | ANY_VALUE, "stale": ANY_VALUE, "all": ANY_VALUE,
                        "margin_seconds": NUMBER_LIKE, "dry_run": ANY_VALUE, "force": ANY_VALUE})
RESCAN_BODY = body_of({"path": ANY_VALUE | st.just("/x\x00.strm")})


PART_NAMES = st.sampled_from(["payload", "thumb", "other", "", "PAYLOAD", "payload\x00"]) | HOSTILE_TEXT.filter(
    lambda s: '"' not in s and "\r" not in s and "\n" not in s)
PART_BODIES = (st.builds(encode, PLEX) | st.binary(max_size=200) | DEEP_JSON.map(str.encode)
               | st.sampled_from([64 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024]).map(lambda n: b"\xff\xd8" * (n // 2)))
PART_TYPES = st.sampled_from(["application/json", "image/jpeg", "text/plain; charset=x-nope",
                              "text/plain; charset=utf-16", "", "multipart/mixed; boundary=inner"])
CORRUPTIONS = st.sampled_from(["none", "none", "truncate", "no-close", "lf-only", "wrong-boundary", "preamble",
                               "long-header", "no-header-end", "nested"])


@st.composite
def plex_multipart(draw: Any) -> tuple[bytes, str]:
    """A Plex-like multipart body (0, 1 or 2 payloads, maybe a huge thumb) with one kind of broken framing."""
    boundary = draw(st.sampled_from(["----PlexBoundary7MA4YWxk", "b", "x" * 70]))
    parts = draw(st.lists(st.tuples(PART_NAMES, PART_TYPES, PART_BODIES), min_size=0, max_size=3))
    corruption = draw(CORRUPTIONS)
    out = b"preamble junk\r\n" if corruption == "preamble" else b""
    for name, part_type, body in parts:
        head = f'Content-Disposition: form-data; name="{name}"'.encode("utf-8", "surrogatepass")
        if part_type:
            head += b"\r\nContent-Type: " + part_type.encode()
        if corruption == "long-header":
            head += b"\r\nX-Long: " + b"h" * 20_000
        if corruption == "nested":
            head = b'Content-Disposition: form-data; name="payload"\r\nContent-Type: multipart/mixed; boundary=inner'
            body = b"--inner\r\n\r\nx\r\n--inner--\r\n"
        separator = b"\r\n" if corruption == "no-header-end" else b"\r\n\r\n"
        out += b"--" + boundary.encode() + b"\r\n" + head + separator + body + b"\r\n"
    if corruption != "no-close":
        out += b"--" + boundary.encode() + b"--\r\n"
    if corruption == "truncate" and out:
        out = out[: draw(st.integers(0, len(out) - 1))]
    if corruption == "lf-only":
        out = out.replace(b"\r\n", b"\n")
    declared = "other-boundary" if corruption == "wrong-boundary" else boundary
    return out, f"multipart/form-data; boundary={declared}"


ARR_FIXTURES = Path(__file__).resolve().parents[2] / "integrations" / "arr" / "fixtures"

# ---- valid payloads with one to three fields made hostile: reaches the checks behind the first one ----
DELETE = object()
BASES: dict[str, dict[str, Any]] = {
    "jellyfin": {"NotificationType": "PlaybackStop", "ItemId": "5b8c3a1f0e2d4c6b8a9f7e1d2c3b4a59",
                 "PlaybackPositionTicks": 12_000_000, "RunTimeTicks": 14_400_000_000, "SeasonNumber": 1,
                 "EpisodeNumber": 2, "DeviceId": "tv-1", "PlayedToCompletion": False, "IsPaused": False,
                 "NotificationUsername": "anna", "SeriesName": "Show", "Provider_tvdb": "123",
                 "SeriesId": "1b8c3a1f0e2d4c6b8a9f7e1d2c3b4a59", "ServerId": "s1", "Name": "Ep", "ItemType": "Episode"},
    "plex": {"event": "media.stop", "Account": {"title": "anna"}, "Player": {"uuid": "p-1"},
             "Metadata": {"ratingKey": "12", "viewOffset": 3000, "duration": 1_440_000, "parentIndex": 1, "index": 2,
                          "librarySectionID": 3, "type": "episode", "title": "Ep", "grandparentTitle": "Show",
                          "guid": "plex://episode/1", "year": 2020}},
    "tautulli": {"action": "stop", "rating_key": "12", "view_offset": "3000", "duration": "24", "duration_sec": "1440",
                 "season_num": "1", "episode_num": "2", "section_id": "3", "machine_id": "m-1",
                 "file": "/data/tv/Show/S01E02.strm", "title": "Ep", "show_name": "Show", "media_type": "episode",
                 "user": "anna"},
    "emby": {"Event": "playback.stop", "Item": {"Id": "77", "Path": "/data/tv/Show/S01E02.strm", "Type": "Episode",
                                                "IndexNumber": 2, "ParentIndexNumber": 1, "RunTimeTicks": 14_400_000_000,
                                                "ProviderIds": {"Tvdb": "1"}, "SeriesName": "Show", "Name": "Ep"},
             "PlaybackInfo": {"PositionTicks": 30_000_000, "PlayedToCompletion": False},
             "Session": {"DeviceId": "d-1"}, "User": {"Name": "anna"}},
    # /api bodies: the path is outside the roots, so even a body whose fields all pass ends in a 422
    "mapping": {"strm_path": "/outside/Show/S01E01.strm", "resolved_url": "https://cdn.example/v.mp4", "site": "s",
                "slug": "show", "season": 1, "episode": 2, "language": "de", "provider": "VOE", "provider_used": "VOE",
                "source_url": "https://site.example/show/1/2", "resolved_headers": {"Referer": "https://a/"},
                "expires_at": "2030-01-01T00:00:00Z"},
    "refresh-identity": {"identity": {"site": "s", "slug": "show", "season": 1, "episode": 2, "language": "de",
                                      "provider": "VOE"}, "dry_run": False, "force": False},
    "refresh-series": {"series": {"site": "s", "slug": "show", "season": 1}},
    "refresh-stale": {"stale": True, "margin_seconds": 3600},
    "refresh-id": {"id": 1, "force": True},
    "rescan": {"path": "/outside/Show/S01E01.strm"},
    "prune": {"missing": True, "dry_run": True},
    # Sonarr/Radarr: their own fixtures (rebuilt from the payload classes, see integrations/arr/fixtures/README.md)
    "sonarr": json.loads((ARR_FIXTURES / "sonarr_download.json").read_text()),
    "radarr": json.loads((ARR_FIXTURES / "radarr_download.json").read_text()),
}


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, child in value.items():
        found.append((*prefix, key))
        if isinstance(child, dict):
            found.extend(_paths(child, (*prefix, key)))
    return found


def _set(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = payload
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            return
        node = node[key]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


KILLERS: list[Any] = [
    DELETE, None, True, False, "", " ", 0, -1, 10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, 1e308, -1e308,
    5e-324, float("nan"), float("inf"), "9" * 400, "9" * 5000, "-" + "9" * 400, "1e400", "NaN", "²", "１２", "\ud800",
    "a\udfffb", "\x00", "x" * 10_000, [1, 2], [], {}, {"a": {"b": [1]}}, [[[[[[[[[[[[]]]]]]]]]]]],
    "5b8c3a1f-0e2d-4c6b-8a9f-7e1d2c3b4a59", "{rating_key}", "../../../etc/passwd", "http://[::1/x",
]
"""The values that broke a parser in issue 11's run, and their neighbours."""
HOSTILE_VALUE = st.sampled_from(KILLERS) | NUMBER_LIKE | ANY_VALUE


def field_paths(source: str) -> list[tuple[str, ...]]:
    return _paths(BASES[source])


def with_field(source: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload = json.loads(json.dumps(BASES[source]))
    _set(payload, path, value)
    return payload


@st.composite
def mutated(draw: Any, source: str) -> dict[str, Any]:
    base = BASES[source]
    payload = json.loads(json.dumps(base))
    for path in draw(st.lists(st.sampled_from(_paths(base)), min_size=1, max_size=3, unique=True)):
        _set(payload, path, draw(HOSTILE_VALUE))
    return payload
