"""Applying a Sonarr/Radarr event to the mapping store: imports and renames are followed, deletes retired."""
from __future__ import annotations

import logging
from typing import Any

from bridge.importer import Adopter
from bridge.pathmap import PathMap
from bridge.relocate import FollowError, follow, retire_folder, retire_path
from integrations.arr.payload import ArrEvent

log = logging.getLogger(__name__)


class ArrRefused(ValueError):
    """Nothing in the event could be applied (every file outside the roots or unreadable): a 422."""


def _seen_as(result: dict[str, Any], paths: PathMap) -> dict[str, Any]:
    """The answer names each file both ways: as strm-bridge sees it and as Sonarr/Radarr do."""
    if result.get("strm_path"):
        result["arr_path"] = paths.to_server(result["strm_path"])
    return result


def apply(event: ArrEvent, adopter: Adopter, paths: PathMap) -> dict[str, Any]:
    """What was done, file by file; raises ArrRefused when the event named files and none could be followed."""
    store = adopter.store
    files: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    retired: list[dict[str, str]] = []
    if event.kind == "download":
        for file in event.files:
            local = paths.to_local(file.path)
            # an upgrade's old files first: one may sit at the very path the new file now has
            for old in event.replaced:
                old_local = paths.to_local(old)
                if old_local != local:
                    retired.append({"path": old_local, "outcome": retire_path(store, old_local, commit=False)})
            source = paths.to_local(file.previous_path) if file.previous_path else None
            try:
                files.append(_seen_as(follow(adopter, local, old_path=source, arr=file.hints, handoff=True).as_dict(), paths))
            except FollowError as exc:
                errors.append({"path": local, "error": str(exc)})
    elif event.kind == "rename":
        for file in event.files:
            local = paths.to_local(file.path)
            previous = paths.to_local(file.previous_path) if file.previous_path else None
            try:
                files.append(_seen_as(follow(adopter, local, old_path=previous, arr=file.hints).as_dict(), paths))
            except FollowError as exc:
                errors.append({"path": local, "error": str(exc)})
    elif event.kind == "delete_file":
        for file in event.files:
            local = paths.to_local(file.path)
            retired.append({"path": local, "outcome": retire_path(store, local, commit=False)})
    elif event.kind == "delete_folder" and event.folder:
        done, kept = retire_folder(store, paths.to_local(event.folder), commit=False)
        retired.append({"path": paths.to_local(event.folder), "outcome": f"{done} retired, {kept} kept"})
    store.conn.commit()
    if errors and not files and event.files:
        raise ArrRefused("; ".join(f"{e['path']}: {e['error']}" for e in errors))
    return {"status": "done", "event": event.event_type, "files": files, "retired": retired, "errors": errors}
