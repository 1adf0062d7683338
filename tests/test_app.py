import io
import json
import time
from pathlib import Path

import pytest

from bridge.app import create_app
from bridge.timeutil import from_epoch
from tests.appfactory import AUTH, TOKEN, make_services


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, library_root: Path):  # type: ignore[no-untyped-def]
    services = make_services(tmp_path, roots=[library_root])
    return await aiohttp_client(create_app(services))


async def test_healthz_is_open(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


@pytest.mark.parametrize("headers,query", [
    ({"Authorization": f"Bearer {TOKEN}"}, ""),
    ({"authorization": f"bearer {TOKEN}"}, ""),
    ({"X-Api-Key": TOKEN}, ""),
    ({}, f"?token={TOKEN}"),
])
async def test_each_accepted_auth_form(client, headers, query) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/api/mappings" + query, headers=headers)
    assert response.status == 200


@pytest.mark.parametrize("headers,query", [
    ({}, ""),
    ({"Authorization": "Bearer wrong"}, ""),
    ({"Authorization": f"Basic {TOKEN}"}, ""),
    ({"X-Api-Key": TOKEN[:-1]}, ""),
    ({}, "?token="),
])
async def test_missing_or_wrong_token(client, headers, query) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/api/mappings" + query, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "unauthorized" and "detail" in body


async def test_unknown_route_is_json_404(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/api/nothing", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_body_limit(client) -> None:  # type: ignore[no-untyped-def]
    big = json.dumps({"strm_path": "/x.strm", "resolved_url": "http://a/" + "x" * (2 * 1024 * 1024)})
    # a file-like body: aiohttp warns (ResourceWarning) about sending megabytes of raw bytes in one go
    response = await client.post("/api/mappings", data=io.BytesIO(big.encode()),
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536  # no Content-Length: the limit must still hold while reading

    response = await client.post("/api/mappings", data=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await client.get("/api/mappings", headers=AUTH)).status == 200


async def test_register_then_read_back(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    expire = int(time.time()) + 6 * 3600
    body = {
        "strm_path": str(library_root / "Show" / "S01E02.strm"),
        "resolved_url": f"https://rr1.googlevideo.test/videoplayback?expire={expire}&ip=1.2.3.4",
        "site": "aniworld.to", "slug": "show", "season": 1, "episode": 2, "language": "German Dub",
        "provider_used": "VOE", "source_url": "https://aniworld.to/anime/stream/show/staffel-1/episode-2",
        "resolved_headers": {"Referer": "https://voe.sx/"},
    }
    created = await client.post("/api/mappings", json=body, headers=AUTH)
    assert created.status == 201
    mapping = await created.json()
    assert mapping["strm_path"] == body["strm_path"] and mapping["state"] == "ok"
    assert mapping["expires_at"] == from_epoch(expire)  # predicted from the URL marker
    fetched = await (await client.get(f"/api/mappings/{mapping['id']}", headers=AUTH)).json()
    assert fetched["resolved_headers"] == {"Referer": "https://voe.sx/"}
    assert fetched["provider_used"] == "VOE" and fetched["refresh_log"] == []
    again = await client.post("/api/mappings", json={**body, "resolved_url": "https://cdn.test/w.mp4",
                                                     "expires_at": "2030-01-01T00:00:00Z"}, headers=AUTH)
    assert again.status == 200 and (await again.json())["id"] == mapping["id"]
    listing = await (await client.get("/api/mappings?slug=show&season=1", headers=AUTH)).json()
    assert listing["total"] == 1 and listing["items"][0]["resolved_url"] == "https://cdn.test/w.mp4"
    assert listing["items"][0]["expires_at"] == "2030-01-01T00:00:00.000000Z"
    assert (await (await client.get("/api/mappings?slug=other", headers=AUTH)).json())["total"] == 0


@pytest.mark.parametrize("change,status,error", [
    ({"strm_path": None}, 400, "missing_field"),
    ({"resolved_url": None}, 400, "missing_field"),
    ({"resolved_url": "ftp://cdn/x"}, 422, "invalid_url"),
    ({"resolved_url": "not a url"}, 422, "invalid_url"),
    ({"strm_path": "/etc/evil.strm"}, 422, "outside_roots"),
    ({"season": "one"}, 400, "invalid_field"),
    ({"resolved_headers": {"a": 1}}, 400, "invalid_field"),
    ({"colour": "red"}, 400, "invalid_field"),
    ({"expires_at": "tomorrow"}, 400, "invalid_field"),
])
async def test_bad_registrations_store_nothing(client, library_root: Path, change, status, error) -> None:  # type: ignore[no-untyped-def]
    body = {"strm_path": str(library_root / "a.strm"), "resolved_url": "http://cdn/a", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/api/mappings", json=body, headers=AUTH)
    assert response.status == status
    assert (await response.json())["error"] == error
    assert (await (await client.get("/api/mappings", headers=AUTH)).json())["total"] == 0


async def test_traversal_and_malformed_json(client, library_root: Path) -> None:  # type: ignore[no-untyped-def]
    sneaky = {"strm_path": f"{library_root}/../x.strm", "resolved_url": "http://cdn/a"}
    response = await client.post("/api/mappings", json=sneaky, headers=AUTH)
    assert response.status == 422 and (await response.json())["error"] == "path_traversal"
    response = await client.post("/api/mappings", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == "invalid_json"
    response = await client.post("/api/mappings", json=[1, 2], headers=AUTH)
    assert response.status == 400
    assert (await (await client.get("/api/mappings", headers=AUTH)).json())["total"] == 0


async def test_paging_and_bad_query(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/api/mappings?limit=0", headers=AUTH)).status == 400
    assert (await client.get("/api/mappings?limit=abc", headers=AUTH)).status == 400
    assert (await client.get("/api/mappings?state=zombie", headers=AUTH)).status == 400
    assert (await client.get("/api/mappings/abc", headers=AUTH)).status == 400
    assert (await client.get("/api/mappings/42", headers=AUTH)).status == 404


async def test_generated_token_is_stored_and_reused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from bridge.auth import ensure_api_token

    db_path = tmp_path / "d" / "x.db"
    first = ensure_api_token("", db_path)
    printed = capsys.readouterr().err
    assert first in printed
    assert oct((db_path.parent / "api-token").stat().st_mode & 0o777) == "0o600"
    assert ensure_api_token("", db_path) == first
    assert first not in capsys.readouterr().err  # printed once only
    assert ensure_api_token("configured", db_path) == "configured"
