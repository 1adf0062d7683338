"""The `strm-bridge` command. Every subcommand takes --config; errors end in one line and exit status 2."""
from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any, Callable

import click

from bridge.api import MAX_PAGE
from bridge.cli_selection import SelectionArgs, selection_options
from bridge.cli_errors import BridgeGroup, Failed, config_error, debug_enabled, set_debug
from bridge.config import Config, ConfigError, load_config
from bridge.locations import find_config
from bridge.outcomes import is_failure

CONFIG_HELP = ("TOML configuration file (default: $STRM_BRIDGE_CONFIG, else ./strm-bridge.toml, the user config "
               "folder's strm-bridge.toml, /config/strm-bridge.toml; else built-in defaults).")


def with_config(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config and hand the loaded Config to the command; a bad file ends with one clear line."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help=CONFIG_HELP)
    @click.option("--debug", is_flag=True, hidden=True, expose_value=True, help="Show tracebacks.")
    @functools.wraps(func)
    def wrapper(config_path: str | None, debug: bool, **kwargs: Any) -> Any:
        set_debug(debug)
        source = find_config(config_path)
        try:
            config = load_config(source)
        except ConfigError as exc:
            if debug_enabled():
                raise
            raise config_error(exc, source or "") from None
        return func(config, **kwargs)

    return wrapper


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="strm-bridge", prog_name="strm-bridge")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of one line.")
def main(debug: bool) -> None:
    """Keep .strm libraries playable: heal expired URLs and make the media server use them."""
    set_debug(debug)


@main.command()
@with_config
@click.option("--host", default=None, help="Override server.host.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Override server.port.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines as text (default) or JSON lines; also [log] format.")
def serve(config: Config, host: str | None, port: int | None, log_format: str | None) -> None:
    """Run the service (webhooks, manual API, background refresh)."""
    from aiohttp import web

    from bridge.app import RedactingAccessLogger, create_app
    from bridge.logsetup import setup_logging
    from bridge.startup import bind_socket, check_database_location, summary
    from bridge.wiring import build_egress, build_resolvers, build_services

    setup_logging(log_format or config.log.format, config.log.level)
    egress = build_egress(config)
    try:
        chain = build_resolvers(config, egress)
    except ConfigError as exc:
        if debug_enabled():
            raise
        raise config_error(exc, config.source) from None
    check_database_location(config.database.path)
    bind_host = host or config.server.host
    bind_port = port or config.server.port
    sock = bind_socket(bind_host, bind_port)
    services = build_services(config, resolvers=chain, egress=egress)
    services.egress.add_listener(*sock.getsockname()[:2])  # the address really bound: never a probe target
    app = create_app(services)
    for line in summary(config, bind_host, bind_port):
        click.echo(line)

    async def announce(app: web.Application) -> None:  # after the services started, on a listening socket
        click.echo(f"strm-bridge listening on http://{bind_host}:{bind_port} (database {config.database.path})")

    app.on_startup.append(announce)
    web.run_app(
        app,
        sock=sock,
        shutdown_timeout=config.server.shutdown_timeout_seconds,
        access_log_class=RedactingAccessLogger,
        print=None,
    )


@main.command()
@with_config
@click.option("--list", "list_only", is_flag=True, help="Show applied and pending steps; change nothing.")
def migrate(config: Config, list_only: bool) -> None:
    """Apply pending schema migrations (serve does this too)."""
    from bridge.db import migration_status, open_database
    from sqlite_utils import Database

    from bridge.dbread import no_database_note, open_existing

    if list_only:
        db = open_existing(config.database.path)
        if db is None:  # every step is pending; an in-memory database tells their names without a file
            click.echo(no_database_note(config.database.path), err=True)
            db = Database(memory=True)
    else:
        from bridge.startup import check_database_location

        check_database_location(config.database.path)
        db = open_database(config.database.path)
    applied, pending = migration_status(db)
    if not list_only:
        click.echo(f"database {config.database.path} is at the latest schema")
    for name, when in applied:
        click.echo(f"[x] {name}  (applied {when})")
    for name in pending:
        click.echo(f"[ ] {name}  (pending)")


@main.group()
def mappings() -> None:
    """Look at the mapping store."""


def _store(config: Config):  # type: ignore[no-untyped-def]
    from bridge.db import open_database
    from bridge.mappings import MappingStore
    from bridge.startup import check_database_location

    check_database_location(config.database.path)
    return MappingStore(open_database(config.database.path))


def _read_store(config: Config):  # type: ignore[no-untyped-def]
    """The store for a read-only command, or None (and a note on stderr) when there is no database yet."""
    from bridge.dbread import no_database_note, open_existing
    from bridge.mappings import MappingStore

    db = open_existing(config.database.path)
    if db is None:
        click.echo(no_database_note(config.database.path), err=True)
        return None
    return MappingStore(db)


TABLE_COLUMNS = ("id", "state", "season", "episode", "slug", "provider_used", "expires_at", "strm_path")


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no mappings)"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in TABLE_COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(TABLE_COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


from bridge.cli_mappings import register as _register_mapping_commands  # noqa: E402

_register_mapping_commands(mappings, with_config)


@mappings.command("list")
@with_config
@click.option("--path", default=None, help="Only files under this path prefix.")
@click.option("--slug", default=None)
@click.option("--season", type=int, default=None)
@click.option("--state", type=click.Choice(["ok", "dead", "refreshing", "broken", "missing", "unknown"]), default=None)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=100, show_default=True,
              help=f"At most {MAX_PAGE}, as in the API; page on with --offset.")
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def mappings_list(config: Config, path: str | None, slug: str | None, season: int | None, state: str | None,
                  limit: int, offset: int, as_json: bool) -> None:
    """List mappings as a table (or JSON)."""
    store = _read_store(config)
    rows, total = ([], 0) if store is None else store.search(path=path, slug=slug, season=season, state=state,
                                                                limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps({"items": rows, "total": total}, indent=2, default=str))
    else:
        click.echo(_table(rows))
        click.echo(f"{len(rows)} of {total} mapping(s)")


@mappings.command("show")
@with_config
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def mappings_show(config: Config, ref: str, as_json: bool) -> None:
    """Show one mapping by id or .strm path, with its recent refreshes."""
    store = _read_store(config)
    mapping = None if store is None else store.get(int(ref)) if ref.isascii() and ref.isdigit() and len(ref) <= 18 else store.by_path(ref)
    if mapping is None:
        raise Failed(f"no mapping {ref!r}")
    history = store.refresh_history(mapping["id"], limit=10)
    if as_json:
        click.echo(json.dumps({**mapping, "refresh_log": history}, indent=2, default=str))
        return
    for key, value in mapping.items():
        click.echo(f"{key:>17}: {'' if value is None else value}")
    if history:
        click.echo("recent refreshes:")
        for entry in history:
            click.echo(f"  {entry['finished_at']}  {entry['trigger']:<8} {entry['outcome']:<10} {entry['error'] or ''}")


@main.command()
@with_config
@selection_options()
@click.option("--dry-run", is_flag=True, help="Report what would change; touch nothing.")
@click.option("--force", is_flag=True, help="Ignore the cooldown and re-resolve even a live URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--progress/--no-progress", default=None, help="Progress bar for bulk work (default: on a terminal).")
def refresh(config: Config, selection_args: SelectionArgs, dry_run: bool, force: bool, as_json: bool,
            progress: bool | None) -> None:
    """Refresh one mapping, a series, everything stale, or all (runs in this process)."""
    import asyncio

    from bridge.selection import SelectionError, parse_selection, resolve_selection
    from bridge.wiring import build_services

    try:
        selection = parse_selection(selection_args.body())
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from None
    from bridge.startup import check_database_location

    check_database_location(config.database.path)
    services = build_services(config)
    ids = resolve_selection(services.store, selection)
    if not ids:
        asyncio.run(services.stop())
        if selection.single:
            raise Failed("no mapping matches the selection")
        click.echo("nothing to refresh: no mapping matches the selection", err=True)
        if as_json:
            click.echo(json.dumps({"items": []}, indent=2))
        return
    show_bar = (sys.stderr.isatty() if progress is None else progress) and not selection.single

    async def run() -> list[dict[str, Any]]:
        from tqdm import tqdm

        outcomes: list[dict[str, Any]] = []
        try:
            if selection.single:
                outcome = await services.pipeline.refresh(ids[0], trigger="manual", reason="manual", force=force,
                                                          dry_run=dry_run)
                outcomes.append(outcome.as_dict())
            else:
                job_id = services.jobs.create(ids, {"selection": selection.kind, "dry_run": dry_run, "force": force})
                bar = tqdm(total=len(ids), unit="file", desc="refresh", file=sys.stderr, disable=not show_bar)
                await services.jobs.run(job_id, on_item=lambda o: (bar.update(1), outcomes.append(o.as_dict())))
                bar.close()
            await services.rescan.flush()
        finally:
            await services.stop()
        return outcomes

    outcomes = sorted(asyncio.run(run()), key=lambda item: item["mapping_id"])  # stable order for scripts
    failed = [item for item in outcomes if is_failure(item["outcome"])]
    if as_json:
        click.echo(json.dumps(outcomes[0] if selection.single else {"items": outcomes}, indent=2))
    else:
        counts: dict[str, int] = {}
        for item in outcomes:
            counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
            if selection.single or item["outcome"] not in ("refreshed", "alive", "cooldown"):
                click.echo(f"mapping {item['mapping_id']}: {item['outcome']} {item['detail']}".rstrip())
        click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if failed:
        sys.exit(1)


@main.command("import")
@with_config
@click.argument("roots", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--site", default=None, help="Site for files whose name and link do not tell it (e.g. aniworld.to).")
@click.option("--slug", default=None, help="Series slug where nothing else tells it.")
@click.option("--language", default=None, help="Language where nothing else tells it (e.g. 'German Dub').")
@click.option("--provider", default=None, help="Provider where nothing else tells it (e.g. VOE).")
@click.option("--overwrite-identity", is_flag=True,
              help="Replace stored identity fields with what the files, names and flags say (default: only fill empty ones).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
def import_(config: Config, roots: tuple[str, ...], site: str | None, slug: str | None, language: str | None,
            provider: str | None, overwrite_identity: bool, as_json: bool, progress: bool | None) -> None:
    """Adopt existing .strm files under ROOTS (inside library.roots) into the mapping store (idempotent)."""
    from bridge.cli_import import run_import

    run_import(config, roots, site=site, slug=slug, language=language, provider=provider,
               overwrite_identity=overwrite_identity, as_json=as_json, progress=progress)

from bridge.cli_check import check as _check  # noqa: E402  (needs with_config above)

main.add_command(_check)

from bridge.cli_config import config_group  # noqa: E402
from bridge.cli_demo import demo  # noqa: E402  (registered last: it imports nothing at start-up)
from bridge.cli_init import init  # noqa: E402

main.add_command(demo)
main.add_command(init)
main.add_command(config_group)

from bridge.cli_convert import register as register_convert  # noqa: E402

register_convert(main, with_config)
