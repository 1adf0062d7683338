"""Turning `refresh.resolvers` and the `[resolvers.<name>]` sections into resolver instances.

A chain entry names either a resolver type (a built-in, or a plugin registered by another distribution
under the entry-point group `strm_bridge.resolvers`) or an instance whose section says `type = "<type>"`,
so one type can be configured twice (two http services, say). Built-in modules are imported only when
used, which keeps optional extras (aniworld, yt-dlp) out of the start-up path of everyone else.

A plugin's entry point loads a factory `factory(options: dict, context: ResolverContext | None) -> Resolver`
that validates its own options and raises ValueError("resolvers.<name>.<key>: ...") on a bad one.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, Callable

from bridge.resolvers.base import Resolver, ResolverContext

ENTRY_POINT_GROUP = "strm_bridge.resolvers"

Factory = Callable[..., Resolver]


def _builtin(module: str, cls: str) -> Factory:
    """Defer the import until the type is configured: aniworld alone takes half a second and writes ~/.aniworld."""

    def factory(options: dict[str, Any], context: ResolverContext | None = None, name: str | None = None) -> Resolver:
        resolver_cls = getattr(importlib.import_module(f"bridge.resolvers.{module}"), cls)
        return resolver_cls(options, context, name or module)  # type: ignore[no-any-return]

    factory.__name__ = f"create_{module}"
    factory.__doc__ = f"Create a bridge.resolvers.{module}.{cls}."
    return factory


BUILTIN: dict[str, Factory] = {
    "http": _builtin("http", "HttpResolver"),
    "command": _builtin("command", "CommandResolver"),
    "redirect": _builtin("redirect", "RedirectResolver"),
    "aniworld": _builtin("aniworld", "AniworldResolver"),
    "ytdlp": _builtin("ytdlp", "YtdlpResolver"),
}


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    return sorted({*BUILTIN, *_plugins()})


def create_resolver(name: str, options: dict[str, Any] | None, context: ResolverContext | None = None) -> Resolver:
    """`name` is the chain entry; `options` its section, whose optional `type` picks the implementation."""
    options = dict(options or {})
    type_name = options.pop("type", name)
    if not isinstance(type_name, str) or not type_name:
        raise ValueError(f"resolvers.{name}.type: expected a resolver type name, got {type_name!r}")
    if type_name in BUILTIN:
        return BUILTIN[type_name](options, context, name=name)
    plugin = _plugins().get(type_name)
    if plugin is None:
        what = f"resolvers.{name}.type: unknown resolver type {type_name!r}" if type_name != name else (
            f"resolvers.{name}: unknown resolver {name!r}"
        )
        raise ValueError(f"{what} (known: {', '.join(known_types())})")
    try:
        factory = plugin.load()
    except Exception as exc:  # a broken plugin must name itself, whatever it raised
        raise ValueError(f"resolvers.{name}: plugin {plugin.value!r} failed to load: {type(exc).__name__}: {exc}") from exc
    if not callable(factory):
        raise ValueError(f"resolvers.{name}: plugin {plugin.value!r} is not callable")
    resolver = factory(options, context)
    if not isinstance(resolver, Resolver):
        raise ValueError(
            f"resolvers.{name}: plugin {plugin.value!r} returned {type(resolver).__name__}, "
            "which lacks name / resolve() / close()"
        )
    return resolver


def create_chain(
    names: list[str], sections: dict[str, dict[str, Any]], context: ResolverContext | None = None
) -> list[Resolver]:
    """Resolvers in the order `refresh.resolvers` lists them; every section is validated before any is used."""
    seen: set[str] = set()
    chain: list[Resolver] = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"refresh.resolvers: expected resolver names, got {name!r}")
        if name in seen:
            raise ValueError(f"refresh.resolvers: {name!r} is listed twice")
        seen.add(name)
        section = sections.get(name, {})
        if not isinstance(section, dict):
            raise ValueError(f"resolvers.{name}: expected a table")
        if name not in BUILTIN and "type" not in section and name not in _plugins():
            aliases = sorted(key for key, value in sections.items() if isinstance(value, dict) and "type" in value)
            known = ", ".join(known_types() + aliases)
            raise ValueError(f"refresh.resolvers: unknown resolver {name!r} (known: {known})")
        chain.append(create_resolver(name, section, context))
    return chain
