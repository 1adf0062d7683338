"""POST /api/refresh, jobs, cache purge, rescan and the refresh CLI, against the fake provider."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.app import create_app
from bridge.cli import main
from bridge.strm import read_strm
from tests.appfactory import AUTH, make_services
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping


def config_text(provider: FakeProvider) -> str:
    return f"""
[refresh]
resolvers = ["http"]
cooldown_seconds = 600
[resolvers.http]
url = "{provider.base_url}/resolve"
[cache]
ttl_seconds = 600
"""


@pytest.fixture
async def api(tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client):  # type: ignore[no-untyped-def]
    services = make_services(tmp_path, config_text(fake_provider), roots=[library_root])
    client = await aiohttp_client(create_app(services))
    return client, services


async def wait_job(client, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(200):
        job = await (await client.get(f"/api/jobs/{job_id}", headers=AUTH)).json()
        if job["state"] == "done":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("job did not finish")


async def test_single_refresh_by_id_and_path(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    m = add_mapping(services.store, library_root, fake_provider, 1)
    response = await client.post("/api/refresh", json={"id": m["id"]}, headers=AUTH)
    outcome = await response.json()
    assert response.status == 200 and outcome["outcome"] == "refreshed"
    assert "sig=" not in json.dumps(outcome)  # URLs are redacted in answers
    again = await (await client.post("/api/refresh", json={"path": m["strm_path"]}, headers=AUTH)).json()
    assert again["outcome"] == "cooldown"
    forced = await (await client.post("/api/refresh", json={"path": m["strm_path"], "force": True}, headers=AUTH)).json()
    assert forced["outcome"] in ("refreshed", "unchanged") and len(fake_provider.resolve_calls) == 2


async def test_identity_selection(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    m = add_mapping(services.store, library_root, fake_provider, 3)
    body = {"identity": {"site": "fake", "slug": "show", "season": 1, "episode": 3, "language": "German Dub"}}
    outcome = await (await client.post("/api/refresh", json=body, headers=AUTH)).json()
    assert outcome["mapping_id"] == m["id"] and outcome["outcome"] == "refreshed"


async def test_series_job_with_progress_and_items(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    ms = [add_mapping(services.store, library_root, fake_provider, n) for n in range(1, 6)]
    add_mapping(services.store, library_root, fake_provider, 1, slug="other")
    response = await client.post("/api/refresh", json={"series": {"site": "fake", "slug": "show", "season": 1}},
                                 headers=AUTH)
    assert response.status == 202
    started = await response.json()
    assert started["total"] == 5
    job = await wait_job(client, started["job"])
    assert job["done"] == 5 and job["progress"] == 1.0 and job["counts"] == {"refreshed": 5}
    assert [i["mapping_id"] for i in job["items"]] == [m["id"] for m in ms]
    assert all(read_strm(m["strm_path"]) != m["resolved_url"] for m in ms)
    assert len(fake_provider.resolve_calls) == 5


async def test_dry_run_job_touches_nothing(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    ms = [add_mapping(services.store, library_root, fake_provider, n) for n in range(1, 4)]
    before = [services.store.get(m["id"]) for m in ms]
    started = await (await client.post("/api/refresh", json={"all": True, "dry_run": True}, headers=AUTH)).json()
    job = await wait_job(client, started["job"])
    assert job["counts"] == {"would_refresh": 3}
    recorded = {"state", "last_status", "last_checked_at", "updated_at"}  # a dry run keeps what its probe found

    def unrecorded(row):  # type: ignore[no-untyped-def]
        return {k: v for k, v in row.items() if k not in recorded}

    after = [services.store.get(m["id"]) for m in ms]
    assert [unrecorded(r) for r in after] == [unrecorded(r) for r in before]
    assert all(r["state"] == "dead" and r["last_status"] == "forbidden" for r in after)
    assert fake_provider.resolve_calls == []
    assert all(read_strm(m["strm_path"]) == m["resolved_url"] for m in ms)


async def test_stale_selection(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    add_mapping(services.store, library_root, fake_provider, 1, expires_at="2000-01-01T00:00:00Z")
    add_mapping(services.store, library_root, fake_provider, 2, expired=False)
    started = await (await client.post("/api/refresh", json={"stale": True}, headers=AUTH)).json()
    assert started["total"] == 1
    assert (await wait_job(client, started["job"]))["counts"] == {"refreshed": 1}


@pytest.mark.parametrize("body,status", [
    ({}, 400), ({"id": 1, "all": True}, 400), ({"id": "x"}, 400), ({"series": {"slug": "x"}}, 400),
    ({"identity": {"site": "a", "slug": "b"}}, 400), ({"all": "yes"}, 400), ({"id": 1, "force": "yes"}, 400),
    ({"id": 999}, 404), ({"path": "/nope.strm"}, 404), ({"id": 1, "colour": 1}, 400),
    ({"stale": True, "margin_seconds": -5}, 400),
])
async def test_bad_refresh_requests(api, body, status) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    response = await client.post("/api/refresh", json=body, headers=AUTH)
    assert response.status == status
    assert "error" in await response.json()


async def test_cache_purge_and_unknown_job(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    m = add_mapping(services.store, library_root, fake_provider, 1)
    await client.post("/api/refresh", json={"id": m["id"]}, headers=AUTH)
    assert (await (await client.post("/api/cache/purge", headers=AUTH)).json()) == {"purged": 1}
    assert (await (await client.post("/api/cache/purge", headers=AUTH)).json()) == {"purged": 0}
    assert (await client.get("/api/jobs/nope", headers=AUTH)).status == 404


async def test_rescan_endpoint_errors(api, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    client, services = api
    m = add_mapping(services.store, library_root, fake_provider, 1)
    assert (await client.post("/api/rescan", json={}, headers=AUTH)).status == 400
    assert (await client.post("/api/rescan", json={"path": "/etc/x.strm"}, headers=AUTH)).status == 422
    assert (await client.post("/api/rescan", json={"path": str(library_root / "x.strm")}, headers=AUTH)).status == 404
    response = await client.post("/api/rescan", json={"path": m["strm_path"]}, headers=AUTH)
    assert response.status == 409  # no media server configured in this test


async def test_refresh_cli(tmp_path: Path, library_root: Path, fake_provider: FakeProvider) -> None:
    services = make_services(tmp_path, config_text(fake_provider), roots=[library_root])
    ms = [add_mapping(services.store, library_root, fake_provider, n) for n in range(1, 4)]
    services.db.conn.close()
    config = tmp_path / "strm-bridge.toml"
    assert config.exists()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["refresh", *args, "--config", str(config)])

    result = await asyncio.to_thread(run, "--id", str(ms[0]["id"]), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "refreshed"
    result = await asyncio.to_thread(run, "--series", "fake/show/1", "--dry-run", "--json")
    items = json.loads(result.stdout)["items"]
    assert sorted(i["outcome"] for i in items) == ["alive", "would_refresh", "would_refresh"]
    result = await asyncio.to_thread(run, "--series", "fake/show", "--progress")
    assert result.exit_code == 0 and "2 refreshed" in result.stdout and "1 alive" in result.stdout
    assert "3/3" in result.stderr
    assert (await asyncio.to_thread(run, "--id", "1", "--all")).exit_code == 2
    assert (await asyncio.to_thread(run, "--id", "999")).exit_code == 1

