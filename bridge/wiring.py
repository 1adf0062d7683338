"""Building a running bridge from the configuration: the core first, then each configured integration.

This is the only module that imports integrations, so the core stays free of Jellyfin and Plex.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

from bridge.auth import ensure_api_token
from bridge.cache import ResolveCache
from bridge.config import Config, ConfigError
from bridge.db import Checkpointer, open_database
from bridge.egress import Egress
from bridge.events import FailureDetector
from bridge.health import LinkChecker
from bridge.holding import LOOP_BUSY_TIMEOUT_MS, Holding
from bridge.jobs import JobRunner
from bridge.metrics import measured
from bridge.play.service import PlayService
from bridge.play.signing import ensure_play_secret
from bridge.probe import add_observer as add_probe_observer, remove_observer as remove_probe_observer
from bridge.processor import EventProcessor, Locator
from bridge.redact import install as install_redaction
from bridge.refresh import RefreshPipeline
from bridge.rescan import RescanQueue, Target
from bridge.resolvers.base import Resolver, ResolverContext
from bridge.resolvers.registry import create_chain
from bridge.services import Services
from bridge.sweep import Sweeper

log = logging.getLogger(__name__)


def secrets_of(config: Config, api_token: str) -> list[str]:
    values = [
        api_token,
        config.server.api_token,
        config.jellyfin.api_key,
        config.jellyfin.webhook_token,
        config.plex.token,
        config.plex.webhook_token,
        config.tautulli.webhook_token,
        config.emby.api_key,
        config.emby.webhook_token,
        config.sonarr.api_key,
        config.sonarr.webhook_token,
        config.radarr.api_key,
        config.radarr.webhook_token,
        config.play.secret,
        *config.play.old_secrets,
    ]
    for section in config.resolvers.values():
        values.extend(_secret_values(section))
    return [v for v in values if v]


SECRET_WORDS = ("token", "key", "secret", "password", "authorization", "auth", "cookie")


def _secret_values(table: dict[str, Any], everything: bool = False) -> list[str]:
    """Secret-looking strings of a resolver section, including nested `headers` and `env` tables whole."""
    found: list[str] = []
    for key, value in table.items():
        sensitive = everything or any(word in key.lower() for word in SECRET_WORDS)
        if isinstance(value, dict):
            found.extend(_secret_values(value, everything or key.lower() in ("headers", "env")))
        elif isinstance(value, str) and sensitive:
            found.append(value)
            if " " in value:  # "Bearer abc": the credential alone may be logged too
                found.append(value.split(" ", 1)[1])
    return found


def build_egress(config: Config) -> Egress:
    egress = Egress.from_lists(config.refresh.deny_hosts, config.refresh.allow_hosts)
    egress.add_listener(config.server.host, config.server.port)
    return egress


def build_resolvers(config: Config, egress: Egress | None = None) -> list[Resolver]:
    try:
        return create_chain(config.refresh.resolvers, config.resolvers, ResolverContext(egress=egress))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_services(config: Config, *, api_token: str | None = None, resolvers: list[Resolver] | None = None,
                   extra_targets: dict[str, Target] | None = None, egress: Egress | None = None) -> Services:
    """`resolvers` and `extra_targets` let tests and benchmarks plug in-process ones beside the configured."""
    egress = egress if egress is not None else build_egress(config)
    chain = resolvers if resolvers is not None else build_resolvers(config, egress)
    db = open_database(config.database.path)
    token = api_token or ensure_api_token(config.server.api_token, config.database.path)
    play_secret = ensure_play_secret(config.play.secret, config.database.path)
    redaction = install_redaction([*secrets_of(config, token), play_secret])
    # on the event loop a statement may wait only briefly for another process's lock (see bridge/holding.py)
    db.conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
    services = Services(config=config, db=db, api_token=token, egress=egress)
    chain = measured(chain, services.metrics)
    services.metrics.watch_database(db.conn)
    services.cache = ResolveCache(config.cache.ttl_seconds)
    targets: dict[str, Target] = {}
    locators: dict[str, Locator] = {}
    _wire_integrations(services, targets, locators)
    targets.update(extra_targets or {})
    services.rescan = RescanQueue(db, targets, services.library, metrics=services.metrics)
    services.pipeline = RefreshPipeline(
        services.store, services.library, chain, config.refresh, cache=services.cache, metrics=services.metrics,
        on_rewritten=functools.partial(services.rescan.enqueue_for, commit=False), links=services.links,
        egress=egress,
    )
    services.play = PlayService(config.play, services.store, services.pipeline, play_secret)
    services.metrics.watch_play(services.play.stats)
    services.route_adders.append(lambda app, key: services.play.add_routes(app))
    services.jobs = JobRunner(db, services.pipeline, config.refresh.concurrency)
    services.sweeper = Sweeper(services.store, services.pipeline, interval_seconds=config.refresh.sweep_interval_seconds,
                               margin_seconds=config.refresh.sweep_margin_seconds,
                               concurrency=config.refresh.concurrency,
                               checker=LinkChecker.from_config(services.store, config, services.links, egress),
                               check_interval_seconds=config.refresh.check_interval_seconds)
    services.processor = EventProcessor(
        db, FailureDetector(config.detector.failure_window_seconds, config.detector.min_progress_seconds),
        services.pipeline, locators=locators, probe_on_start=config.detector.probe_on_start,
        use_buffer_sources=("tautulli",) if config.tautulli.use_buffer else (), metrics=services.metrics,
    )

    services.holding = Holding(db.conn, str(config.database.path) + ".held-events", limit=config.database.held_events_limit,
                               on_stored=services.processor.dispatch)
    checkpointer = Checkpointer(config.database.path)

    async def start() -> None:
        add_probe_observer(services.metrics.probe)
        checkpointer.start(db.conn)
        recovered = await services.pipeline.recover()
        if recovered:
            log.warning("recovered %d mapping(s) left mid-refresh by a previous run", len(recovered))
        held = services.holding.recover()
        if held:
            log.warning("stored %d webhook(s) accepted while the database was locked before the last stop", held)
        services.processor.prune(config.database.events_retention_days)
        replayed = services.processor.replay_unprocessed()
        if replayed:
            log.info("replaying %d unprocessed event(s)", replayed)
        services.processor.start()
        services.rescan.start()
        resumed = services.jobs.resume_all()
        if resumed:
            log.info("resumed %d refresh job(s)", len(resumed))
        services.sweeper.start()

    async def stop() -> None:
        await services.sweeper.stop()
        await services.jobs.stop()
        await services.holding.close()
        await services.processor.stop()
        await services.rescan.stop()
        await services.play.close()
        await services.pipeline.close()
        checkpointer.stop()
        remove_probe_observer(services.metrics.probe)
        db.conn.close()
        redaction.remove()  # the next bridge in this process (tests) must not inherit this one's masks

    services.starters.append(start)
    services.stoppers.append(stop)
    from bridge.watch import attach as attach_watcher

    services.watcher = attach_watcher(services)
    return services


def _wire_integrations(services: Services, targets: dict[str, Target], locators: dict[str, Locator]) -> None:
    """Each integration switches on when its section is configured."""
    from integrations.arr.wire import wire as wire_arr
    from integrations.emby.wire import wire as wire_emby
    from integrations.jellyfin.wire import wire as wire_jellyfin
    from integrations.plex.wire import wire as wire_plex

    for wire in (wire_jellyfin, wire_plex, wire_emby, wire_arr):
        wire(services, targets, locators)
    services.paste_templates.update(_paste_templates())


def _paste_templates() -> dict[str, str]:
    """The files users paste into the Jellyfin Webhook plugin and Tautulli, shipped as package data."""
    from importlib import resources

    found = {}
    for name, package, filename in (("jellyfin", "integrations.jellyfin", "webhook.handlebars"),
                                    ("tautulli", "integrations.plex", "tautulli-webhook.json")):
        try:
            found[name] = resources.files(package).joinpath(filename).read_text()
        except (OSError, ModuleNotFoundError):  # pragma: no cover - a broken install: the page says so
            found[name] = ""
    return found


def integration_checks() -> list[Any]:
    """Each integration's `config check` probe (see bridge.config_check); the core does not know them."""
    from integrations.emby.check import check as check_emby
    from integrations.jellyfin.check import check as check_jellyfin
    from integrations.plex.check import check as check_plex

    return [check_jellyfin, check_plex, check_emby]
