"""Secrets never reach the logs: tokens, API keys and signed URL query strings are masked."""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge import redact
from bridge.logsetup import TextFormatter
from bridge.redact import RedactingFormatter, redact_text, redact_url
from tests.appfactory import TOKEN, make_services
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import add_mapping


def test_redact_url_keeps_host_and_path_only() -> None:
    url = "https://cdn.test:8443/hls/master.m3u8?t=SECRET&s=1700000000&e=14400"
    assert redact_url(url) == "https://cdn.test:8443/hls/master.m3u8?…"
    assert "SECRET" not in redact_text(f"fetching {url} failed")
    assert redact_text("GET /webhooks/plex?token=abcdef123") == "GET /webhooks/plex?token=…"
    assert redact_text("key is hunter22!", secrets=["hunter22!"]) == "key is …"


SECRETS = (TOKEN, "hook-secret-987654", "jf-key-secret-123456", "resolver-secret-555", "sig=")


async def service_log(tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any) -> str:
    """What the bridge's own log handler (as `serve` sets it up) wrote while a bridge ran, secrets everywhere."""
    stream = io.StringIO()
    # serve's handler (bridge.logsetup), added beside the test's capture handler rather than replacing it
    handler = redact.own(logging.StreamHandler(stream))
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
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
        logging.getLogger("bridge.test").warning("leak attempt %s %s resolver-secret-555 jf-key-secret-123456",
                                                 TOKEN, m["resolved_url"])
        await client.close()  # the bridge stops: its redaction comes off the handler
        assert not isinstance(handler.formatter, RedactingFormatter)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return stream.getvalue()


async def test_service_logs_hold_no_secret(tmp_path: Path, library_root: Path, fake_provider: FakeProvider,
                                           aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    text = await service_log(tmp_path, library_root, fake_provider, aiohttp_client)
    assert "leak attempt" in text
    for secret in SECRETS:
        assert secret not in text, secret
    # the redaction is the bridge handler's own: records other handlers see (here pytest's) are left as they are
    captured = "\n".join(r.getMessage() for r in caplog.records)
    assert f"leak attempt {TOKEN}" in captured


async def test_without_the_redaction_the_same_run_shows_the_secrets(
    tmp_path: Path, library_root: Path, fake_provider: FakeProvider, aiohttp_client: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: with the masking of known secrets switched off, they reach the log."""
    monkeypatch.setattr(redact, "redact_text", lambda text, secrets=(): text)
    text = await service_log(tmp_path, library_root, fake_provider, aiohttp_client)
    assert f"leak attempt {TOKEN}" in text and "resolver-secret-555" in text and "jf-key-secret-123456" in text


def test_a_stopped_bridge_leaves_no_mask_behind() -> None:
    """Before: every bridge built in a process added a filter to the root handlers and none was removed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        first = redact.install(["first-secret-123"], handlers=[handler])
        second = redact.install(["second-secret-456"], handlers=[handler])
        log = logging.getLogger("bridge.test.masks")
        log.warning("a first-secret-123 b second-secret-456")
        first.remove()
        log.warning("c first-secret-123 d second-secret-456")
        second.remove()
        log.warning("e first-secret-123")
    finally:
        root.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["a … b …", "c first-secret-123 d …", "e first-secret-123"]
    assert handler.formatter is None and handler.filters == []


def test_no_handler_of_its_own_leaves_foreign_handlers_alone() -> None:
    foreign = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        redaction = redact.install(["some-secret-789"])
        assert foreign.formatter is None and redaction.handlers == [h for h in root.handlers if h in redaction.handlers]
        assert foreign not in redaction.handlers
        redaction.remove()
    finally:
        root.removeHandler(foreign)
