"""Per-resolver circuit breaker and the library-wide mass-failure guard.

The breaker stops hammering a resolver that keeps failing; the guard stops rewriting the library when most
refreshes fail at once, because a provider outage must not churn every file.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable


class CircuitBreaker:
    def __init__(self, threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        """Closed: yes. Open: no. Half-open: one trial call at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._probing = False


class MassFailureGuard:
    """Counts per one-second bucket: bounded memory and O(1) checks, however many refreshes a window holds."""

    def __init__(self, window_seconds: float, min_attempts: int, ratio: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.min_attempts = min_attempts
        self.ratio = ratio
        self.clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, attempts, failures]
        self._attempts = 0
        self._failures = 0

    def _trim(self) -> None:
        cutoff = self.clock() - self.window
        while self._buckets and self._buckets[0][0] < cutoff:
            _, attempts, failures = self._buckets.popleft()
            self._attempts -= attempts
            self._failures -= failures

    def record(self, ok: bool) -> None:
        second = int(self.clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += not ok
        self._attempts += 1
        self._failures += not ok
        self._trim()

    @property
    def tripped(self) -> bool:
        self._trim()
        return self._attempts >= self.min_attempts and self._failures / self._attempts >= self.ratio

    def stats(self) -> dict[str, int]:
        self._trim()
        return {"attempts": self._attempts, "failures": self._failures}
