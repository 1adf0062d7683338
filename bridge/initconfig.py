"""The commented `strm-bridge.toml` that `strm-bridge init` writes: what a new user needs, nothing more.

Values are written as TOML basic strings (JSON's escapes are valid there), and the result is loaded with the
real loader before it reaches the disk, so `init` can never leave a file that `serve` would refuse.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.startup import is_on_this_host

SERVER_KINDS = ("jellyfin", "plex", "emby", "none")
KEY_NAMES = {"jellyfin": "api_key", "plex": "token", "emby": "api_key"}
KEY_HINTS = {
    "jellyfin": "a server API key: Dashboard → API Keys",
    "plex": "the server's X-Plex-Token",
    "emby": "an API key: Settings → API Keys",
}


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_string(v) for v in values) + "]"


@dataclass
class Answers:
    roots: list[str]
    server: str = "none"
    url: str = ""
    key: str = ""
    resolver_url: str = ""
    host: str = ""
    port: int = 8765
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    webhook_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def bind_host(self) -> str:
        if self.host:
            return self.host
        return "127.0.0.1" if not self.url or is_on_this_host(self.url) else "0.0.0.0"


def render(answers: Answers) -> str:
    host = answers.bind_host()
    host_note = ("# the media server is on this machine" if host == "127.0.0.1"
                 else "# every interface: the media server is on another host or container")
    lines = [
        f"# strm-bridge configuration, written by `strm-bridge init` on {datetime.now(UTC):%Y-%m-%d}.",
        "# Every key can also be set from the environment as STRM_BRIDGE_<SECTION>_<KEY>.",
        "# `strm-bridge config check` validates this file and tests each media server and resolver.",
        "# The README's configuration reference lists every key with its default.",
        "",
        "[server]",
        f"host = {toml_string(host)}  {host_note}",
        f"port = {answers.port}",
        f"api_token = {toml_string(answers.api_token)}  # for /api, the dashboard and /metrics; keep it secret",
        '# public_url = "http://bridge.lan:8765"  # how the media server reaches strm-bridge (links, setup values)',
        "",
        "[database]",
        '# path = ""  # empty: strm-bridge.db in $STRM_BRIDGE_DATA or the user data folder; relative: beside this file',
        "",
        "[library]",
        f"roots = {toml_list(answers.roots)}  # .strm files are only ever written below these folders",
        "# anchors = []  # files that must exist before any write or rescan (a mount guard)",
        "",
    ]
    if answers.server != "none":
        key_name = KEY_NAMES[answers.server]
        lines += [
            f"[{answers.server}]",
            f"url = {toml_string(answers.url)}",
            f"{key_name} = {toml_string(answers.key)}  # {KEY_HINTS[answers.server]}",
            f"webhook_token = {toml_string(answers.webhook_token)}  # the token its webhooks send",
            '# path_map = [{ server = "/data/tv", local = "/media/strm/tv" }]  # when it sees the library elsewhere',
            "",
        ]
    else:
        lines += ["# [jellyfin]  # or [plex] / [emby]: url and key switch the integration on", "# url = \"\"", ""]
    lines += ["[refresh]"]
    if answers.resolver_url:
        lines += [
            'resolvers = ["http"]  # tried in this order',
            "",
            "[resolvers.http]  # POST {site, slug, season, episode, ...} -> {\"url\": ...}",
            f"url = {toml_string(answers.resolver_url)}",
        ]
    else:
        lines += [
            'resolvers = []  # none yet: dead links are found but cannot be re-resolved; e.g. ["http", "redirect"]',
        ]
    return "\n".join(lines) + "\n"
