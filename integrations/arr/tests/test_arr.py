"""Sonarr/Radarr webhooks against the real app: imports (move, copy, hardlink, in either order with the
watcher's adoption), upgrades, renames and deletes, from fixtures rebuilt from their payload classes."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.importer import Adopter
from bridge.probe import expiry_iso
from integrations.arr.payload import ArrPayloadError, parse
from tests.anibridge_library import EPISODES, FILM, cdn_url, release_name
from tests.appfactory import make_services

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOOK = "arr-webhook-token-0123"
SPY = EPISODES[0]  # Spy x Family S01E01 German Sub on aniworld.to


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_every_fixture_parses() -> None:
    kinds = {name.name: parse("sonarr" if name.name.startswith("sonarr") else "radarr", json.loads(name.read_text())).kind
             for name in FIXTURES.glob("*.json")}
    assert kinds == {
        "sonarr_download.json": "download", "sonarr_download_upgrade.json": "download",
        "sonarr_import_complete.json": "download", "sonarr_rename.json": "rename",
        "sonarr_episode_file_delete.json": "delete_file", "sonarr_series_delete.json": "delete_folder",
        "sonarr_test.json": "test", "sonarr_grab.json": "other", "radarr_download.json": "download",
        "radarr_rename.json": "rename", "radarr_movie_file_delete.json": "delete_file",
        "radarr_movie_delete.json": "delete_folder", "radarr_test.json": "test", "radarr_movie_added.json": "other"}
    download = parse("sonarr", fixture("sonarr_download.json"))
    assert download.files[0].previous_path == "/downloads/Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD [STRM].strm"
    assert download.files[0].hints == {"site": "aniworld.to", "language": "German Sub", "slug": "spy-x-family",
                                       "season": 1, "episode": 1}
    movie = parse("radarr", fixture("radarr_download.json"))
    assert movie.files[0].hints == {"site": "megakino", "language": "German Dub", "slug": "der-tiger"}
    assert parse("sonarr", fixture("sonarr_download_upgrade.json")).replaced == [
        "/tv/Spy x Family (2022)/Season 1/Spy x Family - S01E01 - Operation Strix WEBDL-720p.strm"]


@pytest.mark.parametrize("payload, message", [
    ([], "must be a JSON object"), ({}, "no eventType"), ({"eventType": "Download"}, "has no episodeFile"),
    ({"eventType": "Download", "episodeFile": {"path": "relative/x.strm"}}, "absolute path"),
    ({"eventType": "Download", "episodeFile": {"path": 3}}, "must be a string"),
    ({"eventType": "Rename", "renamedEpisodeFiles": [{"path": "/tv/a.strm"}]}, "previousPath is missing"),
    ({"eventType": "Download", "episodeFile": {"path": "/tv/a.strm"}, "episodes": [{"seasonNumber": -1}]},
     "non-negative"),
    ({"eventType": "SeriesDelete", "series": "x"}, "series must be an object"),
])
def test_malformed_payloads(payload: Any, message: str) -> None:
    with pytest.raises(ArrPayloadError, match=message):
        parse("sonarr", payload)


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client):  # type: ignore[no-untyped-def]
    root = tmp_path / "media"
    for name in ("downloads", "tv", "movies"):
        (root / name).mkdir(parents=True)
    maps = (f'path_map = [{{server = "/tv", local = "{root / "tv"}"}}, {{server = "/downloads", local = "{root / "downloads"}"}},'
            f' {{server = "/movies", local = "{root / "movies"}"}}]')
    services = make_services(tmp_path, f'[sonarr]\nwebhook_token = "{HOOK}"\n{maps}\n'
                                       f'[radarr]\nwebhook_token = "{HOOK}"\n{maps}\n', roots=[root])
    client = await aiohttp_client(create_app(services))
    yield {"root": root, "services": services, "client": client, "store": services.store,
           "adopter": Adopter(services.store, services.library, predict_expiry=expiry_iso)}


async def send(world: dict[str, Any], app: str, payload: dict[str, Any], *, query: str = f"?token={HOOK}",
               headers: dict[str, str] | None = None, method: str = "post") -> tuple[int, dict[str, Any]]:
    response = await getattr(world["client"], method)(f"/webhooks/{app}{query}", data=json.dumps(payload),
                                                      headers={"Content-Type": "application/json", **(headers or {})})
    return response.status, await response.json()


def local(world: dict[str, Any], sonarr_path: str) -> Path:
    return world["root"] / sonarr_path.lstrip("/")


def anibridge_file(world: dict[str, Any], ep: Any = SPY, index: int = 0) -> Path:
    path = world["root"] / "downloads" / (release_name(ep) + " [STRM].strm")
    path.write_text(cdn_url(ep, index) + "\n")
    return path


def sonarr_import(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    {"move": os.rename, "copy": shutil.copyfile, "hardlink": os.link}[mode](source, target)


def live(world: dict[str, Any]) -> list[dict[str, Any]]:
    rows, _ = world["store"].search(limit=1000)
    return [r for r in rows if r["state"] != "missing"]


IDENTITY = ("site", "slug", "season", "episode", "language", "provider")


@pytest.mark.parametrize("mode", ["move", "copy", "hardlink"])
@pytest.mark.parametrize("order", ["webhook_only", "watcher_before", "watcher_after", "never_watched"])
async def test_download_in_every_order(world, mode: str, order: str) -> None:  # type: ignore[no-untyped-def]
    source = anibridge_file(world)
    adopter, store = world["adopter"], world["store"]
    if order != "never_watched":
        adopter.adopt(str(source))  # the watcher adopted the AniBridge file as it appeared
    payload = fixture("sonarr_download.json")
    target = local(world, payload["episodeFile"]["path"])
    sonarr_import(source, target, mode)
    if order == "watcher_before":
        adopter.adopt(str(target))  # the watcher saw the library file before the webhook came
        if mode == "move":
            assert len(live(world)) == 1  # a move the watcher followed by itself (same URL, old file gone)
    status, body = await send(world, "sonarr", payload)
    assert status == 200, body
    if order == "watcher_after":
        adopter.adopt(str(target))
        if mode != "move":
            assert adopter.adopt(str(source))[0] == "unchanged"  # the copy left behind is not adopted again
    rows = live(world)
    assert [r["strm_path"] for r in rows] == [str(target)], (mode, order, rows)
    assert {k: rows[0][k] for k in IDENTITY} == {"site": "aniworld.to", "slug": "spy-x-family", "season": 1,
                                                 "episode": 1, "language": "German Sub", "provider": ""}
    assert rows[0]["resolved_url"] == cdn_url(SPY, 0)
    # a restart's catch-up import of everything: still one live mapping
    from bridge.importer import import_tree

    report = import_tree(store, [str(world["root"])], library=world["services"].library, predict_expiry=expiry_iso)
    assert report.created == 0 and report.updated == 0, report
    assert [r["strm_path"] for r in live(world)] == [str(target)]


async def test_import_complete_is_followed_by_url(world) -> None:  # type: ignore[no-untyped-def]
    source = anibridge_file(world)
    world["adopter"].adopt(str(source))
    payload = fixture("sonarr_import_complete.json")
    target = local(world, payload["episodeFiles"][0]["path"])
    sonarr_import(source, target, "hardlink")
    status, body = await send(world, "sonarr", payload)
    assert status == 200 and body["files"][0]["outcome"] == "moved"
    assert [r["strm_path"] for r in live(world)] == [str(target)]


async def test_upgrade_retires_the_replaced_file(world) -> None:  # type: ignore[no-untyped-def]
    payload = fixture("sonarr_download_upgrade.json")
    old = local(world, payload["deletedFiles"][0]["path"])
    old.parent.mkdir(parents=True)
    old.write_text(cdn_url(SPY, 5) + "\n")
    world["adopter"].adopt(str(old))
    old.unlink()  # Sonarr moved it to the recycle bin before it notified
    source = anibridge_file(world)
    target = local(world, payload["episodeFile"]["path"])
    sonarr_import(source, target, "move")
    status, body = await send(world, "sonarr", payload)
    assert status == 200 and body["retired"] == [{"path": str(old), "outcome": "retired"}]
    assert [r["strm_path"] for r in live(world)] == [str(target)]
    assert world["store"].by_path(str(old)) is None


async def test_rename_delete_and_series_delete(world) -> None:  # type: ignore[no-untyped-def]
    payload = fixture("sonarr_download.json")
    target = local(world, payload["episodeFile"]["path"])
    sonarr_import(anibridge_file(world), target, "move")
    assert (await send(world, "sonarr", payload))[0] == 200
    first = world["store"].by_path(str(target))

    rename = fixture("sonarr_rename.json")
    renamed = local(world, rename["renamedEpisodeFiles"][0]["path"])
    renamed.parent.mkdir(parents=True, exist_ok=True)
    os.rename(target, renamed)
    status, body = await send(world, "sonarr", rename)
    assert status == 200 and body["files"][0]["outcome"] == "moved"
    row = world["store"].by_path(str(renamed))
    assert row["id"] == first["id"] and {k: row[k] for k in IDENTITY} == {k: first[k] for k in IDENTITY}
    assert (await send(world, "sonarr", rename))[1]["files"][0]["outcome"] == "unchanged"  # sent twice: no harm

    delete = fixture("sonarr_episode_file_delete.json")
    status, body = await send(world, "sonarr", delete)  # the file is still there: Sonarr had not deleted it
    assert status == 200 and body["retired"][0]["outcome"] == "kept"
    renamed.unlink()
    status, body = await send(world, "sonarr", delete)
    assert status == 200 and body["retired"][0]["outcome"] == "retired"
    assert live(world) == []

    other = world["root"] / "tv" / "Spy x Family (2022)" / "Season 2" / "Spy x Family - S02E12 - X.strm"
    other.parent.mkdir(parents=True)
    other.write_text(cdn_url(EPISODES[3], 3) + "\n")
    world["adopter"].adopt(str(other))
    shutil.rmtree(world["root"] / "tv" / "Spy x Family (2022)")
    status, body = await send(world, "sonarr", fixture("sonarr_series_delete.json"))
    assert status == 200 and body["retired"][0]["outcome"] == "1 retired, 0 kept" and live(world) == []


async def test_radarr_movie_life(world) -> None:  # type: ignore[no-untyped-def]
    source = world["root"] / "downloads" / (release_name(FILM) + " [STRM].strm")
    source.write_text(cdn_url(FILM, 8) + "\n")
    payload = fixture("radarr_download.json")
    target = local(world, payload["movieFile"]["path"])
    sonarr_import(source, target, "copy")
    status, body = await send(world, "radarr", payload, query="", headers={"X-Api-Key": HOOK}, method="put")
    assert status == 200 and body["files"][0]["outcome"] == "created"
    row = world["store"].by_path(str(target))
    assert {k: row[k] for k in IDENTITY} == {"site": "megakino", "slug": "der-tiger", "season": None, "episode": None,
                                             "language": "German Dub", "provider": ""}
    rename = fixture("radarr_rename.json")
    renamed = local(world, rename["renamedMovieFiles"][0]["path"])
    os.rename(target, renamed)
    assert (await send(world, "radarr", rename))[1]["files"][0]["outcome"] == "moved"
    renamed.unlink()
    assert (await send(world, "radarr", fixture("radarr_movie_file_delete.json")))[1]["retired"][0]["outcome"] == "retired"
    assert [r["strm_path"] for r in live(world)] == []  # the download-folder copy was handed off, not adopted
    assert world["adopter"].adopt(str(source))[0] == "unchanged"


async def test_test_other_auth_and_refusals(world) -> None:  # type: ignore[no-untyped-def]
    assert await send(world, "sonarr", fixture("sonarr_test.json")) == (200, {"status": "ok", "event": "Test"})
    assert (await send(world, "radarr", fixture("radarr_test.json")))[0] == 200
    status, body = await send(world, "sonarr", fixture("sonarr_grab.json"))
    assert status == 202 and body["status"] == "ignored"
    assert (await send(world, "radarr", fixture("radarr_movie_added.json")))[0] == 202
    assert (await send(world, "sonarr", fixture("sonarr_test.json"), query=""))[0] == 401
    assert (await send(world, "sonarr", fixture("sonarr_test.json"), query="?token=wrong"))[0] == 401
    api = world["services"].api_token
    assert (await send(world, "sonarr", fixture("sonarr_test.json"), query="", headers={"X-Api-Key": api}))[0] == 200

    # outside the roots (no path_map entry for it): 422, nothing stored
    outside = copy.deepcopy(fixture("sonarr_download.json"))
    outside["episodeFile"]["path"] = "/elsewhere/x.strm"
    status, body = await send(world, "sonarr", outside)
    assert status == 422 and body["error"] == "not_followed" and "outside the library roots" in body["detail"]
    # the file is not where Sonarr says (a wrong path_map): 422 that says so
    status, body = await send(world, "sonarr", fixture("sonarr_download.json"))
    assert status == 422 and "path_map" in body["detail"]
    response = await world["client"].post(f"/webhooks/sonarr?token={HOOK}", data=b"{nope",
                                          headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == "invalid_payload"
    assert world["store"].count() == 0


async def test_sonarrs_word_ranks_above_the_name_and_paths_map_both_ways(world) -> None:  # type: ignore[no-untyped-def]
    payload = fixture("sonarr_download.json")
    payload["episodes"][0].update(seasonNumber=1, episodeNumber=2)  # Sonarr matched it to E02 (an alias)
    del payload["episodeFile"]["sourcePath"]
    target = local(world, payload["episodeFile"]["path"])  # the name still says S01E01
    target.parent.mkdir(parents=True)
    target.write_text(cdn_url(SPY, 7) + "\n")
    status, body = await send(world, "sonarr", payload)
    assert status == 200 and body["files"][0]["outcome"] == "created"
    assert body["files"][0]["arr_path"] == payload["episodeFile"]["path"]  # mapped back to Sonarr's view
    row = world["store"].by_path(str(target))
    assert (row["season"], row["episode"], row["site"], row["language"]) == (1, 2, "aniworld.to", "German Sub")
    # what is stored ranks above Sonarr's word: a later webhook saying E01 changes nothing
    payload["episodes"][0].update(episodeNumber=1)
    status, body = await send(world, "sonarr", payload)
    assert body["files"][0]["outcome"] == "unchanged" and world["store"].by_path(str(target))["episode"] == 2
