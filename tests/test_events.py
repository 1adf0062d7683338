"""The failure detector: what counts as a failed playback and what does not."""
from __future__ import annotations

from bridge.events import FailureDetector, PlaybackEvent


def ev(kind: str, at: float, *, item: str = "i1", device: str = "d1", position: float | None = 0.0,
       completed: bool = False, user: str = "alice") -> PlaybackEvent:
    return PlaybackEvent(source="jellyfin", kind=kind, item_id=item, session_key=device, user=user,  # type: ignore[arg-type]
                         position_seconds=position, played_to_completion=completed, received_at=at)


def detector() -> FailureDetector:
    return FailureDetector(window_seconds=30, max_position_seconds=10)


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
    assert d.observe(ev("stop", 105, position=25)) is None  # played past max_position
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
    d = FailureDetector(window_seconds=30, max_position_seconds=10, max_tracked=100)
    for n in range(1000):
        d.observe(ev("start", 1000 + n * 0.001, item=f"i{n}"))
    assert len(d._starts) == 100
    assert d.observe(ev("stop", 1001, item="i999")) is not None  # the newest survive
    assert d.observe(ev("stop", 1001, item="i0")) is None  # the oldest were dropped
