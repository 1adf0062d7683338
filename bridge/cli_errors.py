"""One line, the right exit status, no traceback: how every error a user can cause ends on the command line.

Exit status 2 is a usage or configuration error (the user can fix it), 1 is "something asked for failed";
`--debug` lets the original exception through with its traceback for a bug report.
"""
from __future__ import annotations

import sqlite3
import sys
from typing import IO, Any

import click

from bridge.config import ConfigError
from bridge.redact import redact_text

PROG = "strm-bridge"
_state = {"debug": False}


def set_debug(value: bool) -> None:
    if value:
        _state["debug"] = True


def debug_enabled() -> bool:
    return _state["debug"]


class UserError(click.ClickException):
    """A mistake in the configuration, the environment or the arguments: exit 2, one line."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: {redact_text(self.format_message())}", file=file or sys.stderr)


class Failed(click.ClickException):
    """Something asked for did not succeed: exit 1, one line."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: {redact_text(self.format_message())}", file=file or sys.stderr)


def config_error(exc: ConfigError, source: str = "") -> UserError:
    where = f" in {source}" if source else ""
    return UserError(f"configuration error{where}: {exc} (fix the key or its STRM_BRIDGE_* variable; "
                     "`strm-bridge config check` validates the whole file)")


def translate(exc: BaseException) -> click.ClickException | None:
    """The one-line form of an exception escaping a command, or None to let it through unchanged."""
    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt)):
        return None
    if debug_enabled():
        return None
    if isinstance(exc, ConfigError):
        return config_error(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return Failed(f"the database is locked by another process ({exc}); try again when it is done")
    if isinstance(exc, (sqlite3.Error, OSError)):
        return UserError(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
    return Failed(f"unexpected error {type(exc).__name__}: {exc} (this is a bug; run with --debug and report "
                  "the traceback)")


class BridgeGroup(click.Group):
    """The top-level group: turns anything escaping a subcommand into one line, usage errors included."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:  # click prints usage, a hint and the error on three lines
            where = exc.ctx.command_path if exc.ctx is not None else PROG
            click.echo(f"{PROG}: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(f"{PROG}: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            replacement = translate(exc)
            if replacement is None:
                raise
            raise replacement from None
