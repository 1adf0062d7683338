"""`strm-bridge check`: probe the library's links and record what they answer (exit 1 when one is dead)."""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from bridge.cli import with_config
from bridge.cli_selection import SelectionArgs, selection_options
from bridge.config import Config


@click.command()
@with_config
@selection_options(all_help="Every mapping (the default when no selection is given).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None,
              help="Links probed at once (default: refresh.check_concurrency).")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=None,
              help="Seconds per probe (default: refresh.probe_timeout_seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def check(config: Config, selection_args: SelectionArgs, concurrency: int | None, timeout: float | None,
          as_json: bool, progress: bool | None) -> None:
    """Probe links and record what they answer, so dead ones show before anyone plays them.

    Writes no .strm file and calls no resolver. Exit 0: every checked link answers (or nothing to check);
    1: a link is dead, its file is missing, or a probe could not tell; 2: usage or configuration error.
    """
    from tqdm import tqdm

    from bridge.db import open_database
    from bridge.dbread import no_database_note, open_existing
    from bridge.health import LinkChecker
    from bridge.mappings import MappingStore
    from bridge.selection import SelectionError, parse_selection, resolve_selection

    body = selection_args.body() or {"all": True}
    try:
        selection = parse_selection(body)
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from None
    existing = open_existing(config.database.path)
    if existing is None:  # no database yet: nothing to check, and a check does not create one
        click.echo(no_database_note(config.database.path), err=True)
        ids: list[int] = []
    else:
        existing.conn.close()
        store = MappingStore(open_database(config.database.path))
        ids = resolve_selection(store, selection)
    if not ids:
        if as_json:
            click.echo(json.dumps({"total": 0, "counts": {}, "items": []}, indent=2))
        else:
            click.echo("nothing to check: no mapping matches the selection")
        return
    show_bar = sys.stderr.isatty() if progress is None else progress
    checker = LinkChecker.from_config(store, config, concurrency=concurrency, timeout=timeout)

    async def run() -> Any:
        bar = tqdm(total=len(ids), unit="link", desc="check", file=sys.stderr, disable=not show_bar)
        try:
            return await checker.check(ids, on_item=lambda _: bar.update(1))
        finally:
            bar.close()
            await checker.close()

    report = asyncio.run(run())
    store.conn.close()
    if as_json:
        click.echo(json.dumps({"total": report.total, "counts": report.counts,
                               "items": [i.as_dict() for i in report.items]}, indent=2))
    else:
        for item in report.items:
            if item.finding not in ("alive",):
                click.echo(f"mapping {item.mapping_id}: {item.finding} ({item.detail})")
        click.echo(", ".join(f"{n} {k}" for k, n in report.counts.items()) or "nothing checked")
    if report.problems:
        sys.exit(1)
