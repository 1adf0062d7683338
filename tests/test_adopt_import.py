"""`strm-bridge import` on a library written in AniBridge's exact naming (both modes) plus Sonarr-renamed copies."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.probe import expiry_iso
from tests.anibridge_library import COLLIDING, EPISODES, FILM, Episode, cdn_url, stable_link, write_strm

IDENTITY = ("site", "slug", "season", "episode", "language", "provider")


def run(args: list[str], config: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.stdout, result.stderr


def build_library(root: Path) -> dict[str, tuple[Episode, str]]:
    """Both AniBridge modes in flat download folders, a Sonarr-renamed copy, and a renamed file with no original."""
    written: dict[str, tuple[Episode, str]] = {}
    for i, ep in enumerate([*EPISODES, COLLIDING, FILM]):
        path = write_strm(root / "downloads-direct", ep, cdn_url(ep, i))
        written[str(path)] = (ep, "direct")
    for ep in [*EPISODES, COLLIDING]:
        path = write_strm(root / "downloads-proxy", ep, stable_link(ep, auth="apikey" if ep.season == 2 else "token"))
        written[str(path)] = (ep, "proxy")
    # Sonarr imported the first download by copy and renamed it into the series folder
    original = next(p for p, (ep, mode) in written.items() if mode == "direct" and ep == EPISODES[0])
    renamed = root / "tv" / "Spy x Family (2022)" / "Season 1" / "Spy x Family - S01E01 - Operation Strix WEBDL-1080p.strm"
    renamed.parent.mkdir(parents=True)
    shutil.copyfile(original, renamed)
    written[str(renamed)] = (EPISODES[0], "renamed")
    # Radarr imported the film by copy: `Title (Year)/Title (Year) …`, the title (not the folder) as identity
    film = next(p for p, (ep, mode) in written.items() if ep == FILM)
    movie = root / "movies" / "Der Tiger (2025)" / "Der Tiger (2025) WEBDL-1080p.strm"
    movie.parent.mkdir(parents=True)
    shutil.copyfile(film, movie)
    written[str(movie)] = (FILM, "renamed")
    # a renamed 9-1-1 episode whose original is gone: only an override can tell site and language
    lone = root / "tv" / "9-1-1 (2018)" / "Season 6" / "9-1-1 - S06E03 - Pinned WEBDL-1080p.strm"
    lone.parent.mkdir(parents=True)
    lone.write_text(cdn_url(EPISODES[6], 99) + "\n")
    written[str(lone)] = (EPISODES[6], "renamed")
    return written


def test_import_gets_every_identity_right(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    written = build_library(root)
    names = sorted(os.listdir(root / "downloads-direct"))
    assert "Spy.x.Family.S01E01.1080p.WEB.H264.GER.SUB-ANIWORLD [STRM].2.strm" in names  # the collision
    assert "9.1.1.S02E01.720p.WEB.H264.ENG-STO [STRM].strm" in names
    assert "Der.Tiger.2025.1080p.WEB.H264.GER-MEGAKINO [STRM].strm" in names
    assert {n.rsplit("-", 1)[0].split(".H26")[1] for n in names if ".S" in n} == {
        "4.GER.SUB", "4.GER", "4.ENG.SUB", "4.ENG", "5.GER.SUB"}  # all four language tags
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Elsewhere.S01E01.1080p.WEB.H264.GER-STO [STRM].strm").write_text("https://cdn.test/x.m3u8\n")
    os.symlink(outside / "Elsewhere.S01E01.1080p.WEB.H264.GER-STO [STRM].strm", root / "downloads-direct" / "link.strm")
    boot = root / "movies" / "Das Boot (1981)" / "Das Boot (1981) Bluray-1080p.strm"  # a film no name tells more of
    boot.parent.mkdir(parents=True)
    boot.write_text("https://cdn.test/boot.m3u8\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{root}"]\n'
        '[[library.series]]\nmatch = "9-1-1*"\nsite = "s.to"\nlanguage = "German Dub"\n')

    # the flags of the old complaint no longer turn s.to into aniworld or a Sub into a Dub
    code, out, err = run(["import", str(root), "--site", "aniworld.to", "--language", "German Dub", "--json"], config)
    assert code == 1, out + err  # the symlink out of the roots was asked for and refused
    report = json.loads(out)
    assert report["created"] == len(written) + 1 and report["updated"] == 0
    assert [e["path"] for e in report["errors"]] == [str(root / "downloads-direct" / "link.strm")]
    assert "outside the library roots" in report["errors"][0]["error"]

    store = MappingStore(open_database(tmp_path / "db.sqlite"))
    assert store.count() == len(written) + 1
    for path, (ep, mode) in written.items():
        row = store.by_path(path)
        assert row is not None, path
        got = {k: row[k] for k in IDENTITY}
        want = {"site": ep.site, "slug": ep.slug, "season": ep.season, "episode": ep.episode, "language": ep.language,
                "provider": ep.provider if mode == "proxy" else ""}
        assert got == want, (path, mode)
        if mode == "proxy":
            assert row["source_url"] == row["resolved_url"] and "/strm/stream?" in row["source_url"]
    lone_movie = store.by_path(str(root / "movies" / "Das Boot (1981)" / "Das Boot (1981) Bluray-1080p.strm"))
    # the title is its identity; site and language come from the flags, the only source that tells them here
    assert {k: lone_movie[k] for k in IDENTITY} == {"site": "aniworld.to", "slug": "das-boot", "season": None,
                                                    "episode": None, "language": "German Dub", "provider": ""}
    assert store.by_path(str(root / "downloads-direct" / "Der.Tiger.2025.1080p.WEB.H264.GER-MEGAKINO [STRM].strm"))[
        "expires_at"] == expiry_iso(cdn_url(FILM, 8))

    code, out, err = run(["import", str(root)], config)
    assert code == 1 and f"created 0, updated 0, unchanged {len(written) + 1}, errors 1" in out, out + err

    code, out, err = run(["import", str(outside)], config)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "outside the library roots" in err and "Traceback" not in err


def test_import_without_roots_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n')
    code, _, err = run(["import", str(folder)], config)
    assert code == 2 and "library.roots is not configured" in err and err.strip().count("\n") == 0


def test_stored_fields_are_never_erased(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    season = root / "Some Show" / "Season 1"
    season.mkdir(parents=True)
    file = season / "Some Show - S01E01 - Pilot.strm"
    file.write_text("https://cdn.test/a.m3u8?expires=1796000000\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{root}"]\n')
    code, out, _ = run(["import", str(root), "--site", "s.to", "--language", "German Dub"], config)
    assert "created 1" in out
    store = MappingStore(open_database(tmp_path / "db.sqlite"))
    row = store.by_path(str(file))
    assert (row["site"], row["slug"], row["language"]) == ("s.to", "some-show", "German Dub")
    # registered through the API: a provider the file does not tell
    store.upsert({"strm_path": str(file), "provider": "VOE", "slug": "some-show-2020"})

    code, out, _ = run(["import", str(root)], config)  # no flags this time
    assert "updated 0, unchanged 1" in out
    row = store.by_path(str(file))
    assert (row["site"], row["slug"], row["language"], row["provider"]) == ("s.to", "some-show-2020", "German Dub", "VOE")

    # a new URL in the file: stored, with its own expiry prediction, identity untouched
    old_expiry = row["expires_at"]
    file.write_text("https://cdn.test/b.m3u8?expires=1797000000\n")
    code, out, _ = run(["import", str(root)], config)
    assert "updated 1" in out
    row = store.by_path(str(file))
    assert row["resolved_url"].endswith("expires=1797000000") and row["expires_at"] == expiry_iso(row["resolved_url"])
    assert row["expires_at"] != old_expiry and row["state"] == "unknown" and row["slug"] == "some-show-2020"

    code, out, _ = run(["import", str(root), "--overwrite-identity", "--site", "aniworld.to"], config)
    assert "updated 1" in out
    row = store.by_path(str(file))
    assert (row["site"], row["slug"], row["language"], row["provider"]) == ("aniworld.to", "some-show", None, "")


def test_series_overrides_are_validated(tmp_path: Path) -> None:
    import pytest

    from bridge.config import ConfigError, load_config

    def load(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        path = tmp_path / "o.toml"
        path.write_text(text)
        return load_config(path, env=env or {})

    config = load('[[library.series]]\nmatch = "Spy*"\nsite = "aniworld.to"\nlanguage = "German Sub"\n')
    assert config.library.series[0].match == "Spy*" and config.library.series[0].language == "German Sub"
    from_env = load("", {"STRM_BRIDGE_LIBRARY_SERIES": '[{"match": "9-1-1*", "site": "s.to"}]'})
    assert from_env.library.series[0].site == "s.to"
    for text, message in (
        ('[[library.series]]\nsite = "s.to"\n', "library.series[0].match: missing or empty"),
        ('[[library.series]]\nmatch = "x"\n', "library.series[0]: sets nothing"),
        ('[[library.series]]\nmatch = "x"\nsite = "s.to"\ncolour = "red"\n', "unknown key 'colour'"),
        ('[[library.series]]\nmatch = "x"\nsite = 3\n', "library.series[0].site: expected a string"),
        ('[library]\nseries = ["x"]\n', "library.series[0]: a [[library.series]] entry must be a table"),
    ):
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load(text)


def test_a_stable_link_ranks_above_what_is_stored(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    ep = EPISODES[4]  # 9-1-1 S02E01 English Dub on s.to
    file = write_strm(root, ep, stable_link(ep))
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{root}"]\n')
    assert "created 1" in run(["import", str(root)], config)[1]
    store = MappingStore(open_database(tmp_path / "db.sqlite"))
    store.upsert({"strm_path": str(file), "slug": "nine-one-one", "language": "German Dub"})
    code, out, _ = run(["import", str(root)], config)
    assert code == 0 and "updated 1" in out
    row = store.by_path(str(file))
    assert (row["slug"], row["language"], row["provider"]) == ("9-1-1", "English Dub", "VOE")
