"""Secrets never reach the logs: tokens, API keys and signed URL query strings are masked."""
from __future__ import annotations

import logging
from pathlib import Path

from bridge.app import create_app
from bridge.redact import redact_text, redact_url
from tests.appfactory import TOKEN, make_services
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping


def test_redact_url_keeps_host_and_path_only() -> None:
    url = "https://cdn.test:8443/hls/master.m3u8?t=SECRET&s=1700000000&e=14400"
    assert redact_url(url) == "https://cdn.test:8443/hls/master.m3u8?…"
    assert "SECRET" not in redact_text(f"fetching {url} failed")
    assert redact_text("GET /webhooks/plex?token=abcdef123") == "GET /webhooks/plex?token=…"
    assert redact_text("key is hunter22!", secrets=["hunter22!"]) == "key is …"


async def test_service_logs_hold_no_secret(tmp_path: Path, library_root: Path, fake_provider: FakeProvider,
                                           aiohttp_client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    services = make_services(tmp_path, f"""
[jellyfin]
webhook_token = "hook-secret-987654"
api_key = "jf-key-secret-123456"
url = "http://127.0.0.1:9"
[refresh]
resolvers = ["http"]
[resolvers.http]
url = "{fake_provider.base_url}/resolve"
headers = {{Authorization = "Bearer resolver-secret-555"}}
""", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    m = add_mapping(services.store, library_root, fake_provider, 1)
    await client.post("/api/refresh", json={"id": m["id"]}, headers={"X-Api-Key": TOKEN})
    await client.post("/webhooks/jellyfin?token=hook-secret-987654", data=b"{not json")
    await client.get(f"/api/mappings?token={TOKEN}")
    fake_provider.resolve_mode = "error"
    await client.post("/api/refresh", json={"id": m["id"], "force": True}, headers={"X-Api-Key": TOKEN})
    logging.getLogger("bridge.test").warning("leak attempt %s %s resolver-secret-555", TOKEN, m["resolved_url"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "leak attempt" in text
    for secret in (TOKEN, "hook-secret-987654", "jf-key-secret-123456", "resolver-secret-555", "sig="):
        assert secret not in text, secret
