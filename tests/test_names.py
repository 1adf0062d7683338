"""bridge.names against AniBridge's own naming (tests/anibridge_library.py rebuilds it) and Sonarr/Radarr names."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.matching import slugify
from bridge.names import merge_scene_name, parse_library_name, parse_path, parse_release, strip_strm
from tests.anibridge_library import EPISODES, FILM, LANG_TAGS, Episode, release_name, sanitize


@pytest.mark.parametrize("name, expected", [
    ("Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD [STRM].strm",
     ("spy-x-family", 1, 1, "German Sub", "aniworld.to")),
    ("Spy.x.Family.S01E01.1080p.WEB.H264.GER-ANIWORLD [STRM].2.strm", ("spy-x-family", 1, 1, "German Dub", "aniworld.to")),
    ("9.1.1.S02E01.720p.WEB.H264.ENG-STO [STRM].strm", ("9-1-1", 2, 1, "English Dub", "s.to")),
    ("9.1.1.S02E01.720p.WEB.H264.ENG.SUB-STO [STRM].13.strm", ("9-1-1", 2, 1, "English Sub", "s.to")),
    ("Mob.Psycho.100.S03E12.SD.WEB.H265.GER-ANIWORLD [STRM].strm", ("mob-psycho-100", 3, 12, "German Dub", "aniworld.to")),
    ("Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD.strm", ("spy-x-family", 1, 1, "German Sub", "aniworld.to")),
    ("spy-x-family.S01E02.strm", ("spy-x-family", 1, 2, None, None)),  # AniBridge's fallback without a title
])
def test_anibridge_episode_names(name: str, expected: tuple) -> None:
    info = parse_release(name)
    assert info is not None and info.scheme == "anibridge"
    assert (info.slug, info.season, info.episode, info.language, info.site) == expected
    assert not info.movie


def test_anibridge_film_name() -> None:
    info = parse_release("Der.Tiger.2025.1080p.WEB.H264.GER-MEGAKINO [STRM].strm")
    assert info is not None and info.movie
    assert (info.site, info.slug, info.year, info.season, info.episode, info.language) == (
        "megakino", "der-tiger", 2025, None, None, "German Dub")


def test_strip_strm() -> None:
    assert strip_strm("A.S01E01-STO [STRM].2.strm") == "A.S01E01-STO"
    assert strip_strm("A.S01E01-STO [STRM].strm") == "A.S01E01-STO"
    assert strip_strm("Show - S01E01 - Pilot.strm") == "Show - S01E01 - Pilot"


@pytest.mark.parametrize("path, expected", [
    ("/tv/Spy x Family (2022)/Season 1/Spy x Family - S01E01 - Operation Strix WEBDL-1080p.strm",
     ("spy-x-family", 1, 1, 2022, False)),
    ("/tv/9-1-1 (2018)/Season 02/9-1-1 - S02E01 - 7.1 WEBDL-720p.strm", ("9-1-1", 2, 1, 2018, False)),
    ("/tv/Frieren {tvdb-424536}/Season 1/Frieren - S01E02-E03 - Title [WEBDL-1080p].strm", ("frieren", 1, 2, None, False)),
    ("/movies/Der Tiger (2025)/Der Tiger (2025) WEBDL-1080p.strm", ("der-tiger", None, None, 2025, True)),
    ("/movies/Das Boot (1981)/Das Boot (1981) {imdb-tt0082096}.strm", ("das-boot", None, None, 1981, True)),
])
def test_library_names(path: str, expected: tuple) -> None:
    info = parse_library_name(path)
    assert info is not None
    assert (info.slug, info.season, info.episode, info.year, info.movie) == expected
    assert info.site is None and info.language is None  # a renamed file has lost both
    assert parse_path(path) == info


def test_plain_names_fall_back_to_the_series_folder() -> None:
    info = parse_path("/tv/Some Show/Season 02/Some Show S02E05.strm")
    assert (info.slug, info.season, info.episode) == ("some-show", 2, 5)
    assert parse_path("/tv/Some Show/notes.strm").slug == "some-show"


def test_scene_name_fills_a_renamed_file() -> None:
    renamed = parse_path("/tv/Spy x Family (2022)/Season 1/Spy x Family - S01E01 - Operation Strix WEBDL-1080p.strm")
    merged = merge_scene_name(renamed, "Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD [STRM]")
    assert (merged.site, merged.slug, merged.season, merged.episode, merged.language) == (
        "aniworld.to", "spy-x-family", 1, 1, "German Sub")
    assert merge_scene_name(renamed, None) == renamed
    assert merge_scene_name(renamed, "not a release") == renamed


@pytest.mark.parametrize("ep", [*EPISODES, FILM], ids=lambda e: release_name(e))
def test_every_generated_name_reads_back(ep: Episode) -> None:
    info = parse_release(sanitize(release_name(ep) + " [STRM]") + ".2.strm")
    assert info is not None
    assert (info.site, info.slug, info.season, info.episode, info.language) == (
        ep.site, ep.slug, ep.season, ep.episode, ep.language)


titles = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .:-!'&"), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(title=titles, season=st.integers(0, 99), episode=st.integers(0, 999),
       language=st.sampled_from(sorted(set(LANG_TAGS) - {"Deutsch"})),
       site=st.sampled_from(["aniworld.to", "s.to", "megakino"]), height=st.sampled_from([480, 720, 1080, 2160, 0]),
       collision=st.integers(1, 20))
def test_any_anibridge_name_reads_back(title: str, season: int, episode: int, language: str, site: str, height: int,
                                       collision: int) -> None:
    ep = Episode(site=site, slug="", title=title, season=season, episode=episode, language=language, height=height)
    name = sanitize(release_name(ep) + " [STRM]") + (f".{collision}" if collision > 1 else "") + ".strm"
    info = parse_release(name)
    if not slugify(title):
        return  # AniBridge writes a name without a title part; nothing to read back as a slug
    assert info is not None, name
    assert (info.site, info.season, info.episode, info.language) == (site, season, episode, language), name
    assert info.slug == slugify(title), name
