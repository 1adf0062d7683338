"""Sonarr's and Radarr's "Webhook" connection payloads → what happened to which file.

Shapes from their own classes (`src/NzbDrone.Core/Notifications/Webhook/`, serialized by Newtonsoft with
camelCase property names, nulls omitted, `eventType` as the enum's own name): `WebhookImportPayload`
(`series`/`movie`, `episodes[]`, `episodeFile`/`movieFile` with `sourcePath` and `sceneName`, `isUpgrade`,
`deletedFiles[]`), Sonarr's `WebhookImportCompletePayload` (also `eventType: Download`, with `episodeFiles[]`
and a top-level `sourcePath`), `WebhookRenamePayload` (`renamedEpisodeFiles[]`/`renamedMovieFiles[]` with
`previousPath`), `WebhookEpisodeDeletePayload`/`WebhookMovieFileDeletePayload` (`episodeFile`/`movieFile`,
`deleteReason`), `WebhookSeriesDeletePayload`/`WebhookMovieDeletePayload` (`deletedFiles` is a bool there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.matching import slugify
from bridge.names import parse_release

App = Literal["sonarr", "radarr"]
Kind = Literal["test", "download", "rename", "delete_file", "delete_folder", "other"]
MAX_FILES = 10_000
MAX_PATH = 4096

KINDS: dict[App, dict[str, Kind]] = {
    "sonarr": {"Test": "test", "Download": "download", "Rename": "rename", "EpisodeFileDelete": "delete_file",
               "SeriesDelete": "delete_folder"},
    "radarr": {"Test": "test", "Download": "download", "Rename": "rename", "MovieFileDelete": "delete_file",
               "MovieDelete": "delete_folder"},
}


class ArrPayloadError(ValueError):
    """A body Sonarr/Radarr would not send; answered 400 with this message."""


@dataclass(frozen=True)
class ArrFile:
    path: str  # as Sonarr/Radarr see it
    previous_path: str | None = None  # the import's sourcePath, or a rename's previousPath
    hints: dict[str, Any] = field(default_factory=dict)  # identity in Sonarr/Radarr's word


@dataclass(frozen=True)
class ArrEvent:
    app: App
    event_type: str
    kind: Kind
    files: list[ArrFile] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # an upgrade's deletedFiles[].path
    folder: str | None = None  # SeriesDelete / MovieDelete: series.path / movie.folderPath


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArrPayloadError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ArrPayloadError(f"{where} must be a list, got {type(value).__name__}")
    if len(value) > MAX_FILES:
        raise ArrPayloadError(f"{where} has more than {MAX_FILES} entries")
    return value


def _str(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise ArrPayloadError(f"{where} is missing")
        return None
    if not isinstance(value, str):
        raise ArrPayloadError(f"{where} must be a string, got {type(value).__name__}")
    if len(value) > MAX_PATH or "\x00" in value:
        raise ArrPayloadError(f"{where} is too long or holds a NUL character")
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1_000_000:
        raise ArrPayloadError(f"{where} must be a non-negative integer")
    return value


def _path(value: Any, where: str) -> str:
    path = _str(value, where, required=True)
    assert path is not None
    if not (path.startswith("/") or (len(path) > 2 and path[1] == ":")):
        raise ArrPayloadError(f"{where} must be an absolute path, got {path!r}")
    return path


def _identity(app: App, payload: dict[str, Any], file: dict[str, Any], where: str) -> dict[str, Any]:
    """Sonarr/Radarr's word: episode numbers, the release name they kept (AniBridge's: site and language)."""
    hints: dict[str, Any] = {}
    scene = _str(file.get("sceneName"), f"{where}.sceneName")
    release = parse_release(scene) if scene else None
    if release is not None:
        hints.update(site=release.site, language=release.language, slug=release.slug)
        if release.season is not None:
            hints.update(season=release.season, episode=release.episode)
    owner = _obj(payload.get("series" if app == "sonarr" else "movie"), "series" if app == "sonarr" else "movie")
    title = _str(owner.get("title"), "title")
    if title and not hints.get("slug"):
        hints["slug"] = slugify(title) or None
    if app == "sonarr":
        episodes = _list(payload.get("episodes"), "episodes")
        if episodes:
            first = _obj(episodes[0], "episodes[0]")
            season, episode = _int(first.get("seasonNumber"), "episodes[0].seasonNumber"), _int(
                first.get("episodeNumber"), "episodes[0].episodeNumber")
            if season is not None and episode is not None:
                hints.update(season=season, episode=episode)
    # (a film: no season or episode, the title is the identity.) `languages` is not used: Sonarr parses
    # GER and GER.SUB both as German, so it cannot tell a Dub from a Sub; the release name can.
    return {k: v for k, v in hints.items() if v is not None}


def parse(app: App, payload: Any) -> ArrEvent:
    if not isinstance(payload, dict):
        raise ArrPayloadError(f"body must be a JSON object, got {type(payload).__name__}")
    event_type = payload.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise ArrPayloadError("payload has no eventType")
    kind = KINDS[app].get(event_type, "other")
    event = ArrEvent(app, event_type, kind)
    noun = "episode" if app == "sonarr" else "movie"
    if kind == "download":
        single = payload.get(f"{noun}File")
        if single is not None:
            file = _obj(single, f"{noun}File")
            files = [ArrFile(_path(file.get("path"), f"{noun}File.path"),
                             _str(file.get("sourcePath"), f"{noun}File.sourcePath"),
                             _identity(app, payload, file, f"{noun}File"))]
        else:  # Sonarr's "On Import Complete": several files, no per-file source path
            many = _list(payload.get("episodeFiles"), "episodeFiles")
            if not many:
                raise ArrPayloadError(f"Download payload has no {noun}File")
            files = []
            for i, item in enumerate(many):
                file = _obj(item, f"episodeFiles[{i}]")
                files.append(ArrFile(_path(file.get("path"), f"episodeFiles[{i}].path"), None,
                                     _identity(app, payload, file, f"episodeFiles[{i}]")))
        replaced = [_path(_obj(item, f"deletedFiles[{i}]").get("path"), f"deletedFiles[{i}].path")
                    for i, item in enumerate(_list(payload.get("deletedFiles"), "deletedFiles"))]
        return ArrEvent(app, event_type, kind, files, replaced)
    if kind == "rename":
        files = []
        key = f"renamed{noun.capitalize()}Files"
        for i, item in enumerate(_list(payload.get(key), key)):
            file = _obj(item, f"{key}[{i}]")
            files.append(ArrFile(_path(file.get("path"), f"{key}[{i}].path"),
                                 _path(file.get("previousPath"), f"{key}[{i}].previousPath"),
                                 _identity(app, payload, file, f"{key}[{i}]")))
        return ArrEvent(app, event_type, kind, files)
    if kind == "delete_file":
        file = _obj(payload.get(f"{noun}File"), f"{noun}File")
        return ArrEvent(app, event_type, kind, [ArrFile(_path(file.get("path"), f"{noun}File.path"))])
    if kind == "delete_folder":
        owner_key, folder_key = ("series", "path") if app == "sonarr" else ("movie", "folderPath")
        owner = _obj(payload.get(owner_key), owner_key)
        return ArrEvent(app, event_type, kind, folder=_path(owner.get(folder_key), f"{owner_key}.{folder_key}"))
    return event


