"""The routes a live app really has, read from its aiohttp router (shared by the OpenAPI and auth walks)."""
from __future__ import annotations

from aiohttp import web

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route; HEAD twins of GET and static file trees are left out.

    Static file resources (`add_static`) serve an open-ended set of names, so they cannot be listed; every
    other route, dashboard pages included, must appear in the OpenAPI document.
    """
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        if route.method not in METHODS:
            continue
        found.add((route.method, resource.canonical))
    return found
