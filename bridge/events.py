"""Playback events normalised across sources, and the detector that infers a failed playback.

No media server sends a "playback failed" event, so a failure is inferred from a start followed within
seconds by a stop near position zero that was not played to completion (or an explicit error signal).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["start", "stop", "progress", "pause", "resume", "error", "buffer", "other"]
SOURCES = ("jellyfin", "plex", "tautulli", "emby")


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
    played_to_completion: bool = False
    path: str | None = None
    """The media file as the server sees it, when the source sends it (Emby, Tautulli)."""
    hints: dict[str, Any] = field(default_factory=dict)
    """Identity hints: series, season, episode, provider ids, guid, section id, URL..."""
    raw_kind: str = ""
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class FailureSignal:
    event: PlaybackEvent
    reason: str  # early_stop | error | probe_dead | manual


class FailureDetector:
    """Pairs starts with stops per (source, item, player); a start is consumed by its first stop.

    Consuming the start is what keeps the Jellyfin plugin's one-webhook-per-user from counting twice.
    """

    def __init__(self, window_seconds: float, max_position_seconds: float, max_tracked: int = 10_000) -> None:
        self.window = window_seconds
        self.max_position = max_position_seconds
        self.max_tracked = max_tracked
        self._starts: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._errors: dict[tuple[str, str], float] = {}

    def observe(self, event: PlaybackEvent) -> FailureSignal | None:
        key = (event.source, event.item_id, event.session_key)
        if event.kind == "start":
            self._remember(key, event.received_at)
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
        started = self._starts.pop(key, None)
        if started is None or event.played_to_completion:
            return None
        if event.received_at - started > self.window:
            return None
        if event.position_seconds is not None and event.position_seconds > self.max_position:
            return None
        return FailureSignal(event, "early_stop")

    def _remember(self, key: tuple[str, str, str], at: float) -> None:
        """Oldest first, so expiring stale starts costs O(1) per event rather than a rebuild."""
        self._starts.pop(key, None)
        cutoff = at - self.window
        while self._starts and (len(self._starts) >= self.max_tracked or next(iter(self._starts.values())) < cutoff):
            self._starts.popitem(last=False)
        self._starts[key] = at
