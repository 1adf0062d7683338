import json
import os
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from bridge.db import open_database
from bridge.mappings import MappingStore


def make_tree(root: Path) -> None:
    anibridge = root / "Anime" / "Frieren (2023)" / "Season 1"
    anibridge.mkdir(parents=True)
    for e in range(1, 4):
        (anibridge / f"Frieren.S01E0{e}.720p.WEB.H264.GER-ANIWORLD [STRM].strm").write_text(
            f"http://anibridge.local:8000/strm/stream?site=aniworld.to&slug=frieren&s=1&e={e}&lang=German+Dub&provider=VOE&sig=x\n"
        )
    named = root / "TV" / "Some Show" / "Season 02"
    named.mkdir(parents=True)
    for e in range(1, 3):
        (named / f"Some Show - S02E{e:02d} - Title.strm").write_text(f"#comment\nhttps://cdn.test/show/2/{e}.mp4\n")
    (named / "broken.strm").write_text("just text\n")
    (named / "empty.strm").write_text("# nothing\n")
    (named / "notes.txt").write_text("ignored")
    unreadable = named / "locked.strm"
    unreadable.write_text("http://x/1\n")
    os.chmod(unreadable, 0)


def run(args: list[str], config: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.stdout, result.stderr


def test_import_tree(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    make_tree(root)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{root}"]\n')
    code, out, err = run(["import", str(root / "Anime"), "--json"], config)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["found"] == 3 and report["created"] == 3 and report["errors"] == []
    code, out, err = run(["import", str(root / "TV"), "--site", "s.to", "--language", "German Dub"], config)
    assert code == 1  # some files could not be imported: something asked for failed
    as_root = os.geteuid() == 0  # root reads mode-000 files anyway
    assert f"found 5, created {3 if as_root else 2}" in out
    assert "broken.strm: invalid URL" in err and "empty.strm: file holds no URL" in err
    if not as_root:
        assert "locked.strm: cannot read" in err

    store = MappingStore(open_database(tmp_path / "db.sqlite"))
    frieren = store.by_series("aniworld.to", "frieren")
    assert [(m["season"], m["episode"], m["language"], m["provider"]) for m in frieren] == [
        (1, 1, "German Dub", "VOE"), (1, 2, "German Dub", "VOE"), (1, 3, "German Dub", "VOE")]
    assert frieren[0]["source_url"].startswith("http://anibridge.local:8000/strm/stream?")
    show = [m for m in store.by_series("s.to", "some-show") if not m["strm_path"].endswith("locked.strm")]
    assert [(m["season"], m["episode"]) for m in show] == [(2, 1), (2, 2)]
    assert show[0]["resolved_url"] == "https://cdn.test/show/2/1.mp4"

    before = store.conn.execute("select max(updated_at) from mappings").fetchone()[0]
    code, out, _ = run(["import", str(root / "Anime"), "--json"], config)
    assert json.loads(out)["unchanged"] == 3 and json.loads(out)["created"] == 0
    assert store.conn.execute("select max(updated_at) from mappings").fetchone()[0] == before
    assert store.count() == 5 + (1 if as_root else 0)

    code, out, _ = run(["mappings", "list", "--slug", "frieren"], config)
    assert code == 0 and "3 of 3 mapping(s)" in out and "frieren" in out
    code, out, _ = run(["mappings", "show", str(frieren[1]["id"]), "--json"], config)
    assert json.loads(out)["episode"] == 2
    code, out, err = run(["mappings", "show", "9999"], config)
    assert code == 1 and "no mapping" in err


def test_progress_bar_on_large_tree(tmp_path: Path) -> None:
    root = tmp_path / "big" / "Show" / "Season 1"
    root.mkdir(parents=True)
    for e in range(1, 301):
        (root / f"Show S01E{e:03d}.strm").write_text(f"http://cdn.test/{e}\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "db.sqlite"}"\n[library]\nroots = ["{tmp_path / "big"}"]\n')
    code, out, err = run(["import", str(tmp_path / "big"), "--slug", "show", "--progress"], config)
    assert code == 0 and "created 300" in out
    assert "300/300" in err  # tqdm's final line


def test_config_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 'x'\n")
    code, out, err = run(["mappings", "list"], config)
    assert code == 2  # a configuration error is a usage error
    assert "server.port" in err and err.strip().count("\n") == 0


def test_migrate_list(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "m.db"}"\n')
    code, out, _ = run(["migrate", "--list"], config)
    assert code == 0 and "[ ] m001_initial  (pending)" in out
    code, out, _ = run(["migrate"], config)
    assert "[x] m001_initial" in out and "pending" not in out
