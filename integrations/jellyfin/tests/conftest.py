"""Fixtures for the Jellyfin integration: the fake server, clients pointed at it, fixture bodies."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from integrations.jellyfin.client import JellyfinClient
from tests.fakes.jellyfin import FakeJellyfin

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "jellyfin"


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
async def fake() -> AsyncIterator[FakeJellyfin]:
    server = FakeJellyfin()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_client(fake: FakeJellyfin) -> AsyncIterator[Callable[..., JellyfinClient]]:
    """Short timeouts and no retry delay: the fake answers at once or never. Every client made is closed at
    the end (its requests sessions and aiohttp session would otherwise be left to the garbage collector)."""
    made: list[JellyfinClient] = []

    def make(api_key: str | None = None, **kwargs: object) -> JellyfinClient:
        options: dict[str, object] = {"timeout": 2.0, "retries": 0, "retry_delay": 0.0}
        options.update(kwargs)
        client = JellyfinClient(fake.url, api_key or fake.api_key, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
def client(make_client: Callable[..., JellyfinClient]) -> JellyfinClient:
    return make_client()
