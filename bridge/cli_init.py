"""`strm-bridge init`: a guided first configuration, asked for on a terminal or given as flags."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from bridge.cli_errors import UserError
from bridge.config import ConfigError, load_config
from bridge.initconfig import SERVER_KINDS, Answers, render
from bridge.locations import CONFIG_ENV, CONFIG_FILE_NAME, config_candidates


def default_target() -> Path:
    chosen = os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else config_candidates()[1]


def _write_private(path: Path, text: str) -> None:
    """Temp file in the same folder, mode 600 from the start (it holds keys), then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ask(answers: Answers, roots: tuple[str, ...], server: str | None, url: str | None, key: str | None,
         resolver_url: str | None, no_input: bool) -> Answers:
    def need(prompt: str, **kwargs: object) -> str:
        if no_input:
            raise UserError(f"init: {prompt.lower()} is missing; pass it as a flag (see `strm-bridge init --help`)")
        try:
            return str(click.prompt(prompt, **kwargs))  # type: ignore[arg-type]
        except click.Abort:
            raise UserError("init: no answer; pass --root, --server, --url and --key instead") from None

    answers.roots = list(roots) or [part.strip() for part in need("Library root (folder holding the .strm files; "
                                                                  "several separated by commas)").split(",") if part.strip()]
    answers.server = server or need("Media server", type=click.Choice(SERVER_KINDS), default="jellyfin")
    if answers.server != "none":
        answers.url = url or need(f"{answers.server} URL", default={"jellyfin": "http://127.0.0.1:8096",
                                                                     "plex": "http://127.0.0.1:32400",
                                                                     "emby": "http://127.0.0.1:8096"}[answers.server])
        answers.key = key or need(f"{answers.server} API key/token", hide_input=True)
    if resolver_url is not None:
        answers.resolver_url = resolver_url
    elif not no_input:
        answers.resolver_url = need("URL of an http resolver (empty: none for now)", default="", show_default=False)
    return answers


@click.command("init")
@click.option("--path", "target", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Where to write (default: $STRM_BRIDGE_CONFIG, else the user config folder's {CONFIG_FILE_NAME}).")
@click.option("--root", "roots", multiple=True, help="A library root (absolute); repeat for several.")
@click.option("--server", type=click.Choice(SERVER_KINDS), default=None, help="The media server.")
@click.option("--url", default=None, help="The media server's URL as strm-bridge reaches it.")
@click.option("--key", default=None, help="Its API key (Jellyfin, Emby) or X-Plex-Token (Plex).")
@click.option("--resolver-url", default=None, help="An http resolver's URL (optional).")
@click.option("--host", default="", help="Bind address (default: 127.0.0.1, or 0.0.0.0 for a remote media server).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--no-input", is_flag=True, help="Never ask; every missing value is an error (for scripts).")
def init(target: Path | None, roots: tuple[str, ...], server: str | None, url: str | None, key: str | None,
         resolver_url: str | None, host: str, port: int, force: bool, no_input: bool) -> None:
    """Write a commented strm-bridge.toml for a first start."""
    path = target or default_target()
    if path.exists() and not force:
        raise UserError(f"init: {path} already exists; pass --force to overwrite it or --path for another file")
    answers = _ask(Answers(roots=[], host=host, port=port), roots, server, url, key, resolver_url, no_input)
    text = render(answers)
    with tempfile.TemporaryDirectory() as scratch:  # validate with the real loader before anything is written
        trial = Path(scratch) / CONFIG_FILE_NAME
        trial.write_text(text, encoding="utf-8")
        try:
            load_config(trial, env={})
        except ConfigError as exc:
            raise UserError(f"init: {exc}") from None
    for root in answers.roots:
        if not os.path.isdir(root):
            click.echo(f"note: library root {root} does not exist yet", err=True)
    try:
        _write_private(path, text)
    except OSError as exc:
        raise UserError(f"init: cannot write {path} ({exc.strerror}); choose another place with --path") from None
    click.echo(f"wrote {path}")
    click.echo(f"next: strm-bridge config check --config {path}")
    if answers.server != "none":
        hook_host = "<this machine's address>" if answers.bind_host() == "0.0.0.0" else "127.0.0.1"
        query = "?token=<webhook_token>" if answers.server in ("plex", "emby") else ""
        click.echo(f"then point the {answers.server} webhook at http://{hook_host}:{port}/webhooks/{answers.server}{query}"
                   " (the webhook_token is in the file)")
