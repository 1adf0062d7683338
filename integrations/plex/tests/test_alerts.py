"""PlexAlertListener: plexapi's AlertListener over a real websocket to FakePlex."""
from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings

import pytest

from bridge.events import PlaybackEvent
from integrations.plex.alerts import PlexAlertListener, error_events
from integrations.plex.client import PlexClient
from tests.fakes.plex import FakePlex, play_state_notification


def listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plex-alert-listener" and t.is_alive()]


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_error_notification_becomes_an_event(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    received: list[PlaybackEvent] = []
    listener = PlexAlertListener(plex_client, received.append, initial_backoff=0.05)
    listener.start()
    try:
        await fake_plex.wait_for_connections(1)
        await fake_plex.push({"type": "timeline", "size": 1, "TimelineEntry": [{"itemID": "4711", "state": 5}]})
        await fake_plex.push(play_state_notification(4711, 27, state="playing"))
        await fake_plex.push(play_state_notification(4711, 27, state="error", view_offset=1500))
        await wait_for(lambda: len(received) == 1)
        await asyncio.sleep(0.1)  # nothing else may follow: only the error state counts
        [event] = received
        assert (event.source, event.kind, event.item_id, event.session_key) == ("plex", "error", "4711", "27")
        assert event.position_seconds == 1.5
        ws_call = fake_plex.calls_to("/:/websockets/notifications")[0]
        assert ws_call.token == fake_plex.token
    finally:
        await listener.stop()
    assert listener_threads() == []


async def test_reconnects_after_the_socket_drops(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    received: list[PlaybackEvent] = []

    async def on_event(event: PlaybackEvent) -> None:  # async callbacks are scheduled on the loop
        received.append(event)

    listener = PlexAlertListener(plex_client, on_event, initial_backoff=0.05, max_backoff=0.2)
    listener.start()
    try:
        await fake_plex.wait_for_connections(1)
        await fake_plex.drop_websockets()
        await fake_plex.wait_for_connections(2)
        await wait_for(lambda: fake_plex.open_sockets == 1)
        await fake_plex.push(play_state_notification(812, 31))
        await wait_for(lambda: len(received) == 1)
        assert received[0].item_id == "812"
        await wait_for(lambda: listener.connections == 2)
    finally:
        await listener.stop()
    assert listener_threads() == []


async def test_a_dropped_websocket_leaves_no_socket_to_the_collector(fake_plex: FakePlex,
                                                                     plex_client: PlexClient) -> None:
    """PMS closing the notification socket (a restart) must not leave the client's socket open.

    websocket-client answers the close frame, counts the connection as closed and then skips closing the
    socket itself; unless the listener closes it, each drop leaks a descriptor until the collector warns.
    """
    listener = PlexAlertListener(plex_client, lambda event: None, initial_backoff=0.05, max_backoff=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        listener.start()
        try:
            for connection in (1, 2):
                await fake_plex.wait_for_connections(connection)
                await wait_for(lambda: fake_plex.open_sockets == 1)
                await fake_plex.drop_websockets()
            await fake_plex.wait_for_connections(3)
        finally:
            await listener.stop()
        gc.collect()
    assert listener_threads() == []
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_retries_until_plex_is_up(fake_plex: FakePlex) -> None:
    client = PlexClient(fake_plex.url, fake_plex.token, timeout=1)
    await fake_plex.stop()
    received: list[PlaybackEvent] = []
    listener = PlexAlertListener(client, received.append, initial_backoff=0.05, max_backoff=0.1)
    listener.start()
    try:
        await asyncio.sleep(0.3)
        assert listener.running and listener.connections == 0
        await fake_plex.start()
        await fake_plex.wait_for_connections(1)
        await fake_plex.push(play_state_notification(5, 1))
        await wait_for(lambda: len(received) == 1)
    finally:
        await listener.stop()
        await client.close()
    assert listener_threads() == []


async def test_websocket_refused_then_accepted(fake_plex: FakePlex, plex_client: PlexClient,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A failing handshake (PMS answering 503) ends the thread; the supervisor tries again."""
    caplog.set_level(logging.DEBUG)
    await plex_client.server()
    fake_plex.fail_with(503, times=2, path_prefix="/:/websockets")
    received: list[PlaybackEvent] = []
    listener = PlexAlertListener(plex_client, received.append, initial_backoff=0.05, max_backoff=0.1)
    listener.start()
    try:
        await fake_plex.wait_for_connections(1)
        assert len(fake_plex.calls_to("/:/websockets/notifications")) == 3
    finally:
        await listener.stop()
    assert listener_threads() == []
    assert any("could not connect" in r.getMessage() for r in caplog.records)
    assert all(fake_plex.token not in r.getMessage() for r in caplog.records)


async def test_stop_right_after_start_leaves_no_thread(fake_plex: FakePlex, plex_client: PlexClient) -> None:
    listener = PlexAlertListener(plex_client, lambda event: None)
    listener.start()
    await asyncio.sleep(0)
    await listener.stop()
    assert not listener.running
    await asyncio.sleep(0.05)
    assert listener_threads() == []


@pytest.mark.parametrize("container,expected", [
    (play_state_notification(1, 2, "error"), 1),
    (play_state_notification(1, 2, "stopped"), 0),
    (play_state_notification("x", 2, "error"), 0),
    ({"type": "activity", "ActivityNotification": []}, 0),
    ({"type": "playing"}, 0),
])
def test_error_events(container: dict, expected: int) -> None:
    assert len(error_events(container)) == expected
