"""The `fake_provider` fixture; conftest imports it so every test can ask for a running FakeProvider."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.provider import FakeProvider

__all__ = ["fake_provider"]


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """Started per test: its counters and episodes are test state and must not leak between tests."""
    provider = FakeProvider()
    await provider.start()
    try:
        yield provider
    finally:
        await provider.close()
