"""Plex as a rescan target: one partial scan per folder, `GET /library/sections/{id}/refresh?path=<dir>`.

PMS scans folders, not files (a file path fails with "Not a directory"), and only folders inside a section
location ("was not inside any known section location, skipping"). The folder is the .strm's parent as Plex
sees it (path_map), and the section is the one whose location is the longest prefix of it. Many rewrites
in one folder coalesce into one scan because the request key is the folder.
"""
from __future__ import annotations

import logging
import posixpath
from typing import Any

from bridge.config import PlexConfig
from bridge.mappings import Mapping
from bridge.pathmap import PathMap
from bridge.rescan import RescanRequest, TargetGone, TargetRetry
from integrations.plex.client import (
    PlexAuthError,
    PlexClient,
    PlexError,
    PlexNotFound,
    PlexRequestError,
    PlexUnavailable,
    Section,
)

log = logging.getLogger(__name__)


def _norm(path: str) -> str:
    """Compare Windows and POSIX server paths alike."""
    text = path.replace("\\", "/")
    return text.rstrip("/") if len(text) > 1 else text


def section_for(sections: list[Section], server_dir: str) -> tuple[Section, str] | None:
    """The section whose location holds `server_dir` (longest location wins), and the folder written the
    way that location writes paths."""
    wanted = _norm(server_dir)
    best: tuple[int, Section, str] | None = None
    for section in sections:
        for location in section.locations:
            loc = _norm(location)
            if wanted == loc or wanted.startswith(loc.rstrip("/") + "/"):
                if best is None or len(loc) > best[0]:
                    folder = wanted.replace("/", "\\") if "\\" in location else wanted
                    best = (len(loc), section, folder)
    return None if best is None else (best[1], best[2])


class PlexTarget:
    name = "plex"

    def __init__(
        self,
        client: PlexClient,
        path_map: PathMap,
        *,
        debounce_seconds: float = 5.0,
        gap_seconds: float = 2.0,
        refresh_metadata: bool = False,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.path_map = path_map
        self.debounce_seconds = debounce_seconds
        self.gap_seconds = gap_seconds
        self.refresh_metadata = refresh_metadata
        self.owns_client = owns_client

    @classmethod
    def from_config(cls, config: PlexConfig, client: PlexClient, path_map: PathMap | None = None) -> "PlexTarget":
        return cls(
            client,
            path_map or PathMap(config.path_map),
            debounce_seconds=config.scan_debounce_seconds,
            gap_seconds=config.scan_gap_seconds,
            refresh_metadata=config.refresh_metadata,
        )

    async def requests_for(self, mapping: Mapping) -> list[RescanRequest]:
        strm_path = mapping.get("strm_path")
        if not strm_path:
            return []
        server_dir = self.path_map.to_server(posixpath.dirname(posixpath.normpath(str(strm_path))))
        requests: list[RescanRequest] = []
        try:
            found = await self._section(server_dir)
        except PlexError as exc:
            # Plex is down and no section list is cached: keep the folder, pick its section when sending.
            log.info("Plex sections unavailable (%s); the section for %s is chosen at send time", exc, server_dir)
            requests.append(RescanRequest(key=server_dir, payload={"section": None, "path": server_dir}))
        else:
            if found is None:
                log.warning(
                    "not asking Plex to scan %s: it is not inside any Plex library location (check plex.path_map)",
                    server_dir,
                )
                return []
            section, folder = found
            requests.append(RescanRequest(key=folder, payload={"section": section.key, "path": folder}))
        rating_key = mapping.get("plex_rating_key")
        if self.refresh_metadata and rating_key and str(rating_key).isdigit():
            requests.append(RescanRequest(key=f"metadata:{rating_key}", payload={"rating_key": str(rating_key)}))
        return requests

    async def _section(self, server_dir: str) -> tuple[Section, str] | None:
        found = section_for(await self.client.sections(), server_dir)
        if found is None:  # a location added since the list was read: look again (rate-limited by the client)
            found = section_for(await self.client.sections(force=True), server_dir)
        return found

    async def send(self, payload: dict[str, Any]) -> None:
        try:
            if "rating_key" in payload:
                await self.client.refresh_metadata(int(payload["rating_key"]))
                return
            await self._scan(payload)
        except PlexNotFound as exc:
            raise TargetGone(str(exc)) from None
        except (PlexUnavailable, PlexAuthError) as exc:
            raise TargetRetry(str(exc)) from None
        except PlexRequestError as exc:
            raise TargetGone(f"Plex refused the request: {exc}") from None
        except PlexError as exc:
            raise TargetRetry(str(exc)) from None

    async def _scan(self, payload: dict[str, Any]) -> None:
        path = str(payload["path"])
        section = payload.get("section")
        if section is None:
            found = await self._section(path)
            if found is None:
                raise PlexNotFound(f"{path} is not inside any Plex library location")
            section, path = found[0].key, found[1]
        try:
            await self.client.partial_scan(int(section), path)
        except PlexNotFound:
            # the section was removed or re-created under a new id since the request was queued
            found = await self._section(path)
            if found is None or found[0].key == int(section):
                raise
            await self.client.partial_scan(found[0].key, found[1])

    async def close(self) -> None:
        if self.owns_client:
            await self.client.close()
