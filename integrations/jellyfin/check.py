"""`config check` for Jellyfin: sign in with the API key exactly as the running bridge does."""
from __future__ import annotations

import logging

from bridge.config import Config
from bridge.config_check import Check
from integrations.jellyfin.client import JellyfinAuthError, JellyfinClient, JellyfinError


async def check(config: Config) -> Check | None:
    section = config.jellyfin
    if not section.url:
        return None
    if not section.api_key:
        return Check("jellyfin", False, f"{section.url}: jellyfin.api_key is empty (Dashboard → API Keys)")
    for name in ("Jellyfin", "JELLYFIN"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the library logs each failed request with a traceback
    client = JellyfinClient(section.url, section.api_key, timeout=section.timeout_seconds, retries=0)
    try:
        info = await client.check()
    except JellyfinAuthError:
        return Check("jellyfin", False, f"{section.url} refused the API key: check jellyfin.api_key")
    except JellyfinError as exc:
        return Check("jellyfin", False, f"{section.url}: {exc}")
    except Exception as exc:  # the library raises its own odd errors for unusual URLs
        return Check("jellyfin", False, f"{section.url}: cannot connect ({type(exc).__name__}: {exc})")
    finally:
        await client.close()
    return Check("jellyfin", True, f"{section.url}: {info.get('name') or 'Jellyfin'} answered, API key accepted")
