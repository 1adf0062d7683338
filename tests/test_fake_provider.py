"""The fake provider must behave like the CDNs it stands for, or every test built on it proves nothing."""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bridge.timeutil import to_epoch
from tests.fakes.provider import FakeProvider, default_content

EPISODE = "naruto/1/2"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


def resolve_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "site": "aniworld.to",
        "slug": "naruto",
        "season": 1,
        "episode": 2,
        "language": "German Dub",
        "provider": "VOE",
        "source_url": "https://aniworld.to/anime/stream/naruto/staffel-1/episode-2",
        "strm_path": "/media/anime/Naruto/Season 01/Naruto S01E02.strm",
        "previous_url": "http://127.0.0.1:1/media/naruto/1/2?exp=1&sig=00",
        "reason": "playback_failed",
    }
    body.update(overrides)
    return body


async def get(session: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, bytes, dict[str, str]]:
    async with session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.read(), dict(response.headers)


# ------------------------------------------------------------------------------------------ media


async def test_signed_url_serves_the_episode(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    assert url.startswith(f"{fake_provider.base_url}/media/{EPISODE}?exp=")
    status, body, headers = await get(session, url)
    assert status == 200
    assert body == default_content(EPISODE) == fake_provider.content(EPISODE)
    assert len(body) == 64 * 1024
    assert headers["Content-Type"] == "video/mp4"
    assert body[4:8] == b"ftyp"
    # Distinct episodes carry distinct bytes, so a test can tell which one it was served.
    assert default_content("naruto/1/3") != body


async def test_custom_content(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode("movie/0/0", b"tiny film")
    status, body, _ = await get(session, fake_provider.sign("movie/0/0"))
    assert (status, body) == (200, b"tiny film")


async def test_head_returns_headers_only(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    async with session.head(fake_provider.sign(EPISODE)) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(64 * 1024)
        assert response.headers["Content-Type"] == "video/mp4"
        assert await response.read() == b""


async def test_range_requests(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    content = fake_provider.content(EPISODE)

    status, body, headers = await get(session, url, headers={"Range": "bytes=100-199"})
    assert (status, body, headers["Content-Range"]) == (206, content[100:200], "bytes 100-199/65536")

    status, body, headers = await get(session, url, headers={"Range": "bytes=0-0"})
    assert (status, body, headers["Content-Range"]) == (206, content[:1], "bytes 0-0/65536")

    status, body, headers = await get(session, url, headers={"Range": "bytes=65000-"})
    assert (status, body, headers["Content-Range"]) == (206, content[65000:], "bytes 65000-65535/65536")

    status, body, headers = await get(session, url, headers={"Range": "bytes=-10"})
    assert (status, body, headers["Content-Range"]) == (206, content[-10:], "bytes 65526-65535/65536")

    status, body, headers = await get(session, url, headers={"Range": "bytes=65530-99999"})
    assert (status, body) == (206, content[65530:])

    status, _, headers = await get(session, url, headers={"Range": "bytes=70000-70010"})
    assert (status, headers["Content-Range"]) == (416, "bytes */65536")


async def test_expired_url_is_forbidden(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    stale = fake_provider.sign(EPISODE, expires_at=time.time() - 5)
    assert (await get(session, stale))[0] == 403
    assert (await get(session, fake_provider.sign(EPISODE)))[0] == 200


async def test_url_dies_when_its_ttl_runs_out(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE, expires_at=time.time() + 1.0)  # exp is whole seconds: 0..1 s from now
    exp = int(parse_qs(urlsplit(url).query)["exp"][0])
    if exp - time.time() > 0.05:
        assert (await get(session, url))[0] == 200
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    assert (await get(session, url))[0] == 403


def test_sign_ttl_is_at_least_the_requested_lifetime(fake_provider: FakeProvider) -> None:
    before = time.time()
    exp = int(parse_qs(urlsplit(fake_provider.sign(EPISODE, 1)).query)["exp"][0])
    assert before + 1 <= exp <= time.time() + 2
    default_exp = int(parse_qs(urlsplit(fake_provider.sign(EPISODE)).query)["exp"][0])
    assert abs(default_exp - (before + 3600)) <= 2


async def test_tampered_signature_or_key_is_forbidden(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    fake_provider.add_episode("naruto/1/3")
    url = fake_provider.sign(EPISODE)
    later_exp = re.sub(r"exp=(\d+)", lambda m: f"exp={int(m.group(1)) + 1000}", url)
    other_key = url.replace("/1/2?", "/1/3?")
    no_sig = url.split("&sig=")[0]
    for bad in (later_exp, other_key, no_sig):
        assert (await get(session, bad))[0] == 403, bad


async def test_expire_all_kills_old_urls_only(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    old = fake_provider.sign(EPISODE)
    assert (await get(session, old))[0] == 200
    fake_provider.expire_all()
    assert (await get(session, old))[0] == 403
    assert (await get(session, fake_provider.sign(EPISODE)))[0] == 200


async def test_removed_or_unknown_episode_is_404(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    fake_provider.remove_episode(EPISODE)
    assert (await get(session, url))[0] == 404
    assert (await get(session, fake_provider.sign("bleach/1/1")))[0] == 404


async def test_modes_force_answers(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    fake_provider.set_mode(EPISODE, "legal")
    assert (await get(session, url))[0] == 451
    fake_provider.set_mode(EPISODE, "error")
    assert (await get(session, url))[0] == 500
    fake_provider.set_mode(EPISODE, "hang")
    with pytest.raises(asyncio.TimeoutError):
        await get(session, url, timeout=aiohttp.ClientTimeout(total=0.2))
    fake_provider.set_mode(EPISODE, None)
    assert (await get(session, url))[0] == 200
    with pytest.raises(ValueError):
        fake_provider.set_mode(EPISODE, "explode")


async def test_close_is_prompt_with_a_request_still_hanging(session: aiohttp.ClientSession) -> None:
    provider = FakeProvider()
    await provider.start()
    provider.add_episode(EPISODE)
    provider.set_mode(EPISODE, "hang")
    pending = asyncio.ensure_future(get(session, provider.sign(EPISODE)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await provider.close()
    assert time.monotonic() - started < 1.5
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def test_media_requests_are_recorded(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    await get(session, url)
    async with session.head(url):
        pass
    fake_provider.set_mode(EPISODE, "hang")
    with pytest.raises(asyncio.TimeoutError):
        await get(session, url, timeout=aiohttp.ClientTimeout(total=0.1))
    path = url.removeprefix(fake_provider.base_url)
    assert fake_provider.media_requests == [("GET", path, 200), ("HEAD", path, 200), ("GET", path, 0)]


async def test_rate_limit_answers_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    async with FakeProvider(rate_limit=3, rate_window=0.3, retry_after=9) as provider:
        provider.add_episode(EPISODE)
        url = provider.sign(EPISODE)
        answers = [await get(session, url) for _ in range(5)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
        assert answers[3][2]["Retry-After"] == "9"
        await asyncio.sleep(0.35)  # the window slides past the burst
        assert (await get(session, url))[0] == 200
        assert [status for _, _, status in provider.media_requests] == [200, 200, 200, 429, 429, 200]


async def test_no_rate_limit_by_default(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    url = fake_provider.sign(EPISODE)
    statuses = [(await get(session, url))[0] for _ in range(30)]
    assert set(statuses) == {200}


# ------------------------------------------------------------------------------------------ resolver protocol


async def test_resolve_returns_a_playable_signed_url(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    body = resolve_body()
    async with session.post(f"{fake_provider.base_url}/resolve", json=body) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["provider"] == "fake"
    assert answer["url"].startswith(f"{fake_provider.base_url}/media/{EPISODE}?exp=")
    exp = int(parse_qs(urlsplit(answer["url"]).query)["exp"][0])
    assert to_epoch(answer["expires_at"]) == exp
    assert abs(exp - (time.time() + fake_provider.ttl)) <= 2
    assert answer["expires_at"].endswith("Z")
    assert fake_provider.resolve_calls == [body]
    status, content, _ = await get(session, answer["url"])
    assert (status, content) == (200, fake_provider.content(EPISODE))


async def test_resolve_honours_ttl(session: aiohttp.ClientSession) -> None:
    async with FakeProvider(ttl=1) as provider:
        provider.add_episode(EPISODE)
        async with session.post(f"{provider.base_url}/resolve", json=resolve_body()) as response:
            answer = await response.json()
        assert 0 < to_epoch(answer["expires_at"]) - time.time() <= 2.01


async def test_resolve_unknown_episode_is_404(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    async with session.post(f"{fake_provider.base_url}/resolve", json=resolve_body(episode=99)) as response:
        assert response.status == 404
        assert await response.json() == {"error": "not found"}
    assert fake_provider.resolve_calls[-1]["episode"] == 99


async def test_resolve_rejects_a_body_that_is_not_an_object(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    async with session.post(f"{fake_provider.base_url}/resolve", data=b"{broken") as response:
        assert response.status == 400
    assert fake_provider.resolve_calls == [{"_raw": "{broken"}]


async def test_resolve_modes(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    endpoint = f"{fake_provider.base_url}/resolve"

    fake_provider.resolve_mode = "error"
    async with session.post(endpoint, json=resolve_body()) as response:
        assert response.status == 500

    fake_provider.resolve_mode = "bad_url"
    async with session.post(endpoint, json=resolve_body()) as response:
        assert (response.status, await response.json()) == (200, {"url": "ftp://x"})

    fake_provider.resolve_mode = "not_json"
    async with session.post(endpoint, json=resolve_body()) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()

    fake_provider.resolve_mode = "huge"
    async with session.post(endpoint, json=resolve_body()) as response:
        assert response.status == 200
        raw = await response.read()
    assert len(raw) > 10 * 1024 * 1024
    assert raw.startswith(b"{")

    fake_provider.resolve_mode = "hang"
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(endpoint, json=resolve_body(), timeout=aiohttp.ClientTimeout(total=0.2)):
            pass

    fake_provider.resolve_mode = None
    async with session.post(endpoint, json=resolve_body()) as response:
        assert response.status == 200
    assert len(fake_provider.resolve_calls) == 6


# ------------------------------------------------------------------------------------------ indirections


async def test_stable_redirect_hands_out_fresh_urls(
    session: aiohttp.ClientSession, fake_provider: FakeProvider
) -> None:
    fake_provider.add_episode(EPISODE)
    stable = f"{fake_provider.base_url}/d/{EPISODE}"
    async with session.get(stable, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(f"{fake_provider.base_url}/media/{EPISODE}?exp=")

    fake_provider.expire_all()
    assert (await get(session, location))[0] == 403
    status, body, _ = await get(session, stable)  # follows the redirect to a newly signed URL
    assert (status, body) == (200, fake_provider.content(EPISODE))
    assert fake_provider.redirect_calls == 2

    fake_provider.remove_episode(EPISODE)
    assert (await get(session, stable))[0] == 404
    assert fake_provider.redirect_calls == 3


async def test_page_embeds_a_playable_video(session: aiohttp.ClientSession, fake_provider: FakeProvider) -> None:
    fake_provider.add_episode(EPISODE)
    status, page, headers = await get(session, f"{fake_provider.base_url}/page/{EPISODE}")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    text = page.decode()
    video = re.search(r'<video[^>]*\ssrc="([^"]+)"', text)
    og = re.search(r'<meta property="og:video" content="([^"]+)"', text)
    assert video is not None and og is not None
    src = unescape(video.group(1))
    assert src.startswith(f"{fake_provider.base_url}/media/{EPISODE}?exp=")
    assert unescape(og.group(1)) == src
    assert (await get(session, src))[0] == 200
    assert (await get(session, f"{fake_provider.base_url}/page/bleach/1/1"))[0] == 404
