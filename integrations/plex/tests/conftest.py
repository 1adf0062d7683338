"""Fixtures for the Plex integration tests: a running FakePlex and a client pointed at it."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from integrations.plex.client import PlexClient
from tests.fakes.plex import FakePlex


@pytest.fixture
async def fake_plex() -> AsyncIterator[FakePlex]:
    fake = await FakePlex().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def plex_client(fake_plex: FakePlex) -> AsyncIterator[PlexClient]:
    client = PlexClient(fake_plex.url, fake_plex.token, timeout=5.0)
    yield client
    await client.close()
