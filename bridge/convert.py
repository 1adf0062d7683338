"""Rewriting `.strm` files to their stable `/play/` links, or back to the direct URL, as an explicit user action.

Every file goes through the same safe writer as a heal (`Library.write`: inside the roots, anchors present,
temp file + fsync + rename), only when its content changes, and each changed file queues its media-server
refresh (Jellyfin caches the URL a `.strm` held). The mapping row keeps the direct URL either way: it is what a
stable link leads to.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable

from bridge.play.locate import PlayUnavailable
from bridge.play.signing import play_link_id
from bridge.services import Services
from bridge.strm import FileMissing, StrmError, read_strm

log = logging.getLogger(__name__)

TARGETS = ("stable", "direct")


@dataclass
class Converted:
    mapping_id: int
    strm_path: str
    outcome: str
    """converted | unchanged | would_convert | skipped | failed"""
    detail: str = ""
    rescans: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def convert(services: Services, ids: list[int], to: str, *, public_url: str = "", dry_run: bool = False,
                  on_item: Callable[[Converted], None] | None = None) -> list[Converted]:
    if to not in TARGETS:
        raise ValueError(f"convert target must be one of {', '.join(TARGETS)}, got {to!r}")
    results = []
    for mapping_id in ids:
        result = await _one(services, mapping_id, to, public_url, dry_run)
        results.append(result)
        if on_item is not None:
            on_item(result)
    if not dry_run:
        await services.rescan.flush()
    return results


async def _one(services: Services, mapping_id: int, to: str, public_url: str, dry_run: bool) -> Converted:
    mapping = services.store.get(mapping_id)
    if mapping is None:
        return Converted(mapping_id, "", "skipped", "no such mapping")
    path = mapping["strm_path"]
    try:
        current = await asyncio.to_thread(read_strm, path)
    except FileNotFoundError:
        return Converted(mapping_id, path, "skipped", "the .strm file is missing")
    except OSError as exc:
        return Converted(mapping_id, path, "failed", f"cannot read the file: {exc}")
    if to == "stable":
        target = services.play.signer.play_url(public_url, mapping_id)
    else:
        if dry_run:
            target = mapping.get("resolved_url") or ""
        else:
            try:  # a direct URL that died while the file held the stable link is re-resolved first
                mapping = await services.play.locator.current(mapping, 0.0)
            except PlayUnavailable as exc:
                return Converted(mapping_id, path, "failed", f"no usable direct URL: {exc.detail}")
            target = mapping.get("resolved_url") or ""
        if not target or play_link_id(target) is not None:
            return Converted(mapping_id, path, "skipped", "the mapping holds no direct URL to write")
    if current == target:
        return Converted(mapping_id, path, "unchanged", f"already {to}")
    if dry_run:
        return Converted(mapping_id, path, "would_convert", f"would write the {to} link")
    try:
        changed = await asyncio.to_thread(services.library.write, path, target, create=False)
    except FileMissing:
        return Converted(mapping_id, path, "skipped", "the .strm file is missing")
    except (StrmError, OSError) as exc:
        return Converted(mapping_id, path, "failed", f"{getattr(exc, 'code', 'write_failed')}: {exc}")
    if not changed:
        return Converted(mapping_id, path, "unchanged", f"already {to}")
    queued = await services.rescan.enqueue_for(mapping)
    return Converted(mapping_id, path, "converted", f"now holds the {to} link", rescans=len(queued))
