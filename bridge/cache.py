"""Fresh URLs by identity for `cache.ttl_seconds`, so duplicates and repeated requests skip the resolver."""
from __future__ import annotations

import time
from typing import Callable

from bridge.mappings import Identity
from bridge.resolvers.base import Resolved
from bridge.timeutil import to_epoch


def _dead(resolved: Resolved) -> bool:
    """A cached link never outlives its own expiry, whatever `cache.ttl_seconds` says (links of 15 min exist)."""
    if not resolved.expires_at:
        return False
    try:
        return to_epoch(resolved.expires_at) <= time.time()
    except ValueError:
        return False


class ResolveCache:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[Identity, tuple[float, Resolved]] = {}

    def get(self, identity: Identity) -> Resolved | None:
        if self.ttl <= 0 or not identity.complete:
            return None
        entry = self._entries.get(identity)
        if entry is None:
            return None
        stored_at, resolved = entry
        if self.clock() - stored_at > self.ttl or _dead(resolved):
            del self._entries[identity]
            return None
        return resolved

    def put(self, identity: Identity, resolved: Resolved) -> None:
        if self.ttl <= 0 or not identity.complete:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[identity] = (self.clock(), resolved)

    def invalidate(self, identity: Identity) -> bool:
        return self._entries.pop(identity, None) is not None

    def purge(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    def __len__(self) -> int:
        return len(self._entries)
