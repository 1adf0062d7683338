"""The bridge's own OpenAPI 3.1 document, served at GET /openapi.json (behind the API token).

The document is a file beside this module so that engineers adding a route add its operation there;
`tests/fuzz/test_openapi.py` walks the router and fails when a route and the document disagree.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from aiohttp import web

DOCUMENT_FILE = "openapi.json"


@lru_cache(maxsize=1)
def document_bytes() -> bytes:
    return resources.files("bridge").joinpath(DOCUMENT_FILE).read_bytes()


def document() -> dict[str, Any]:
    """A fresh copy: callers (tests, schemathesis) may change it."""
    return json.loads(document_bytes())


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    async def get_openapi(request: web.Request) -> web.Response:
        return web.Response(body=document_bytes(), content_type="application/json")

    app.router.add_get("/openapi.json", get_openapi)
