"""PATCH /api/mappings/{id} and PATCH /api/series: explicit identity corrections, kept by later imports."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge import overrides
from bridge.app import create_app
from bridge.importer import Adopter, import_tree
from bridge.probe import expiry_iso
from tests.appfactory import AUTH, make_services


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client):  # type: ignore[no-untyped-def]
    root = tmp_path / "media"
    season = root / "tv" / "Spy x Family (2022)" / "Season 1"
    season.mkdir(parents=True)
    for e in (1, 2):
        (season / f"Spy x Family - S01E0{e} - Title.strm").write_text(f"https://cdn.test/spy/{e}.m3u8\n")
    other = root / "tv" / "Other Show" / "Season 1"
    other.mkdir(parents=True)
    (other / "Other Show - S01E01 - Pilot.strm").write_text("https://cdn.test/other/1.m3u8\n")
    services = make_services(tmp_path, roots=[root])
    import_tree(services.store, [str(root)], library=services.library)
    client = await aiohttp_client(create_app(services))
    return {"root": root, "season": season, "services": services, "client": client, "store": services.store}


async def test_patch_one_mapping(world) -> None:  # type: ignore[no-untyped-def]
    store, client = world["store"], world["client"]
    path = world["season"] / "Spy x Family - S01E01 - Title.strm"
    row = store.by_path(str(path))
    assert (row["site"], row["language"]) == (None, None)
    response = await client.patch(f"/api/mappings/{row['id']}", json={"site": "aniworld.to", "language": "German Sub",
                                                                      "slug": "spy-x-family-2", "provider": None},
                                  headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["site"], body["language"], body["slug"], body["provider"]) == ("aniworld.to", "German Sub",
                                                                               "spy-x-family-2", "")
    # a later import keeps what was set through the API
    report = import_tree(store, [str(world["root"])], library=world["services"].library)
    assert report.updated == 0
    assert store.by_path(str(path))["slug"] == "spy-x-family-2"

    for payload, status, error in (
        ({}, 400, "missing_field"), ({"colour": "red"}, 400, "invalid_field"), ({"season": "one"}, 400, "invalid_field"),
        ({"season": -1}, 400, "invalid_field"), ({"season": True}, 400, "invalid_field"),
        ({"slug": "x" * 501}, 400, "invalid_field"), ({"slug": "a\nb"}, 400, "invalid_field"),
        ({"source_url": "ftp://x"}, 400, "invalid_field"),
    ):
        response = await client.patch(f"/api/mappings/{row['id']}", json=payload, headers=AUTH)
        assert response.status == status and (await response.json())["error"] == error, payload
    assert (await client.patch("/api/mappings/999999", json={"site": "s.to"}, headers=AUTH)).status == 404
    assert (await client.patch("/api/mappings/abc", json={"site": "s.to"}, headers=AUTH)).status == 400
    assert (await client.patch(f"/api/mappings/{row['id']}", json={"site": "s.to"})).status == 401
    response = await client.patch(f"/api/mappings/{row['id']}", data=b"[1]", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert store.by_path(str(path))["site"] == "aniworld.to"  # nothing above changed it


async def test_patch_series_applies_to_existing_and_future_rows(world) -> None:  # type: ignore[no-untyped-def]
    store, client, services = world["store"], world["client"], world["services"]
    response = await client.patch("/api/series", json={"match": "Spy x Family*", "site": "aniworld.to",
                                                       "language": "German Sub"}, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["updated"] == 2 and body["set"] == {"site": "aniworld.to", "language": "German Sub"}
    rows, _ = store.search(slug="spy-x-family")
    assert {(r["site"], r["language"]) for r in rows} == {("aniworld.to", "German Sub")}
    assert store.by_path(str(world["root"] / "tv" / "Other Show" / "Season 1" / "Other Show - S01E01 - Pilot.strm"))[
        "site"] is None

    # a file that arrives later gets the stored override (import and watcher alike)
    later = world["season"] / "Spy x Family - S01E03 - Later.strm"
    later.write_text("https://cdn.test/spy/3.m3u8\n")
    adopter = Adopter(store, services.library, predict_expiry=expiry_iso,
                      overrides=overrides.all_overrides(services.config.library.series, services.db))
    outcome, row = adopter.adopt(str(later))
    assert outcome == "created" and (row["site"], row["language"], row["episode"]) == ("aniworld.to", "German Sub", 3)

    # the same match again replaces the stored override
    response = await client.patch("/api/series", json={"match": "Spy x Family*", "language": "English Sub"}, headers=AUTH)
    assert (await response.json())["updated"] == 3
    assert [o.values for o in overrides.stored(services.db)] == [{"language": "English Sub"}]

    for payload in ({}, {"match": ""}, {"match": 3, "site": "x"}, {"match": "x"}, {"match": "x", "season": 1},
                    {"match": "x", "site": 5}):
        response = await client.patch("/api/series", json=payload, headers=AUTH)
        assert response.status == 400, payload
