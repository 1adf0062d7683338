"""`strm-bridge convert --to stable|direct [selection]`: files to their /play/ links, or back, with a dry run."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from bridge.cli_errors import Failed, UserError
from bridge.cli_selection import SelectionArgs, selection_options
from bridge.config import Config

PUBLIC_URL_MISSING = ("server.public_url is not set: stable links need the address the media server reaches "
                      "strm-bridge at, e.g. http://bridge:8765 (set [server] public_url or "
                      "STRM_BRIDGE_SERVER_PUBLIC_URL)")


def check_public_url(url: str) -> str:
    from urllib.parse import urlsplit

    if not url:
        raise UserError(PUBLIC_URL_MISSING)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UserError(f"server.public_url must be an http(s) URL without query or fragment, got {url!r}")
    return url


def register(main: click.Group, with_config: Any) -> None:
    @main.command("convert")
    @with_config
    @click.option("--to", "to", type=click.Choice(["stable", "direct"]), required=True,
                  help="stable: write /play/ links; direct: write the mapping's current URL back.")
    @selection_options(stale=False, identity_help="One episode.")
    @click.option("--dry-run", is_flag=True, help="Report what would change; touch nothing.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
    def convert_cmd(config: Config, to: str, selection_args: SelectionArgs, dry_run: bool, as_json: bool,
                    progress: bool | None) -> None:
        """Rewrite files to their stable links or back (each changed file queues its media-server refresh)."""
        import asyncio

        from tqdm import tqdm

        from bridge.convert import convert
        from bridge.selection import SelectionError, parse_selection, resolve_selection
        from bridge.startup import check_database_location
        from bridge.wiring import build_services

        public_url = check_public_url(config.server.public_url) if to == "stable" else config.server.public_url
        try:
            selection = parse_selection(selection_args.body())
        except SelectionError as exc:
            raise UserError(f"{exc} (--id, --path, --series, --identity or --all)") from None
        check_database_location(config.database.path)
        services = build_services(config)
        ids = resolve_selection(services.store, selection)
        show_bar = (sys.stderr.isatty() if progress is None else progress) and not selection.single

        async def run() -> list[dict[str, Any]]:
            bar = tqdm(total=len(ids), unit="file", desc=f"convert to {to}", file=sys.stderr, disable=not show_bar)
            try:
                results = await convert(services, ids, to, public_url=public_url, dry_run=dry_run,
                                        on_item=lambda _: bar.update(1))
            finally:
                bar.close()
                await services.stop()
            return [r.as_dict() for r in results]

        items = asyncio.run(run())
        if not ids and selection.single:
            raise Failed("no mapping matches the selection")
        if as_json:
            click.echo(json.dumps({"to": to, "dry_run": dry_run, "items": items}, indent=2))
        else:
            counts: dict[str, int] = {}
            for item in items:
                counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
                if item["outcome"] in ("failed", "skipped") or selection.single or dry_run:
                    click.echo(f"mapping {item['mapping_id']}: {item['outcome']} {item['detail']}  {item['strm_path']}")
            click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to convert")
        if any(item["outcome"] == "failed" for item in items):
            sys.exit(1)
