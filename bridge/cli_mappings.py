"""`strm-bridge mappings delete ID|PATH` and `strm-bridge mappings prune --missing [--dry-run]`.

Both retire rows only: the .strm files are never touched. A refusal the user can fix is one line, exit 2.
"""
from __future__ import annotations

import json

import click

from bridge.cli_errors import UserError
from bridge.config import Config


def _services(config: Config):  # type: ignore[no-untyped-def]
    from bridge.db import open_database
    from bridge.mappings import MappingStore
    from bridge.startup import check_database_location
    from bridge.strm import Library

    check_database_location(config.database.path)
    library = Library(config.library.roots, config.library.anchors)
    return MappingStore(open_database(config.database.path), library), library


def register(group: click.Group, with_config) -> None:  # type: ignore[no-untyped-def]
    """Add the commands to the `mappings` group (called once from bridge.cli)."""

    @group.command("delete")
    @with_config
    @click.argument("ref")
    @click.option("--json", "as_json", is_flag=True, help="Print the retired mapping as JSON.")
    def mappings_delete(config: Config, ref: str, as_json: bool) -> None:
        """Retire one mapping by id or .strm path (the file itself stays)."""
        from bridge import retire

        store, _library = _services(config)
        mapping = retire.find(store, ref)
        if mapping is None:
            raise UserError(f"no mapping {ref!r} (give its id or its .strm path; see `strm-bridge mappings list`)")
        try:
            retire.delete_one(store, mapping)
        except retire.RetireError as exc:
            raise UserError(str(exc)) from None
        if as_json:
            click.echo(json.dumps({"deleted": mapping}, indent=2, default=str))
        else:
            click.echo(f"deleted mapping {mapping['id']} ({mapping['strm_path']}); the file was not touched")

    @group.command("prune")
    @with_config
    @click.option("--missing", is_flag=True, help="Retire every mapping whose .strm file is gone.")
    @click.option("--dry-run", is_flag=True, help="Only list what would be retired.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    def mappings_prune(config: Config, missing: bool, dry_run: bool, as_json: bool) -> None:
        """Retire mappings in bulk; run with --dry-run first to see the list."""
        from bridge import retire

        if not missing:
            raise UserError("say what to prune: --missing (mappings whose .strm file is gone), with --dry-run first")
        store, library = _services(config)
        try:
            report = retire.prune_missing(store, library, dry_run=dry_run)
        except retire.RetireError as exc:
            raise UserError(str(exc)) from None
        if as_json:
            click.echo(json.dumps(report.as_dict(), indent=2))
            return
        for mapping in report.missing:
            click.echo(f"{'would delete' if dry_run else 'deleted'} {mapping['id']}  {mapping['strm_path']}")
        for mapping, why in report.skipped:
            click.echo(f"skipped {mapping['id']}  {mapping['strm_path']}: {why}")
        if dry_run:
            click.echo(f"{len(report.missing)} mapping(s) would be deleted (dry run: nothing changed)")
        else:
            click.echo(f"{report.deleted} mapping(s) deleted; no file was touched")
