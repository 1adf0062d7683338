"""The dashboard: server-rendered pages (Jinja2 through aiohttp-jinja2) with htmx for partial updates.

htmx is vendored in `static/` (see its README there): nothing is fetched from the internet at run time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.web.checks import CheckRuns
from bridge.web.converts import ConvertRuns
from bridge.web.session import SessionSigner

STATIC_DIR = Path(__file__).with_name("static")
DASHBOARD_PREFIXES = ("/ui/",)
DASHBOARD_PATHS = ("/", "/login", "/logout")


def is_dashboard_path(path: str) -> bool:
    """Paths whose handlers check the dashboard session themselves (the API token guard lets them through)."""
    return path in DASHBOARD_PATHS or path.startswith(DASHBOARD_PREFIXES)


def _when(value: str | None) -> str:
    """Stored UTC ISO times, shorter: to the second, with a Z."""
    if not value:
        return ""
    return value[:19].replace("T", " ") + "Z"


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    from bridge.web import views

    services = app[key]
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("bridge.web", "templates"),
                         autoescape=jinja2.select_autoescape(["html"]), filters={"when": _when},
                         undefined=jinja2.StrictUndefined)
    app[views.SIGNER] = SessionSigner(services.api_token)
    app[views.CHECKS] = CheckRuns()
    app[views.CONVERTS] = ConvertRuns()
    views.add_routes(app, key)
    app.router.add_static("/static/", STATIC_DIR, append_version=True, name="static")

    async def stop_checks(app: web.Application) -> None:
        await app[views.CHECKS].stop()
        await app[views.CONVERTS].stop()

    app.on_shutdown.append(stop_checks)
