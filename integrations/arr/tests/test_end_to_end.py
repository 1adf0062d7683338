"""The whole life of an episode and of a film, through the real app with the folder watcher on:

AniBridge writes a release-named file into its download folder → the watcher adopts it with its identity →
Sonarr (Radarr) imports it by move, copy or hardlink and sends `Download` with `sourcePath` → one live mapping
at the library path with the download's identity → Sonarr renames it and sends `Rename` → followed → Jellyfin
fails to play the renamed file (PlaybackStart, then PlaybackStop at 0) → the .strm is healed and Jellyfin asked
to refresh the item → Sonarr deletes the file and sends `EpisodeFileDelete` → the mapping is retired.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import create_app
from bridge.strm import read_strm
from integrations.jellyfin.tests import test_end_to_end as jf
from tests.anibridge_library import EPISODES, FILM, Episode, release_name
from tests.appfactory import make_services
from tests.e2e import refresh_config, until
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.provider import FakeProvider

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARR_HOOK = "arr-webhook-token-0123"
IDENTITY = ("site", "slug", "season", "episode", "language", "provider")


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client):  # type: ignore[no-untyped-def]
    root = tmp_path / "media"
    for name in ("downloads", "tv", "movies"):
        (root / name).mkdir(parents=True)
    provider = FakeProvider()
    await provider.start()
    jellyfin = FakeJellyfin(api_key=jf.API_KEY)
    await jellyfin.start()
    arr_map = (f'path_map = [{{server = "/tv", local = "{root / "tv"}"}}, {{server = "/movies", local = "{root / "movies"}"}},'
               f' {{server = "/downloads", local = "{root / "downloads"}"}}]')
    services = make_services(tmp_path, f"""watch = true
watch_debounce_ms = 200
[sonarr]
webhook_token = "{ARR_HOOK}"
{arr_map}
[radarr]
webhook_token = "{ARR_HOOK}"
{arr_map}
[jellyfin]
url = "{jellyfin.url}"
api_key = "{jf.API_KEY}"
webhook_token = "{jf.HOOK}"
path_map = [{{server = "/data/tv", local = "{root / "tv"}"}}, {{server = "/data/movies", local = "{root / "movies"}"}}]
{refresh_config(provider)}""", roots=[root])
    client = await aiohttp_client(create_app(services))
    yield {"root": root, "provider": provider, "jellyfin": jellyfin, "services": services, "client": client,
           "store": services.store}
    await jellyfin.close()
    await provider.close()


def live(world: dict[str, Any]) -> list[dict[str, Any]]:
    rows, _ = world["store"].search(limit=1000)
    return [r for r in rows if r["state"] != "missing"]


async def arr(world: dict[str, Any], app: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await world["client"].post(f"/webhooks/{app}?token={ARR_HOOK}", data=json.dumps(payload),
                                          headers={"Content-Type": "application/json"})
    body = await response.json()
    assert response.status == 200, body
    return body


async def settle_watcher(world: dict[str, Any]) -> None:
    await world["services"].watcher.wait_idle()


async def fail_playback(world: dict[str, Any], item_id: str) -> None:
    for kind in ("start", "stop"):
        data, content_type = jf.body("send_all_json", kind, item_id, "tv-1", position_ticks=0)
        response = await world["client"].post("/webhooks/jellyfin", data=data,
                                              headers={"Content-Type": content_type, "X-Api-Key": jf.HOOK})
        assert response.status == 202
    await world["services"].processor.drain()
    await world["services"].rescan.flush()


async def life(world: dict[str, Any], *, app: str, ep: Episode, mode: str, download: dict[str, Any],
               rename: dict[str, Any], delete: dict[str, Any], item_type: str) -> None:
    store, root, provider = world["store"], world["root"], world["provider"]
    key = f"{ep.slug}/{ep.season}/{ep.episode}"
    provider.add_episode(key)
    expired = provider.sign(key, expires_at=time.time() - 120)
    want = {"site": ep.site, "slug": ep.slug, "season": ep.season, "episode": ep.episode, "language": ep.language,
            "provider": ""}

    # 1. AniBridge writes the release-named file (tmp + replace) into its flat download folder
    source = root / "downloads" / (release_name(ep) + " [STRM].strm")
    tmp = source.with_suffix(".strm.tmp")
    tmp.write_text(expired + "\n")
    tmp.replace(source)
    adopted = await until(lambda: store.by_path(str(source)))
    assert {k: adopted[k] for k in IDENTITY} == want

    # 2. Sonarr/Radarr imports it and says so
    noun = "episodeFile" if app == "sonarr" else "movieFile"
    library_file = root / download[noun]["path"].lstrip("/")
    library_file.parent.mkdir(parents=True, exist_ok=True)
    {"move": os.rename, "copy": shutil.copyfile, "hardlink": os.link}[mode](source, library_file)
    await arr(world, app, download)
    await settle_watcher(world)
    rows = live(world)
    assert [r["strm_path"] for r in rows] == [str(library_file)], (mode, rows)
    assert {k: rows[0][k] for k in IDENTITY} == want
    imported_id = rows[0]["id"]

    # 3. renamed, and followed
    files_key = "renamedEpisodeFiles" if app == "sonarr" else "renamedMovieFiles"
    renamed = root / rename[files_key][0]["path"].lstrip("/")
    renamed.parent.mkdir(parents=True, exist_ok=True)
    os.rename(library_file, renamed)
    await arr(world, app, rename)
    await settle_watcher(world)
    rows = live(world)
    assert [r["strm_path"] for r in rows] == [str(renamed)] and rows[0]["id"] == imported_id
    assert {k: rows[0][k] for k in IDENTITY} == want

    # 4. Jellyfin fails to play the renamed file: healed, and Jellyfin refreshes the item
    item_id = f"{abs(hash(str(renamed))) % 16**32:032x}"
    folder = "/data/tv" if app == "sonarr" else "/data/movies"
    world["jellyfin"].add_item(item_id, folder + str(renamed)[len(str(root / ("tv" if app == "sonarr" else "movies"))):],
                               Type=item_type)
    await fail_playback(world, item_id)
    fresh = read_strm(renamed)
    assert fresh != expired
    async with aiohttp.ClientSession() as session, session.get(fresh) as answer:
        assert answer.status == 200
    call = provider.resolve_calls[-1]
    assert {k: call[k] for k in ("site", "slug", "season", "episode", "language")} == {
        k: want[k] for k in ("site", "slug", "season", "episode", "language")}
    assert len(world["jellyfin"].calls_to("POST", r"^/Items/[0-9a-f]+/Refresh$")) == 1
    healed = store.by_path(str(renamed))
    assert healed["resolved_url"] == fresh and healed["state"] == "ok"
    await settle_watcher(world)  # the heal's own write is no news to the watcher
    assert live(world)[0]["resolved_url"] == fresh and len(live(world)) == 1

    # 5. deleted by Sonarr/Radarr: retired
    renamed.unlink()
    body = await arr(world, app, delete)
    assert body["retired"][0]["outcome"] == "retired"
    await settle_watcher(world)
    assert live(world) == []
    if mode != "move":  # the download-folder copy stays on disk but is not adopted again
        assert source.exists() and store.by_path(str(source)) is None


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("mode", ["move", "copy", "hardlink"])
async def test_episode_life(world, mode: str) -> None:  # type: ignore[no-untyped-def]
    await life(world, app="sonarr", ep=EPISODES[0], mode=mode, download=fixture("sonarr_download.json"),
               rename=fixture("sonarr_rename.json"), delete=fixture("sonarr_episode_file_delete.json"),
               item_type="Episode")


@pytest.mark.parametrize("mode", ["move", "copy", "hardlink"])
async def test_movie_life(world, mode: str) -> None:  # type: ignore[no-untyped-def]
    await life(world, app="radarr", ep=FILM, mode=mode, download=fixture("radarr_download.json"),
               rename=fixture("radarr_rename.json"), delete=fixture("radarr_movie_file_delete.json"),
               item_type="Movie")
