"""`strm-bridge import`: the report printing and exit codes around bridge.importer."""
from __future__ import annotations

import json
import sys
from typing import Iterable

import click

from bridge.config import Config


def run_import(config: Config, roots: Iterable[str], *, site: str | None, slug: str | None, language: str | None,
               provider: str | None, overwrite_identity: bool, as_json: bool, progress: bool | None) -> None:
    from tqdm import tqdm

    from bridge import overrides
    from bridge.cli_errors import UserError
    from bridge.db import open_database
    from bridge.startup import check_database_location
    from bridge.importer import import_tree
    from bridge.mappings import MappingStore
    from bridge.probe import expiry_iso
    from bridge.strm import Library, StrmError

    check_database_location(config.database.path)
    db = open_database(config.database.path)
    show_bar = sys.stderr.isatty() if progress is None else progress
    bar = (lambda items: tqdm(items, unit="file", desc="import", file=sys.stderr)) if show_bar else None
    try:
        report = import_tree(
            MappingStore(db), roots, library=Library(config.library.roots, config.library.anchors),
            overrides=overrides.all_overrides(config.library.series, db), site=site, slug=slug, language=language,
            provider=provider, overwrite_identity=overwrite_identity, progress=bar, predict_expiry=expiry_iso)
    except StrmError as exc:
        raise UserError(f"{exc}; import only folders inside library.roots") from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"found {report.found}, created {report.created}, updated {report.updated}, "
                   f"unchanged {report.unchanged}, errors {len(report.errors)}")
        for path, error in report.errors:
            click.echo(f"  could not import {path}: {error}", err=True)
    if report.errors:
        sys.exit(1)  # some files asked for could not be adopted
