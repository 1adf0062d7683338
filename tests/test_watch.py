"""The folder watcher on real files: AniBridge-style writes, changes, removals, moves, temp files, restarts."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bridge.importer import Adopter
from bridge.probe import expiry_iso
from bridge.watch import FolderWatcher
from tests.anibridge_library import EPISODES, cdn_url, release_name, write_strm
from tests.appfactory import make_services
from tests.e2e import until


@pytest.fixture
async def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "media"
    (root / "downloads").mkdir(parents=True)
    services = make_services(tmp_path, roots=[root])

    def watcher() -> FolderWatcher:
        return FolderWatcher(services.store, [str(root)], lambda: Adopter(services.store, services.library,
                                                                           predict_expiry=expiry_iso), debounce_ms=200)

    running: list[FolderWatcher] = []

    async def start() -> FolderWatcher:
        w = watcher()
        await w.start()
        running.append(w)
        return w

    yield {"root": root, "store": services.store, "start": start, "services": services}
    for w in running:
        await w.stop()
    services.db.conn.close()


async def test_files_are_adopted_as_they_appear_change_and_go(world) -> None:  # type: ignore[no-untyped-def]
    store, downloads = world["store"], world["root"] / "downloads"
    watcher = await world["start"]()
    path = write_strm(downloads, EPISODES[0], cdn_url(EPISODES[0], 1))  # tmp + replace, as AniBridge writes
    row = await until(lambda: store.by_path(str(path)))
    assert (row["site"], row["slug"], row["season"], row["episode"], row["language"]) == (
        "aniworld.to", "spy-x-family", 1, 1, "German Sub")
    assert row["expires_at"] == expiry_iso(cdn_url(EPISODES[0], 1))

    # a half-written temp file, ours and AniBridge's and an editor's: never adopted
    partial = downloads / (release_name(EPISODES[4]) + " [STRM].strm.tmp")
    partial.write_text("https://cdn.test/half")
    (downloads / ".strm-bridge-1-abc.tmp").write_text("https://cdn.test/ours\n")
    (downloads / ".hidden.strm").write_text("https://cdn.test/hidden\n")
    other = write_strm(downloads, EPISODES[5], cdn_url(EPISODES[5], 5))  # something to know the batch is done
    await until(lambda: store.by_path(str(other)))
    assert store.count() == 2
    partial.write_text(cdn_url(EPISODES[4], 4) + "\n")
    final = downloads / (release_name(EPISODES[4]) + " [STRM].strm")
    partial.replace(final)
    row = await until(lambda: store.by_path(str(final)))
    assert (row["site"], row["language"]) == ("s.to", "English Dub")

    # a changed URL: stored, with a fresh expiry prediction
    new_url = cdn_url(EPISODES[0], 1).replace("s=1764600000", "s=1764700000")
    path.write_text(new_url + "\n")
    row = await until(lambda: (r := store.by_path(str(path))) and r["resolved_url"] == new_url and r)
    assert row["expires_at"] == expiry_iso(new_url) and row["language"] == "German Sub"

    # renamed inside the roots: the same mapping follows, identity kept
    first_id = row["id"]
    moved = world["root"] / "tv" / "Spy x Family (2022)" / "Season 1" / "Spy x Family - S01E01 - Operation Strix.strm"
    moved.parent.mkdir(parents=True)
    os.rename(path, moved)
    row = await until(lambda: store.by_path(str(moved)))
    assert row["id"] == first_id and row["language"] == "German Sub" and row["site"] == "aniworld.to"
    assert store.by_path(str(path)) is None

    # removed: the mapping becomes missing
    other.unlink()
    await until(lambda: store.by_path(str(other))["state"] == "missing")
    assert watcher.stats.errors == []


async def test_a_restart_catches_up(world) -> None:  # type: ignore[no-untyped-def]
    store, downloads = world["store"], world["root"] / "downloads"
    watcher = await world["start"]()
    kept = write_strm(downloads, EPISODES[0], cdn_url(EPISODES[0], 0))
    changed = write_strm(downloads, EPISODES[1], cdn_url(EPISODES[1], 1))
    removed = write_strm(downloads, EPISODES[2], cdn_url(EPISODES[2], 2))
    await until(lambda: store.count() == 3)
    await watcher.stop()
    hour_ago = time.time() - 3600
    os.utime(kept, (hour_ago, hour_ago))  # untouched since long before the stop

    changed.write_text(cdn_url(EPISODES[1], 11) + "\n")  # all of this while the bridge is down
    removed.unlink()
    added = write_strm(downloads, EPISODES[3], cdn_url(EPISODES[3], 3))
    before = store.by_path(str(kept))["updated_at"]

    watcher = await world["start"]()
    assert store.by_path(str(added))["slug"] == "spy-x-family" and store.by_path(str(added))["season"] == 2
    assert store.by_path(str(changed))["resolved_url"] == cdn_url(EPISODES[1], 11)
    assert store.by_path(str(removed))["state"] == "missing"
    assert store.by_path(str(kept))["updated_at"] == before
    assert watcher.stats.caught_up == 2  # the changed and the new file, not the unchanged one


async def test_watch_switched_on_by_configuration(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    from bridge.app import create_app

    root = tmp_path / "media"
    root.mkdir()
    services = make_services(tmp_path, "watch = true\nwatch_debounce_ms = 200\n", roots=[root])
    assert services.watcher is not None
    await aiohttp_client(create_app(services))
    path = write_strm(root, EPISODES[6], cdn_url(EPISODES[6], 6))
    row = await until(lambda: services.store.by_path(str(path)))
    assert (row["site"], row["slug"], row["season"], row["episode"]) == ("s.to", "9-1-1", 6, 3)
    (tmp_path / "off").mkdir()
    assert make_services(tmp_path / "off", roots=[root]).watcher is None


async def test_whole_folders_moved_in_and_out(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = world["store"]
    await world["start"]()
    staging = tmp_path / "staging" / "Spy x Family (2022)" / "Season 1"
    staging.mkdir(parents=True)
    for e in (1, 2, 3):
        (staging / f"Spy x Family - S01E0{e} - T.strm").write_text(f"https://cdn.test/spy/{e}.m3u8\n")
    series = world["root"] / "tv" / "Spy x Family (2022)"
    series.parent.mkdir()
    os.rename(staging.parent, series)  # one event for the folder, none for the files in it
    await until(lambda: store.count() == 3)
    assert {r["episode"] for r in store.search(slug="spy-x-family")[0]} == {1, 2, 3}
    os.rename(series, tmp_path / "staging" / "away")  # moved out of the roots whole
    await until(lambda: all(r["state"] == "missing" for r in store.search(slug="spy-x-family")[0]))
