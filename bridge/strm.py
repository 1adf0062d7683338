"""Reading, validating and atomically writing .strm files, only inside the configured library roots.

A media server reads these files at any moment, so a write must never expose an empty or partial file:
write a temp file in the same folder, fsync it, os.replace it over the old one, then fsync the folder.
"""
from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from bridge.validate import InvalidValue, check_path_length, encodable

TEMP_PREFIX = ".strm-bridge-"
TEMP_SUFFIX = ".tmp"
MAX_URL_LENGTH = 16 * 1024
MAX_SWEPT_FOLDERS = 100_000
ABANDONED_AFTER_SECONDS = 600
TEMP_STEM_BYTES = 96
"""Bytes of the target's name kept in its temp file's name (prefix, pid and random tag take about 40 more)."""
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


class FileMissing(StrmError):
    """The .strm is gone (deleted by the user or moved by Sonarr): a refresh never re-creates it."""

    code = "missing"


class KeptLink(StrmError):
    """The file holds a link strm-bridge does not own (a stable link): it is never replaced as a side effect."""

    code = "not_owned"


class InvalidPath(StrmError):
    """NUL, text that is not valid Unicode, or longer than the file system's NAME_MAX/PATH_MAX."""

    code = "invalid_path"


def validate_url(url: str) -> str:
    """Return the URL if Jellyfin would accept it from a .strm: one absolute http(s) URL, no whitespace."""
    if not isinstance(url, str) or not url:
        raise InvalidUrl("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_IN_URL.search(url):
        raise InvalidUrl("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced "[" or an invalid IPv6 literal
        raise InvalidUrl(f"URL cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidUrl(f"URL scheme must be http or https, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise InvalidUrl("URL has no host")
    try:
        parts.port
    except ValueError:
        raise InvalidUrl("URL has an invalid port") from None
    if not encodable(url):
        raise InvalidUrl("URL is not valid Unicode (lone surrogate)")
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
        self._swept: set[str] = set()

    def check_anchors(self) -> None:
        for anchor in self.anchors:
            if not anchor.exists():
                raise AnchorMissing(f"anchor file {anchor} is missing: is the library mounted?", anchor)

    def check_path(self, path: str | os.PathLike[str]) -> Path:
        """Return the real path to write, or raise the specific reason it is refused."""
        lexical = self._check_lexical(path)
        real = Path(os.path.realpath(lexical))
        if not any(_within(real, root) for root in self.real_roots):
            raise SymlinkEscape(f"{lexical} resolves through a symlink to {real}, outside the library roots", lexical)
        return real

    def _check_lexical(self, path: str | os.PathLike[str]) -> str:
        """The checks that need no file system: roots configured, absolute, no '..', a .strm, under a root."""
        if not self.roots:
            raise NoRoots("library.roots is not configured: no .strm file may be written", path)
        raw = os.fspath(path)
        if "\x00" in raw or not encodable(raw):  # realpath would raise ValueError / UnicodeEncodeError
            raise InvalidPath("path contains a NUL character or is not valid Unicode", repr(raw))
        if not os.path.isabs(raw):
            raise OutsideRoots(f"{raw} is not an absolute path", raw)
        if ".." in raw.split(os.sep):
            raise PathTraversal(f"{raw} contains '..'", raw)
        if not raw.endswith(".strm"):
            raise NotStrmFile(f"{raw} is not a .strm file", raw)
        lexical = os.path.normpath(raw)
        if not any(_within(lexical, root) for root in self.roots):
            raise OutsideRoots(f"{raw} is outside the library roots", raw)
        return lexical

    def write(self, path: str | os.PathLike[str], url: str, *, compare: bool = True, create: bool = True,
              keep: Callable[[str], bool] | None = None) -> bool:
        """Atomically make `path` hold `url`; returns False when it already did (nothing written).

        `create=False` refuses (FileMissing) when the file is not there; `keep(current_url)` returning True
        refuses (KeptLink) to replace what the file holds now: both are checked on the folder descriptor the
        write uses, right before it, so a file deleted or given a stable link meanwhile is left alone.

        The folder is opened once and everything after the checks happens relative to that descriptor, so the
        folder that was checked is the folder written (no symlink swapped in between), and a write costs a
        dozen system calls instead of the two dozen a path-based realpath plus write would.
        """
        validate_url(url)
        lexical = self._check_lexical(path)
        self.check_anchors()
        folder, name = os.path.split(lexical)
        dir_fd = os.open(folder, _DIR_FLAGS)
        try:
            real_folder = _fd_path(dir_fd) or os.path.realpath(folder)
            if not any(_within(real_folder, root) for root in self.real_roots):
                raise SymlinkEscape(f"{lexical} resolves through a symlink to {os.path.join(real_folder, name)},"
                                    " outside the library roots", lexical)
            self._sweep_once(dir_fd, real_folder)
            try:
                st: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None and not create:
                raise FileMissing(f"{lexical} does not exist (deleted or moved): not re-created", lexical)
            if st is None or not stat.S_ISLNK(st.st_mode):
                if keep is not None and st is not None:
                    _refuse_kept(_read_in(dir_fd, name), keep, lexical)
                return write_in(dir_fd, name, (url + "\n").encode("utf-8"), st, compare=compare)
        finally:
            os.close(dir_fd)
        # the file itself is a symlink: write its real target, which must be inside the roots too
        target = self.check_path(lexical)
        if not create and not target.exists():
            raise FileMissing(f"{lexical} points at {target}, which does not exist: not re-created", lexical)
        if keep is not None and target.exists():
            _refuse_kept(read_strm(target), keep, lexical)
        return write_atomic(target, url + "\n")

    def _sweep_once(self, dir_fd: int, folder: str) -> None:
        """Delete temp files an earlier process left in this folder, the first time this process writes there.

        Once per folder is enough: within one process a failed write removes its own temp file, so only a
        process that died can leave one. Temp files of this process (a concurrent write) are never touched.
        """
        if folder in self._swept:
            return
        if len(self._swept) >= MAX_SWEPT_FOLDERS:
            self._swept.clear()  # forgetting only means sweeping a folder once more
        self._swept.add(folder)
        remove_temp_files(dir_fd, keep_pid=os.getpid())

    def check_writable(self, path: str | os.PathLike[str], url: str | None = None) -> Path:
        """Everything `write` checks, without writing: for API validation before storing anything."""
        if url is not None:
            validate_url(url)
        real = self.check_path(path)
        try:
            check_path_length(os.fspath(path))
            check_path_length(str(real))
        except InvalidValue as exc:
            raise InvalidPath(str(exc), path) from None
        return real


def _read_in(dir_fd: int, name: str) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return parse_strm(os.read(fd, MAX_URL_LENGTH * 4).decode("utf-8-sig", errors="replace"))
    finally:
        os.close(fd)


def _refuse_kept(current: str | None, keep: Callable[[str], bool], path: str) -> None:
    if current and keep(current):
        raise KeptLink(f"{path} holds a link strm-bridge does not own: left as it is", path)


def _within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Lexical containment on normalised absolute paths (string prefix at a separator, no Path objects)."""
    text, base = os.fspath(path), os.fspath(root)
    return text == base or text.startswith(base if base.endswith(os.sep) else base + os.sep)


def write_atomic(target: Path, content: str) -> bool:
    """Replace `target` with `content` (temp file, fsync, rename, fsync of the folder); False if unchanged."""
    folder, name = os.path.split(target)
    dir_fd = os.open(folder or ".", _DIR_FLAGS)
    try:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            st = None
        return write_in(dir_fd, name, content.encode("utf-8"), st)
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a signal, a full pipe-like target); a short temp file must never be renamed."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write returned {written}")
        view = view[written:]


def write_in(dir_fd: int, name: str, data: bytes, st: os.stat_result | None, *, compare: bool = True) -> bool:
    """The atomic replace inside an open folder; `st` is the current file's stat, None when it does not exist.

    A reader sees the old file or the new one, never a partial one; a crash before the rename leaves a temp
    file that `remove_temp_files` (run by crash recovery) deletes. `compare=False` skips the read that detects
    an unchanged file, for callers that know the content differs (three system calls fewer).
    """
    if compare and st is not None and st.st_size == len(data):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            pass
        else:
            try:
                if os.read(fd, len(data) + 1) == data:
                    return False
            finally:
                os.close(fd)
    mode = 0o644 if st is None else stat.S_IMODE(st.st_mode)
    temp = f"{TEMP_PREFIX}{_temp_stem(name)}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            if st is not None:
                if mode & _UMASK:  # the umask took bits the old file had
                    os.fchmod(fd, mode)
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        pass
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)
    return True


def _temp_stem(name: str) -> str:
    """The target's name, cut so the temp name fits NAME_MAX even when the target's name is at the limit."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= TEMP_STEM_BYTES:
        return name
    return encoded[:TEMP_STEM_BYTES].decode("utf-8", "ignore")


def _fd_path(fd: int) -> str | None:
    """The real path of an open folder, from /proc on Linux; None elsewhere (the caller falls back to realpath)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _read_umask() -> int:
    """The process umask without the set-and-restore race where /proc has it (Linux 4.7+)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def remove_temp_files(folder: str | os.PathLike[str] | int, keep_pid: int | None = None) -> int:
    """Delete temp files crashed writers left in one folder (a path or an open descriptor of it).

    With `keep_pid` (the caller's pid), temp files a live process may be writing right now are kept: their names
    carry the writer's pid, and a `strm-bridge refresh` run beside the service must not lose its writes.
    """
    removed = 0
    dir_fd = folder if isinstance(folder, int) else None
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if not is_temp_name(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        if keep_pid is not None and _writer_may_be_alive(entry, keep_pid):
            continue
        try:
            if dir_fd is None:
                os.unlink(entry.path)
            else:
                os.unlink(entry.name, dir_fd=dir_fd)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _writer_may_be_alive(entry: os.DirEntry[str], own_pid: int) -> bool:
    pid = _temp_writer_pid(entry.name)
    if pid is None:  # an older name format: only a file nobody touched for a while is surely abandoned
        try:
            return time.time() - entry.stat(follow_symlinks=False).st_mtime < ABANDONED_AFTER_SECONDS
        except FileNotFoundError:
            return False
    if pid == own_pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _temp_writer_pid(name: str) -> int | None:
    """`.strm-bridge-<file>.<pid>-<random>.tmp` -> pid; None for names of an older format."""
    tag = name[: -len(TEMP_SUFFIX)].rpartition(".")[2]
    pid, dash, _ = tag.partition("-")
    return int(pid) if dash and pid.isdigit() else None
