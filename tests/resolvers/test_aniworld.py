"""The aniworld resolver runs the real package code; only its network edge is replaced.

Seams (aniworld 5.3.0): `aniworld.config.GLOBAL_SESSION.get` (episode page and /redirect/ for aniworld.to),
`aniworld.models.s_to.http._session` (serienstream pages and /r links), and the hoster extractors in
`aniworld.extractors.provider_functions` (they fetch the hoster embed page). Everything between those
(URL validation, page parsing, language/provider selection, redirect handling, extractor dispatch) is real.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

aniworld = pytest.importorskip("aniworld")

import aniworld.config as aniworld_config  # noqa: E402
import aniworld.extractors as aniworld_extractors  # noqa: E402
import aniworld.models.s_to.http as sto_http  # noqa: E402

from bridge.resolvers.aniworld import AniworldResolver, episode_url, language_label  # noqa: E402
from bridge.resolvers.base import EpisodeNotFound, ResolverError  # noqa: E402
from bridge.resolvers.registry import create_resolver  # noqa: E402
from tests.resolvers.util import make_request  # noqa: E402

ANIWORLD_PAGE = "https://aniworld.to/anime/stream/highschool-dxd/staffel-1/episode-2"
STO_PAGE = "https://serienstream.to/serie/breaking-bad/staffel-2/episode-3"

# Lang keys: 1 German Dub, 2 English Sub, 3 German Sub (aniworld config.LANG_LABELS).
LINKS = {
    "1": {"VOE": 1001, "Filemoon": 1002, "Vidmoly": 1003},
    "2": {"VOE": 2001},
    "3": {"VOE": 3001, "Doodstream": 3002},
}


def aniworld_html(links: dict[str, dict[str, int]]) -> str:
    items = []
    for lang_key, providers in links.items():
        for provider, link_id in providers.items():
            items.append(
                f'<li class="col-md-3 episodeLink{link_id}" data-lang-key="{lang_key}" data-link-id="{link_id}"'
                f' data-link-target="/redirect/{link_id}" data-external-embed="false"><div>'
                f'<a class="watchEpisode" itemprop="url" href="/redirect/{link_id}" target="_blank">'
                f'<i class="icon {provider}" title="Hoster {provider}"></i><h4>{provider}</h4>'
                '<div class="hosterSiteVideoButton">Video öffnen</div></a></div></li>'
            )
    return '<html><body><ul class="row">' + "\n".join(items) + "</ul></body></html>"


@dataclass
class FakeResponse:
    url: str
    text: str = ""
    status_code: int = 200

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


@dataclass
class FakeWeb:
    """What the package would have fetched: pages by URL, redirects to embed URLs, extractor results."""

    pages: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    streams: dict[str, str | Exception] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    extracted: list[tuple[str, str]] = field(default_factory=list)

    def get(self, url: str, *args: Any, **kwargs: Any) -> FakeResponse:
        self.fetched.append(url)
        if url in self.pages:
            return FakeResponse(url=url, text=self.pages[url])
        if url in self.redirects:
            return FakeResponse(url=self.redirects[url], text="<html>hoster</html>")
        raise AssertionError(f"unexpected network access: {url}")

    def extractor(self, provider: str) -> Callable[[str], str]:
        def extract(embed_url: str) -> str:
            self.extracted.append((provider, embed_url))
            result = self.streams.get(embed_url)
            if isinstance(result, Exception):
                raise result
            if result is None:
                raise ValueError(f"no stream found at {embed_url}")
            return result

        return extract


@pytest.fixture
def web(monkeypatch: pytest.MonkeyPatch) -> FakeWeb:
    fake = FakeWeb()
    monkeypatch.setattr(aniworld_config.GLOBAL_SESSION, "get", fake.get)

    class StoSession:
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}

        def get(self, url: str, **kwargs: Any) -> FakeResponse:
            return fake.get(url)

    monkeypatch.setattr(sto_http, "_session", lambda: StoSession())
    for provider in ("voe", "filemoon", "vidmoly", "vidoza", "doodstream"):
        monkeypatch.setitem(aniworld_extractors.provider_functions, f"get_direct_link_from_{provider}", fake.extractor(provider))
    return fake


def aniworld_site(web: FakeWeb) -> None:
    web.pages[ANIWORLD_PAGE] = aniworld_html(LINKS)
    for providers in LINKS.values():
        for provider, link_id in providers.items():
            embed = f"https://{provider.lower()}.example/e/{link_id}"
            web.redirects[f"https://aniworld.to/redirect/{link_id}"] = embed
            web.streams[embed] = f"https://cdn.{provider.lower()}.example/{link_id}/master.m3u8?t=tok&s=1&e=14400"


def aw_request(**kwargs: Any) -> Any:
    kwargs.setdefault("language", "German Dub")
    return make_request("highschool-dxd", 1, 2, site="aniworld.to", **kwargs)


def test_episode_urls_match_the_package_patterns() -> None:
    assert episode_url("aniworld.to", "highschool-dxd", 1, 2) == ANIWORLD_PAGE
    assert aniworld_config.ANIWORLD_EPISODE_PATTERN.match(ANIWORLD_PAGE)
    film = episode_url("aniworld.to", "highschool-dxd", 0, 1)
    assert film == "https://aniworld.to/anime/stream/highschool-dxd/filme/film-1"
    assert aniworld_config.ANIWORLD_EPISODE_PATTERN.match(film)
    sto = episode_url("s.to", "breaking-bad", 2, 3)
    assert sto == STO_PAGE
    assert aniworld_config.SERIENSTREAM_EPISODE_PATTERN.match(sto)
    # The brief's /serie/stream/ form is what 5.3.0 rejects:
    assert not aniworld_config.SERIENSTREAM_EPISODE_PATTERN.match("https://s.to/serie/stream/breaking-bad/staffel-2/episode-3")


@pytest.mark.parametrize(
    ("value", "label"),
    [("German Dub", "German Dub"), ("de", "German Dub"), ("GER", "German Dub"), ("ger-sub", "German Sub"),
     ("English Sub", "English Sub"), ("en_sub", "English Sub"), ("en", "English Dub"), ("4", "English Dub"),
     ("klingon", None)],
)
def test_language_labels(value: str, label: str | None) -> None:
    assert language_label(value) == label
    if label is not None:
        assert label in aniworld_config.LANG_LABELS.values()


async def test_first_provider_that_works_wins_with_its_playback_headers(web: FakeWeb) -> None:
    aniworld_site(web)
    resolver = create_resolver("aniworld", {})
    resolved = await resolver.resolve(aw_request())
    assert resolved.url == "https://cdn.voe.example/1001/master.m3u8?t=tok&s=1&e=14400"
    assert resolved.provider == "VOE" and resolved.resolver == "aniworld"
    assert resolved.headers == aniworld_config.PROVIDER_HEADERS_W["VOE"]
    assert resolved.headers and resolved.headers["Referer"] == "https://voe.sx/"
    assert web.fetched == [ANIWORLD_PAGE, "https://aniworld.to/redirect/1001"]
    assert web.extracted == [("voe", "https://voe.example/e/1001")]


async def test_identity_provider_first_then_fallback_skipping_excluded(web: FakeWeb) -> None:
    aniworld_site(web)
    web.streams["https://vidmoly.example/e/1003"] = ValueError("Vidmoly says no")
    resolver = AniworldResolver({"providers": ["VOE", "Filemoon", "Vidmoly"]})
    resolved = await resolver.resolve(aw_request(provider="vidmoly", exclude_providers=("voe",)))
    assert resolved.provider == "Filemoon"
    assert resolved.url.startswith("https://cdn.filemoon.example/1002/")
    assert resolved.headers == aniworld_config.PROVIDER_HEADERS_W["Filemoon"]
    assert [provider for provider, _ in web.extracted] == ["vidmoly", "filemoon"]
    assert web.fetched.count(ANIWORLD_PAGE) == 1  # one page fetch serves every provider attempt


async def test_language_option_and_identity_language_pick_the_right_links(web: FakeWeb) -> None:
    aniworld_site(web)
    resolved = await AniworldResolver({}).resolve(aw_request(language="ger-sub", exclude_providers=("VOE",)))
    assert resolved.provider == "Doodstream" and "/3002/" in resolved.url
    forced = await AniworldResolver({"language": "English Sub"}).resolve(aw_request(language="German Dub"))
    assert forced.provider == "VOE" and "/2001/" in forced.url


async def test_all_providers_failing_lists_them(web: FakeWeb) -> None:
    aniworld_site(web)
    web.streams["https://voe.example/e/1001"] = RuntimeError("captcha wall at https://voe.sx/e/x?token=SECRET")
    web.streams["https://filemoon.example/e/1002"] = ValueError("gone")
    with pytest.raises(ResolverError) as caught:
        await AniworldResolver({"providers": ["VOE", "Filemoon", "Vidoza"]}).resolve(aw_request())
    message = str(caught.value)
    assert not isinstance(caught.value, EpisodeNotFound)
    assert "all providers failed" in message
    assert "VOE: RuntimeError: captcha wall" in message and "Filemoon: ValueError: gone" in message
    assert "Vidoza: ValueError" in message and "not available" in message  # not offered for this episode
    assert "SECRET" not in message


async def test_unreachable_page_fails_once_not_per_provider(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def down(url: str, *args: Any, **kwargs: Any) -> FakeResponse:
        calls.append(url)
        raise ConnectionError("name resolution failed for aniworld.to")

    monkeypatch.setattr(aniworld_config.GLOBAL_SESSION, "get", down)
    with pytest.raises(ResolverError, match="ConnectionError: name resolution failed"):
        await AniworldResolver({}).resolve(aw_request())
    assert calls == [ANIWORLD_PAGE]
    assert web.extracted == []


async def test_page_without_hosters(web: FakeWeb) -> None:
    web.pages[ANIWORLD_PAGE] = "<html><title>Just a moment...</title></html>"
    with pytest.raises(ResolverError, match="lists no hosters"):
        await AniworldResolver({}).resolve(aw_request())
    assert web.fetched == [ANIWORLD_PAGE]


async def test_every_provider_excluded(web: FakeWeb) -> None:
    with pytest.raises(ResolverError, match="every provider is excluded"):
        await AniworldResolver({"providers": ["VOE"]}).resolve(aw_request(exclude_providers=("VOE",)))
    assert web.fetched == []


async def test_serienstream_episode(web: FakeWeb) -> None:
    web.pages[STO_PAGE] = (
        '<div><button data-play-url="/r?t=abc" data-provider-name="VOE" data-language-label="Deutsch">VOE</button>'
        '<button data-play-url="/r?t=def" data-provider-name="VOE" data-language-label="Englisch">VOE</button></div>'
    )
    web.redirects["https://serienstream.to/r?t=abc"] = "https://voe.example/e/sto-de"
    web.streams["https://voe.example/e/sto-de"] = "https://cdn.voe.example/sto-de/master.m3u8"
    request = make_request("breaking-bad", 2, 3, site="s.to", language="de", provider="VOE")
    resolved = await AniworldResolver({}).resolve(request)
    assert resolved.url == "https://cdn.voe.example/sto-de/master.m3u8"
    assert resolved.provider == "VOE"
    assert web.fetched[0] == STO_PAGE


async def test_serienstream_has_no_subtitled_versions(web: FakeWeb) -> None:
    with pytest.raises(ResolverError, match="only German Dub and English Dub"):
        await AniworldResolver({}).resolve(make_request("breaking-bad", 2, 3, site="s.to", language="German Sub"))


async def test_other_sites_and_incomplete_identities_are_refused(web: FakeWeb) -> None:
    with pytest.raises(ResolverError, match="site .example.org. is not supported"):
        await AniworldResolver({}).resolve(make_request(site="example.org"))
    with pytest.raises(ResolverError, match="needs slug, season and episode"):
        await AniworldResolver({}).resolve(make_request(site="aniworld.to", episode=None))
    assert web.fetched == []


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^resolvers\.aniworld\.language: unknown language 'klingon'"):
        AniworldResolver({"language": "klingon"})
    with pytest.raises(ValueError, match=r"^resolvers\.anime\.providers: unknown provider\(s\) Streamtape"):
        create_resolver("anime", {"type": "aniworld", "providers": ["VOE", "Streamtape"]})


@pytest.mark.live
@pytest.mark.skipif(os.environ.get("STRM_BRIDGE_LIVE") != "1", reason="live: set STRM_BRIDGE_LIVE=1 (needs the internet)")
async def test_live_aniworld() -> None:
    resolver = AniworldResolver({"timeout_seconds": 120})
    resolved = await resolver.resolve(aw_request())
    assert resolved.url.startswith(("http://", "https://"))
    assert resolved.provider in ("VOE", "Filemoon", "Vidmoly", "Vidoza", "Doodstream")


# ---- routing by site -------------------------------------------------------------------------------------------
MEGAKINO_FILM = "https://megakino1.to/films/4711-der-film.html"
MEGAKINO_SERIAL = "https://megakino1.to/serials/815-die-serie.html"


class MegakinoWeb:
    """The megakino model fetches its page with `niquests.get` (a token request first); recorded here."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        self.fetched: list[str] = []

    def get(self, url: str, **kwargs: Any) -> FakeResponse:
        self.fetched.append(url)
        if url.endswith("/index.php?yg=token"):
            response = FakeResponse(url=url)
            response.cookies = {}  # type: ignore[attr-defined]
            return response
        if url in self.pages:
            return FakeResponse(url=url, text=self.pages[url])
        raise AssertionError(f"unexpected network access: {url}")


@pytest.fixture
def megakino(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> MegakinoWeb:
    import aniworld.models.megakino.series as megakino_series

    fake = MegakinoWeb({
        MEGAKINO_FILM: ('<div class="tabs-block__select"><span>VOE</span></div>'
                        '<div class="tabs-block__content"><iframe src="https://voe.sx/e/film"></iframe></div>'),
        MEGAKINO_SERIAL: ('<select class="flex-grow-1 se-select"><option value="ep1">Folge 1</option>'
                          '<option value="ep2">Folge 2</option></select>'
                          '<select id="ep1" class="mr-select"><option value="https://voe.sx/e/s-1">VOE</option></select>'
                          '<select id="ep2" class="mr-select"><option value="https://voe.sx/e/s-2">VOE</option></select>'),
    })
    monkeypatch.setattr(megakino_series.niquests, "get", fake.get)
    for name in ("film", "s-1", "s-2"):
        web.redirects[f"https://voe.sx/e/{name}"] = f"https://voe.example/e/{name}"
        web.streams[f"https://voe.example/e/{name}"] = f"https://cdn.voe.example/{name}/master.m3u8"
    return fake


def test_each_site_goes_to_its_own_pages() -> None:
    from aniworld.models import AniworldEpisode, MegaKinoEpisode, SerienstreamEpisode

    resolver = AniworldResolver({})
    targets = {site: resolver._target(make_request("x", 1, 2, site=site)) for site in
               ("aniworld.to", "AniWorld.to", "s.to", "serienstream.to")}
    assert targets["aniworld.to"][:2] == targets["AniWorld.to"][:2] == (
        AniworldEpisode, "https://aniworld.to/anime/stream/x/staffel-1/episode-2")
    assert targets["s.to"][:2] == targets["serienstream.to"][:2] == (
        SerienstreamEpisode, "https://serienstream.to/serie/x/staffel-1/episode-2")
    serial = resolver._target(make_request("die-serie", 1, 2, site="megakino", source_url=MEGAKINO_SERIAL))
    assert serial == (MegaKinoEpisode, MEGAKINO_SERIAL + "#mkep=2", "German Dub")
    film = resolver._target(make_request("der-film", None, None, site="megakino1.to", source_url=MEGAKINO_FILM))
    assert film == (MegaKinoEpisode, MEGAKINO_FILM, "German Dub")
    assert "megakino" in resolver.supported_sites()


async def test_megakino_film_and_serial_episode_resolve_through_the_package(web: FakeWeb, megakino: MegakinoWeb) -> None:
    resolver = AniworldResolver({})
    film = await resolver.resolve(make_request("der-film", None, None, site="megakino", source_url=MEGAKINO_FILM))
    assert film.url == "https://cdn.voe.example/film/master.m3u8" and film.provider == "VOE"
    episode = await resolver.resolve(make_request("die-serie", 1, 2, site="megakino", source_url=MEGAKINO_SERIAL))
    assert episode.url == "https://cdn.voe.example/s-2/master.m3u8"  # the second episode, not the first
    assert MEGAKINO_FILM in megakino.fetched and MEGAKINO_SERIAL in megakino.fetched
    assert not [u for u in web.fetched if "aniworld.to" in u or "serienstream" in u]  # nothing went to another site


@pytest.mark.parametrize("site, source_url, message", [
    ("burningseries.to", None, "site 'burningseries.to' is not supported"),
    ("", None, "site '' is not supported"),
    ("megakino", None, "megakino resolves only from the title's page URL"),
    ("megakino", "https://serienstream.to/serie/x/staffel-1/episode-2", "megakino resolves only from"),
])
async def test_unknown_sites_are_refused_naming_them(web: FakeWeb, site: str, source_url: str | None,
                                                     message: str) -> None:
    with pytest.raises(ResolverError, match=message):
        await AniworldResolver({}).resolve(make_request("x", 1, 2, site=site, source_url=source_url))
    assert web.fetched == []
    with pytest.raises(ResolverError, match="megakino offers only German Dub"):
        await AniworldResolver({}).resolve(make_request("x", 1, 2, site="megakino", language="English Sub",
                                                        source_url=MEGAKINO_FILM))


def test_episode_url_has_no_fallback_site() -> None:
    with pytest.raises(ValueError, match="no episode page rule for site 'megakino'"):
        episode_url("megakino", "x", 1, 2)
