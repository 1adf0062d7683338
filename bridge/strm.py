"""Reading, validating and atomically writing .strm files, only inside the configured library roots.

A media server reads these files at any moment, so a write must never expose an empty or partial file:
write a temp file in the same folder, fsync it, os.replace it over the old one, then fsync the folder.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

TEMP_PREFIX = ".strm-bridge-"
TEMP_SUFFIX = ".tmp"
MAX_URL_LENGTH = 16 * 1024
_FORBIDDEN_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")


class StrmError(ValueError):
    """A refused read or write; `code` is stable for API answers and tests."""

    code = "strm_error"

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = str(path) if path is not None else None


class InvalidUrl(StrmError):
    code = "invalid_url"


class NoRoots(StrmError):
    code = "no_library_roots"


class OutsideRoots(StrmError):
    code = "outside_roots"


class PathTraversal(StrmError):
    code = "path_traversal"


class SymlinkEscape(StrmError):
    code = "symlink_escape"


class AnchorMissing(StrmError):
    code = "anchor_missing"


class NotStrmFile(StrmError):
    code = "not_strm_file"


def validate_url(url: str) -> str:
    """Return the URL if Jellyfin would accept it from a .strm: one absolute http(s) URL, no whitespace."""
    if not isinstance(url, str) or not url:
        raise InvalidUrl("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_IN_URL.search(url):
        raise InvalidUrl("URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidUrl(f"URL scheme must be http or https, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise InvalidUrl("URL has no host")
    try:
        parts.port
    except ValueError:
        raise InvalidUrl("URL has an invalid port") from None
    return url


def parse_strm(text: str) -> str | None:
    """The first line that is neither blank nor a `#` comment, as Jellyfin's probe provider reads it."""
    for line in text.splitlines():
        value = line.replace("\t", "").strip()
        if value and not value.startswith("#"):
            return value
    return None


def read_strm(path: str | os.PathLike[str]) -> str | None:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        return parse_strm(fh.read(MAX_URL_LENGTH * 4))


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


class Library:
    """The guard around the library: which paths may be written, and whether the mounts are there."""

    def __init__(self, roots: Iterable[str], anchors: Iterable[str] = ()) -> None:
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.real_roots = [Path(os.path.realpath(r)) for r in self.roots]
        self.anchors = [Path(a) for a in anchors]

    def check_anchors(self) -> None:
        for anchor in self.anchors:
            if not anchor.exists():
                raise AnchorMissing(f"anchor file {anchor} is missing: is the library mounted?", anchor)

    def check_path(self, path: str | os.PathLike[str]) -> Path:
        """Return the real path to write, or raise the specific reason it is refused."""
        if not self.roots:
            raise NoRoots("library.roots is not configured: no .strm file may be written", path)
        raw = os.fspath(path)
        if not os.path.isabs(raw):
            raise OutsideRoots(f"{raw} is not an absolute path", raw)
        if ".." in Path(raw).parts:
            raise PathTraversal(f"{raw} contains '..'", raw)
        if not raw.endswith(".strm"):
            raise NotStrmFile(f"{raw} is not a .strm file", raw)
        lexical = Path(os.path.normpath(raw))
        if not any(_within(lexical, root) for root in self.roots):
            raise OutsideRoots(f"{raw} is outside the library roots", raw)
        real = Path(os.path.realpath(lexical))
        if not any(_within(real, root) for root in self.real_roots):
            raise SymlinkEscape(f"{raw} resolves through a symlink to {real}, outside the library roots", raw)
        return real

    def write(self, path: str | os.PathLike[str], url: str) -> bool:
        """Atomically make `path` hold `url`; returns False when it already did (nothing written)."""
        validate_url(url)
        target = self.check_path(path)
        self.check_anchors()
        return write_atomic(target, url + "\n")

    def check_writable(self, path: str | os.PathLike[str], url: str | None = None) -> Path:
        """Everything `write` checks, without writing: for API validation before storing anything."""
        if url is not None:
            validate_url(url)
        return self.check_path(path)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def write_atomic(target: Path, content: str) -> bool:
    data = content.encode("utf-8")
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        try:
            with open(target, "rb") as fh:
                if fh.read(len(data) + 1) == data:
                    return False
        except OSError:
            pass
    folder = target.parent
    _remove_stale_temps(folder, target.name)
    temp = folder / f"{TEMP_PREFIX}{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644 if st is None else (st.st_mode & 0o7777))
    try:
        try:
            os.write(fd, data)
            if st is not None:
                os.fchmod(fd, st.st_mode & 0o7777)
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        pass
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _remove_stale_temps(folder: Path, name: str) -> None:
    """A writer killed before its rename left a temp file for this target: it can never be used, delete it."""
    prefix = f"{TEMP_PREFIX}{name}."
    try:
        with os.scandir(folder) as entries:
            stale = [e.path for e in entries if e.name.startswith(prefix) and e.name.endswith(TEMP_SUFFIX)]
    except FileNotFoundError:
        return
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_temp_files(folder: str | os.PathLike[str]) -> int:
    """Delete temp files a crashed writer left behind in one folder."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed
