"""`config check` for Plex: connect with the token and read the library sections, as the bridge will."""
from __future__ import annotations

from bridge.config import Config
from bridge.config_check import Check
from integrations.plex.client import PlexAuthError, PlexClient, PlexError


async def check(config: Config) -> Check | None:
    section = config.plex
    if not section.url:
        return None
    if not section.token:
        return Check("plex", False, f"{section.url}: plex.token is empty (the server's X-Plex-Token)")
    client = PlexClient(section.url, section.token, timeout=section.timeout_seconds)
    try:
        server = await client.server()
        sections = await client.sections(force=True)
    except PlexAuthError:
        return Check("plex", False, f"{section.url} refused the token (401): check plex.token")
    except PlexError as exc:
        return Check("plex", False, f"{section.url}: {exc}")
    except Exception as exc:  # plexapi's own errors for unusual answers
        return Check("plex", False, f"{section.url}: cannot connect ({type(exc).__name__})")
    finally:
        await client.close()
    name = getattr(server, "friendlyName", None) or "Plex"
    return Check("plex", True, f"{section.url}: {name} answered, token accepted, {len(sections)} library section(s)")
