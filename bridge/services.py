"""Everything one running bridge holds, built from the configuration and started/stopped with the app.

The core wires only itself here; integrations add their routes, locators and targets through
`bridge.wiring`, which is the one place that knows which integrations exist.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from sqlite_utils import Database

from bridge.config import Config
from bridge.egress import Egress
from bridge.links import LinkRules
from bridge.mappings import MappingStore
from bridge.metrics import Metrics
from bridge.strm import Library

if TYPE_CHECKING:
    from bridge.cache import ResolveCache
    from bridge.holding import Holding
    from bridge.jobs import JobRunner
    from bridge.play.service import PlayService
    from bridge.processor import EventProcessor
    from bridge.refresh import RefreshPipeline
    from bridge.rescan import RescanQueue
    from bridge.sweep import Sweeper
    from bridge.watch import FolderWatcher

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: Config
    db: Database
    api_token: str
    store: MappingStore = field(init=False)
    library: Library = field(init=False)
    links: LinkRules = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    route_adders: list[Callable[..., None]] = field(default_factory=list)
    body_limits: dict[str, int] = field(default_factory=dict)
    paste_templates: dict[str, str] = field(default_factory=dict)
    """Webhook templates the dashboard shows for pasting (integration files, set by the wiring)."""
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    pipeline: "RefreshPipeline" = field(init=False)
    rescan: "RescanQueue" = field(init=False)
    jobs: "JobRunner" = field(init=False)
    sweeper: "Sweeper" = field(init=False)
    processor: "EventProcessor" = field(init=False)
    cache: "ResolveCache" = field(init=False)
    holding: "Holding" = field(init=False)
    egress: Egress = field(default_factory=Egress)
    """Where outgoing connections may go; knows the bridge's own listener (see bridge/egress.py)."""
    play: "PlayService" = field(init=False)
    watcher: "FolderWatcher | None" = None

    def __post_init__(self) -> None:
        self.library = Library(self.config.library.roots, self.config.library.anchors)
        self.store = MappingStore(self.db, self.library)
        self.links = LinkRules.from_config(self.config)

    def body_limit_for(self, path: str) -> int:
        return self.body_limits.get(path, self.config.server.max_body_bytes)

    async def start(self) -> None:
        for starter in self.starters:
            await starter()

    async def stop(self) -> None:
        for stopper in reversed(self.stoppers):
            try:
                await stopper()
            except Exception:  # one failing component must not keep the others running
                log.exception("error while stopping")
