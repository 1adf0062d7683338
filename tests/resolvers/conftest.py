"""Resolver tests talk HTTP only to servers on 127.0.0.1 started by the test itself."""
from __future__ import annotations

from tests.fakes.provider_fixture import fake_provider

__all__ = ["fake_provider"]
