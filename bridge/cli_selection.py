"""The selection options `refresh`, `check` and `convert` share, declared once so their help cannot drift."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import click


@dataclass(frozen=True)
class SelectionArgs:
    """What the selection options said; `body()` turns it into the request body `parse_selection` reads."""

    id_: int | None
    path: str | None
    series: str | None
    identity: str | None
    stale: bool
    margin: float
    all_: bool

    def body(self) -> dict[str, Any]:
        """The API-shaped body; a malformed --series or --identity is a usage error naming its option."""
        body: dict[str, Any] = {}
        if self.id_ is not None:
            body["id"] = self.id_
        if self.path:
            body["path"] = self.path
        if self.series:
            parts = self.series.split("/")
            if len(parts) not in (2, 3):
                raise click.BadParameter("use SITE/SLUG or SITE/SLUG/SEASON", param_hint="--series")
            body["series"] = {"site": parts[0], "slug": parts[1], "season": parts[2] if len(parts) == 3 else None}
        if self.identity:
            parts = self.identity.split("/")
            if len(parts) < 4:
                raise click.BadParameter("use SITE/SLUG/SEASON/EPISODE[/LANGUAGE[/PROVIDER]]", param_hint="--identity")
            body["identity"] = dict(zip(("site", "slug", "season", "episode", "language", "provider"), parts))
        if self.stale:
            body["stale"] = True
            body["margin_seconds"] = self.margin
        if self.all_:
            body["all"] = True
        return body


def selection_options(*, stale: bool = True, all_help: str = "Every mapping.",
                      identity_help: str = "One episode by identity.") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --id/--path/--series/--identity[/--stale/--margin]/--all; the command gets them as `selection_args`.

    The body is built when the command calls `body()`, so its own earlier checks still come first.
    """
    options = [
        click.option("--id", "id_", type=int, default=None, help="One mapping by id."),
        click.option("--path", default=None, help="One mapping by .strm path."),
        click.option("--series", default=None, metavar="SITE/SLUG[/SEASON]", help="Every episode of a series or season."),
        click.option("--identity", default=None, metavar="SITE/SLUG/S/E[/LANG[/PROVIDER]]", help=identity_help),
    ]
    if stale:
        options += [
            click.option("--stale", is_flag=True, help="Everything dead, broken, expired or expiring within --margin."),
            click.option("--margin", type=float, default=0.0, show_default=True, help="Seconds ahead for --stale."),
        ]
    options.append(click.option("--all", "all_", is_flag=True, help=all_help))

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, id_: int | None, path: str | None, series: str | None, identity: str | None,
                    all_: bool, stale: bool = False, margin: float = 0.0, **kwargs: Any) -> Any:
            chosen = SelectionArgs(id_, path, series, identity, stale, margin, all_)
            return func(*args, selection_args=chosen, **kwargs)

        for option in reversed(options):  # click lists a function's options in the order they were applied, reversed
            wrapper = option(wrapper)
        return wrapper

    return decorate
