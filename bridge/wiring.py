"""Building a running bridge from the configuration: the core first, then each configured integration.

This is the only module that imports integrations, so the core stays free of Jellyfin and Plex.
"""
from __future__ import annotations

import logging

from bridge.auth import ensure_api_token
from bridge.config import Config
from bridge.db import open_database
from bridge.redact import install as install_redaction
from bridge.services import Services

log = logging.getLogger(__name__)


def secrets_of(config: Config, api_token: str) -> list[str]:
    values = [
        api_token,
        config.server.api_token,
        config.jellyfin.api_key,
        config.jellyfin.webhook_token,
        config.plex.token,
        config.plex.webhook_token,
        config.tautulli.webhook_token,
        config.emby.api_key,
        config.emby.webhook_token,
        config.play.secret,
    ]
    for section in config.resolvers.values():
        for key, value in section.items():
            if isinstance(value, str) and any(word in key.lower() for word in ("token", "key", "secret", "password")):
                values.append(value)
    return [v for v in values if v]


def build_services(config: Config, *, api_token: str | None = None) -> Services:
    db = open_database(config.database.path)
    token = api_token or ensure_api_token(config.server.api_token, config.database.path)
    install_redaction(secrets_of(config, token))
    services = Services(config=config, db=db, api_token=token)

    async def close_db() -> None:
        db.conn.close()

    services.stoppers.append(close_db)
    return services
