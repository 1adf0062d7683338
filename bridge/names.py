"""What a file name says about the episode or film it holds: pure functions, no I/O.

Three naming schemes reach the bridge. AniBridge writes release names flat into its download folder
(`Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD [STRM].strm`, a collision as `… [STRM].2.strm`;
films from megakino carry no `SxxEyy`). Sonarr and Plex-style libraries use
`Series (Year)/Season N/Series - S01E01 - Title ….strm`, Radarr `Title (Year)/Title (Year) ….strm`.
AniBridge builds its names in `apps/api/app/utils/naming.py::build_release_name` (series title with every
run of non-alphanumerics turned into one dot, `SxxEyy`, quality, source tag, codec, language tag, `-GROUP`)
and `app/utils/strm.py::allocate_unique_strm_path` (the `.N` collision suffix); this module reads them back.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from bridge.matching import slugify

LANGUAGE_TAGS = {"GER": "German Dub", "GER.SUB": "German Sub", "ENG": "English Dub", "ENG.SUB": "English Sub"}
GROUP_SITES = {"ANIWORLD": "aniworld.to", "STO": "s.to", "MEGAKINO": "megakino"}
QUALITY_TAGS = ("2160p", "1440p", "1080p", "720p", "480p", "SD")

_STRM_SUFFIX = re.compile(r"(?i)\s*\[STRM\](?:\.\d+)?$")
_COLLISION = re.compile(r"\.\d+$")
_RELEASE_EPISODE = re.compile(r"^(?P<title>.+?)\.S(?P<season>\d{1,4})E(?P<episode>\d{1,4})(?:-?E\d{1,4})*(?:\.(?P<rest>.*))?$",
                              re.IGNORECASE)
_RELEASE_TAIL = re.compile(r"(?:^|\.)(?P<lang>GER\.SUB|ENG\.SUB|GER|ENG)-(?P<group>[A-Za-z0-9]+)$", re.IGNORECASE)
_GROUP_ONLY = re.compile(r"-(?P<group>[A-Za-z0-9]+)$")
_RELEASE_MOVIE = re.compile(r"^(?P<title>.+?)\.(?:%s)\." % "|".join(QUALITY_TAGS), re.IGNORECASE)
_DOTTED_YEAR = re.compile(r"^(?P<title>.+?)\.(?P<year>(?:19|20)\d\d)$")
_SONARR_EPISODE = re.compile(r"^(?P<title>.*?)\s+-\s+S(?P<season>\d{1,4})E(?P<episode>\d{1,4})(?:-?E\d{1,4})*(?:\s|$|-)",
                             re.IGNORECASE)
_ANY_EPISODE = re.compile(r"(?i)(?:^|[^a-z0-9])s(\d{1,4})[ ._-]?e(\d{1,4})(?:\D|$)")
_YEAR = re.compile(r"\s*\((?P<year>(?:19|20)\d\d)\)")
_SEASON_FOLDER = re.compile(r"(?i)^(?:season|staffel|s)[ ._-]?(\d{1,4})$|^specials$")
_BRACKETS = re.compile(r"\s*[\(\[\{].*?[\)\]\}]")


@dataclass(frozen=True)
class NameInfo:
    """Identity pieces read from a path; None where the name says nothing."""

    title: str | None = None
    slug: str | None = None
    season: int | None = None
    episode: int | None = None
    language: str | None = None
    site: str | None = None
    year: int | None = None
    movie: bool = False
    scheme: str = "unknown"  # anibridge | sonarr | radarr | unknown

    def identity(self) -> dict[str, object]:
        return {"site": self.site, "slug": self.slug, "season": self.season, "episode": self.episode,
                "language": self.language}


def strip_strm(name: str) -> str:
    """`X [STRM].2.strm` -> `X`: the extension, a collision suffix and AniBridge's ` [STRM]` marker."""
    if name.lower().endswith(".strm"):
        name = name[:-5]
    stripped = _STRM_SUFFIX.sub("", name)
    if stripped != name:
        return stripped.strip()
    return name.strip()


def release_slug(title: str) -> str | None:
    """AniBridge's dotted title back to the site's slug style: `Spy.x.Family` -> `spy-x-family`."""
    return slugify(title.replace(".", " ")) or None


def parse_release(name: str) -> NameInfo | None:
    """An AniBridge (or any scene-style) release name, with or without `.strm`; None when it is not one."""
    base = strip_strm(os.path.basename(name))
    if " - " in base:  # Sonarr/Plex style, not a dotted release name
        return None
    language = site = None
    tail = _RELEASE_TAIL.search(base)
    if tail:
        language = LANGUAGE_TAGS.get(tail.group("lang").upper())
        site = GROUP_SITES.get(tail.group("group").upper())
    else:
        group = _GROUP_ONLY.search(base)
        if group:
            site = GROUP_SITES.get(group.group("group").upper())
    episode = _RELEASE_EPISODE.match(base)
    if episode:
        title = episode.group("title")
        return NameInfo(title=title, slug=release_slug(title), season=int(episode.group("season")),
                        episode=int(episode.group("episode")), language=language, site=site, scheme="anibridge")
    movie = _RELEASE_MOVIE.match(base)
    if movie:
        title, year = movie.group("title"), None
        dated = _DOTTED_YEAR.match(title)
        if dated:  # AniBridge appends the year to a film's title (torznab preview search)
            title, year = dated.group("title"), int(dated.group("year"))
        return NameInfo(title=title, slug=release_slug(title), language=language, site=site, year=year, movie=True,
                        scheme="anibridge")
    return None


def _clean_title(text: str) -> tuple[str, int | None]:
    """`Spy x Family (2022)` -> (`Spy x Family`, 2022); other bracketed parts ({tvdb-…}, [imdb]) dropped."""
    year_match = _YEAR.search(text)
    year = int(year_match.group("year")) if year_match else None
    return _BRACKETS.sub("", text).strip(" .-_"), year


def series_folder(path: str) -> str:
    """The folder that names the series: the parent, or the grandparent when the parent is a season folder."""
    folder = os.path.dirname(path)
    if _SEASON_FOLDER.match(os.path.basename(folder)):
        folder = os.path.dirname(folder)
    return folder


def parse_library_name(path: str) -> NameInfo | None:
    """Sonarr/Plex episodes (`Series (Year)/Season N/Series - S01E01 - Title ….strm`) and Radarr/Plex films
    (`Title (Year)/Title (Year) ….strm`); None when the path follows neither scheme."""
    base = strip_strm(os.path.basename(path))
    episode = _SONARR_EPISODE.match(base)
    folder_title, folder_year = _clean_title(os.path.basename(series_folder(path)))
    if episode:
        title, year = _clean_title(episode.group("title"))
        title = title or folder_title
        return NameInfo(title=title, slug=slugify(title) or None, season=int(episode.group("season")),
                        episode=int(episode.group("episode")), year=year or folder_year, scheme="sonarr")
    dated = _YEAR.search(base)
    file_year = int(dated.group("year")) if dated else None
    year = file_year or folder_year
    if year is not None and not _ANY_EPISODE.search(base):
        # `Title (Year) WEBDL-1080p`: the title is what comes before the year; else the folder names the film
        title = _clean_title(base[:dated.start()])[0] if dated else folder_title
        if title:
            return NameInfo(title=title, slug=slugify(title) or None, year=year, movie=True, scheme="radarr")
    return None


def parse_path(path: str) -> NameInfo:
    """Everything the path tells: a release name first (it carries site and language), then library
    naming, then a bare `S01E02` with the series folder as title."""
    release = parse_release(path)
    if release is not None:
        return release
    library = parse_library_name(path)
    if library is not None:
        return library
    base = strip_strm(os.path.basename(path))
    found = _ANY_EPISODE.search(base)
    title, year = _clean_title(os.path.basename(series_folder(path)))
    if found:
        return NameInfo(title=title or None, slug=slugify(title) or None, season=int(found.group(1)),
                        episode=int(found.group(2)), year=year)
    return NameInfo(title=title or None, slug=slugify(title) or None, year=year)


def merge_scene_name(info: NameInfo, scene_name: str | None) -> NameInfo:
    """A release name Sonarr/Radarr kept (`sceneName`) fills what a renamed file's path no longer says."""
    if not scene_name:
        return info
    scene = parse_release(scene_name)
    if scene is None:
        return info
    return replace(
        info,
        site=info.site or scene.site,
        language=info.language or scene.language,
        slug=scene.slug if info.scheme != "anibridge" and scene.slug else info.slug,
        title=info.title or scene.title,
        season=info.season if info.season is not None else scene.season,
        episode=info.episode if info.episode is not None else scene.episode,
    )
