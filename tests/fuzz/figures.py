"""Counts of the generated requests, printed at the end of the run (the README's Reliability figures)."""
from __future__ import annotations

from collections import Counter

RUNS: dict[str, dict[str, object]] = {}
NOTES: dict[str, str] = {}
"""Figure lines of other tests (the crash test under mixed load), printed at the end under "crash figures"."""


def note(name: str, line: str) -> None:
    NOTES[name] = line


def record(name: str, statuses: Counter[int], seconds: float) -> None:
    entry = RUNS.setdefault(name, {"statuses": Counter(), "seconds": 0.0})
    entry["statuses"].update(statuses)  # type: ignore[attr-defined]
    entry["seconds"] = float(entry["seconds"]) + seconds  # type: ignore[arg-type]


def summary_lines() -> list[str]:
    lines = []
    for name, entry in sorted(RUNS.items()):
        statuses: Counter[int] = entry["statuses"]  # type: ignore[assignment]
        total = sum(statuses.values())
        five = sum(n for code, n in statuses.items() if code >= 500)
        by_class = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        lines.append(f"{name}: {total} requests, {five} answered 5xx, {float(entry['seconds']):.1f} s ({by_class})")
    return lines
