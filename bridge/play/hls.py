"""HLS playlists: finding every URI a player will fetch, rewriting them, and finding them again.

A rewritten playlist sends the player's next requests (variant playlists, segments, keys, init sections)
back to the bridge, so each of them can be re-resolved when the upstream token dies. Finding a part again
in a re-read playlist goes by its path (tokens usually live in the query), then by file name.
"""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import urljoin, urlsplit

PLAYLIST_TYPES = frozenset({
    "application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl",
})
MAX_PLAYLIST_BYTES = 8 * 1024 * 1024
_URI_ATTR = re.compile(r'URI="([^"]*)"')
_KEEP_SCHEMES = ("data:", "skd:")  # inline data and DRM key ids are not fetched over HTTP
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def looks_like_playlist(url: str, content_type: str | None) -> bool:
    """Decided before reading the body, so a media file is never held in memory to be sniffed."""
    if content_type and content_type.split(";", 1)[0].strip().lower() in PLAYLIST_TYPES:
        return True
    path = urlsplit(url).path.lower()
    return path.endswith((".m3u8", ".m3u"))


def is_playlist_text(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"#EXTM3U")


def _fetchable(uri: str) -> bool:
    return bool(uri) and not uri.lower().startswith(_KEEP_SCHEMES)


def rewrite(text: str, playlist_url: str, link: Callable[[str], str]) -> str:
    """Every fetchable URI (lines and URI="..." attributes) replaced by `link(absolute upstream URL)`."""

    def attr(match: re.Match[str]) -> str:
        uri = match.group(1)
        return f'URI="{link(urljoin(playlist_url, uri))}"' if _fetchable(uri) else match.group(0)

    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            out.append(line)
        elif stripped.startswith("#"):
            out.append(_URI_ATTR.sub(attr, line) if 'URI="' in line else line)
        elif _fetchable(stripped):
            out.append(link(urljoin(playlist_url, stripped)))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def entries(text: str, playlist_url: str) -> list[str]:
    """The absolute URLs `rewrite` would replace, in playlist order."""
    found: list[str] = []
    rewrite(text, playlist_url, lambda url: found.append(url) or url)
    return found


def path_of(url: str) -> str:
    return urlsplit(url).path


def find_again(candidates: list[str], old_path: str) -> str | None:
    """The entry of a re-read playlist that stands for `old_path`: same path, else same file name."""
    for url in candidates:
        if path_of(url) == old_path:
            return url
    name = old_path.rsplit("/", 1)[-1]
    if name:
        for url in candidates:
            if path_of(url).rsplit("/", 1)[-1] == name:
                return url
    return None


def part_name(url: str) -> str:
    """A file name for the bridge's link to a part: players and logs like to see `seg3.ts`, not a hash."""
    name = _NAME_CHARS.sub("_", path_of(url).rsplit("/", 1)[-1])[-64:]
    return name or "part"
