"""`config check` for Emby: an authenticated `GET /System/Info` proves both the URL and the API key."""
from __future__ import annotations

import aiohttp

from bridge.config import Config
from bridge.config_check import Check


async def check(config: Config) -> Check | None:
    section = config.emby
    if not section.url:
        return None
    if not section.api_key:
        return Check("emby", False, f"{section.url}: emby.api_key is empty")
    url = section.url.rstrip("/") + "/System/Info"
    timeout = aiohttp.ClientTimeout(total=section.timeout_seconds)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers={"X-Emby-Token": section.api_key}) as response:
                status = response.status
                info = await response.json(content_type=None) if status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Check("emby", False, f"{section.url} does not answer ({type(exc).__name__})")
    if status in (401, 403):
        return Check("emby", False, f"{section.url} refused the API key ({status}): check emby.api_key")
    if status != 200:
        return Check("emby", False, f"{section.url} answered {status} to /System/Info")
    name = info.get("ServerName") if isinstance(info, dict) else None
    return Check("emby", True, f"{section.url}: {name or 'Emby'} answered, API key accepted")
