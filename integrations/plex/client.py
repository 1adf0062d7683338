"""A small async face on plexapi: item parts, library sections and partial scans.

plexapi is synchronous (requests) and its PlexServer constructor already talks to the server, so every
call runs in a worker thread and the connection is made on first use, not at start-up (Plex may still be
booting). plexapi's own errors are folded into four kinds the callers can act on.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from xml.etree.ElementTree import ParseError

import requests
from plexapi.exceptions import BadRequest, NotFound, Unauthorized
from plexapi.library import Library, LibrarySection
from plexapi.server import PlexServer

log = logging.getLogger(__name__)
T = TypeVar("T")


class PlexError(Exception):
    """Base of every error this client raises; messages never contain the token."""


class PlexAuthError(PlexError):
    """401: the token is wrong. A configuration error: reported once, retried later by the queue."""


class PlexUnavailable(PlexError):
    """Plex is down, slow or answering 5xx: worth retrying."""


class PlexNotFound(PlexError):
    """The item or section does not exist (any more)."""


class PlexRequestError(PlexError):
    """Plex refused the request itself (4xx other than 401/404): retrying will not help."""


@dataclass(frozen=True)
class ItemInfo:
    """What the locator needs from a library item."""

    rating_key: str
    type: str | None
    title: str | None
    files: tuple[str, ...]
    grandparent_title: str | None = None
    parent_index: int | None = None
    index: int | None = None
    guid: str | None = None
    section_id: int | None = None
    year: int | None = None

    def hints(self) -> dict[str, Any]:
        """Identity hints in the shape bridge.matching expects."""
        out: dict[str, Any] = {}
        if self.type:
            out["type"] = self.type
        if self.type == "episode" and self.grandparent_title:
            out["series"] = self.grandparent_title
        if self.title:
            out["title"] = self.title
        for name, value in (("season", self.parent_index), ("episode", self.index), ("section_id", self.section_id),
                            ("year", self.year), ("guid", self.guid)):
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class Section:
    key: int
    title: str
    type: str
    locations: tuple[str, ...]


_STATUS = re.compile(r"^\((\d{3})\)")


class _SessionHandover:
    """Closes the connecting session when the worker thread is done with it and nobody took the result.

    Cancelling an await of asyncio.to_thread does not stop the thread: PlexServer() goes on connecting, and
    the server it returns (holding the session's pooled socket) would be dropped unclosed, a socket left to
    the garbage collector. Whichever side comes last, the thread or the abandoning caller, closes it.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._thread_done = False
        self._abandoned = False

    def run(self, connect: Callable[[], T]) -> T:
        """Runs in the worker thread."""
        try:
            return connect()
        finally:
            with self._lock:
                self._thread_done = True
                close = self._abandoned
            if close:
                self.session.close()

    def abandon(self) -> None:
        """The caller will not use the session: close it now, or let the thread close it when it returns."""
        with self._lock:
            self._abandoned = True
            close = self._thread_done
        if close:
            self.session.close()


class PlexClient:
    """One PMS, reached with the admin token. Safe to share between tasks."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 10.0,
        *,
        sections_ttl_seconds: float = 300.0,
        min_sections_reload_seconds: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.sections_ttl = sections_ttl_seconds
        self.min_sections_reload = min_sections_reload_seconds
        self._server: PlexServer | None = None
        self._session: requests.Session | None = None
        self._connect_lock = asyncio.Lock()
        self._sections_lock = asyncio.Lock()
        self._sections: list[Section] | None = None
        self._section_objects: dict[int, LibrarySection] = {}
        self._sections_at = 0.0
        self._auth_reported = False

    # ---- plumbing ------------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    def _translate(self, exc: Exception, what: str) -> PlexError:
        message = self._redact(f"{what}: {exc}")
        if isinstance(exc, Unauthorized):
            if not self._auth_reported:
                log.error("Plex at %s rejected the token (401): check plex.token", self.url)
                self._auth_reported = True
            return PlexAuthError(message)
        if isinstance(exc, NotFound):
            return PlexNotFound(message)
        if isinstance(exc, BadRequest):
            match = _STATUS.match(str(exc))
            status = int(match.group(1)) if match else 500
            if status >= 500 or status in (408, 429):
                return PlexUnavailable(message)
            return PlexRequestError(message)
        if isinstance(exc, (requests.RequestException, OSError, ParseError)):
            return PlexUnavailable(self._redact(f"{what}: Plex at {self.url} is unreachable ({type(exc).__name__})"))
        return PlexError(message)

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            result = await asyncio.to_thread(fn)
        except PlexError:
            raise
        except Exception as exc:  # plexapi raises requests/XML/its own errors: fold them into ours
            raise self._translate(exc, what) from None
        self._auth_reported = False
        return result

    async def server(self) -> PlexServer:
        """The connected PlexServer, created on first use; a failed attempt is retried on the next call."""
        if self._server is not None:
            return self._server
        async with self._connect_lock:
            if self._server is None:
                session = requests.Session()
                handover = _SessionHandover(session)
                try:
                    server = await self._call("connecting", lambda: handover.run(
                        lambda: PlexServer(self.url, self._token, session=session, timeout=self.timeout)))
                except BaseException:  # a PlexError, or cancelled while the worker thread still connects
                    handover.abandon()
                    raise
                self._server, self._session = server, session
                log.info("connected to Plex at %s (version %s)", self.url, self._server.version)
            return self._server

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._server = None
        self._session = None

    # ---- items ---------------------------------------------------------------------------------------
    async def item_parts(self, rating_key: int) -> ItemInfo | None:
        """The item's part files as Plex stores them (a path, or a URL when a strm bridge rewrote it)."""
        server = await self.server()

        def fetch() -> ItemInfo | None:
            # Reading an attribute that is None on a partial object makes plexapi reload the item, so only
            # the attributes that exist for the item's type are read.
            try:
                item = server.fetchItem(int(rating_key))
            except NotFound:
                return None
            files = tuple(part.file for media in (getattr(item, "media", None) or []) for part in media.parts if part.file)
            item_type = getattr(item, "type", None)
            return ItemInfo(
                rating_key=str(rating_key),
                type=item_type,
                title=getattr(item, "title", None),
                files=files,
                grandparent_title=getattr(item, "grandparentTitle", None) if item_type == "episode" else None,
                parent_index=getattr(item, "parentIndex", None) if item_type == "episode" else None,
                index=getattr(item, "index", None) if item_type == "episode" else None,
                guid=getattr(item, "guid", None),
                section_id=getattr(item, "librarySectionID", None),
                year=getattr(item, "year", None) if item_type == "movie" else None,
            )

        return await self._call(f"fetching item {rating_key}", fetch)

    async def refresh_metadata(self, rating_key: int) -> None:
        """Agent metadata refresh (`PUT /library/metadata/{key}/refresh`); not a file rescan."""
        server = await self.server()
        session = self._session
        assert session is not None
        key = f"/library/metadata/{int(rating_key)}/refresh"
        await self._call(f"refreshing item {rating_key}", lambda: server.query(key, method=session.put))

    # ---- sections ------------------------------------------------------------------------------------
    async def sections(self, *, force: bool = False) -> list[Section]:
        """Library sections with their locations, re-read after `sections_ttl_seconds`.

        A list cached forever goes stale when users add folders, so it expires (a fresh `Library` is built
        because `server.library` keeps its sections for the life of the PlexServer); when Plex cannot be
        reached, a stale list is better than none and is kept for `min_sections_reload_seconds` more.
        """
        async with self._sections_lock:
            age = time.monotonic() - self._sections_at
            fresh = self._sections is not None and age < self.sections_ttl
            if fresh and not (force and age >= self.min_sections_reload):
                return list(self._sections or [])
            def load(server: PlexServer) -> tuple[list[Section], dict[int, LibrarySection]]:
                sections: list[Section] = []
                by_key: dict[int, LibrarySection] = {}
                for obj in Library(server, server.query(Library.key)).sections():
                    if obj.key is None:
                        continue
                    sections.append(Section(int(obj.key), obj.title or "", obj.type or "", tuple(obj.locations)))
                    by_key[int(obj.key)] = obj
                return sections, by_key

            try:
                server = await self.server()
                sections, by_key = await self._call("listing sections", lambda: load(server))
            except PlexUnavailable as exc:
                if self._sections is None:
                    raise
                log.warning("using the cached Plex section list: %s", exc)
                self._sections_at = time.monotonic() - self.sections_ttl + self.min_sections_reload
                return list(self._sections)
            self._sections, self._section_objects, self._sections_at = sections, by_key, time.monotonic()
            return list(sections)

    async def partial_scan(self, section_key: int, server_dir: str) -> None:
        """Queue a scan of one folder: `GET /library/sections/{id}/refresh?path=<quote_plus(dir)>`.

        PMS only queues the scan and answers at once; there is no result to wait for.
        """
        await self.sections()
        section = self._section_objects.get(int(section_key))
        if section is None:
            await self.sections(force=True)
            section = self._section_objects.get(int(section_key))
        if section is None:
            raise PlexNotFound(f"Plex has no library section {section_key}")
        await self._call(f"scanning {server_dir!r} in section {section_key}", lambda: section.update(path=server_dir))
