"""Turning a refresh request (id, path, identity, series, stale, all) into the mapping ids it covers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.mappings import Identity, MappingStore
from bridge.validate import INT64_MAX, INT64_MIN, InvalidValue, require_number, require_text

MAX_MARGIN_SECONDS = 100 * 365 * 86400.0
"""A century: any larger margin selects the same rows, and past it the time arithmetic overflows."""
MAX_TEXT = 4096


class SelectionError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    kind: str  # id | path | identity | series | stale | all
    params: dict[str, Any]

    @property
    def single(self) -> bool:
        return self.kind in ("id", "path", "identity")


def _int(value: Any, name: str) -> int | None:
    """An integer SQLite can bind: an int, an integral finite float, or a string of ASCII digits."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SelectionError(f"{name} must be an integer")
    if isinstance(value, float):
        if not value.is_integer():  # inf and nan are not integral either
            raise SelectionError(f"{name} must be an integer")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.lstrip("+-").isdigit() and len(text) <= 20):
            raise SelectionError(f"{name} must be an integer")
        value = int(text)
    elif not isinstance(value, int):
        raise SelectionError(f"{name} must be an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise SelectionError(f"{name} must fit in 64 bits")
    return value


def _text(value: Any, name: str, *, optional: bool = False) -> str | None:
    if optional and value is None:
        return None
    try:
        return require_text(value, name, MAX_TEXT)
    except InvalidValue as exc:
        raise SelectionError(str(exc)) from None


def parse_selection(body: dict[str, Any]) -> Selection:
    """Exactly one way of selecting; a body naming two is refused rather than guessed."""
    chosen = [k for k in ("id", "path", "identity", "series", "stale", "all") if body.get(k) not in (None, False, "")]
    if len(chosen) != 1:
        raise SelectionError("give exactly one of: id, path, identity, series, stale, all")
    kind = chosen[0]
    value = body[kind]
    if kind == "id":
        return Selection(kind, {"id": _int(value, "id")})
    if kind == "path":
        if not isinstance(value, str):
            raise SelectionError("path must be a string")
        try:
            return Selection(kind, {"path": require_text(value, "path", 65_536)})
        except InvalidValue as exc:
            raise SelectionError(str(exc)) from None
    if kind in ("identity", "series"):
        if not isinstance(value, dict):
            raise SelectionError(f"{kind} must be an object")
        if not value.get("site") or not value.get("slug"):
            raise SelectionError(f"{kind} needs site and slug")
        params = {"site": _text(value["site"], f"{kind}.site"), "slug": _text(value["slug"], f"{kind}.slug"),
                  "season": _int(value.get("season"), "season")}
        if kind == "identity":
            params.update(episode=_int(value.get("episode"), "episode"),
                          language=_text(value.get("language"), "identity.language", optional=True),
                          provider=_text(value.get("provider") or "", "identity.provider"))
            if params["season"] is None or params["episode"] is None:
                raise SelectionError("identity needs season and episode")
        return Selection(kind, params)
    if kind == "stale":
        try:
            margin = require_number(body.get("margin_seconds", 0), "margin_seconds", 0.0, MAX_MARGIN_SECONDS)
        except InvalidValue as exc:
            raise SelectionError(str(exc)) from None
        return Selection(kind, {"margin_seconds": margin})
    if value is not True:
        raise SelectionError("all must be true")
    return Selection(kind, {})


def resolve_selection(store: MappingStore, selection: Selection) -> list[int]:
    p = selection.params
    if selection.kind == "id":
        return [p["id"]] if store.get(p["id"]) else []
    if selection.kind == "path":
        found = store.by_path(p["path"])
        return [found["id"]] if found else []
    if selection.kind == "identity":
        rows = store.by_identity(Identity(p["site"], p["slug"], p["season"], p["episode"], p["language"], p["provider"]))
        return [r["id"] for r in rows]
    if selection.kind == "series":
        return [r["id"] for r in store.by_series(p["site"], p["slug"], p["season"])]
    if selection.kind == "stale":
        return [r["id"] for r in store.stale(p["margin_seconds"])]
    return list(store.iter_ids())
