"""Turning a refresh request (id, path, identity, series, stale, all) into the mapping ids it covers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.mappings import Identity, MappingStore


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
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SelectionError(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SelectionError(f"{name} must be an integer") from None


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
        return Selection(kind, {"path": value})
    if kind in ("identity", "series"):
        if not isinstance(value, dict):
            raise SelectionError(f"{kind} must be an object")
        if not value.get("site") or not value.get("slug"):
            raise SelectionError(f"{kind} needs site and slug")
        params = {"site": str(value["site"]), "slug": str(value["slug"]), "season": _int(value.get("season"), "season")}
        if kind == "identity":
            params.update(episode=_int(value.get("episode"), "episode"), language=value.get("language"),
                          provider=value.get("provider") or "")
            if params["season"] is None or params["episode"] is None:
                raise SelectionError("identity needs season and episode")
        return Selection(kind, params)
    if kind == "stale":
        margin = body.get("margin_seconds", 0)
        if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin < 0:
            raise SelectionError("margin_seconds must be a non-negative number")
        return Selection(kind, {"margin_seconds": float(margin)})
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
