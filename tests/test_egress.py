"""The bridge never probes, follows or writes a URL whose target is its own listener; deny/allow lists hold."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.app import create_app
from bridge.config import ConfigError, load_config
from bridge.egress import Egress, EgressDenied
from bridge.probe import probe
from bridge.resolvers.base import Resolved
from bridge.resolvers.registry import create_resolver
from bridge.resolvers.base import ResolverContext, ResolverError, ResolveRequest
from bridge.mappings import Identity
from bridge.strm import read_strm
from bridge.wiring import build_services
from tests.appfactory import AUTH, TOKEN, write_config
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import ScriptedResolver


def self_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/healthz",
        f"http://localhost:{port}/healthz",
        f"http://127.0.0.1:{port - 1 if port > 1 else 2}@127.0.0.1:{port}/healthz",  # userinfo that looks like a port
        f"http://user:pw@localhost:{port}/api/mappings",
        f"http://127.0.0.1:{port}/api/mappings?token={TOKEN}",
        f"http://0.0.0.0:{port}/healthz",
        f"http://127.9.9.9:{port}/healthz",
        f"http://[::ffff:127.0.0.1]:{port}/healthz",
        f"http://LOCALHOST.:{port}/healthz",
        f"http://2130706433:{port}/healthz",  # legacy numeric forms that getaddrinfo maps to 127.0.0.1
        f"http://127.1:{port}/healthz",
    ]


@pytest.mark.parametrize("index", range(len(self_urls(8765))))
async def test_every_spelling_of_the_listener_is_refused(index: int) -> None:
    egress = Egress()
    egress.add_listener("127.0.0.1", 8765)
    with pytest.raises(EgressDenied, match="own listener"):
        await egress.check_url(self_urls(8765)[index])


async def test_other_ports_and_hosts_pass() -> None:
    egress = Egress()
    egress.add_listener("127.0.0.1", 8765)
    await egress.check_url("http://127.0.0.1:8766/media/x")  # a loopback provider (Alist, the tests' fakes)
    await egress.check_url("http://8765@127.0.0.1:9000/x")
    await egress.check_url("http://192.0.2.10:8765/x")  # TEST-NET: not an address of this machine


async def test_wildcard_listener_covers_every_local_address() -> None:
    egress = Egress()
    egress.add_listener("0.0.0.0", 8765)
    for url in ("http://127.0.0.1:8765/", "http://0.0.0.0:8765/"):
        with pytest.raises(EgressDenied):
            await egress.check_url(url)


async def test_deny_and_allow_lists() -> None:
    egress = Egress.from_lists(deny_hosts=["10.0.0.0/8", ".internal.example", "blocked.test"],
                               allow_hosts=[])
    for url in ("http://10.1.2.3/x", "http://cdn.internal.example/x", "http://internal.example/x",
                "http://blocked.test/x"):
        with pytest.raises(EgressDenied, match="deny_hosts"):
            await egress.check_url(url)
    await egress.check_url("http://127.0.0.1:9/x")
    only = Egress.from_lists(allow_hosts=["192.168.0.0/16", "127.0.0.1"])
    await only.check_url("http://192.168.1.20:5244/d/film.mkv")
    await only.check_url("http://127.0.0.1:9/x")
    with pytest.raises(EgressDenied, match="allow_hosts"):
        await only.check_url("http://203.0.113.9/x")


@pytest.mark.parametrize("entry", ["", "http://x/", "a b", "*", "10.0.0.0/33x"])
def test_bad_entries_stop_start_up_naming_the_key(tmp_path: Path, entry: str) -> None:
    path = write_config(tmp_path, f'[refresh]\ndeny_hosts = ["{entry}"]\n')
    with pytest.raises(ConfigError, match=r"refresh\.deny_hosts\[0\]"):
        load_config(path, env={})


async def test_config_deny_list_reaches_the_probe(tmp_path: Path, fake_provider: FakeProvider) -> None:
    path = write_config(tmp_path, '[refresh]\ndeny_hosts = ["127.0.0.0/8"]\n')
    services = build_services(load_config(path, env={}))
    try:
        fake_provider.add_episode("a/1/1")
        result = await probe(services.pipeline.session, fake_provider.sign("a/1/1"), timeout=2)
        assert result.status == "connection_error" and "deny_hosts" in (result.error or "")
        assert fake_provider.media_requests == []
    finally:
        await services.pipeline.close()
        services.db.conn.close()


# ---- the running bridge -------------------------------------------------------------------------------------


class World:
    def __init__(self, client: TestClient, services: Any, resolver: ScriptedResolver, hits: list[str]) -> None:
        self.client = client
        self.services = services
        self.resolver = resolver
        self.hits = hits
        self.port = client.server.port


@pytest.fixture
async def world(aiohttp_client: Any, tmp_path: Path, library_root: Path,
                fake_provider: FakeProvider) -> AsyncIterator[World]:
    path = write_config(tmp_path, "[refresh]\nbreaker_threshold = 1000\nmass_failure_min_attempts = 1000\n",
                        roots=[library_root])
    resolver = ScriptedResolver("scripted", [])
    services = build_services(load_config(path, env={}), resolvers=[resolver])
    app = create_app(services)
    hits: list[str] = []

    async def count(request: web.Request, response: web.StreamResponse) -> None:
        hits.append(f"{request.method} {request.path}")

    app.on_response_prepare.append(count)
    client = await aiohttp_client(app)
    yield World(client, services, resolver, hits)


async def register_expired(world: World, provider: FakeProvider, library_root: Path, episode: int) -> dict[str, Any]:
    key = f"show/1/{episode}"
    provider.add_episode(key)
    expired = provider.sign(key, expires_at=time.time() - 120)
    strm = library_root / "show" / f"S01E{episode:02d}.strm"
    strm.parent.mkdir(parents=True, exist_ok=True)
    strm.write_text(expired + "\n")
    response = await world.client.post("/api/mappings", headers=AUTH, json={
        "strm_path": str(strm), "resolved_url": expired, "site": "fake", "slug": "show", "season": 1,
        "episode": episode, "language": "German Dub"})
    assert response.status in (200, 201), await response.text()
    return {**(await response.json()), "strm": strm, "expired": expired}


async def test_a_resolver_pointing_home_is_never_probed_nor_written(
    world: World, fake_provider: FakeProvider, library_root: Path
) -> None:
    """Before: the answer was written into the .strm and probed (HEAD requests to the bridge's own port)."""
    mapping = await register_expired(world, fake_provider, library_root, 1)
    answers = [Resolved(url=url) for url in self_urls(world.port)]
    # a provider URL that redirects to the bridge: only a check on every redirect hop catches it
    answers.append(Resolved(url=f"{fake_provider.base_url}/open-redirect?to="
                                + quote(f"http://localhost:{world.port}/api/mappings?token={TOKEN}", safe="")))
    for answer in answers:
        world.resolver.answers = [answer]
        world.resolver.requests.clear()
        world.hits.clear()
        response = await world.client.post("/api/refresh", headers=AUTH, json={"id": mapping["id"], "force": True})
        outcome = await response.json()
        assert response.status == 200 and outcome["outcome"] == "failed", (answer.url, outcome)
        assert "own listener" in outcome["detail"], outcome["detail"]
        assert len(world.resolver.requests) == 1
        assert world.hits == ["POST /api/refresh"], (answer.url, world.hits)  # no request reached the bridge
        assert read_strm(mapping["strm"]) == mapping["expired"]


async def test_a_redirect_resolver_does_not_follow_a_source_home(
    world: World, fake_provider: FakeProvider
) -> None:
    await world.client.get("/healthz")  # the bridge learns the port it is reached on from its first request
    resolver = create_resolver("redirect", {}, ResolverContext(egress=world.services.egress))
    world.hits.clear()
    try:
        for source in (f"http://127.0.0.1:{world.port}/healthz",
                       f"{fake_provider.base_url}/open-redirect?to=" + quote(f"http://127.0.0.1:{world.port}/", safe="")):
            request = ResolveRequest(identity=Identity("fake", "show", 1, 1, "German Dub", ""), source_url=source,
                                     previous_url=None, reason="manual", strm_path=None)
            with pytest.raises(ResolverError, match="own listener"):
                await resolver.resolve(request)
    finally:
        await resolver.close()
    assert world.hits == []


async def test_loopback_providers_stay_usable(world: World, fake_provider: FakeProvider, library_root: Path) -> None:
    mapping = await register_expired(world, fake_provider, library_root, 2)
    fresh = fake_provider.sign("show/1/2")
    world.resolver.answers = [Resolved(url=fresh)]
    response = await world.client.post("/api/refresh", headers=AUTH, json={"id": mapping["id"]})
    outcome = await response.json()
    assert outcome["outcome"] == "refreshed", outcome
    assert read_strm(mapping["strm"]) == fresh


async def test_a_current_url_pointing_home_is_not_probed(world: World, library_root: Path) -> None:
    strm = library_root / "home.strm"
    home = f"http://localhost:{world.port}/api/mappings?token={TOKEN}"
    strm.write_text(home + "\n")
    mapping = world.services.store.upsert({"strm_path": str(strm), "resolved_url": home, "state": "ok"})
    world.resolver.answers = [Resolved(url=f"http://127.0.0.1:{world.port}/x")]
    world.hits.clear()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{world.port}/api/refresh", headers=AUTH,
                                json={"id": mapping["id"]}) as response:
            outcome = await response.json()
    assert outcome["outcome"] == "failed"
    assert world.hits == ["POST /api/refresh"]
    assert read_strm(strm) == home


async def test_registering_a_url_that_points_home_is_refused(world: World, library_root: Path) -> None:
    """Before: POST /api/mappings stored a resolved_url naming the bridge itself (never probed, but kept)."""
    strm = library_root / "show" / "S09E01.strm"
    strm.parent.mkdir(parents=True, exist_ok=True)
    strm.write_text("http://cdn.invalid/old\n")
    refused = [f"http://localhost:{world.port}/healthz", f"http://127.0.0.1:{world.port}/api/mappings?token={TOKEN}",
               f"http://[::1]:{world.port}/play/1?sig=x", f"http://LOCALHOST.:{world.port}/x"]
    for url in refused:
        response = await world.client.post("/api/mappings", headers=AUTH, json={"strm_path": str(strm), "resolved_url": url})
        body = await response.json()
        assert response.status == 422, (url, body)
        assert body["error"] in ("points_at_bridge", "egress_denied"), body
    assert world.services.store.by_path(str(strm)) is None
    assert read_strm(strm) == "http://cdn.invalid/old"
    # another port on loopback is a provider (Alist, the tests' fakes): accepted
    ok = await world.client.post("/api/mappings", headers=AUTH, json={
        "strm_path": str(strm), "resolved_url": f"http://127.0.0.1:{world.port + 1 if world.port < 65535 else 1}/v.mp4"})
    assert ok.status == 201, await ok.text()


async def test_registering_a_denied_host_is_refused(aiohttp_client: Any, tmp_path: Path, library_root: Path) -> None:
    path = write_config(tmp_path, '[refresh]\ndeny_hosts = ["10.0.0.0/8", "bad.example", ".evil.example"]\n', roots=[library_root])
    client = await aiohttp_client(create_app(build_services(load_config(path, env={}), resolvers=[])))
    strm = library_root / "a.strm"
    for url in ("http://10.1.2.3/v.mp4", "https://cdn.evil.example/v.mp4", "https://bad.example/v.mp4"):
        response = await client.post("/api/mappings", headers=AUTH, json={"strm_path": str(strm), "resolved_url": url})
        assert response.status == 422 and (await response.json())["error"] == "egress_denied", url
    response = await client.post("/api/mappings", headers=AUTH, json={"strm_path": str(strm), "resolved_url": "https://good.example/v.mp4"})
    assert response.status == 201
