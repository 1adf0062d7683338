"""Every route the router has, but the documented open ones, refuses a missing, a wrong and an undecodable token.

Open routes are the operations the OpenAPI document marks `security: []` (today `/healthz`), plus the
prefixes `/play/` (signed links: the signature is the credential) and `/static/` (dashboard assets); an
engineer who adds an open route (the dashboard's login page) marks it so in `bridge/openapi.json`.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.app import create_app
from bridge.openapi import document
from tests.appfactory import TOKEN, make_services
from tests.fuzz.raw import error_body, raw_request
from tests.fuzz.routes import router_operations

OPEN_PREFIXES = ("/play/", "/static/")
WEBHOOK_TOKEN = "jellyfin-webhook-token-42"

REFUSED_CREDENTIALS: dict[str, tuple[list[tuple[bytes, bytes]], str]] = {
    "missing": ([], ""),
    "wrong-bearer": ([(b"Authorization", b"Bearer " + b"x" * len(TOKEN))], ""),
    "wrong-api-key": ([(b"X-Api-Key", TOKEN[:-1].encode())], ""),
    "wrong-query": ([], "token=" + TOKEN + "x"),
    "basic-scheme": ([(b"Authorization", b"Basic " + TOKEN.encode())], ""),
    "undecodable-bearer": ([(b"Authorization", b"Bearer \xff\xfe" + TOKEN.encode())], ""),
    "undecodable-api-key": ([(b"X-Api-Key", b"\xc3\x28" + TOKEN.encode())], ""),
    "undecodable-query": ([], "token=%FF%FE" + TOKEN),
    "empty-bearer": ([(b"Authorization", b"Bearer ")], ""),
}


def open_paths_of_document() -> set[str]:
    return {path for path, item in document()["paths"].items()
            if any(isinstance(op, dict) and op.get("security") == [] for op in item.values())}


def concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


def is_open(template: str) -> bool:
    return template in open_paths_of_document() or template.startswith(OPEN_PREFIXES)


@pytest.fixture
async def server(aiohttp_server, tmp_path: Path, library_root: Path):  # type: ignore[no-untyped-def]
    services = make_services(tmp_path, text=f'[jellyfin]\nwebhook_token = "{WEBHOOK_TOKEN}"\n', roots=[library_root])
    app = create_app(services)
    return await aiohttp_server(app), app, services


async def test_every_protected_route_refuses_bad_credentials(server) -> None:  # type: ignore[no-untyped-def]
    srv, app, services = server
    operations = sorted(router_operations(app))
    protected = [(m, p) for m, p in operations if not is_open(p)]
    assert len(protected) >= 13, protected  # the walk really covers the API and the webhooks
    before = services.store.count(), services.db.conn.execute("select count(*) from events").fetchone()[0]
    checked = 0
    for method, template in protected:
        for name, (headers, query) in REFUSED_CREDENTIALS.items():
            target = concrete(template) + (f"?{query}" if query else "")
            status, response_headers, payload = await raw_request(
                srv.port, method, target, [(b"Content-Type", b"application/json"), *headers], b"{}")
            assert status == 401, f"{method} {template} with {name} credentials answered {status}: {payload[:200]!r}"
            assert response_headers["content-type"].startswith("application/json")
            assert error_body(payload)["error"] == "unauthorized"
            checked += 1
    assert checked == len(protected) * len(REFUSED_CREDENTIALS)
    after = services.store.count(), services.db.conn.execute("select count(*) from events").fetchone()[0]
    assert after == before


async def test_a_webhook_token_opens_only_its_own_webhook(server) -> None:  # type: ignore[no-untyped-def]
    srv, app, _ = server
    for method, template in sorted(router_operations(app)):
        if is_open(template):
            continue
        status, _, payload = await raw_request(srv.port, method, concrete(template),
                                               [(b"X-Api-Key", WEBHOOK_TOKEN.encode()),
                                                (b"Content-Type", b"application/json")], b"{}")
        if template == "/webhooks/jellyfin":
            assert status != 401, payload
        else:
            assert status == 401, f"{method} {template} accepted the Jellyfin webhook token"


async def test_open_routes_are_the_documented_ones(server) -> None:  # type: ignore[no-untyped-def]
    srv, app, _ = server
    routed_paths = {p for _, p in router_operations(app)}
    assert open_paths_of_document() <= routed_paths
    for template in open_paths_of_document():
        status, _, _ = await raw_request(srv.port, "GET", concrete(template), [])
        assert status != 401, f"{template} is documented open but asks for a token"
