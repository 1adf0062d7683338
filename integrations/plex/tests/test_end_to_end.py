"""A dead episode healed end to end through Plex: multipart webhooks, Tautulli, the notification websocket.

The real app is built on a temp database (tests.appfactory), the real plexapi client talks to FakePlex over
loopback, the real http resolver asks FakeProvider (whose expired signed URLs answer 403) for a fresh link.
Each test checks the .strm on disk, the URL's answer, and exactly what went over the wire to Plex.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import quote_plus

import aiohttp
import pytest

from bridge.app import create_app
from bridge.services import Services
from bridge.strm import read_strm
from tests.appfactory import make_services
from tests.fakes.plex import FakeCall, FakePlex, play_state_notification
from tests.fakes.provider import FakeProvider

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
PLEX_TOKEN = "plex-admin-token-0123456789abcdef"
HOOK = "plex-webhook-token-abcdef012345"
TAUTULLI_HOOK = "tautulli-webhook-token-abcdef0123"
SHOW = "Show: Part & Co (2020)"
SEASON_REL = f"tv/{SHOW}/Season 01"              # under the library root
SEASON_SERVER = f"/data/tv/{SHOW}/Season 01"     # the same folder as Plex sees it (plex.path_map)
PLAYER = "k3r9x2m1q8w7e6r5t4y3"


def fake_jpeg(size: int = 300 * 1024) -> bytes:
    """A JPEG-framed poster of `size` bytes (SOI, JFIF APP0, COM segments of noise, EOI): Plex's `thumb`."""
    out = bytearray(b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    counter = 0
    while len(out) < size - 2:
        chunk = b"".join(hashlib.sha256(f"poster:{counter}:{i}".encode()).digest() for i in range(2000))[:60_000]
        counter += 1
        out += b"\xff\xfe" + struct.pack(">H", len(chunk) + 2) + chunk
    return bytes(out + b"\xff\xd9")


THUMB = fake_jpeg()


@dataclass
class Bridge:
    plex: FakePlex
    provider: FakeProvider
    services: Services
    client: Any
    root: Path
    text: str
    episodes: dict[int, tuple[Path, str]] = field(default_factory=dict)

    async def settle(self) -> None:
        await self.services.processor.drain()
        await self.services.rescan.flush()

    def scans(self) -> list[FakeCall]:
        """Every refresh of any kind Plex received (partial scans, full scans, metadata refreshes)."""
        return [c for c in self.plex.calls if c.path.endswith("/refresh")]

    def add_episode(self, episode: int, *, folder: str = SEASON_REL, rating_key: int | None = None,
                    files: list[str] | None = None) -> tuple[int, Path, str]:
        """A mapped .strm holding an expired link, and the Plex item whose part is that .strm."""
        key = f"show/1/{episode}"
        self.provider.add_episode(key)
        expired = self.provider.sign(key, expires_at=time.time() - 120)
        path = self.root / folder / f"Show - S01E{episode:02d}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expired + "\n")
        self.services.store.upsert({"strm_path": str(path), "resolved_url": expired, "site": "fake", "slug": "show",
                                    "season": 1, "episode": episode, "language": "German Dub", "state": "ok"})
        rating_key = rating_key or 4700 + episode
        server_file = "/data/" + str(path.relative_to(self.root))
        self.plex.add_item(rating_key, [server_file] if files is None else files, grandparent_title=SHOW,
                           parent_index=1, index=episode, section_id=1)
        self.episodes[rating_key] = (path, expired)
        return rating_key, path, expired

    async def post_plex(self, body: Any, query: str = f"?token={HOOK}") -> aiohttp.ClientResponse:
        return await self.client.post("/webhooks/plex" + query, data=body)

    async def post_tautulli(self, body: dict[str, Any], **kwargs: Any) -> aiohttp.ClientResponse:
        headers = kwargs.pop("headers", {"Authorization": f"Bearer {TAUTULLI_HOOK}"})
        return await self.client.post("/webhooks/tautulli" + kwargs.pop("query", ""), data=json.dumps(body).encode(),
                                      headers={"Content-Type": "application/json", **headers})

    async def events(self) -> list[dict[str, Any]]:
        response = await self.client.get("/api/events", headers={"X-Api-Key": self.services.api_token})
        return (await response.json())["items"]

    def event_count(self) -> int:
        return int(self.services.db.conn.execute("select count(*) from events").fetchone()[0])


def config_text(plex: FakePlex, provider: FakeProvider, root: Path, *, debounce: float = 5.0,
                listen_alerts: bool = False) -> str:
    return f"""
[plex]
url = "{plex.url}"
token = "{PLEX_TOKEN}"
webhook_token = "{HOOK}"
path_map = [{{server = "/data", local = "{root}"}}]
listen_alerts = {str(listen_alerts).lower()}
timeout_seconds = 3
scan_debounce_seconds = {debounce}
scan_gap_seconds = 0
[tautulli]
webhook_token = "{TAUTULLI_HOOK}"
[refresh]
resolvers = ["http"]
cooldown_seconds = 600
[resolvers.http]
url = "{provider.base_url}/resolve"
"""


@pytest.fixture
async def make_bridge(tmp_path: Path, library_root: Path,
                      aiohttp_client: Any) -> AsyncIterator[Callable[..., Awaitable[Bridge]]]:
    plex = await FakePlex(token=PLEX_TOKEN).start()
    plex.add_section(1, "TV Shows", ["/data/tv"])
    plex.add_section(2, "Movies", ["/data/movies"], type="movie")
    provider = FakeProvider()
    await provider.start()

    async def build(**options: Any) -> Bridge:
        text = config_text(plex, provider, library_root, **options)
        services = make_services(tmp_path, text, roots=[library_root])
        client = await aiohttp_client(create_app(services))
        return Bridge(plex, provider, services, client, library_root, text)

    yield build
    await plex.stop()
    await provider.close()


@pytest.fixture
async def bridge(make_bridge: Callable[..., Awaitable[Bridge]]) -> Bridge:
    return await make_bridge()


def plex_payload(kind: str, rating_key: int | str, *, view_offset: int = 0, player: str = PLAYER) -> dict[str, Any]:
    """A recorded Plex webhook payload (tests/fixtures/plex) pointed at another item and player."""
    payload = json.loads((FIXTURES / "plex" / f"media_{kind}.json").read_text())
    payload["Metadata"].update(ratingKey=str(rating_key), key=f"/library/metadata/{rating_key}",
                               viewOffset=view_offset, librarySectionID=1, grandparentTitle=SHOW)
    payload["Player"]["uuid"] = player
    return payload


def plex_multipart(payload: dict[str, Any] | str | None, *, thumb: bytes | None = THUMB,
                   style: str = "writer") -> aiohttp.MultipartWriter | aiohttp.FormData:
    """The body as PMS sends it: multipart/form-data, `payload` JSON field, then the `thumb` JPEG part."""
    text = payload if isinstance(payload, str) or payload is None else json.dumps(payload)
    if style == "formdata":
        form = aiohttp.FormData()
        if text is not None:
            form.add_field("payload", text, content_type="application/json")
        if thumb is not None:
            form.add_field("thumb", thumb, filename="image.jpg", content_type="image/jpeg")
        return form
    writer = aiohttp.MultipartWriter("form-data")
    if text is not None:
        part = writer.append(text, {"Content-Type": "application/json"})
        part.set_content_disposition("form-data", name="payload")
    if thumb is not None:
        image = writer.append(thumb, {"Content-Type": "image/jpeg"})
        image.set_content_disposition("form-data", name="thumb", filename="image.jpg")
    return writer


def tautulli_body(name: str, rating_key: int, file: str, **changes: str) -> dict[str, str]:
    body = json.loads((FIXTURES / "tautulli" / f"{name}.json").read_text())
    body.update(rating_key=str(rating_key), file=file, section_id="1", show_name=SHOW, **changes)
    assert all(isinstance(v, str) for v in body.values())  # Tautulli fills its template with strings only
    return body


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        await answer.read()
        return answer.status


async def assert_healed(bridge: Bridge, rating_key: int) -> str:
    path, expired = bridge.episodes[rating_key]
    fresh = read_strm(path)
    assert fresh != expired
    assert await status_of(fresh) == 200
    assert bridge.services.store.by_path(str(path))["resolved_url"] == fresh
    return fresh


async def assert_untouched(bridge: Bridge, rating_key: int) -> None:
    path, expired = bridge.episodes[rating_key]
    assert path.read_text() == expired + "\n"
    assert bridge.provider.resolve_calls == []
    assert bridge.scans() == [] and bridge.services.rescan.pending() == []


def assert_one_partial_scan(bridge: Bridge, folder: str = SEASON_SERVER) -> None:
    """Exactly one `GET /library/sections/1/refresh?path=<folder>`, encoded as plexapi's quote_plus does."""
    scans = bridge.scans()
    assert [(c.method, c.path, c.query_string) for c in scans] == [
        ("GET", "/library/sections/1/refresh", f"path={quote_plus(folder)}")
    ]
    assert scans[0].query == {"path": folder} and not folder.endswith(".strm")
    assert scans[0].token == PLEX_TOKEN


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ---- 1. Plex webhooks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["writer", "formdata"])
async def test_plex_play_then_early_stop_is_healed_with_one_folder_scan(bridge: Bridge, style: str) -> None:
    rating_key, path, expired = bridge.add_episode(1)
    assert await status_of(expired) == 403
    for kind, offset in (("play", 0), ("stop", 1200)):
        response = await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset), style=style))
        assert response.status == 202, await response.text()
        assert (await response.json())["status"] == "accepted"
    await bridge.settle()

    fresh = await assert_healed(bridge, rating_key)
    assert len(bridge.provider.resolve_calls) == 1
    assert_one_partial_scan(bridge)
    assert quote_plus(SEASON_SERVER) == "%2Fdata%2Ftv%2FShow%3A+Part+%26+Co+%282020%29%2FSeason+01"
    assert bridge.plex.calls_to(f"/library/metadata/{rating_key}", "GET")  # the part file was asked of Plex
    assert bridge.services.store.by_path(str(path))["plex_rating_key"] == str(rating_key)
    [stop, play] = (await bridge.events())[:2]
    assert (play["kind"], play["outcome"]) == ("start", "no_failure")
    assert (stop["kind"], stop["outcome"], stop["match_rule"], stop["error"]) == ("stop", "refreshed", "strm_path", None)

    # the same failure again inside the cooldown: no second resolve, no second scan
    for kind, offset in (("play", 0), ("stop", 900)):
        await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset), style=style))
    await bridge.settle()
    assert len(bridge.provider.resolve_calls) == 1 and read_strm(path) == fresh
    assert_one_partial_scan(bridge)


async def test_plex_stop_after_watching_is_no_failure(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(2)
    await bridge.post_plex(plex_multipart(plex_payload("play", rating_key)))
    await bridge.post_plex(plex_multipart(plex_payload("stop", rating_key, view_offset=600_000)))
    await bridge.settle()
    await assert_untouched(bridge, rating_key)


# ---- 2. Tautulli -------------------------------------------------------------------------------------------
async def test_tautulli_on_error_is_healed_with_one_scan(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(3)
    file = f"{SEASON_SERVER}/{path.name}"
    response = await bridge.post_tautulli(tautulli_body("on_error", rating_key, file))
    assert response.status == 202, await response.text()
    await bridge.settle()
    await assert_healed(bridge, rating_key)
    assert_one_partial_scan(bridge)
    [event] = await bridge.events()
    assert (event["source"], event["kind"], event["outcome"], event["match_rule"]) == ("tautulli", "error", "refreshed", "strm_path")
    # Tautulli sent the file: Plex was never asked for the item, only for its sections and the scan
    assert bridge.plex.calls_to(f"/library/metadata/{rating_key}") == []


async def test_tautulli_on_stop_after_on_play_is_healed(bridge: Bridge) -> None:
    rating_key, path, expired = bridge.add_episode(4)
    file = f"{SEASON_SERVER}/{path.name}"
    play = await bridge.post_tautulli(tautulli_body("on_play", rating_key, file), headers={}, query=f"?token={TAUTULLI_HOOK}")
    stop = await bridge.post_tautulli(tautulli_body("on_stop", rating_key, file, view_offset="3400"),
                                      headers={"X-Api-Key": TAUTULLI_HOOK})
    assert (play.status, stop.status) == (202, 202)
    await bridge.settle()
    await assert_healed(bridge, rating_key)
    assert len(bridge.provider.resolve_calls) == 1
    assert_one_partial_scan(bridge)


# ---- 3. the notification websocket -------------------------------------------------------------------------
async def test_websocket_error_state_is_healed_with_one_scan(make_bridge: Callable[..., Awaitable[Bridge]]) -> None:
    bridge = await make_bridge(listen_alerts=True)
    rating_key, path, expired = bridge.add_episode(5)
    await bridge.plex.wait_for_connections(1)
    await wait_for(lambda: bridge.plex.open_sockets == 1)
    assert await bridge.plex.push(play_state_notification(rating_key, 27, state="playing")) == 1
    assert await bridge.plex.push(play_state_notification(rating_key, 27, state="error", view_offset=800)) == 1
    await wait_for(lambda: bridge.event_count() >= 1)
    await bridge.settle()

    await assert_healed(bridge, rating_key)
    assert_one_partial_scan(bridge)
    [event] = await bridge.events()  # the "playing" notification is no event at all
    assert (event["source"], event["kind"], event["item_id"], event["outcome"]) == ("plex", "error", str(rating_key), "refreshed")

    await bridge.client.close()  # stops the app: the listener thread must end with it
    await wait_for(lambda: not [t for t in threading.enumerate() if t.name == "plex-alert-listener" and t.is_alive()])
    await wait_for(lambda: bridge.plex.open_sockets == 0)


# ---- 5. coalescing -----------------------------------------------------------------------------------------
async def test_twenty_failures_in_one_folder_make_one_scan(make_bridge: Callable[..., Awaitable[Bridge]]) -> None:
    bridge = await make_bridge(debounce=2.0)
    keys = [bridge.add_episode(episode)[0] for episode in range(1, 21)]
    for rating_key in keys:
        for kind, offset in (("play", 0), ("stop", 1500)):
            response = await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset,
                                                                          player=f"player-{rating_key}"), thumb=None))
            assert response.status == 202
    await bridge.services.processor.drain()
    for rating_key in keys:
        await assert_healed(bridge, rating_key)
    assert len(bridge.provider.resolve_calls) == 20

    queued = bridge.services.rescan.pending()
    assert [(row["target"], row["key"], json.loads(row["payload"])) for row in queued] == [
        ("plex", SEASON_SERVER, {"path": SEASON_SERVER, "section": 1})
    ]
    assert await bridge.services.rescan.run_due() == 0  # still inside the debounce: nothing sent yet
    assert bridge.scans() == []
    await wait_for(lambda: len(bridge.scans()) >= 1, timeout=6.0)  # the app's own worker sends it when due
    await asyncio.sleep(0.6)  # one more worker poll: nothing else follows
    assert_one_partial_scan(bridge)
    assert bridge.services.rescan.pending() == []


# ---- 6. negatives ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong-token", f"?token={TAUTULLI_HOOK}"])
async def test_plex_webhook_needs_its_query_token(bridge: Bridge, query: str) -> None:
    rating_key, path, expired = bridge.add_episode(6)
    for kind, offset in (("play", 0), ("stop", 1000)):
        response = await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset)), query=query)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    await bridge.settle()
    assert bridge.event_count() == 0
    await assert_untouched(bridge, rating_key)


async def test_api_token_also_opens_the_plex_webhook(bridge: Bridge) -> None:
    response = await bridge.post_plex(plex_multipart(plex_payload("play", 1)), query=f"?token={bridge.services.api_token}")
    assert response.status == 202


@pytest.mark.parametrize("case", ["no_payload", "payload_not_json", "rating_key_not_a_number", "not_multipart"])
async def test_malformed_plex_bodies_are_refused(bridge: Bridge, case: str) -> None:
    rating_key, path, expired = bridge.add_episode(7)
    body: Any
    if case == "no_payload":
        body = plex_multipart(None)
    elif case == "payload_not_json":
        body = plex_multipart('{"event": "media.stop", "Metadata": {"ratingKey": ')
    elif case == "rating_key_not_a_number":
        body = plex_multipart(plex_payload("stop", "47x1"))
    else:
        body = aiohttp.FormData({"payload": json.dumps(plex_payload("stop", rating_key))})  # urlencoded
    await bridge.post_plex(plex_multipart(plex_payload("play", rating_key)))  # a start that the bad stop would pair with
    response = await bridge.post_plex(body)
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid_payload" and answer["detail"]
    await bridge.settle()
    assert bridge.event_count() == 1  # only the start was stored
    await assert_untouched(bridge, rating_key)


async def test_items_without_a_usable_part_write_nothing(bridge: Bridge) -> None:
    no_part, path, expired = bridge.add_episode(8, files=[])
    elsewhere, other_path, other_url = bridge.add_episode(9, files=["/mnt/elsewhere/Show - S01E09.strm"])
    for rating_key in (no_part, elsewhere, 999_999):  # the last one is unknown to Plex
        for kind, offset in (("play", 0), ("stop", 800)):
            await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset), thumb=None))
    await bridge.settle()
    stops = {e["item_id"]: e for e in await bridge.events() if e["kind"] == "stop"}
    assert (stops[str(no_part)]["outcome"], stops[str(no_part)]["error"]) == ("unmatched", "item has no media part")
    # a part outside library.roots is refused by name: nothing else (identity) may be matched for it
    assert stops[str(elsewhere)]["outcome"] == "unmatched" and "outside the library roots" in stops[str(elsewhere)]["error"]
    assert stops["999999"]["outcome"] == "unmatched" and "Plex has no item 999999" in stops["999999"]["error"]
    await assert_untouched(bridge, no_part)
    await assert_untouched(bridge, elsewhere)


async def test_folder_outside_every_section_is_healed_but_not_scanned(bridge: Bridge,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="integrations.plex.target")
    rating_key, path, expired = bridge.add_episode(10, folder="unsorted/Show/Season 01")
    for kind, offset in (("play", 0), ("stop", 700)):
        await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset)))
    await bridge.services.processor.drain()
    await assert_healed(bridge, rating_key)  # the link is fixed either way
    assert bridge.services.rescan.pending() == []  # nothing queued ...
    await bridge.services.rescan.flush()
    assert bridge.scans() == []  # ... nothing sent
    assert any("/data/unsorted/Show/Season 01" in r.getMessage() and "not inside any Plex library location" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("outage", ["401", "down"])
async def test_scan_waits_while_plex_refuses_or_is_down_even_across_restart(
        make_bridge: Callable[..., Awaitable[Bridge]], tmp_path: Path, library_root: Path, aiohttp_client: Any,
        outage: str) -> None:
    bridge = await make_bridge()
    rating_key, path, expired = bridge.add_episode(11)
    for kind, offset in (("play", 0), ("stop", 500)):
        await bridge.post_plex(plex_multipart(plex_payload(kind, rating_key, view_offset=offset)))
    await bridge.services.processor.drain()  # located and healed while Plex was up
    await assert_healed(bridge, rating_key)
    if outage == "401":
        bridge.plex.fail_with(401)
    else:
        await bridge.plex.stop()
    assert await bridge.services.rescan.flush() == 0
    [row] = bridge.services.rescan.pending()
    assert (row["target"], row["key"]) == ("plex", SEASON_SERVER)
    assert row["attempts"] >= 1 and row["last_error"]
    assert ("401" in row["last_error"] or "Unauthorized" in row["last_error"]) if outage == "401" \
        else "unreachable" in row["last_error"]
    assert PLEX_TOKEN not in row["last_error"]
    await bridge.client.close()  # the bridge stops with the scan still queued

    if outage == "401":
        bridge.plex.fail_with(None)
    else:
        await bridge.plex.start()  # same port
    bridge.plex.calls.clear()
    services = make_services(tmp_path, bridge.text, roots=[library_root])
    client = await aiohttp_client(create_app(services))
    restarted = Bridge(bridge.plex, bridge.provider, services, client, library_root, bridge.text)
    assert len(services.rescan.pending()) == 1
    await services.rescan.flush()
    assert services.rescan.pending() == []
    assert_one_partial_scan(restarted)
    assert len(bridge.provider.resolve_calls) == 1  # the restart resolved nothing again
    await client.close()
