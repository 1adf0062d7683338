"""Tautulli Webhook agent bodies → PlaybackEvent, and the template users paste into Tautulli."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.events import FailureDetector, Ignored
from integrations.plex.tautulli import tautulli_event, webhook_template
from integrations.plex.webhook import WebhookError

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "tautulli"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_on_error() -> None:
    event = tautulli_event(fixture("on_error.json"))
    assert event.source == "tautulli"
    assert event.kind == "error"
    assert event.item_id == "4711"
    assert event.session_key == "k3r9x2m1q8w7e6r5t4y3"  # machine_id: the player, shared by play and stop
    assert event.path == "/data/anime/Attack on Titan/Season 01/Attack on Titan - S01E01.strm"
    assert event.position_seconds == 0.0
    assert event.user == "alice"
    assert event.hints["series"] == "Attack on Titan"
    assert (event.hints["season"], event.hints["episode"], event.hints["section_id"]) == (1, 1, 3)
    assert event.hints["guid"] == "plex://episode/5d9c0b8e7a6f5e4d3c2b1a09"
    assert event.hints["type"] == "episode"


def test_on_error_is_a_failure_for_the_detector() -> None:
    detector = FailureDetector(window_seconds=30, min_progress_seconds=10)
    signal = detector.observe(tautulli_event(fixture("on_error.json")))
    assert signal is not None and signal.reason == "error"


def test_on_play_then_on_stop_is_an_early_stop() -> None:
    play = tautulli_event(fixture("on_play.json"))
    stop = tautulli_event(fixture("on_stop.json"))
    assert (play.kind, stop.kind) == ("start", "stop")
    assert stop.position_seconds == 3.4
    detector = FailureDetector(window_seconds=30, min_progress_seconds=10)
    assert detector.observe(play) is None
    signal = detector.observe(stop)
    assert signal is not None and signal.reason == "early_stop"


def test_empty_view_offset_means_unknown_position() -> None:
    event = tautulli_event(fixture("on_buffer_empty_offset.json"))
    assert event.kind == "buffer"
    assert event.position_seconds is None


def test_movie_with_url_file_and_no_machine_id() -> None:
    event = tautulli_event(fixture("on_play_movie_url.json"))
    assert event.kind == "start"
    assert event.session_key == "Chrome"  # machine_id empty: falls back to player
    assert event.path is not None and event.path.startswith("https://cdn.example.net/")
    assert "series" not in event.hints and "season" not in event.hints


@pytest.mark.parametrize("action,kind", [("on_error", "error"), ("on_play", "start"), ("pause", "pause"),
                                         ("resume", "resume")])
def test_trigger_names_with_or_without_prefix(action: str, kind: str) -> None:
    assert tautulli_event(dict(fixture("on_play.json"), action=action)).kind == kind


@pytest.mark.parametrize("action", ["watched", "on_created", "intdown"])
def test_triggers_not_used_are_ignored_with_their_name(action: str) -> None:
    """on_intdown has no rating_key at all: still well formed, so acknowledged, never refused."""
    body = {"action": action} if action == "intdown" else dict(fixture("on_play.json"), action=action)
    name = action.removeprefix("on_")
    assert tautulli_event(body) == Ignored(f"Tautulli on_{name} notifications are not used")


@pytest.mark.parametrize("value", ["", "{rating_key}", "abc", "12a"])
def test_rating_key_must_be_digits(value: str) -> None:
    with pytest.raises(WebhookError, match="rating_key must be a number"):
        tautulli_event(dict(fixture("on_error.json"), rating_key=value))


def test_missing_action_is_refused() -> None:
    body = fixture("on_error.json")
    del body["action"]
    with pytest.raises(WebhookError, match="no 'action'"):
        tautulli_event(body)


def test_bad_view_offset_is_refused() -> None:
    with pytest.raises(WebhookError, match="view_offset"):
        tautulli_event(dict(fixture("on_stop.json"), view_offset="soon"))


def test_unfilled_placeholders_count_as_empty() -> None:
    body = dict(fixture("on_stop.json"), file="{file}", machine_id="{machine_id}", player="{player}")
    event = tautulli_event(body)
    assert event.path is None
    assert event.session_key == "27"


def test_template_uses_tautulli_parameter_names() -> None:
    template = webhook_template()
    expected = {"action", "rating_key", "file", "section_id", "guid", "media_type", "show_name", "season_num",
                "episode_num", "view_offset", "duration_sec", "machine_id", "player", "user", "session_key", "title"}
    assert set(template) == expected
    assert all(value == "{" + key + "}" for key, value in template.items())


def test_template_filled_like_tautulli_parses() -> None:
    """Tautulli fills each string value; the result must parse with our reader."""
    values = {"action": "error", "rating_key": "4711", "file": "/data/tv/A/b.strm", "view_offset": "1500"}
    filled = {k: v.format(**{k: values.get(k, "")}) for k, v in webhook_template().items()}
    event = tautulli_event(json.loads(json.dumps(filled)))
    assert (event.kind, event.item_id, event.path, event.position_seconds) == ("error", "4711", "/data/tv/A/b.strm", 1.5)
