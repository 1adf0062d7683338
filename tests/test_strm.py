import os
import stat
import time
from pathlib import Path

import pytest

from bridge import strm
from bridge.strm import Library, parse_strm, read_strm, validate_url


def test_parse_like_jellyfin() -> None:
    assert parse_strm("#EXTM3U\n\n  \t http://a/b  \n http://c/d\n") == "http://a/b"
    assert parse_strm("# only comments\n\n") is None
    assert parse_strm("\ufeffhttp://x/y\r\n") is not None


@pytest.mark.parametrize("url", ["ftp://a/b", "/local/file.mkv", "http://", "http://a b/c", "http://a/b\nhttp://c",
                                 "file:///etc/passwd", "", "http://host:99999/x"])
def test_invalid_urls(url: str) -> None:
    with pytest.raises(strm.InvalidUrl):
        validate_url(url)


def test_valid_url() -> None:
    assert validate_url("https://cdn.example/v.m3u8?token=abc") == "https://cdn.example/v.m3u8?token=abc"


def test_write_content_and_read_back(library: Library, library_root: Path) -> None:
    target = library_root / "Show" / "S01E01.strm"
    target.parent.mkdir()
    assert library.write(target, "http://cdn.test/1.mp4") is True
    assert target.read_text() == "http://cdn.test/1.mp4\n"
    assert read_strm(target) == "http://cdn.test/1.mp4"
    assert [p.name for p in target.parent.iterdir()] == ["S01E01.strm"]  # no temp file left


def test_mode_kept_and_unchanged_skipped(library: Library, library_root: Path) -> None:
    target = library_root / "a.strm"
    target.write_text("http://old/1\n")
    os.chmod(target, 0o640)
    assert library.write(target, "http://new/1") is True
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    inode = os.stat(target).st_ino
    mtime = os.stat(target).st_mtime_ns
    assert library.write(target, "http://new/1") is False
    assert os.stat(target).st_ino == inode and os.stat(target).st_mtime_ns == mtime


def test_owner_kept_when_root(library: Library, library_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    target = library_root / "owned.strm"
    target.write_text("http://old/1\n")
    os.chown(target, 1234, 2345)
    library.write(target, "http://new/2")
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (1234, 2345)


def test_refusals_are_distinct(tmp_path: Path, library: Library, library_root: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (library_root / "link").symlink_to(outside)
    (outside / "x.strm").write_text("http://keep/1\n")
    cases = [
        (outside / "x.strm", strm.OutsideRoots),
        (f"{library_root}/sub/../../elsewhere/x.strm", strm.PathTraversal),
        (library_root / "link" / "x.strm", strm.SymlinkEscape),
        (library_root / "notes.txt", strm.NotStrmFile),
        ("relative/x.strm", strm.OutsideRoots),
    ]
    for path, error in cases:
        with pytest.raises(error):
            library.write(path, "http://new/1")
    assert (outside / "x.strm").read_text() == "http://keep/1\n"
    with pytest.raises(strm.InvalidUrl):
        library.write(library_root / "a.strm", "rtsp://cam/1")
    with pytest.raises(strm.NoRoots):
        Library([]).write(library_root / "a.strm", "http://x/1")
    assert not (library_root / "a.strm").exists()


def test_missing_anchor_refuses_every_write(library_root: Path) -> None:
    anchor = library_root / ".mounted"
    guarded = Library([str(library_root)], [str(anchor)])
    with pytest.raises(strm.AnchorMissing):
        guarded.write(library_root / "a.strm", "http://x/1")
    assert not (library_root / "a.strm").exists()
    anchor.touch()
    assert guarded.write(library_root / "a.strm", "http://x/1") is True


def test_crash_between_temp_write_and_rename_keeps_old_file(library: Library, library_root: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = library_root / "a.strm"
    target.write_text("http://old/1\n")

    def crash(src: str, dst: str, **dir_fds: int) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(strm.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        library.write(target, "http://new/1")
    assert target.read_text() == "http://old/1\n"
    assert [p.name for p in library_root.iterdir()] == ["a.strm"]


def test_killed_writer_leaves_old_file_and_temp_is_swept(library_root: Path) -> None:
    """A real SIGKILL after the temp file is written and synced, before os.replace."""
    import signal
    import subprocess
    import sys
    import textwrap

    target = library_root / "a.strm"
    target.write_text("http://old/1\n")
    script = textwrap.dedent(f"""
        import os, signal
        from bridge import strm
        def die(src, dst, **dir_fds):
            os.kill(os.getpid(), signal.SIGKILL)
        strm.os.replace = die
        strm.Library([{str(library_root)!r}]).write({str(target)!r}, "http://new/1")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "http://old/1\n"
    leftovers = [p.name for p in library_root.iterdir() if p.name != "a.strm"]
    assert len(leftovers) == 1 and strm.is_temp_name(leftovers[0]) and not leftovers[0].endswith(".strm")
    assert strm.remove_temp_files(library_root) == 1
    assert [p.name for p in library_root.iterdir()] == ["a.strm"]


def test_symlinks_inside_the_roots_are_followed(library: Library, library_root: Path) -> None:
    """A season folder or a file linked elsewhere inside the roots is written where it really lives."""
    real_season = library_root / "Real Season"
    real_season.mkdir()
    (library_root / "Season 01").symlink_to(real_season)
    (real_season / "e1.strm").write_text("http://old/1\n")
    assert library.write(library_root / "Season 01" / "e1.strm", "http://new/1") is True
    assert (real_season / "e1.strm").read_text() == "http://new/1\n"

    (library_root / "alias.strm").symlink_to(real_season / "e1.strm")
    assert library.write(library_root / "alias.strm", "http://new/2") is True
    assert (library_root / "alias.strm").is_symlink()  # the link stays a link; its target got the URL
    assert (real_season / "e1.strm").read_text() == "http://new/2\n"


def test_file_symlink_out_of_the_roots_is_refused(tmp_path: Path, library: Library, library_root: Path) -> None:
    outside = tmp_path / "outside.strm"
    outside.write_text("http://keep/1\n")
    (library_root / "escape.strm").symlink_to(outside)
    with pytest.raises(strm.SymlinkEscape):
        library.write(library_root / "escape.strm", "http://new/1")
    assert outside.read_text() == "http://keep/1\n"


def test_mode_wider_than_the_umask_is_kept(library: Library, library_root: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = library_root / "shared.strm"
    target.write_text("http://old/1\n")
    os.chmod(target, 0o666)
    old_mask = os.umask(0o022)
    monkeypatch.setattr(strm, "_UMASK", 0o022)
    try:
        assert library.write(target, "http://new/1") is True
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666


def test_same_size_different_content_is_written(library: Library, library_root: Path) -> None:
    target = library_root / "a.strm"
    target.write_text("http://old/1\n")
    assert library.write(target, "http://new/1") is True
    assert library.write(target, "http://new/2") is True
    assert target.read_text() == "http://new/2\n"


def test_first_write_in_a_folder_sweeps_temps_of_dead_writers(library: Library, library_root: Path) -> None:
    folder = library_root / "Season 01"
    folder.mkdir()
    (folder / "e1.strm").write_text("http://old/1\n")
    dead = folder / ".strm-bridge-e2.strm.999999999-abcd1234.tmp"  # a pid that cannot be alive
    older_format = folder / ".strm-bridge-e3.strm.abcd1234.tmp"
    fresh_older_format = folder / ".strm-bridge-e5.strm.abcd1234.tmp"
    ours = folder / f".strm-bridge-e4.strm.{os.getpid()}-abcd1234.tmp"  # a write of this process in flight
    other_live = folder / f".strm-bridge-e6.strm.{os.getppid()}-abcd1234.tmp"  # e.g. a CLI run beside the service
    for path in (dead, older_format, fresh_older_format, ours, other_live):
        path.write_text("http://partial")
    long_ago = time.time() - strm.ABANDONED_AFTER_SECONDS - 60
    os.utime(older_format, (long_ago, long_ago))
    assert library.write(folder / "e1.strm", "http://new/1") is True
    assert sorted(p.name for p in folder.iterdir()) == sorted(["e1.strm", ours.name, other_live.name,
                                                               fresh_older_format.name])
    dead.write_text("http://partial")  # appears after the sweep: left for crash recovery, not re-listed per write
    assert library.write(folder / "e1.strm", "http://new/2") is True
    assert dead.exists()
    assert strm.remove_temp_files(folder) == 4


def test_a_short_write_is_completed_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write less than asked; before, the rest was silently lost and the short file renamed."""
    import bridge.strm as strm_module

    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(strm_module.os, "write", short_write)
    url = "https://cdn.example/video.mp4?token=" + "x" * 200
    library = Library([str(tmp_path)])
    target = tmp_path / "S01E01.strm"
    library.write(str(target), url)
    assert target.read_text().strip() == url
    assert len(calls) > 1
