"""Do no harm: a library of AniBridge stable links (token and apikey forms) is never rewritten.

The real app on a temp database; a fake AniBridge (tests/fakes/anibridge.py, rebuilt from AniBridge's own
`api/strm.py`) streaming a FakeProvider CDN; FakeEmby for the media-server side. The `http` resolver is
configured and would happily hand out a direct URL, so every check below would catch a rewrite.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bridge.app import create_app
from bridge.strm import read_strm
from tests.appfactory import AUTH, make_services
from tests.fakes.anibridge import FakeAniBridge
from tests.fakes.emby import FakeEmby
from tests.fakes.provider import FakeProvider

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "emby"
HOOK = "emby-webhook-token-abcdef012345"
API_KEY = "emby-api-key-0123456789abcdef"


@pytest.fixture
async def world(tmp_path: Path, library_root: Path, aiohttp_client: Any) -> AsyncIterator[dict[str, Any]]:
    provider = FakeProvider()
    await provider.start()
    token_bridge = FakeAniBridge(provider, auth="token")
    apikey_bridge = FakeAniBridge(provider, auth="apikey", secret="anibridge-apikey-9876")
    await token_bridge.start()
    await apikey_bridge.start()
    emby = await FakeEmby(token=API_KEY).start()
    services = make_services(tmp_path, f"""
[emby]
url = "{emby.url}"
api_key = "{API_KEY}"
webhook_token = "{HOOK}"
path_map = [{{server = "/mnt/tv", local = "{library_root}"}}]
[refresh]
resolvers = ["http"]
indirection_timeout_seconds = 1.0
cooldown_seconds = 600
[resolvers.http]
url = "{provider.base_url}/resolve"
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    yield {"provider": provider, "token": token_bridge, "apikey": apikey_bridge, "emby": emby, "services": services,
           "client": client, "root": library_root}
    await emby.stop()
    await token_bridge.stop()
    await apikey_bridge.stop()
    await provider.close()


def plant(world: dict[str, Any], bridge: FakeAniBridge, slug: str, episode: int) -> tuple[dict[str, Any], Path]:
    """What AniBridge writes in proxy mode (one line `URL\\n`), adopted the way `strm-bridge import` adopts it."""
    world["provider"].add_episode(bridge.key_of(slug, 1, episode))
    link = bridge.stable_link(slug, 1, episode, provider="VOE" if episode % 2 else None)
    path = world["root"] / slug / f"{slug}.S01E{episode:02d}.1080p.WEB.H264.GER-ANIWORLD [STRM].strm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(link + "\n")
    mapping = world["services"].store.upsert({
        "strm_path": str(path), "resolved_url": link, "source_url": link, "site": "aniworld.to", "slug": slug,
        "season": 1, "episode": episode, "language": "German Dub", "state": "ok"})
    return mapping, path


def snapshot(path: Path) -> tuple[bytes, int, int]:
    st = os.stat(path)
    return path.read_bytes(), st.st_ino, st.st_mtime_ns


def log_outcomes(world: dict[str, Any], mapping_id: int) -> list[str]:
    return [row["outcome"] for row in reversed(world["services"].store.refresh_history(mapping_id))]


async def wait_job(client: Any, job_id: str) -> dict[str, Any]:
    import asyncio

    for _ in range(500):
        job = await (await client.get(f"/api/jobs/{job_id}", headers=AUTH)).json()
        if job["state"] == "done":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("job did not finish")


async def test_forced_refresh_of_one_and_of_all_leaves_every_stable_link_byte_identical(world: dict[str, Any]) -> None:
    planted = [plant(world, world["token"], "spy-x-family", 1), plant(world, world["token"], "spy-x-family", 2),
               plant(world, world["apikey"], "frieren", 1), plant(world, world["apikey"], "frieren", 2)]
    before = {str(path): snapshot(path) for _, path in planted}
    client = world["client"]

    first, first_path = planted[0]
    answer = await (await client.post("/api/refresh", json={"id": first["id"], "force": True}, headers=AUTH)).json()
    assert answer["outcome"] == "alive" and "AniBridge stable link answers 200" in answer["detail"]
    assert [m for m, _q, _s in world["token"].requests] == ["HEAD"]  # asked once, nothing downloaded

    started = await (await client.post("/api/refresh", json={"all": True, "force": True}, headers=AUTH)).json()
    job = await wait_job(client, started["job"])
    assert job["counts"] == {"alive": 4}
    assert len(world["token"].requests) == 3 and len(world["apikey"].requests) == 2  # once per mapping and refresh
    assert world["provider"].resolve_calls == []  # the bridge's own resolver was never asked
    assert {str(path): snapshot(path) for _, path in planted} == before
    for mapping, path in planted:
        row = world["services"].store.get(mapping["id"])
        assert row["resolved_url"] == read_strm(path) and row["state"] == "ok" and row["last_status"] == "alive"
        assert set(log_outcomes(world, mapping["id"])) == {"alive"}


async def test_dry_run_asks_nobody(world: dict[str, Any]) -> None:
    mapping, path = plant(world, world["token"], "dandadan", 1)
    before = snapshot(path)
    answer = await (await world["client"].post("/api/refresh", json={"id": mapping["id"], "force": True,
                                                                     "dry_run": True}, headers=AUTH)).json()
    assert answer["outcome"] == "not_owned" and "never rewrites" in answer["detail"]
    assert world["token"].requests == [] and snapshot(path) == before


def emby_payload(kind: str, path: Path, root: Path) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"playback_{kind}.json").read_text())
    server_path = "/mnt/tv/" + str(path.relative_to(root))
    data["Item"].update(Id="90211", Path=server_path, FileName=path.name)
    if kind == "stop":
        data["PlaybackInfo"].update(PositionTicks=21_000_000, PlayedToCompletion=False)  # 2.1 s: a failure
    return data


async def fail_playback(world: dict[str, Any], path: Path) -> dict[str, Any]:
    for kind in ("start", "stop"):
        response = await world["client"].post(f"/webhooks/emby?token={HOOK}", json=emby_payload(kind, path, world["root"]))
        assert response.status == 202
    await world["services"].processor.drain()
    await world["services"].rescan.flush()
    row = world["services"].db.conn.execute(
        "select outcome, error from events where kind = 'stop' order by id desc limit 1").fetchone()
    return {"outcome": row[0], "error": row[1]}


@pytest.mark.parametrize("form", ["token", "apikey"])
async def test_failure_webhooks_while_anibridge_answers_404_502_timeout_and_is_down(world: dict[str, Any],
                                                                                   form: str) -> None:
    bridge: FakeAniBridge = world[form]
    mapping, path = plant(world, bridge, "kaiju-no-8", 3)
    before = snapshot(path)
    key = bridge.key_of("kaiju-no-8", 1, 3)

    # 404: the episode vanished upstream; AniBridge re-resolves once within that one request, then passes the 404 on
    world["provider"].remove_episode(key)
    event = await fail_playback(world, path)
    assert event["outcome"] == "upstream_dead" and "answered 404 after re-resolving it" in event["error"]
    assert [s for _m, _q, s in bridge.requests] == [404] and bridge.arrivals == 1
    assert sum(bridge.resolutions.values()) == 2  # first resolve + the re-resolve the request triggered

    # 502: AniBridge cannot resolve at all
    bridge.resolve_mode = "fail"
    event = await fail_playback(world, path)
    assert event["outcome"] == "upstream_dead" and "answered 502" in event["error"]
    assert [s for _m, _q, s in bridge.requests] == [404, 502]

    # a timeout: AniBridge hangs longer than refresh.indirection_timeout_seconds
    bridge.resolve_mode = "hang"
    event = await fail_playback(world, path)
    assert event["outcome"] == "indirection_down" and "no answer within 1s" in event["error"]
    assert bridge.arrivals == 3  # asked once more; its answer never came
    bridge.resolve_mode = None

    # AniBridge's server is down: connection refused
    await bridge.stop()
    event = await fail_playback(world, path)
    assert event["outcome"] == "indirection_down" and "its server is down" in event["error"]

    assert snapshot(path) == before and world["provider"].resolve_calls == []
    assert not [c for c in world["emby"].calls if c.path.endswith("/Refresh")]  # nothing to rescan
    assert log_outcomes(world, mapping["id"]) == ["upstream_dead", "upstream_dead", "indirection_down",
                                                  "indirection_down"]
    row = world["services"].store.get(mapping["id"])
    assert row["resolved_url"] == read_strm(path) and row["last_status"] == "connection_error"

    assert bridge.arrivals == 3  # down: nothing arrived

    # back up and the episode back: the next failure finds it alive again and says so
    world["provider"].add_episode(key)
    await bridge.start()
    event = await fail_playback(world, path)
    assert event["outcome"] == "alive" and snapshot(path) == before
    assert world["services"].store.get(mapping["id"])["state"] == "ok"


async def test_the_fake_behaves_like_anibridge(world: dict[str, Any]) -> None:
    """The fake's contract, checked over HTTP: streams 200/206 (never a redirect), 401 for a bad signature."""
    bridge: FakeAniBridge = world["token"]
    world["provider"].add_episode(bridge.key_of("x", 1, 1))
    link = bridge.stable_link("x", 1, 1)
    async with aiohttp.ClientSession() as session:
        async with session.get(link, allow_redirects=False) as whole:
            assert whole.status == 200 and await whole.read() == world["provider"].content("x/1/1")
        async with session.get(link, headers={"Range": "bytes=0-9"}, allow_redirects=False) as part:
            assert part.status == 206 and len(await part.read()) == 10
        async with session.get(link.replace("sig=", "sig=00"), allow_redirects=False) as bad:
            assert bad.status == 401 and (await bad.json())["detail"] == "invalid signature"
        async with session.get(f"{bridge.base_url}/strm/stream?slug=x&s=1&e=1") as incomplete:
            assert incomplete.status == 401  # auth is checked before the identity, as in AniBridge


async def test_the_sweep_stops_asking_a_stable_link_once_judged(world: dict[str, Any]) -> None:
    mapping, path = plant(world, world["token"], "oshi-no-ko", 1)
    store = world["services"].store
    store.update(mapping["id"], {"expires_at": "2000-01-01T00:00:00.000Z"})  # e.g. registered with a guess
    assert store.expiring_ids(0) == [mapping["id"]]
    outcomes = await world["services"].sweeper.run_once()
    assert [o.outcome for o in outcomes] == ["alive"]
    assert store.expiring_ids(0) == [] and len(world["token"].requests) == 1
    assert read_strm(path) == mapping["resolved_url"]


async def test_probe_on_start_asks_a_stable_link_once(tmp_path: Path, world: dict[str, Any]) -> None:
    services = world["services"]
    services.processor.probe_on_start = True
    mapping, path = plant(world, world["apikey"], "blue-lock", 5)
    before = snapshot(path)
    world["provider"].remove_episode(world["apikey"].key_of("blue-lock", 1, 5))
    response = await world["client"].post(f"/webhooks/emby?token={HOOK}", json=emby_payload("start", path, world["root"]))
    assert response.status == 202
    await services.processor.drain()
    outcome = services.db.conn.execute("select outcome from events where kind = 'start'").fetchone()[0]
    assert outcome == "upstream_dead" and world["apikey"].arrivals == 1 and snapshot(path) == before


async def test_cli_forced_refresh_of_all_leaves_stable_links_alone(world: dict[str, Any], tmp_path: Path) -> None:
    """`strm-bridge refresh --all --force` in its own process, against the same fake AniBridge."""
    import asyncio
    import sys

    planted = [plant(world, world["token"], "mushishi", 1), plant(world, world["apikey"], "mushishi", 2)]
    before = {str(path): snapshot(path) for _, path in planted}
    config = tmp_path / "strm-bridge.toml"  # the one make_services wrote: same database, same roots
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "refresh", "--all", "--force", "--json", "--no-progress", "--config",
        str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert sorted(item["outcome"] for item in json.loads(out)["items"]) == ["alive", "alive"]
    assert {str(path): snapshot(path) for _, path in planted} == before
    assert len(world["token"].requests) == 1 and len(world["apikey"].requests) == 1
    assert world["provider"].resolve_calls == []


async def test_a_rotated_anibridge_secret_is_reported_not_repaired(world: dict[str, Any]) -> None:
    mapping, path = plant(world, world["token"], "vinland-saga", 1)
    before = snapshot(path)
    world["token"].secret = "rotated-secret-0000"  # STRM_PROXY_SECRET changed: every old sig is now refused
    answer = await (await world["client"].post("/api/refresh", json={"id": mapping["id"], "force": True},
                                               headers=AUTH)).json()
    assert answer["outcome"] == "link_refused" and "401" in answer["detail"]
    assert [s for _m, _q, s in world["token"].requests] == [401] and snapshot(path) == before
    assert world["services"].store.get(mapping["id"])["state"] == "dead" and world["provider"].resolve_calls == []
