"""`/metrics` moves with a real heal; `serve` logs in text and JSON without tokens or signed query strings."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import create_app
from bridge.strm import read_strm
from tests.appfactory import AUTH, make_services
from tests.e2e import plant_expired, refresh_config
from tests.fakes.jellyfin import FakeJellyfin
from tests.fakes.provider import FakeProvider

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "jellyfin"
API_KEY = "jf-api-key-metrics-0123456789"
HOOK = "jf-hook-metrics-abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def webhook(kind: str, item_id: str, position_ticks: int = 0) -> bytes:
    data = json.loads((FIXTURES / f"send_all_playback_{kind}.json").read_text())
    data.update(ItemId=item_id, DeviceId="metrics-device")
    if kind == "stop":
        data.update(PlaybackPositionTicks=position_ticks, PlayedToCompletion=False)
    return json.dumps(data).encode()


async def test_metrics_move_after_a_heal(tmp_path: Path, library_root: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    provider = FakeProvider()
    await provider.start()
    jellyfin = await FakeJellyfin(api_key=API_KEY).start()
    try:
        services = make_services(tmp_path, f"""
[jellyfin]
url = "{jellyfin.url}"
api_key = "{API_KEY}"
webhook_token = "{HOOK}"
path_map = [{{server = "/data/tv", local = "{library_root}"}}]
{refresh_config(provider)}""", roots=[library_root])
        client = await aiohttp_client(create_app(services))
        path = library_root / "Show" / "S01E01.strm"
        expired = plant_expired(provider, services.store, path, "show", 1)
        item_id = f"{1:032x}"
        jellyfin.add_item(item_id, "/data/tv/Show/S01E01.strm", Type="Episode")

        assert (await client.get("/metrics")).status == 401
        response = await client.get("/metrics", headers=AUTH)
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        before = samples(await response.text())
        assert value(before, "strm_bridge_mappings", state="ok") == 1
        assert value(before, "strm_bridge_mappings", state="dead") == 0  # every state is present, zeros too

        for kind in ("start", "stop"):
            answer = await client.post("/webhooks/jellyfin", data=webhook(kind, item_id, 5_000_000),
                                       headers={"Content-Type": "application/json", "X-Api-Key": HOOK})
            assert answer.status == 202
        assert (await client.post("/webhooks/jellyfin", data=b"{not json",
                                  headers={"Content-Type": "application/json", "X-Api-Key": HOOK})).status == 400
        await services.processor.drain()
        await services.rescan.flush()
        assert read_strm(path) != expired

        after = samples(await (await client.get("/metrics", headers=AUTH)).text())
        moved = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
        assert moved("strm_bridge_webhooks_total", source="jellyfin", kind="start", outcome="accepted") == 1
        assert moved("strm_bridge_webhooks_total", source="jellyfin", kind="stop", outcome="accepted") == 1
        assert moved("strm_bridge_webhooks_total", source="jellyfin", kind="", outcome="invalid") == 1
        assert sum(v for (n, labels), v in after.items() if n == "strm_bridge_failures_total"
                   and ("source", "jellyfin") in labels) == 1
        assert moved("strm_bridge_refreshes_total", trigger="jellyfin", outcome="refreshed") == 1
        assert moved("strm_bridge_resolver_seconds_count", resolver="http", outcome="ok") == 1
        assert moved("strm_bridge_resolver_seconds_bucket", resolver="http", outcome="ok", le="+Inf") == 1
        assert moved("strm_bridge_probes_total", status="alive") >= 1  # the fresh URL was probed before writing
        assert moved("strm_bridge_rescans_total", target="jellyfin", outcome="sent") == 1
        assert value(after, "strm_bridge_mappings", state="ok") == 1
        assert value(after, "strm_bridge_rescan_queue_depth", server="jellyfin") == 0
        assert value(after, "strm_bridge_events_unprocessed") == 0
        assert value(after, "strm_bridge_job_items_pending") == 0
    finally:
        await jellyfin.close()
        await provider.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_and_poke(tmp_path: Path, library_root: Path, provider: FakeProvider, log_format: str) -> tuple[str, str, dict[str, str]]:
    """Run `strm-bridge serve` for real, make it log requests, refreshes and failures, stop it; its output."""
    token = f"api-token-{log_format}-0123456789abcdef"
    hook = f"hook-secret-{log_format}-98765"
    resolver_key = f"resolver-key-{log_format}-5555"
    port = free_port()
    config = tmp_path / f"{log_format}.toml"
    config.write_text(f"""
[server]
port = {port}
api_token = "{token}"
[database]
path = "{tmp_path / log_format / 'bridge.db'}"
[library]
roots = ["{library_root}"]
[jellyfin]
webhook_token = "{hook}"
[refresh]
resolvers = ["http"]
probe_timeout_seconds = 2
[resolvers.http]
url = "{provider.base_url}/resolve?key={resolver_key}"
headers = {{ Authorization = "Bearer {resolver_key}" }}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRM_BRIDGE_")}
    env["PYTHONPATH"] = str(REPO)
    args = [sys.executable, "-m", "bridge", "serve", "--config", str(config)]
    if log_format == "json":
        args += ["--log-format", "json"]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout_lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), max(deadline - time.monotonic(), 0.1))  # type: ignore[union-attr]
            assert line, "serve ended before listening"
            stdout_lines.append(line.decode())
            if "listening on" in stdout_lines[-1]:
                break
        base = f"http://127.0.0.1:{port}"
        provider.add_episode("show/1/7")
        signed = provider.sign("show/1/7", expires_at=time.time() - 60)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/mappings?token={token}&limit=5") as r:
                assert r.status == 200
            async with http.get(f"{base}/api/mappings?token=wrong-{token}") as r:
                assert r.status == 401
            async with http.post(f"{base}/webhooks/jellyfin?token={hook}", data=b"{}",
                                 headers={"Content-Type": "application/json"}) as r:
                assert r.status in (202, 400)
            body = {"strm_path": str(library_root / log_format / "S01E07.strm"), "resolved_url": signed,
                    "site": "fake", "slug": "show", "season": 1, "episode": 7}
            (library_root / log_format).mkdir(exist_ok=True)
            (library_root / log_format / "S01E07.strm").write_text(signed + "\n")
            async with http.post(f"{base}/api/mappings", json=body, headers={"X-Api-Key": token}) as r:
                assert r.status in (200, 201), await r.text()
                mapping_id = (await r.json())["id"]
            async with http.post(f"{base}/api/refresh", json={"id": mapping_id}, headers={"X-Api-Key": token}) as r:
                assert r.status == 200, await r.text()
            provider.resolve_mode = "error"  # a failing resolver: its error lands in the log with its URL
            async with http.post(f"{base}/api/refresh", json={"id": mapping_id, "force": True},
                                 headers={"X-Api-Key": token}) as r:
                assert r.status == 200
                assert (await r.json())["outcome"] not in ("refreshed", "alive")
            provider.resolve_mode = None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    secrets = {"token": token, "hook": hook, "resolver_key": resolver_key, "sig": signed.split("sig=", 1)[1]}
    return "".join(stdout_lines) + out.decode(), err.decode(), secrets


async def test_no_secret_or_signed_query_in_either_log_format(tmp_path: Path, library_root: Path,
                                                              fake_provider: FakeProvider) -> None:
    for log_format in ("text", "json"):
        stdout, stderr, secrets = await serve_and_poke(tmp_path, library_root, fake_provider, log_format)
        everything = stdout + stderr
        for name, secret in secrets.items():
            assert secret not in everything, f"{name} leaked in the {log_format} log"
        lines = [line for line in stderr.splitlines() if line.strip()]
        access = [line for line in lines if "/api/mappings" in line]
        assert access, f"no access lines in the {log_format} log: {stderr}"  # the requests were really logged
        assert any("/resolve" in line for line in lines), stderr  # the resolver's failure names its URL, redacted
        if log_format == "json":
            entries: list[dict[str, Any]] = [json.loads(line) for line in lines]
            assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
            assert any(e["logger"] == "aiohttp.access" for e in entries)
        else:
            assert not any(line.startswith("{") for line in lines)
            assert any(" INFO aiohttp.access: " in line for line in lines)


def test_both_formatters_redact_what_the_filter_missed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io
    import logging

    import bridge.logsetup as logsetup

    signed = "https://cdn.example/v/1.mp4?exp=1700000000&sig=deadbeefcafef00d"
    for formatter in (logsetup.TextFormatter(), logsetup.JsonFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger = logging.getLogger(f"test.redaction.{type(formatter).__name__}")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning("probe of %s failed", signed)
            try:
                raise RuntimeError(f"upstream said no for {signed}")
            except RuntimeError:
                logger.exception("crash")
            assert "deadbeefcafef00d" not in stream.getvalue() and "https://cdn.example/v/1.mp4?…" in stream.getvalue()
            with monkeypatch.context() as patched:  # the check can fail: without redaction the signature shows
                patched.setattr(logsetup, "redact_text", lambda text, secrets=(): text)
                logger.warning("probe of %s failed", signed)
            assert "deadbeefcafef00d" in stream.getvalue()
        finally:
            logger.removeHandler(handler)


async def test_every_exported_series_is_in_the_readme(tmp_path: Path, library_root: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    """The README's metrics table names every family `/metrics` exports (the docs move with the code)."""
    services = make_services(tmp_path, "", roots=[library_root])
    client = await aiohttp_client(create_app(services))
    text = await (await client.get("/metrics", headers=AUTH)).text()
    exported = {family.name for family in text_string_to_metric_families(text)
                if family.name.startswith("strm_bridge_") and not family.name.endswith("_created")}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    documented = {name.removesuffix("_total") for name in re.findall(r"^\| `(strm_bridge_[a-z_]+)` \|", readme, re.M)}
    assert exported and exported <= documented, sorted(exported - documented)
