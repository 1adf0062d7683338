"""Translating paths between the media server's view and ours (Docker volumes differ)."""
from __future__ import annotations

import posixpath
from typing import Iterable

from bridge.config import PathMapEntry


def _norm(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/")) if path else path


def _swap(path: str, pairs: list[tuple[str, str]]) -> str | None:
    norm = _norm(path)
    for src, dst in pairs:  # sorted longest-first, so the most specific prefix wins
        if norm == src:
            return dst
        if norm.startswith(src.rstrip("/") + "/"):
            return dst.rstrip("/") + norm[len(src.rstrip("/")):]
    return None


class PathMap:
    """Longest-prefix mapping in both directions; with no pairs, paths pass through unchanged."""

    def __init__(self, entries: Iterable[PathMapEntry]) -> None:
        entries = list(entries)
        self._to_local = sorted(((_norm(e.server), _norm(e.local)) for e in entries), key=lambda p: -len(p[0]))
        self._to_server = sorted(((_norm(e.local), _norm(e.server)) for e in entries), key=lambda p: -len(p[0]))

    def to_local(self, server_path: str) -> str:
        mapped = _swap(server_path, self._to_local)
        return mapped if mapped is not None else _norm(server_path)

    def to_server(self, local_path: str) -> str:
        mapped = _swap(local_path, self._to_server)
        return mapped if mapped is not None else _norm(local_path)
