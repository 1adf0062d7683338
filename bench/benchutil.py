"""Small pieces the benchmarks share: an instant in-process resolver, percentiles and memory readings."""
from __future__ import annotations

import itertools
import resource
import statistics
import sys
import uuid
from pathlib import Path

from bridge.resolvers.base import ResolveRequest, Resolved

REPO = Path(__file__).resolve().parents[1]


def add_repo_to_path() -> None:
    """`python bench/x.py` puts bench/ on sys.path, not the repository: the fakes under tests/ need it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


class InstantResolver:
    """Answers at once with a fresh URL (as tests/crash_worker.py): the benchmark measures the bridge, not a network."""

    name = "instant"

    def __init__(self) -> None:
        self.calls = 0
        self.run = uuid.uuid4().hex[:8]  # fresh URLs differ from every earlier run's without a random call each
        self.serial = itertools.count()

    async def resolve(self, request: ResolveRequest) -> Resolved:
        self.calls += 1
        i = request.identity
        url = f"http://cdn.test/{i.slug}/{i.season}/{i.episode}.mp4?v={self.run}-{next(self.serial)}"
        return Resolved(url, provider="instant")

    async def close(self) -> None:
        pass


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(round(fraction * len(ordered) + 0.5))))
    return ordered[rank - 1]


def p50_p99_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, percentile(ordered, 0.99) * 1000


def peak_rss_kb() -> int:
    """ru_maxrss: the process's high-water resident set, in KB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
