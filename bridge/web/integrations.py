"""What the integrations page shows: each configured server, resolver and webhook source, and what to paste where."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bridge.config import Config
from bridge.links import LinkRules

REACH_TIMEOUT_SECONDS = 3.0
SERVER_INFO_PATHS = {"jellyfin": "/System/Info/Public", "plex": "/identity", "emby": "/System/Info/Public"}
"""Each server's open "who are you" endpoint: answers without a key, so reachability needs no credentials."""


@dataclass
class Component:
    kind: str  # media server | resolver
    name: str
    configured: bool
    url: str = ""
    note: str = ""


@dataclass
class WebhookSource:
    name: str
    title: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    template: str = ""
    template_label: str = ""
    own_token: bool = False
    last_event: dict[str, Any] | None = None


def bridge_base_url(config: Config, request_host: str | None) -> tuple[str, str]:
    """The URL media servers should call, and a warning when it is likely wrong for them."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/"), ""
    host, port = config.server.host, config.server.port
    if host in ("0.0.0.0", "::", ""):
        shown = request_host or f"<this machine's address>:{port}"
        return f"http://{shown}", ("server.public_url is not set: this URL is the one your browser used; set "
                                   "server.public_url if the media server reaches strm-bridge by another name")
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"http://{host}:{port}", ("strm-bridge listens on loopback only: a media server in a container or "
                                         "on another machine cannot reach it; set server.host = \"0.0.0.0\" and "
                                         "server.public_url")
    return f"http://{host}:{port}", ""


def components(config: Config, resolver_names: list[str] | None = None) -> list[Component]:
    """Media servers, then the resolver chain as the pipeline runs it (the configured one unless given)."""
    names = list(config.refresh.resolvers) if resolver_names is None else resolver_names
    found = []
    for name in ("jellyfin", "plex", "emby"):
        section = getattr(config, name)
        found.append(Component("media server", name, bool(section.url), section.url,
                               "" if section.url else f"set [{name}] url to enable"))
    for name in names:
        options = config.resolvers.get(name, {})
        url = str(options.get("url", "")) if isinstance(options, dict) else ""
        found.append(Component("resolver", name, True, url, "" if url else "runs inside strm-bridge"))
    if not names:
        found.append(Component("resolver", "(none)", False, note="set refresh.resolvers: nothing can be re-resolved"))
    return found


def webhook_sources(config: Config, base: str, api_token: str, templates: dict[str, str],
                    conn: Any) -> list[WebhookSource]:
    from bridge.web.queries import last_event_of

    def token_of(section: Any) -> tuple[str, bool]:
        own = getattr(section, "webhook_token", "")
        return (own, True) if own else (api_token, False)

    jf_token, jf_own = token_of(config.jellyfin)
    px_token, px_own = token_of(config.plex)
    tt_token, tt_own = token_of(config.tautulli)
    em_token, em_own = token_of(config.emby)
    sources = [
        WebhookSource(
            "jellyfin", "Jellyfin Webhook plugin (Generic destination)", f"{base}/webhooks/jellyfin",
            [("Content-Type", "application/json"), ("X-Api-Key", jf_token)],
            ["Dashboard → Plugins → Catalog: install Webhook, restart Jellyfin",
             "Webhook → Add Generic Destination, Webhook Url as above",
             "Notification types: Playback Start, Playback Stop",
             "Item types: tick Movies, Episodes and Videos (unticked types are dropped silently)",
             "Add the headers below; paste the template (or tick Send All Properties)"],
            templates.get("jellyfin", ""), "Template", jf_own),
        WebhookSource(
            "tautulli", "Tautulli (Settings → Notification Agents → Webhook)", f"{base}/webhooks/tautulli",
            [("X-Api-Key", tt_token)],
            ["Webhook URL as above, method POST",
             "Triggers: Playback Start, Playback Stop, Playback Error",
             "Data: paste the JSON below for each trigger; Headers: the header below"],
            templates.get("tautulli", ""), "JSON data", tt_own),
        WebhookSource(
            "plex", "Plex (Settings → Webhooks, needs Plex Pass)", f"{base}/webhooks/plex?token={px_token}",
            [], ["Add webhook with the URL above: Plex cannot send headers, so the token is in the URL"],
            "", "", px_own),
        WebhookSource(
            "emby", "Emby (Settings → Webhooks, Emby Premiere)", f"{base}/webhooks/emby?token={em_token}",
            [], ["Add a webhook with the URL above", "Events: Playback Start, Playback Stop"], "", "", em_own),
    ]
    for source in sources:
        source.last_event = last_event_of(conn, source.name)
    return sources


async def reachability(config: Config, component: Component, session: aiohttp.ClientSession) -> tuple[bool, str]:
    """Whether the component answers now; any HTTP answer counts (a resolver may refuse a GET)."""
    if not component.url:
        return True, "in process"
    target = component.url
    if component.kind == "media server":
        target = component.url.rstrip("/") + SERVER_INFO_PATHS[component.name]
    if LinkRules.from_config(config).points_at_bridge(target):
        return False, "points at strm-bridge itself"
    try:
        if urlsplit(target).scheme not in ("http", "https"):
            return False, "not an http(s) URL"
        async with session.get(target, timeout=aiohttp.ClientTimeout(total=REACH_TIMEOUT_SECONDS),
                               allow_redirects=False) as response:
            status = response.status
    except asyncio.TimeoutError:
        return False, f"no answer within {REACH_TIMEOUT_SECONDS:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return False, type(exc).__name__
    if component.kind == "media server" and status >= 400:
        return False, f"answered HTTP {status}"
    return True, f"answered HTTP {status}"
