"""Adopting .strm files as they appear, change or disappear in the library roots (`[library] watch = true`).

A generator's download folder (AniBridge's) is simply one more root. Changes come from watchfiles (inotify
and its equivalents), grouped for `watch_debounce_ms`; in each group new and changed files are adopted
first (a move shows up as the old file gone and a new one holding its URL, which `Adopter.adopt` follows),
then the mappings of removed files become `missing`. Temp files (ours, AniBridge's `X.strm.tmp`, editors'
and rsync's hidden partials) are never `.strm` names, so a half-written file is never adopted. A restart
catches up: files changed since the last change the watcher saw, files no mapping knows yet, and mappings
whose files went away while it was down.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from watchfiles import Change, awatch

from bridge.importer import Adopter
from bridge.mappings import MappingStore
from bridge.strm import StrmError, is_temp_name

if TYPE_CHECKING:
    from bridge.services import Services

log = logging.getLogger(__name__)

CATCH_UP_MARGIN_SECONDS = 5.0  # clocks and mtimes are not exact: look a little further back than the mark
BATCH = 500


def is_candidate(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(".strm") and not name.startswith(".") and not is_temp_name(name)


def _watch_filter(change: Change, path: str) -> bool:
    """.strm files, and folders (one moved in whole brings files no event names; one moved out takes its files)."""
    return is_candidate(path) or not os.path.isfile(path)


@dataclass
class WatchStats:
    adopted: int = 0
    updated: int = 0
    moved: int = 0
    missing: int = 0
    refused: int = 0
    batches: int = 0
    caught_up: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def _candidates_below(folder: str) -> list[str]:
    found = []
    for parent, _dirs, files in os.walk(folder):
        found.extend(os.path.join(parent, name) for name in files if is_candidate(name))
    return found


class FolderWatcher:
    """Watches `roots`; `make_adopter` is called per batch so overrides stored through the API apply at once."""

    def __init__(self, store: MappingStore, roots: Iterable[str], make_adopter: Callable[[], Adopter], *,
                 debounce_ms: int = 1600, step_ms: int = 50, force_polling: bool | None = None) -> None:
        self.store = store
        self.roots = [os.path.abspath(r) for r in roots]
        self.make_adopter = make_adopter
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.force_polling = force_polling
        self.stats = WatchStats()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="folder-watcher")
        await asyncio.wait({self._task, asyncio.ensure_future(self._ready.wait())}, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        self._mark()

    async def _run(self) -> None:
        roots = [r for r in self.roots if os.path.isdir(r)]
        if not roots:
            log.warning("library.watch: none of the library roots exists; nothing to watch")
            self._ready.set()
            return
        changes = awatch(*roots, watch_filter=_watch_filter, debounce=self.debounce_ms, step=self.step_ms,
                         stop_event=self._stop, force_polling=self.force_polling, yield_on_timeout=True,
                         rust_timeout=max(self.debounce_ms, 200), ignore_permission_denied=True)
        first = True
        try:
            async for batch in changes:
                if first:  # the watch is established: what changed before this moment is the catch-up's
                    first = False
                    self.catch_up()
                    self._ready.set()
                if batch:
                    self.apply(batch)
                else:
                    self._idle.set()
        except Exception:  # a watcher that died must say so, not take the service down
            log.exception("library.watch stopped")
        finally:
            self._ready.set()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """For tests and benchmarks: until a quiet interval passed after the last batch."""
        self._idle.clear()
        await asyncio.wait_for(self._idle.wait(), timeout)

    # ---- the work ----------------------------------------------------------------------------------
    def apply(self, batch: set[tuple[Change, str]]) -> None:
        self.stats.batches += 1
        present: set[str] = set()
        gone: set[str] = set()
        folders_gone: list[str] = []
        for change, path in batch:
            path = os.path.normpath(path)
            if os.path.isdir(path):
                if change == Change.added:
                    present.update(_candidates_below(path))
            elif not is_candidate(path):
                if not os.path.lexists(path):
                    folders_gone.append(path)
            elif os.path.lexists(path):
                present.add(path)
            else:
                gone.add(path)
        self.adopt_paths(sorted(present))
        self.mark_missing(sorted(gone - present))
        for folder in folders_gone:
            self.mark_missing(self._known_below(folder))
        self._mark()

    def _known_below(self, folder: str) -> list[str]:
        prefix = folder.rstrip(os.sep) + os.sep
        return [row[0] for row in self.store.conn.execute(
            "select strm_path from mappings where strm_path >= ? and strm_path < ? and state != 'missing'",
            (prefix, prefix + "\uffff"))]

    def adopt_paths(self, paths: list[str]) -> None:
        adopter = self.make_adopter()
        for i in range(0, len(paths), BATCH):
            for path in paths[i:i + BATCH]:
                try:
                    # a row in `refreshing` is the pipeline's: it is writing this very file
                    outcome, _ = adopter.adopt(path, commit=False, skip_states=("refreshing",))
                except StrmError as exc:
                    self.stats.refused += 1
                    self._error(path, f"refused: {exc}")
                    continue
                except OSError as exc:
                    if not os.path.exists(path):
                        continue  # gone again before it could be read: its deletion follows
                    self._error(path, f"cannot read: {exc.strerror or exc}")
                    continue
                except ValueError as exc:
                    self._error(path, str(exc))
                    continue
                if outcome == "created":
                    self.stats.adopted += 1
                elif outcome == "updated":
                    self.stats.updated += 1
                elif outcome == "moved":
                    self.stats.moved += 1
            self.store.conn.commit()

    def mark_missing(self, paths: Iterable[str]) -> None:
        count = 0
        for path in paths:
            row = self.store.by_path(path)
            if row is None or row["state"] in ("missing", "refreshing") or os.path.lexists(path):
                continue
            self.store.update(row["id"], {"state": "missing"}, commit=False)
            count += 1
            log.info("mapping %s: %s is gone (state missing)", row["id"], path)
        if count:
            self.store.conn.commit()
            self.stats.missing += count

    def _error(self, path: str, message: str) -> None:
        log.info("library.watch: not adopted %s: %s", path, message)
        if len(self.stats.errors) < 1000:
            self.stats.errors.append((path, message))

    # ---- catching up after a restart ---------------------------------------------------------------
    def _mark(self) -> None:
        if "watch_state" not in self.store.db.table_names():
            return
        self.store.conn.execute(
            "insert into watch_state (key, value) values ('last_seen', ?) on conflict(key) do update set value = excluded.value",
            (str(time.time()),))
        self.store.conn.commit()

    def _last_seen(self) -> float | None:
        row = self.store.conn.execute("select value from watch_state where key = 'last_seen'").fetchone()
        return float(row[0]) if row else None

    def catch_up(self) -> None:
        """Files changed since the last change seen, files no mapping knows, mappings whose file is gone."""
        since = self._last_seen()
        horizon = (since - CATCH_UP_MARGIN_SECONDS) if since is not None else None
        known: dict[str, str] = {}
        for root in self.roots:
            prefix = root.rstrip(os.sep) + os.sep
            for path, state in self.store.conn.execute(
                    "select strm_path, state from mappings where strm_path >= ? and strm_path < ?",
                    (prefix, prefix + "\uffff")):
                known[path] = state
        todo: list[str] = []
        seen: set[str] = set()
        for root in self.roots:
            for folder, dirs, files in os.walk(root):
                for name in files:
                    path = os.path.join(folder, name)
                    if not is_candidate(path):
                        continue
                    seen.add(path)
                    if path not in known or known[path] == "missing" or horizon is None:
                        todo.append(path)
                        continue
                    try:
                        if os.stat(path).st_mtime >= horizon:
                            todo.append(path)
                    except OSError:
                        continue
        self.adopt_paths(sorted(todo))
        self.mark_missing(sorted(p for p, state in known.items() if p not in seen and state != "missing"))
        self.stats.caught_up = len(todo)
        if todo:
            log.info("library.watch: caught up on %d file(s) changed while stopped", len(todo))
        self._mark()


def attach(services: "Services") -> FolderWatcher | None:
    """With `[library] watch = true`, start a watcher on the roots with the service and stop it with it."""
    config = services.config
    if not config.library.watch:
        return None
    from bridge import overrides
    from bridge.probe import expiry_iso

    def make_adopter() -> Adopter:
        return Adopter(services.store, services.library, predict_expiry=expiry_iso,
                       overrides=overrides.all_overrides(config.library.series, services.db))

    watcher = FolderWatcher(services.store, config.library.roots, make_adopter,
                            debounce_ms=config.library.watch_debounce_ms)
    services.starters.append(watcher.start)  # after the core's start (crash recovery first)
    services.stoppers.append(watcher.stop)  # stoppers run in reverse: the watcher stops before the database closes
    return watcher
