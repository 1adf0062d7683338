"""Do no harm: no resolver is not a dead link, a deleted file stays deleted, mappings can be retired, a webhook
cannot move a mapping out of the library, and a file that changed under a refresh is not overwritten."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.app import create_app
from bridge.cli import main
from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.matching import match_mapping
from bridge.resolvers.base import Resolved, ResolveRequest
from bridge.strm import Library, read_strm
from tests.appfactory import AUTH, make_services, write_config
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import ScriptedResolver, add_mapping, pipeline

ANIBRIDGE = "http://anibridge:8000/strm/stream?e=1&lang=German+Dub&s=1&sig=ab12&site=aniworld.to&slug=x"


# ---- no resolver ------------------------------------------------------------------------------------------
async def test_forced_refresh_without_resolver_leaves_a_healthy_mapping_as_it_was(
        tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> None:
    services = make_services(tmp_path, roots=[library_root])  # refresh.resolvers is empty
    client = await aiohttp_client(create_app(services))
    mapping = add_mapping(services.store, library_root, fake_provider, 1, expired=False)
    before = Path(mapping["strm_path"]).read_bytes()
    for body in ({"id": mapping["id"], "force": True}, {"id": mapping["id"]}):
        answer = await (await client.post("/api/refresh", json=body, headers=AUTH)).json()
        if body.get("force"):
            assert answer["outcome"] == "no_resolver" and "refresh.resolvers is empty" in answer["detail"]
        else:
            assert answer["outcome"] == "alive"  # unforced, the live link is judged first
    row = services.store.get(mapping["id"])
    assert (row["state"], row["fail_count"]) == ("ok", 0)
    assert Path(mapping["strm_path"]).read_bytes() == before
    outcomes = [r["outcome"] for r in services.store.refresh_history(mapping["id"])]
    assert outcomes == ["no_resolver"]  # a live link answers `alive` without a log line, as before
    dry = await (await client.post("/api/refresh", json={"id": mapping["id"], "force": True, "dry_run": True},
                                   headers=AUTH)).json()
    assert dry["outcome"] == "no_resolver"


async def test_dead_link_without_resolver_is_no_resolver_not_a_failure(
        store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider) -> None:
    refresher = pipeline(store, library, [])
    mapping = add_mapping(store, library_root, fake_provider, 2)  # expired: probing is skipped, resolving needed
    outcome = await refresher.refresh(mapping["id"], trigger="jellyfin", reason="early_stop")
    assert outcome.outcome == "no_resolver"
    assert (store.get(mapping["id"])["state"], store.get(mapping["id"])["fail_count"]) == ("ok", 0)
    await refresher.close()


# ---- missing files -------------------------------------------------------------------------------------------
async def test_a_deleted_file_is_never_re_created_and_is_reported_missing(
        tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> None:
    services = make_services(tmp_path, f"""
[refresh]
resolvers = ["http"]
[resolvers.http]
url = "{fake_provider.base_url}/resolve"
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    gone = add_mapping(services.store, library_root, fake_provider, 1)
    kept = add_mapping(services.store, library_root, fake_provider, 2)
    os.unlink(gone["strm_path"])

    forced = await (await client.post("/api/refresh", json={"id": gone["id"], "force": True}, headers=AUTH)).json()
    assert forced["outcome"] == "missing" and "not re-created" in forced["detail"]
    started = await (await client.post("/api/refresh", json={"all": True, "force": True}, headers=AUTH)).json()
    for _ in range(300):
        job = await (await client.get(f"/api/jobs/{started['job']}", headers=AUTH)).json()
        if job["state"] == "done":
            break
        await asyncio.sleep(0.01)
    assert job["counts"] == {"missing": 1, "refreshed": 1}
    assert not os.path.lexists(gone["strm_path"]) and read_strm(kept["strm_path"]) != kept["resolved_url"]
    assert len(fake_provider.resolve_calls) == 1  # only the file that exists was resolved

    assert (await (await client.get(f"/api/mappings/{gone['id']}", headers=AUTH)).json())["state"] == "missing"
    listed = await (await client.get("/api/mappings?state=missing", headers=AUTH)).json()
    assert [m["id"] for m in listed["items"]] == [gone["id"]]
    for row in (gone, kept):
        services.store.update(row["id"], {"expires_at": "2000-01-01T00:00:00.000Z"})
    assert services.store.expiring_ids(0) == [kept["id"]]  # the sweep leaves a missing file alone

    config = write_config(tmp_path, roots=[library_root])
    shown = CliRunner().invoke(main, ["mappings", "show", str(gone["id"]), "--json", "--config", str(config)])
    assert json.loads(shown.stdout)["state"] == "missing"
    listed_cli = CliRunner().invoke(main, ["mappings", "list", "--state", "missing", "--config", str(config)])
    assert listed_cli.exit_code == 0 and gone["strm_path"] in listed_cli.stdout and kept["strm_path"] not in listed_cli.stdout


async def test_an_unmounted_library_is_not_missing(store: MappingStore, tmp_path: Path, library_root: Path,
                                                   fake_provider: FakeProvider) -> None:
    anchor = library_root / ".mounted"
    anchor.write_text("")
    refresher = pipeline(store, Library([str(library_root)], [str(anchor)]), [ScriptedResolver("r", [])])
    mapping = add_mapping(store, library_root, fake_provider, 1)
    os.unlink(mapping["strm_path"])
    anchor.unlink()
    outcome = await refresher.refresh(mapping["id"], trigger="sweep", reason="expired")
    assert outcome.outcome == "anchor_missing" and store.get(mapping["id"])["state"] == "ok"
    await refresher.close()


async def test_a_file_deleted_or_given_a_stable_link_during_the_refresh_is_left_alone(
        store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider) -> None:
    deleted = add_mapping(store, library_root, fake_provider, 1)
    relinked = add_mapping(store, library_root, fake_provider, 2)
    fresh = fake_provider.sign("show/1/1", ttl=3600)

    async def delete_then_answer(request: ResolveRequest) -> Resolved:
        if request.strm_path == deleted["strm_path"]:
            os.unlink(request.strm_path)  # the user deletes it while the resolver works
        else:
            Path(request.strm_path).write_text(ANIBRIDGE + "\n")  # AniBridge re-wrote it meanwhile
        return Resolved(url=fresh)

    refresher = pipeline(store, library, [ScriptedResolver("r", [delete_then_answer])])
    first = await refresher.refresh(deleted["id"], trigger="manual", reason="manual", force=True)
    second = await refresher.refresh(relinked["id"], trigger="manual", reason="manual", force=True)
    assert first.outcome == "missing" and not os.path.lexists(deleted["strm_path"])
    assert store.get(deleted["id"])["state"] == "missing"
    assert second.outcome == "not_owned" and Path(relinked["strm_path"]).read_text() == ANIBRIDGE + "\n"
    assert store.get(relinked["id"])["state"] == "ok" and store.get(relinked["id"])["resolved_url"] != fresh
    await refresher.close()


# ---- delete and prune -----------------------------------------------------------------------------------------
async def test_delete_and_prune_from_the_api(tmp_path: Path, library_root: Path, fake_provider: FakeProvider,
                                             aiohttp_client: Any) -> None:
    services = make_services(tmp_path, roots=[library_root])
    client = await aiohttp_client(create_app(services))
    one, two, three = (add_mapping(services.store, library_root, fake_provider, n) for n in (1, 2, 3))
    services.store.log_refresh(one["id"], trigger="manual", reason="x", outcome="refreshed")

    response = await client.delete(f"/api/mappings/{one['id']}", headers=AUTH)
    assert response.status == 200 and (await response.json())["deleted"]["id"] == one["id"]
    assert os.path.exists(one["strm_path"])  # the file stays
    assert (await client.get(f"/api/mappings/{one['id']}", headers=AUTH)).status == 404
    again = await client.delete(f"/api/mappings/{one['id']}", headers=AUTH)
    assert again.status == 404 and (await again.json())["error"] == "not_found"
    for bad in ("abc", "-1", "1.5", "9" * 40):
        answer = await client.delete(f"/api/mappings/{bad}", headers=AUTH)
        assert answer.status == 400 and "error" in await answer.json()
    assert (await client.delete(f"/api/mappings/{two['id']}")).status == 401
    services.store.update(three["id"], {"state": "refreshing"})
    busy = await client.delete(f"/api/mappings/{three['id']}", headers=AUTH)
    assert busy.status == 409 and services.store.get(three["id"]) is not None
    services.store.update(three["id"], {"state": "ok"})

    os.unlink(two["strm_path"])
    dry = await (await client.post("/api/mappings/prune", json={"missing": True, "dry_run": True}, headers=AUTH)).json()
    assert [m["id"] for m in dry["missing"]] == [two["id"]] and dry["deleted"] == 0
    assert services.store.get(two["id"]) is not None
    done = await (await client.post("/api/mappings/prune", json={"missing": True}, headers=AUTH)).json()
    assert done["deleted"] == 1 and services.store.get(two["id"]) is None and services.store.get(three["id"])
    for body in ({}, {"missing": False}, {"missing": "yes"}, {"missing": True, "force": True}):
        answer = await client.post("/api/mappings/prune", json=body, headers=AUTH)
        assert answer.status == 400 and (await answer.json())["error"]


def test_delete_and_prune_from_the_cli(tmp_path: Path, library_root: Path) -> None:
    config = write_config(tmp_path, roots=[library_root])
    store = MappingStore(open_database(tmp_path / "data" / "bridge.db"))
    paths = []
    for n in range(1, 5):
        path = library_root / "show" / f"S01E0{n}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"https://cdn.example/{n}.mp4\n")
        paths.append(path)
        store.upsert({"strm_path": str(path), "resolved_url": f"https://cdn.example/{n}.mp4", "state": "ok"})
    ids = [store.by_path(str(p))["id"] for p in paths]

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, [*args, "--config", str(config)])

    by_id = run("mappings", "delete", str(ids[0]))
    assert by_id.exit_code == 0 and "deleted mapping" in by_id.stdout and paths[0].exists()
    by_path = run("mappings", "delete", str(paths[1]), "--json")
    assert by_path.exit_code == 0 and json.loads(by_path.stdout)["deleted"]["id"] == ids[1]
    unknown = run("mappings", "delete", "4242")
    assert unknown.exit_code == 2 and len(unknown.stderr.strip().splitlines()) == 1 and "no mapping" in unknown.stderr

    paths[2].unlink()
    dry = run("mappings", "prune", "--missing", "--dry-run")
    assert dry.exit_code == 0 and f"would delete {ids[2]}" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert store.get(ids[2]) is not None
    pruned = run("mappings", "prune", "--missing", "--json")
    assert pruned.exit_code == 0 and json.loads(pruned.stdout)["deleted"] == 1
    assert store.get(ids[2]) is None and store.get(ids[3]) is not None
    nothing = run("mappings", "prune")
    assert nothing.exit_code == 2 and "--missing" in nothing.stderr and len(nothing.stderr.strip().splitlines()) == 1


def test_prune_refuses_while_an_anchor_is_missing_and_skips_absent_roots(tmp_path: Path, library_root: Path) -> None:
    other_root = tmp_path / "unmounted"
    config = write_config(tmp_path, f'anchors = ["{library_root / ".mounted"}"]\n', roots=[library_root, other_root])
    store = MappingStore(open_database(tmp_path / "data" / "bridge.db"))
    store.upsert({"strm_path": str(library_root / "a.strm"), "resolved_url": "https://cdn.example/a", "state": "ok"})
    store.upsert({"strm_path": str(other_root / "b.strm"), "resolved_url": "https://cdn.example/b", "state": "ok"})
    refused = CliRunner().invoke(main, ["mappings", "prune", "--missing", "--config", str(config)])
    assert refused.exit_code == 2 and "anchor" in refused.stderr and store.count() == 2
    (library_root / ".mounted").write_text("")
    report = CliRunner().invoke(main, ["mappings", "prune", "--missing", "--json", "--config", str(config)])
    data = json.loads(report.stdout)
    assert [m["strm_path"] for m in data["missing"]] == [str(library_root / "a.strm")]
    assert [m["strm_path"] for m in data["skipped"]] == [str(other_root / "b.strm")] and store.count() == 1


# ---- the roots check on matching ------------------------------------------------------------------------------
def test_matching_never_moves_a_mapping_outside_the_roots(tmp_path: Path, db: Any, library_root: Path) -> None:
    library = Library([str(library_root)])
    store = MappingStore(db, library)
    inside = library_root / "show" / "S01E01.strm"
    inside.parent.mkdir(parents=True)
    inside.write_text("https://cdn.example/1.mp4\n")
    mapping = store.upsert({"strm_path": str(inside), "resolved_url": "https://cdn.example/1.mp4", "state": "ok"})
    outside = tmp_path / "elsewhere" / "S01E01.strm"
    outside.parent.mkdir()
    outside.write_text("https://cdn.example/1.mp4\n")  # the same URL: the file_url rule would match it
    match = match_mapping(store, local_path=str(outside))
    assert match.mapping is None and "outside_roots" in match.detail and str(outside) in match.detail
    assert store.get(mapping["id"])["strm_path"] == str(inside)
    renamed = library_root / "show" / "Show - S01E01.strm"  # a rename inside the roots still moves it
    os.replace(inside, renamed)
    moved = match_mapping(store, local_path=str(renamed))
    assert moved.rule == "file_url" and store.get(mapping["id"])["strm_path"] == str(renamed)
    with pytest.raises(Exception, match="outside the library roots"):
        store.move(mapping["id"], str(outside))


async def test_a_webhook_naming_a_path_outside_the_roots_changes_nothing(
        tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> None:
    """Emby sends Item.Path; with path_map mapping /mnt onto the parent of the library, a path the server
    names can land outside `library.roots` while still matching the stored URL."""
    from tests.fakes.emby import FakeEmby

    emby = await FakeEmby(token="emby-api-key-0123456789abcdef").start()
    services = make_services(tmp_path, f"""
[emby]
url = "{emby.url}"
api_key = "emby-api-key-0123456789abcdef"
webhook_token = "emby-webhook-token-abcdef012345"
path_map = [{{server = "/mnt", local = "{tmp_path}"}}]
[refresh]
resolvers = ["http"]
[resolvers.http]
url = "{fake_provider.base_url}/resolve"
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    mapping = add_mapping(services.store, library_root, fake_provider, 1)
    stray = tmp_path / "downloads" / "S01E01.strm"
    stray.parent.mkdir()
    stray.write_text(mapping["resolved_url"] + "\n")
    fixtures = Path(__file__).resolve().parent / "fixtures" / "emby"
    for kind in ("start", "stop"):
        data = json.loads((fixtures / f"playback_{kind}.json").read_text())
        data["Item"].update(Path="/mnt/downloads/S01E01.strm", FileName="S01E01.strm")
        if kind == "stop":
            data["PlaybackInfo"].update(PositionTicks=10_000_000, PlayedToCompletion=False)
        response = await client.post("/webhooks/emby?token=emby-webhook-token-abcdef012345", json=data)
        assert response.status == 202
    await services.processor.drain()
    outcome, error = services.db.conn.execute("select outcome, error from events where kind = 'stop'").fetchone()
    assert outcome == "unmatched" and "outside the library roots" in error and str(stray) in error
    row = services.store.get(mapping["id"])
    assert row["strm_path"] == mapping["strm_path"] and row["updated_at"] == mapping["updated_at"]
    assert stray.read_text() == mapping["resolved_url"] + "\n" and fake_provider.resolve_calls == []
    await emby.stop()


async def test_a_tautulli_file_outside_the_roots_changes_nothing_and_matches_nothing_else(
        tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> None:
    """Tautulli's `file` is used before anything else; outside the roots it must not move the mapping, nor
    let the show/season/episode rule heal another file for an item that does not live in the library."""
    services = make_services(tmp_path, f"""
[tautulli]
webhook_token = "tautulli-webhook-token-abcdef0123"
[refresh]
resolvers = ["http"]
[resolvers.http]
url = "{fake_provider.base_url}/resolve"
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    mapping = add_mapping(services.store, library_root, fake_provider, 1, slug="attack-on-titan")
    stray = tmp_path / "downloads" / "Attack on Titan - S01E01.strm"
    stray.parent.mkdir()
    stray.write_text(mapping["resolved_url"] + "\n")  # the same URL, so the old file_url rule would have moved it
    body = json.loads((Path(__file__).resolve().parent / "fixtures" / "tautulli" / "on_error.json").read_text())
    body["file"] = str(stray)
    response = await client.post("/webhooks/tautulli", json=body,
                                 headers={"Authorization": "Bearer tautulli-webhook-token-abcdef0123"})
    assert response.status == 202
    await services.processor.drain()
    outcome, error, mapping_id = services.db.conn.execute(
        "select outcome, error, mapping_id from events").fetchone()
    assert outcome == "unmatched" and "outside the library roots" in error and mapping_id is None
    row = services.store.get(mapping["id"])
    assert row["strm_path"] == mapping["strm_path"] and row["updated_at"] == mapping["updated_at"]
    assert fake_provider.resolve_calls == [] and Path(mapping["strm_path"]).read_text() == mapping["resolved_url"] + "\n"


async def test_a_configured_stable_link_pattern_is_probed_never_rewritten(
        tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> None:
    services = make_services(tmp_path, f"""stable_link_patterns = ["{fake_provider.base_url}/d/"]
[refresh]
resolvers = ["http"]
[resolvers.http]
url = "{fake_provider.base_url}/resolve"
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    kept = add_mapping(services.store, library_root, fake_provider, 1, url=f"{fake_provider.base_url}/d/show/1/1")
    direct = add_mapping(services.store, library_root, fake_provider, 2)  # the control: an expired direct URL
    before = Path(kept["strm_path"]).read_bytes()
    started = await (await client.post("/api/refresh", json={"all": True, "force": True}, headers=AUTH)).json()
    for _ in range(300):
        job = await (await client.get(f"/api/jobs/{started['job']}", headers=AUTH)).json()
        if job["state"] == "done":
            break
        await asyncio.sleep(0.01)
    assert job["counts"] == {"alive": 1, "refreshed": 1}
    assert Path(kept["strm_path"]).read_bytes() == before and read_strm(direct["strm_path"]) != direct["resolved_url"]
    assert fake_provider.redirect_calls == 1 and len(fake_provider.resolve_calls) == 1
    detail = services.store.refresh_history(kept["id"])[0]
    assert detail["outcome"] == "alive"


async def test_recovery_marks_a_row_left_refreshing_whose_file_is_gone_missing(
        store: MappingStore, library: Library, library_root: Path, fake_provider: FakeProvider) -> None:
    refresher = pipeline(store, library, [])
    gone = add_mapping(store, library_root, fake_provider, 1)
    kept = add_mapping(store, library_root, fake_provider, 2)
    for row in (gone, kept):
        store.update(row["id"], {"state": "refreshing"})
    os.unlink(gone["strm_path"])
    report = {item["mapping_id"]: item["action"] for item in await refresher.recover()}
    assert report == {gone["id"]: "missing", kept["id"]: "restored"}
    assert store.get(gone["id"])["state"] == "missing" and store.get(kept["id"])["state"] == "unknown"
    assert not os.path.lexists(gone["strm_path"])
