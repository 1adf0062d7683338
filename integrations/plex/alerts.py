"""Listening to the PMS notification websocket for sessions that end in `state == "error"`.

This is the only failure signal Plex itself emits (Tautulli's `on_error` is built on the same thing), and it
needs the admin token but no Plex Pass. plexapi's AlertListener is a thread around websocket-client; when
the socket drops the thread simply ends, so a supervisor task starts a new one with exponential backoff.
Events are handed to the asyncio loop with `call_soon_threadsafe`.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import Any, Awaitable, Callable

from plexapi.alert import AlertListener
from plexapi.server import PlexServer

from bridge.events import PlaybackEvent
from bridge.validate import finite_number
from integrations.plex.client import PlexClient, PlexError

log = logging.getLogger(__name__)

EventCallback = Callable[[PlaybackEvent], "Awaitable[None] | None"]


def error_events(container: dict[str, Any]) -> list[PlaybackEvent]:
    """PlaybackEvents for every playing-session notification in state "error"."""
    if not isinstance(container, dict) or container.get("type") != "playing":
        return []
    out = []
    for note in container.get("PlaySessionStateNotification") or []:
        if not isinstance(note, dict) or note.get("state") != "error":
            continue
        rating_key = str(note.get("ratingKey") or "")
        if not rating_key.isdigit():
            continue
        offset = note.get("viewOffset")
        milliseconds = finite_number(offset)  # float() of a 400-digit int raises OverflowError
        position = milliseconds / 1000.0 if milliseconds is not None else None
        out.append(
            PlaybackEvent(
                source="plex",
                kind="error",
                item_id=rating_key,
                session_key=str(note.get("sessionKey") or ""),
                position_seconds=position,
                hints={"client_identifier": note["clientIdentifier"]} if note.get("clientIdentifier") else {},
                raw_kind="playing:error",
            )
        )
    return out


_CLOSING_APPS: dict[type, type] = {}


def _closing_app_class(base: type) -> type:
    """A WebSocketApp that closes, when asked, the sockets of every connection it made.

    websocket-client's WebSocket.close() returns early when the connection no longer counts as connected (a
    dropped or aborted socket), without closing the socket itself: left to the garbage collector, each drop
    leaked one file descriptor until then (a ResourceWarning). The app sets `self.sock` for each connection
    attempt, so recording those assignments finds them all.
    """
    cls = _CLOSING_APPS.get(base)
    if cls is None:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            if name == "sock" and value is not None:
                self.__dict__.setdefault("_made_sockets", []).append(value)
            base.__setattr__(self, name, value)

        def release_sockets(self: Any) -> None:
            for ws in self.__dict__.pop("_made_sockets", []):
                raw = getattr(ws, "sock", None)
                if raw is None:
                    continue
                try:
                    raw.close()
                except OSError:
                    pass
                ws.sock = None

        cls = type("ClosingWebSocketApp", (base,), {"__setattr__": __setattr__, "release_sockets": release_sockets})
        _CLOSING_APPS[base] = cls
    return cls


class _Listener(AlertListener):
    """AlertListener with an open hook (to reset the backoff), optional pings, a safe stop, and no token in
    the log.

    websocket-client drops a close() that arrives while the handshake is still running and then blocks in
    select() forever, so a stop requested before the socket is open is carried out by the open hook instead.
    """

    def __init__(self, server: PlexServer, callback: Callable[[dict[str, Any]], None], on_open: Callable[[], None],
                 on_end: Callable[[], None], ping_interval: float) -> None:
        super().__init__(server, callback=callback, callbackError=self._error)
        self.name = "plex-alert-listener"
        self._on_open = on_open
        self._on_end = on_end
        self._ping_interval = ping_interval
        self._state_lock = threading.Lock()
        self._opened = False
        self._stop_requested = False
        self.ws_app: Any = None
        self.last_error: str | None = None

    def _error(self, error: Exception) -> None:
        self.last_error = f"{type(error).__name__}: {error}"

    def _opened_hook(self, ws_app: Any) -> None:
        with self._state_lock:
            self._opened = True
            stop = self._stop_requested
        if stop:
            ws_app.keep_running = False  # the read loop checks this before its first select()
            return
        self._on_open()

    def run(self) -> None:
        try:
            import websocket
        except ImportError:
            log.error("Plex alerts need websocket-client: pip install 'plexapi[alert]'")
            self._on_end()
            return
        try:
            with self._state_lock:
                if self._stop_requested:
                    return
            url = self._server.url(self.key, includeToken=True).replace("http", "ws", 1)
            self.ws_app = _closing_app_class(websocket.WebSocketApp)(
                url,
                on_open=self._opened_hook,
                on_message=self._onMessage,
                on_error=self._onError,
            )
            self._ws = self.ws_app
            # ping_timeout is also the reader's select() timeout: keep it short so a stop is never slow
            kwargs: dict[str, Any] = {"ping_timeout": 1.0}
            if self._ping_interval > 0:
                kwargs = {"ping_interval": self._ping_interval, "ping_timeout": max(1.0, self._ping_interval / 2)}
            self.ws_app.run_forever(**kwargs)
        except Exception as exc:  # never let the thread die silently: the supervisor reconnects
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.ws_app is not None:
                self.ws_app.release_sockets()
            self._on_end()

    def request_stop(self) -> None:
        """Stop the read loop from another thread.

        WebSocketApp.close() closes the file descriptor while the reader thread may still be parked in
        select() on it, which then only wakes at its 10 s timeout. Sending the close frame and shutting the
        socket down (without closing it) wakes the reader at once, and the reader tears down itself.
        """
        with self._state_lock:
            self._stop_requested = True
            opened = self._opened
        app = self.ws_app
        if not opened or app is None:
            return  # not connected yet: the open hook stops it, or the connect attempt fails by itself
        app.keep_running = False
        ws = app.sock
        if ws is not None:
            try:
                ws.send_close()
            except Exception:  # already closed by the server: nothing to say goodbye to
                pass
            ws.abort()


class PlexAlertListener:
    """Run with `start()` inside the event loop, end with `await stop()` (joins the listener thread)."""

    def __init__(
        self,
        client: PlexClient,
        callback: EventCallback,
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        ping_interval: float = 0.0,
    ) -> None:
        self.client = client
        self.callback = callback
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.ping_interval = ping_interval
        self.connections = 0
        self.events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._listener: _Listener | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._supervise(), name="plex-alerts")

    async def stop(self, timeout: float = 5.0) -> None:
        if self._task is None:
            return
        self._stopping.set()
        self._task.cancel()  # first, so that no new listener can be started behind our back
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        listener, self._listener = self._listener, None
        if listener is not None:
            await self._close_listener(listener, timeout)
        for task in list(self._pending):
            task.cancel()
        self._pending.clear()

    async def _close_listener(self, listener: _Listener, timeout: float) -> None:
        await asyncio.to_thread(listener.request_stop)
        deadline = time.monotonic() + timeout
        while listener.is_alive() and time.monotonic() < deadline:
            await asyncio.to_thread(listener.join, 0.1)
        if listener.is_alive():
            log.warning("the Plex alert listener thread did not stop within %.0fs", timeout)

    async def _supervise(self) -> None:
        backoff = self.initial_backoff
        while not self._stopping.is_set():
            opened = threading.Event()
            ended = asyncio.Event()
            try:
                server = await self.client.server()
            except PlexError as exc:
                log.warning("Plex alerts: cannot connect (%s); retrying in %.1fs", exc, backoff)
            else:
                if self._stopping.is_set():
                    return
                listener = _Listener(
                    server,
                    callback=self._on_message,
                    on_open=lambda: self._opened(opened),
                    on_end=lambda: self._to_loop(ended.set),
                    ping_interval=self.ping_interval,
                )
                self._listener = listener
                listener.start()
                stop_wait = asyncio.create_task(self._stopping.wait())
                end_wait = asyncio.create_task(ended.wait())
                try:
                    await asyncio.wait({stop_wait, end_wait}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop_wait.cancel()
                    end_wait.cancel()
                if self._stopping.is_set():
                    return  # stop() closes the listener
                await asyncio.to_thread(listener.join, 1.0)
                self._listener = None
                if opened.is_set():
                    backoff = self.initial_backoff  # it was connected: the next drop starts the backoff afresh
                    log.warning("Plex alert websocket closed; reconnecting in %.1fs", backoff)
                else:
                    log.warning("Plex alert websocket could not connect (%s); retrying in %.1fs",
                                listener.last_error or "closed", backoff)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                return
            except TimeoutError:
                pass
            backoff = min(self.max_backoff, backoff * 2)

    def _opened(self, flag: threading.Event) -> None:
        """Runs in the listener thread once the websocket handshake succeeded."""
        flag.set()
        self._to_loop(self._count_connection)

    def _count_connection(self) -> None:
        self.connections += 1
        log.info("listening to Plex notifications (connection %d)", self.connections)

    def _on_message(self, container: dict[str, Any]) -> None:
        """Runs in the listener thread: only hand over to the loop."""
        for event in error_events(container):
            self._to_loop(self._deliver, event)

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Hand work from the listener thread to the loop; a loop already closed (shutdown) drops it."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def _deliver(self, event: PlaybackEvent) -> None:
        self.events += 1
        try:
            result = self.callback(event)
        except Exception:
            log.exception("Plex alert callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._pending.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Plex alert callback failed: %s", task.exception())
