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
    def __init__(self, window_seconds: float, min_attempts: int, ratio: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.min_attempts = min_attempts
        self.ratio = ratio
        self.clock = clock
        self._results: deque[tuple[float, bool]] = deque()
        self._failures = 0  # kept in step with _results: the check runs on every refresh of a bulk job

    def _trim(self) -> None:
        cutoff = self.clock() - self.window
        while self._results and self._results[0][0] < cutoff:
            _, ok = self._results.popleft()
            self._failures -= not ok

    def record(self, ok: bool) -> None:
        self._results.append((self.clock(), ok))
        self._failures += not ok
        self._trim()

    @property
    def tripped(self) -> bool:
        self._trim()
        attempts = len(self._results)
        return attempts >= self.min_attempts and self._failures / attempts >= self.ratio

    def stats(self) -> dict[str, int]:
        self._trim()
        return {"attempts": len(self._results), "failures": self._failures}
