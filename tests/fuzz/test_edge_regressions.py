"""One regression test per 500 the hostile-request run of issue 11 found; each failed before its fix.

Every case asserts the answer is a 4xx in the JSON error shape (or a 2xx where the input is acceptable),
and that nothing was stored or written that should not be.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.selection import SelectionError, parse_selection
from bridge.strm import InvalidUrl, Library, StrmError, validate_url
from bridge.timeutil import parse_iso
from tests.appfactory import AUTH, TOKEN, make_services
from tests.fuzz.raw import error_body, raw_request

JELLYFIN_ITEM = "5b8c3a1f0e2d4c6b8a9f7e1d2c3b4a59"


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, library_root: Path):  # type: ignore[no-untyped-def]
    services = make_services(tmp_path, roots=[library_root])
    client = await aiohttp_client(create_app(services))
    client.services = services  # type: ignore[attr-defined]
    return client


def mapping_count(client: Any) -> int:
    return client.services.store.count()


def event_count(client: Any) -> int:
    return client.services.db.conn.execute("select count(*) from events").fetchone()[0]


async def assert_4xx(response: Any, status: int | None = None) -> dict[str, Any]:
    body = await response.json()
    assert 400 <= response.status < 500, (response.status, body)
    if status is not None:
        assert response.status == status, (response.status, body)
    assert set(body) == {"error", "detail"}, body
    return body


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZzY") -> tuple[bytes, str]:
    """Parts as (raw header block, body); the caller controls every byte of the framing."""
    out = b""
    for head, body in parts:
        out += b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return out, f"multipart/form-data; boundary={boundary.decode()}"


def plex_part(payload: bytes) -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="payload"\r\nContent-Type: application/json', payload


# ---- auth ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [b"Authorization", b"X-Api-Key"])
async def test_undecodable_token_header_is_401_not_500(client, header: bytes) -> None:  # type: ignore[no-untyped-def]
    value = (b"Bearer " if header == b"Authorization" else b"") + b"\xff\xfe\x80" + TOKEN.encode()
    status, _, payload = await raw_request(client.server.port, "GET", "/api/mappings", [(header, value)])
    assert status == 401
    assert error_body(payload)["error"] == "unauthorized"


# ---- webhook values orjson cannot store ---------------------------------------------------------------
async def test_jellyfin_season_beyond_64_bits_is_accepted_without_the_hint(client) -> None:  # type: ignore[no-untyped-def]
    body = {"NotificationType": "PlaybackStart", "ItemId": JELLYFIN_ITEM, "SeasonNumber": "9" * 30,
            "EpisodeNumber": "9" * 400, "DeviceId": "tv"}
    response = await client.post("/webhooks/jellyfin", json=body, headers=AUTH)
    assert response.status == 202, await response.text()
    stored = json.loads(client.services.db.conn.execute("select payload from events").fetchone()[0])
    assert "season" not in stored["hints"] and "episode" not in stored["hints"]


async def test_jellyfin_huge_ticks_string_is_no_position(client) -> None:  # type: ignore[no-untyped-def]
    body = {"NotificationType": "PlaybackStop", "ItemId": JELLYFIN_ITEM, "PlaybackPositionTicks": "9" * 400,
            "DeviceId": "tv"}
    response = await client.post("/webhooks/jellyfin", json=body, headers=AUTH)
    assert response.status == 202, await response.text()


async def test_plex_lone_surrogate_is_400(client) -> None:  # type: ignore[no-untyped-def]
    payload = b'{"event": "media.play", "Account": {"title": "\\ud800"}, "Metadata": {"ratingKey": "12"}}'
    data, content_type = multipart([plex_part(payload)])
    response = await client.post("/webhooks/plex", data=data, headers={**AUTH, "Content-Type": content_type})
    await assert_4xx(response, 400)
    assert event_count(client) == 0


async def test_plex_huge_view_offset_is_no_position(client) -> None:  # type: ignore[no-untyped-def]
    payload = json.dumps({"event": "media.stop", "Player": {"uuid": "p"},
                          "Metadata": {"ratingKey": "12", "viewOffset": "9" * 400}}).encode()
    data, content_type = multipart([plex_part(payload)])
    response = await client.post("/webhooks/plex", data=data, headers={**AUTH, "Content-Type": content_type})
    assert response.status == 202, await response.text()


async def test_tautulli_lone_surrogate_is_400(client) -> None:  # type: ignore[no-untyped-def]
    body = b'{"action": "play", "rating_key": "12", "file": "/data/\\udc80.strm"}'
    response = await client.post("/webhooks/tautulli", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response, 400)
    assert event_count(client) == 0


async def test_emby_lone_surrogate_item_id_is_400(client) -> None:  # type: ignore[no-untyped-def]
    body = b'{"Event": "playback.start", "Item": {"Id": "\\ud83d"}}'
    response = await client.post("/webhooks/emby", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response, 400)
    assert event_count(client) == 0


@pytest.mark.parametrize("ticks", ["9" * 400, "1e308", 2**70], ids=["400-digit-string", "1e308-string", "2**70"])
async def test_emby_huge_position_ticks(client, ticks: Any) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"Event": "playback.stop", "Item": {"Id": "77", "IndexNumber": 2**70},
                       "PlaybackInfo": {"PositionTicks": ticks}}).encode()
    response = await client.post("/webhooks/emby", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 202 or 400 <= response.status < 500, await response.text()
    if response.status == 202:
        stored = json.loads(client.services.db.conn.execute("select payload from events").fetchone()[0])
        assert stored["position_seconds"] is None and "episode" not in stored["hints"]


# ---- deep nesting -------------------------------------------------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.mark.parametrize("deep", [DEEP, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("route", ["/webhooks/tautulli", "/webhooks/emby", "/webhooks/jellyfin", "/webhooks/sonarr",
                                   "/webhooks/radarr", "/api/mappings", "/api/refresh", "/api/rescan",
                                   "/api/mappings/prune"])
async def test_deep_json_is_400(client, route: str, deep: bytes) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(route, data=deep, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response, 400)
    assert mapping_count(client) == 0 and event_count(client) == 0


async def test_deep_plex_payload_is_400(client) -> None:  # type: ignore[no-untyped-def]
    data, content_type = multipart([plex_part(DEEP)])
    response = await client.post("/webhooks/plex", data=data, headers={**AUTH, "Content-Type": content_type})
    await assert_4xx(response, 400)


async def test_deep_emby_form_data_is_400(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/webhooks/emby", data={"data": DEEP.decode()}, headers=AUTH)
    await assert_4xx(response, 400)


# ---- multipart framing --------------------------------------------------------------------------------
@pytest.mark.parametrize("head", [
    b"X" * 20_000,                                           # LineTooLong
    b"Content-Disposition: form-data; name=\"payload\"\r\nno colon here",  # InvalidHeader
    b"Content-Disposition: form-data; name=\"payload\"\r\n: empty name",
    b"Content-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json; charset=x-nope",
], ids=["line-too-long", "no-colon", "empty-name", "unknown-charset"])
async def test_broken_part_headers_are_400(client, head: bytes) -> None:  # type: ignore[no-untyped-def]
    data, content_type = multipart([(head, b'{"event": "media.play", "Metadata": {"ratingKey": "1"}}')])
    status, _, payload = await raw_request(client.server.port, "POST", f"/webhooks/plex?token={TOKEN}",
                                           [(b"Content-Type", content_type.encode())], data)
    assert 400 <= status < 500, (status, payload)
    error_body(payload)
    assert event_count(client) == 0


@pytest.mark.parametrize("head", [
    b"Content-Disposition: form-data; name=\"payload\"\r\nContent-Length: banana",
    b"Content-Disposition: form-data; name=\"payload\"\r\nContent-Transfer-Encoding: rot13",
], ids=["bad-length", "bad-transfer-encoding"])
async def test_part_headers_aiohttp_ignores_are_read_as_sent(client, head: bytes) -> None:  # type: ignore[no-untyped-def]
    """aiohttp does not act on these part headers when streaming: the payload reads as sent, a 202."""
    data, content_type = multipart([(head, b'{"event": "media.play", "Metadata": {"ratingKey": "1"}}')])
    status, _, payload = await raw_request(client.server.port, "POST", f"/webhooks/plex?token={TOKEN}",
                                           [(b"Content-Type", content_type.encode())], data)
    assert status == 202, (status, payload)


@pytest.mark.parametrize("content_type", [
    b"multipart/form-data",                       # no boundary
    b"multipart/form-data; boundary=",            # empty boundary
    b"multipart/form-data; boundary=" + b"b" * 300,
    b"multipart/mixed; boundary=\xff\xfe",
], ids=["no-boundary", "empty-boundary", "long-boundary", "undecodable-boundary"])
async def test_broken_multipart_content_type_is_400(client, content_type: bytes) -> None:  # type: ignore[no-untyped-def]
    status, _, payload = await raw_request(client.server.port, "POST", f"/webhooks/plex?token={TOKEN}",
                                           [(b"Content-Type", content_type)], b"--b\r\n\r\nx\r\n--b--\r\n")
    assert 400 <= status < 500, (status, payload)
    error_body(payload)


# ---- the JSON reader of /api --------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/api/mappings", "/api/refresh", "/api/rescan"])
async def test_unknown_charset_is_400(client, route: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(route, data=b'{"all": true}',
                                 headers={**AUTH, "Content-Type": "application/json; charset=x-no-such"})
    await assert_4xx(response)


@pytest.mark.parametrize("route", ["/api/mappings", "/api/refresh"])
async def test_integer_of_5000_digits_is_400(client, route: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(route, data=b'{"id": ' + b"7" * 5000 + b"}",
                                 headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response, 400)


# ---- API values SQLite cannot bind --------------------------------------------------------------------
def registration(root: Path, **extra: Any) -> dict[str, Any]:
    return {"strm_path": str(root / "Show" / "S01E01.strm"), "resolved_url": "https://cdn.example/v.mp4", **extra}


@pytest.mark.parametrize("extra", [
    {"season": 2**63}, {"episode": -(2**63) - 1}, {"season": "²"}, {"season": "9" * 30}, {"episode": ["1"]},
    {"site": ["a"]}, {"slug": {"a": 1}}, {"provider_used": 3}, {"expires_at": ["2030-01-01"]},
    {"expires_at": "9999-12-31T23:59:59-05:00"}, {"expires_at": "0001-01-01T00:00:00+05:00"},
    {"resolved_headers": {"Referer": 5}}, {"resolved_headers": ["a"]},
])
async def test_registration_values_are_validated(client, library_root: Path, extra: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/api/mappings", json=registration(library_root, **extra), headers=AUTH)
    await assert_4xx(response, 400)
    assert mapping_count(client) == 0


@pytest.mark.parametrize("raw_field", [b'"site": "\\ud800"', b'"slug": "a\\udfff"', b'"resolved_url": "https://a/\\ud800"',
                                       b'"language": "de\\u0000"'])
async def test_registration_lone_surrogates_and_nul_are_400(client, library_root: Path, raw_field: bytes) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(registration(library_root)).encode()[:-1] + b", " + raw_field + b"}"
    response = await client.post("/api/mappings", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response)
    assert mapping_count(client) == 0


@pytest.mark.parametrize("strm_path", ["/lib/a\x00b.strm", "LIB/S01E01\udc80.strm", "LIB/S01E01\ud800.strm"])
async def test_registration_path_with_nul_or_surrogate_is_4xx(client, library_root: Path, strm_path: str) -> None:  # type: ignore[no-untyped-def]
    strm_path = strm_path.replace("LIB", str(library_root))
    body = json.dumps({"strm_path": strm_path, "resolved_url": "https://cdn.example/v.mp4"}).encode()
    response = await client.post("/api/mappings", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response)
    assert mapping_count(client) == 0
    assert list(library_root.iterdir()) == []


@pytest.mark.parametrize("strm_path", ["/lib/a\x00b.strm", "LIB/S01E01\udc80.strm"])
async def test_rescan_path_with_nul_or_surrogate_is_4xx(client, library_root: Path, strm_path: str) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"path": strm_path.replace("LIB", str(library_root))}).encode()
    response = await client.post("/api/rescan", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response)


@pytest.mark.parametrize("body", [
    {"id": 2**63}, {"id": -(2**63) - 1}, {"id": "²"}, {"id": 1.5}, {"id": [1]},
    {"identity": {"site": "s", "slug": "x", "season": 2**64, "episode": 1}},
    {"identity": {"site": ["s"], "slug": "x", "season": 1, "episode": 1}},
    {"identity": {"site": "s", "slug": "x", "season": 1, "episode": 1, "language": ["de"]}},
    {"series": {"site": "s", "slug": "x", "season": 2**63}},
    {"series": {"site": "s", "slug": {"x": 1}}},
    {"stale": True, "margin_seconds": 1e308}, {"stale": True, "margin_seconds": 2**80},
    {"path": "/x\x00.strm"},
])
async def test_refresh_selection_values_are_validated(client, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/api/refresh", json=body, headers=AUTH)
    await assert_4xx(response)


async def test_refresh_path_with_lone_surrogate_is_4xx(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/api/refresh", data=b'{"path": "/x\\ud800.strm"}',
                                 headers={**AUTH, "Content-Type": "application/json"})
    await assert_4xx(response)


@pytest.mark.parametrize("query", ["limit=%C2%B2", "offset=99999999999999999999999", "season=%EF%BC%91",
                                   "path=%ED%A0%80", "slug=%00", "limit=1e3", "path=" + "a" * 7000],
                         ids=["superscript", "huge-offset", "fullwidth-digit", "surrogate", "nul", "float", "long-path"])
async def test_list_query_values_are_validated(client, query: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(f"/api/mappings?{query}", headers=AUTH)
    assert response.status == 200 or 400 <= response.status < 500, await response.text()
    if response.status != 200:
        await assert_4xx(response)


async def test_request_line_past_aiohttps_limit_is_refused_before_the_app(client) -> None:  # type: ignore[no-untyped-def]
    """aiohttp's HTTP parser answers a request line over 8190 bytes itself (400, text): the one non-JSON 4xx."""
    response = await client.get("/api/mappings?path=" + "a" * 20000, headers=AUTH)
    assert response.status in (400, 414)


@pytest.mark.parametrize("mapping_id", ["99999999999999999999999", "-99999999999999999999", "%C2%B2", "1e3"])
async def test_mapping_id_beyond_64_bits_is_4xx(client, mapping_id: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(f"/api/mappings/{mapping_id}", headers=AUTH)
    await assert_4xx(response)


# ---- path length limits -------------------------------------------------------------------------------
async def test_file_name_over_name_max_is_422(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    name_max = os.pathconf(library_root, "PC_NAME_MAX")
    body = {"strm_path": str(library_root / ("e" * (name_max + 81 - 5) + ".strm")), "resolved_url": "https://a/v.mp4"}
    response = await client.post("/api/mappings", json=body, headers=AUTH)
    detail = (await assert_4xx(response, 422))["detail"]
    assert str(name_max) in detail
    assert mapping_count(client) == 0


async def test_multibyte_name_is_measured_in_bytes(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    name_max = os.pathconf(library_root, "PC_NAME_MAX")
    stem = "é" * ((name_max - 5) // 2 + 1)  # fewer characters than NAME_MAX, more bytes
    assert len(stem) + 5 <= name_max < len((stem + ".strm").encode())
    body = {"strm_path": str(library_root / (stem + ".strm")), "resolved_url": "https://a/v.mp4"}
    response = await client.post("/api/mappings", json=body, headers=AUTH)
    await assert_4xx(response, 422)


async def test_path_over_path_max_is_422(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    path_max = os.pathconf(library_root, "PC_PATH_MAX")
    folders = "/".join(["d" * 200] * (path_max // 200 + 1))
    body = {"strm_path": f"{library_root}/{folders}/S01E01.strm", "resolved_url": "https://a/v.mp4"}
    response = await client.post("/api/mappings", json=body, headers=AUTH)
    detail = (await assert_4xx(response, 422))["detail"]
    assert str(path_max) in detail


async def test_name_at_name_max_is_accepted_and_writable(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    name_max = os.pathconf(library_root, "PC_NAME_MAX")
    target = library_root / ("e" * (name_max - 5) + ".strm")
    response = await client.post("/api/mappings", json={"strm_path": str(target), "resolved_url": "https://a/v.mp4"},
                                 headers=AUTH)
    assert response.status == 201, await response.text()
    assert client.services.library.write(str(target), "https://a/v.mp4")
    assert target.read_text().strip() == "https://a/v.mp4"


# ---- the functions behind them ------------------------------------------------------------------------
def test_selection_int_refuses_inf_and_nan() -> None:
    for value in (float("inf"), float("-inf"), float("nan"), 1e300, 2**63):
        with pytest.raises(SelectionError):
            parse_selection({"id": value})


def test_parse_iso_overflow_is_value_error() -> None:
    for text in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
        with pytest.raises(ValueError):
            parse_iso(text)


@pytest.mark.parametrize("url", ["http://[::1/x", "http://[::1", "https://[zz]/a", "http://a]b/"])
def test_validate_url_bad_brackets(url: str) -> None:
    with pytest.raises(InvalidUrl):
        validate_url(url)


@pytest.mark.parametrize("name", ["a\x00b.strm", "a\udc80b.strm", "a\ud800.strm"])
def test_check_path_nul_and_surrogates(library: Library, library_root: Path, name: str) -> None:
    with pytest.raises(StrmError):
        library.check_path(str(library_root) + "/" + name)


# ---- found by the long runs (schemathesis and hypothesis, -m fuzz_long) ------------------------------------
@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
@pytest.mark.parametrize("mapping_id", ["%C2%B9", "%C2%B2", "%E2%91%A0", "%D9%A3"], ids=["sup1", "sup2", "circled1", "arabic3"])
async def test_unicode_digit_mapping_id_is_400(client, method: str, mapping_id: str) -> None:  # type: ignore[no-untyped-def]
    """`"¹".isdigit()` is true and `int("¹")` raises: the DELETE and PATCH routes answered 500."""
    response = await client.request(method, f"/api/mappings/{mapping_id}", json={"slug": "x"}, headers=AUTH)
    await assert_4xx(response, 400)


def test_retire_find_by_unicode_digits_is_a_path_lookup(store) -> None:  # type: ignore[no-untyped-def]
    from bridge.retire import find

    assert find(store, "¹") is None  # was int("¹"): ValueError
