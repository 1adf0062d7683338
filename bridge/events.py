"""Playback events normalised across sources, and the detector that infers a failed playback.

No media server sends a "playback failed" event, so a failure is inferred. Links expire between two viewing
sessions, so the failure that happens most is a resume: start at 12:00, stop at 12:00 a second later. The
detector therefore looks at the progress since the start, never at the absolute position. What it finds is a
hint only: every suspected failure is judged by probing the link before anything is resolved or written.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["start", "stop", "progress", "pause", "resume", "error", "buffer", "other"]
SOURCES = ("jellyfin", "plex", "tautulli", "emby")

COMPLETION_RUNTIME_FACTOR = 2.0
"""A "completed" stop is implausible when the item runs at least this many times longer than start→stop took."""


@dataclass(frozen=True)
class PlaybackEvent:
    """One webhook or notification, reduced to what detection and location need."""

    source: str
    kind: EventKind
    item_id: str
    session_key: str = ""
    """Identifies the player (device id, player uuid, session id): start and stop of one playback share it."""
    user: str | None = None
    position_seconds: float | None = None
    """Where playback is; on a start this is the resume point the server reports (0 or None for a new play)."""
    played_to_completion: bool = False
    path: str | None = None
    """The media file as the server sees it, when the source sends it (Emby, Tautulli)."""
    hints: dict[str, Any] = field(default_factory=dict)
    """Identity hints: series, season, episode, provider ids, guid, section id, URL..."""
    raw_kind: str = ""
    received_at: float = field(default_factory=time.time)
    runtime_seconds: float | None = None
    """The item's length as the server knows it (RunTimeTicks, duration); None when the server does not know."""


@dataclass(frozen=True)
class Ignored:
    """A well-formed payload about something strm-bridge does not handle: acknowledged (202), never refused."""

    reason: str


@dataclass(frozen=True)
class FailureSignal:
    event: PlaybackEvent
    reason: str  # early_stop | completed_at_start | error | probe_dead | manual


def as_detected(event: PlaybackEvent) -> PlaybackEvent:
    """Buffer warnings (when a source has them enabled) count as errors."""
    if event.kind == "buffer":
        return PlaybackEvent(**{**event.__dict__, "kind": "error"})
    return event


class FailureDetector:
    """Pairs starts with stops per (source, item, player); a start is consumed by its first stop.

    Consuming the start is what keeps the Jellyfin plugin's one-webhook-per-user from counting twice. A stop is
    a suspected failure when it comes within the window and playback advanced less than `min_progress` from the
    start's own position (a resume at 12:00 that dies at once), or when it is reported as completed, at position
    0, within seconds, for an item known to run much longer (Jellyfin's reading of a stop without a position).
    """

    def __init__(self, window_seconds: float, min_progress_seconds: float = 10.0, max_tracked: int = 10_000) -> None:
        self.window = window_seconds
        self.min_progress = min_progress_seconds
        self.max_tracked = max_tracked
        self._starts: OrderedDict[tuple[str, str, str], tuple[float, float | None]] = OrderedDict()
        self._errors: dict[tuple[str, str], float] = {}

    def observe(self, event: PlaybackEvent) -> FailureSignal | None:
        key = (event.source, event.item_id, event.session_key)
        if event.kind == "start":
            self._remember(key, event.received_at, event.position_seconds)
            return None
        if event.kind == "error":
            item = (event.source, event.item_id)
            last = self._errors.get(item)
            if last is not None and event.received_at - last < self.window:
                return None
            self._errors[item] = event.received_at
            self._starts.pop(key, None)
            return FailureSignal(event, "error")
        if event.kind != "stop":
            return None
        start = self._starts.pop(key, None)
        if start is None:
            return None
        started_at, start_position = start
        elapsed = event.received_at - started_at
        if elapsed > self.window:
            return None
        position = event.position_seconds
        if event.played_to_completion:
            return FailureSignal(event, "completed_at_start") if self._implausible_completion(event, elapsed) else None
        if position is None:
            return FailureSignal(event, "early_stop")  # no position at all: the timing is the only hint
        if position - (start_position or 0.0) >= self.min_progress:
            return None
        return FailureSignal(event, "early_stop")

    def _implausible_completion(self, event: PlaybackEvent, elapsed: float) -> bool:
        """Completed at 0 seconds after a start of something that runs for minutes: not a completion."""
        runtime = event.runtime_seconds
        if event.position_seconds or runtime is None or runtime <= 0:
            return False
        return runtime >= max(COMPLETION_RUNTIME_FACTOR * elapsed, elapsed + self.min_progress)

    def _remember(self, key: tuple[str, str, str], at: float, position: float | None) -> None:
        """Oldest first, so expiring stale starts costs O(1) per event rather than a rebuild."""
        self._starts.pop(key, None)
        cutoff = at - self.window
        while self._starts and (len(self._starts) >= self.max_tracked or next(iter(self._starts.values()))[0] < cutoff):
            self._starts.popitem(last=False)
        self._starts[key] = (at, position)
