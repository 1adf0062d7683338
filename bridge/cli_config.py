"""`strm-bridge config check`: validate the configuration, then test every configured part for real."""
from __future__ import annotations

import asyncio
import logging
import sys

import click

from bridge.cli_errors import config_error, debug_enabled, set_debug
from bridge.config import ConfigError, load_config
from bridge.locations import find_config


@click.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (default: the documented places, see `serve --help`).")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=20.0, show_default=True,
              help="Seconds to wait for each media server and resolver.")
@click.option("--debug", is_flag=True, hidden=True)
def check(config_path: str | None, timeout: float, debug: bool) -> None:
    """Validate the configuration and test each media server and resolver (changes nothing).

    Exit 0: everything answered; 1: something is missing or does not answer; 2: the configuration is invalid.
    """
    from bridge.config_check import run_checks
    from bridge.wiring import build_egress, build_resolvers, integration_checks

    set_debug(debug)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    source = find_config(config_path)
    try:
        config = load_config(source)
        resolvers = build_resolvers(config, build_egress(config))
    except ConfigError as exc:
        if debug_enabled():
            raise
        raise config_error(exc, source or "") from None
    results = asyncio.run(run_checks(config, integration_checks(), resolvers, timeout))
    for result in results:
        click.echo(result.line())
    failed = [r for r in results if r.ok is False]
    click.echo(f"{len(failed)} problem(s)" if failed else "everything answered")
    if failed:
        sys.exit(1)
