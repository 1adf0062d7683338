"""GET /openapi.json: a valid OpenAPI 3.1 document, behind the token, in step with the router."""
from __future__ import annotations

from pathlib import Path

import pytest
from openapi_spec_validator import validate

from bridge.app import create_app
from bridge.openapi import document
from tests.appfactory import AUTH, make_services
from tests.fuzz.routes import METHODS, router_operations


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item
            if method.upper() in METHODS}


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any schema error


def test_every_route_is_documented_and_every_operation_is_routed(tmp_path: Path, library_root: Path) -> None:
    app = create_app(make_services(tmp_path, roots=[library_root]))
    routed, documented = router_operations(app), documented_operations(document())
    assert routed - documented == set(), "routes missing from bridge/openapi.json"
    assert documented - routed == set(), "operations in bridge/openapi.json that no route serves"
    assert ("GET", "/openapi.json") in routed and len(routed) >= 14


def test_every_documented_operation_answers_errors_in_the_json_shape() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            codes = operation["responses"]
            if operation.get("security") == []:
                continue
            assert "401" in codes, f"{method.upper()} {path} does not document its 401"


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, library_root: Path):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_services(tmp_path, roots=[library_root])))


async def test_served_behind_the_token(client) -> None:  # type: ignore[no-untyped-def]
    refused = await client.get("/openapi.json")
    assert refused.status == 401
    assert (await refused.json())["error"] == "unauthorized"
    served = await client.get("/openapi.json", headers=AUTH)
    assert served.status == 200 and served.content_type == "application/json"
    assert await served.json() == document()
