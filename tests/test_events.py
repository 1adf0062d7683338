"""The failure detector: what counts as a failed playback and what does not."""
from __future__ import annotations

from bridge.events import FailureDetector, PlaybackEvent


def ev(kind: str, at: float, *, item: str = "i1", device: str = "d1", position: float | None = 0.0,
       completed: bool = False, user: str = "alice", runtime: float | None = None) -> PlaybackEvent:
    return PlaybackEvent(source="jellyfin", kind=kind, item_id=item, session_key=device, user=user,  # type: ignore[arg-type]
                         position_seconds=position, played_to_completion=completed, received_at=at,
                         runtime_seconds=runtime)


def detector() -> FailureDetector:
    return FailureDetector(window_seconds=30, min_progress_seconds=10)


def test_early_stop_after_start_is_a_failure() -> None:
    d = detector()
    assert d.observe(ev("start", 100)) is None
    signal = d.observe(ev("stop", 101.5, position=0.4))
    assert signal is not None and signal.reason == "early_stop" and signal.event.item_id == "i1"


def test_not_failures() -> None:
    d = detector()
    d.observe(ev("start", 0))
    assert d.observe(ev("stop", 45, position=0)) is None  # outside the window
    d.observe(ev("start", 100))
    assert d.observe(ev("stop", 105, position=25)) is None  # advanced 25 s: it played
    d.observe(ev("start", 200))
    assert d.observe(ev("stop", 201, position=1, completed=True)) is None  # completed
    d.observe(ev("start", 300))
    assert d.observe(ev("pause", 301)) is None and d.observe(ev("progress", 302)) is None
    assert d.observe(ev("stop", 400)) is None  # a stop without its start
    d.observe(ev("start", 500, device="tv"))
    assert d.observe(ev("stop", 501, device="phone")) is None  # another player's stop


def test_one_webhook_per_user_counts_once() -> None:
    d = detector()
    d.observe(ev("start", 10, user="alice"))
    d.observe(ev("start", 10.01, user="bob"))
    signals = [d.observe(ev("stop", 11, user="alice")), d.observe(ev("stop", 11.01, user="bob"))]
    assert [s is not None for s in signals] == [True, False]


def test_error_signals_are_deduplicated_per_item_within_the_window() -> None:
    d = detector()
    assert d.observe(ev("error", 0)) is not None
    assert d.observe(ev("error", 5)) is None
    assert d.observe(ev("error", 5, item="i2")) is not None
    assert d.observe(ev("error", 40)) is not None


def test_tracked_starts_are_bounded() -> None:
    d = FailureDetector(window_seconds=30, min_progress_seconds=10, max_tracked=100)
    for n in range(1000):
        d.observe(ev("start", 1000 + n * 0.001, item=f"i{n}"))
    assert len(d._starts) == 100
    assert d.observe(ev("stop", 1001, item="i999")) is not None  # the newest survive
    assert d.observe(ev("stop", 1001, item="i0")) is None  # the oldest were dropped


def test_failed_resume_is_a_failure_whatever_the_absolute_position() -> None:
    """Start and stop both at 12:00, half a second apart: the failure that happens most."""
    d = detector()
    d.observe(ev("start", 100, position=720.0))
    signal = d.observe(ev("stop", 100.5, position=720.0))
    assert signal is not None and signal.reason == "early_stop"
    d.observe(ev("start", 200, position=720.0))
    assert d.observe(ev("stop", 204, position=729.9)) is not None  # 9.9 s of progress: still under 10


def test_resume_that_plays_is_no_failure() -> None:
    d = detector()
    d.observe(ev("start", 100, position=720.0))
    assert d.observe(ev("stop", 125, position=742.0)) is None  # 22 s of progress within the window
    d.observe(ev("start", 200, position=720.0))
    assert d.observe(ev("stop", 200 + 600, position=1320.0)) is None  # minutes later: outside the window


def test_min_progress_is_configurable() -> None:
    d = FailureDetector(window_seconds=30, min_progress_seconds=3)
    d.observe(ev("start", 0, position=60.0))
    assert d.observe(ev("stop", 5, position=64.0)) is None
    d.observe(ev("start", 10, position=60.0))
    assert d.observe(ev("stop", 11, position=61.0)) is not None


def test_stop_without_a_position_inside_the_window_is_suspected() -> None:
    d = detector()
    d.observe(ev("start", 0, position=720.0))
    signal = d.observe(ev("stop", 1, position=None))
    assert signal is not None and signal.reason == "early_stop"


def test_completed_at_zero_one_second_after_the_start_is_suspected() -> None:
    """Jellyfin reads a stop without a position as a completed play at 0 (SessionManager.OnPlaybackStopped)."""
    d = detector()
    d.observe(ev("start", 0, position=720.0, runtime=1440.0))
    signal = d.observe(ev("stop", 1, position=0.0, completed=True, runtime=1440.0))
    assert signal is not None and signal.reason == "completed_at_start"
    d.observe(ev("start", 10, position=0.0, runtime=1440.0))
    assert d.observe(ev("stop", 11, position=None, completed=True, runtime=1440.0)) is not None


def test_plausible_completions_are_no_failure() -> None:
    d = detector()
    d.observe(ev("start", 0, position=1400.0, runtime=1440.0))
    assert d.observe(ev("stop", 25, position=1439.0, completed=True, runtime=1440.0)) is None  # a position
    d.observe(ev("start", 100, runtime=None))
    assert d.observe(ev("stop", 101, completed=True, runtime=None)) is None  # length unknown: cannot tell
    d.observe(ev("start", 200, runtime=12.0))
    assert d.observe(ev("stop", 212, completed=True, runtime=12.0)) is None  # a 12 s clip that played
    d.observe(ev("start", 300, runtime=1440.0))
    assert d.observe(ev("stop", 360, completed=True, runtime=1440.0)) is None  # outside the window


def test_start_positions_are_kept_per_player() -> None:
    d = detector()
    d.observe(ev("start", 0, device="tv", position=720.0))
    d.observe(ev("start", 0.1, device="phone", position=0.0))
    assert d.observe(ev("stop", 5, device="phone", position=4.0)) is not None  # 4 s from its own 0
    assert d.observe(ev("stop", 5, device="tv", position=740.0)) is None  # 20 s from its own 12:00
