"""Real media for the player tests, made once per session by Debian's ffmpeg: small and quick to decode."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
SECONDS = 8


@dataclass(frozen=True)
class Media:
    mp4_dir: Path
    """holds episode.mp4: 8 s, 320x240 H.264 + AAC, about 3 MB, moov first (faststart)."""
    hls_dir: Path
    """master.m3u8 naming two renditions v0/ (320x240) and v1/ (160x120), 2 s segments, AES-128 (enc.key)."""


def _run(args: list[str], cwd: Path) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], cwd=cwd, check=True, timeout=120)


def make_media(folder: Path) -> Media:
    mp4_dir, hls_dir = folder.resolve() / "mp4", folder.resolve() / "hls"
    mp4_dir.mkdir(parents=True)
    hls_dir.mkdir(parents=True)
    sources = ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={SECONDS}",
               "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={SECONDS}"]
    _run([*sources, "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "3M", "-g", "25", "-c:a", "aac", "-b:a", "32k",
          "-movflags", "+faststart", "-shortest", "episode.mp4"], mp4_dir)
    (hls_dir / "enc.key").write_bytes(os.urandom(16))
    # line 1: the key URI as the variant playlists name it (relative to v0/ and v1/); line 2: where the key is
    (hls_dir / "keyinfo").write_text(f"../enc.key\n{hls_dir / 'enc.key'}\n")
    _run([*sources, "-map", "0:v", "-map", "1:a", "-map", "0:v", "-map", "1:a",
          "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-b:a", "32k",
          "-filter:v:1", "scale=160:120", "-b:v:0", "400k", "-b:v:1", "150k",
          "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_key_info_file", "keyinfo",
          "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0 v:1,a:1",
          "-hls_segment_filename", "v%v/seg%d.ts", "v%v/index.m3u8"], hls_dir)
    (hls_dir / "keyinfo").unlink()
    return Media(mp4_dir, hls_dir)
