"""Writing a download folder the way AniBridge does, to test adoption against its exact naming.

Rebuilt from AniBridge's code (Zzackllack/AniBridge @a15ae93, read with `fetch`):
- release title: `apps/api/app/utils/naming.py::build_release_name`: the display title with every run of
  non-alphanumerics made one dot, `SxxEyy` (two digits, only when both numbers exist), the quality from the
  height (2160p/1440p/1080p/720p/480p/SD), `SOURCE_TAG` (WEB), the codec (H264/H265/AV1/VP9), the language
  tag (German Dub GER, German Sub GER.SUB, English Sub ENG.SUB, English Dub ENG, Deutsch GER), then
  `-` and the site's release group upper-cased (aniworld.to ANIWORLD, s.to STO, megakino MEGAKINO);
- Torznab adds ` [STRM]` to the title of STRM items (`api/torznab/api.py`, `strm_suffix`), and the qBittorrent
  shim passes that title on as `title_hint` (`api/qbittorrent/torrents.py`);
- file: `utils/strm.py::sanitize_strm_basename` (`sample`→`clip`, `\\/:*?"<>|`→`_`, whitespace/underscore
  runs→one space, leading dots stripped) and `allocate_unique_strm_path` (`X.strm`, then `X.2.strm`, `X.3.strm`
  in the flat `DOWNLOAD_DIR`); content `URL\\n`, written to `X.strm.tmp` then replaced (`core/scheduler.py`);
- proxy mode: `core/strm_proxy/urls.py::build_stream_url`: `{base}/strm/stream?` + the sorted, urlencoded
  `e, lang, provider (only when given), s, site, slug` and `sig` = HMAC-SHA256 hex of the same sorted query
  under the secret (`auth.py`, token mode); apikey mode appends `apikey=<secret>` instead.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

LANG_TAGS = {"German Dub": "GER", "German Sub": "GER.SUB", "English Sub": "ENG.SUB", "English Dub": "ENG",
             "Deutsch": "GER"}
GROUPS = {"aniworld.to": "aniworld", "s.to": "sto", "megakino": "megakino"}
BASE = "http://anibridge:8000"
SECRET = "anibridge-secret"


@dataclass(frozen=True)
class Episode:
    site: str
    slug: str
    title: str  # the site's display title
    season: int | None
    episode: int | None
    language: str
    provider: str = "VOE"
    height: int = 1080
    codec: str = "h264"


def _dots(text: str) -> str:
    return re.sub(r"\.+", ".", re.sub(r"[^A-Za-z0-9]+", ".", text.strip())).strip(".")


def release_name(ep: Episode) -> str:
    se = f"S{ep.season:02d}E{ep.episode:02d}" if ep.season is not None and ep.episode is not None else ""
    quality = next((q for h, q in ((2160, "2160p"), (1440, "1440p"), (1080, "1080p"), (720, "720p"), (480, "480p"))
                    if ep.height >= h), "SD")
    codec = "H265" if "265" in ep.codec or "hevc" in ep.codec else "H264"
    parts = [_dots(ep.title), se, quality, "WEB", codec, LANG_TAGS.get(ep.language, _dots(ep.language))]
    return ".".join(p for p in parts if p) + "-" + GROUPS[ep.site].upper()


def sanitize(name: str) -> str:
    base = name.strip() or "Episode"
    base = re.sub(r"(?i)\bsample\b", "clip", base)
    base = re.sub(r'[\\/:*?"<>|]+', "_", base)
    base = re.sub(r"[\s_]+", " ", base).strip()
    return base.lstrip(".") or "Episode"


def unique_path(folder: Path, base_name: str) -> Path:
    base = sanitize(base_name)
    candidate = folder / f"{base}.strm"
    i = 2
    while candidate.exists():
        candidate = folder / f"{base}.{i}.strm"
        i += 1
    return candidate


def stable_link(ep: Episode, *, auth: str = "token", with_provider: bool = True) -> str:
    params = {"site": ep.site, "slug": ep.slug, "s": str(ep.season), "e": str(ep.episode), "lang": ep.language}
    if with_provider and ep.provider:
        params["provider"] = ep.provider
    if auth == "token":
        params["sig"] = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(), hashlib.sha256).hexdigest()
    elif auth == "apikey":
        params["apikey"] = SECRET
    return f"{BASE}/strm/stream?{urlencode(sorted(params.items()))}"


def cdn_url(ep: Episode, n: int = 0) -> str:
    """A VOE-style HLS link as direct mode writes it (expiring, IP/ASN-bound)."""
    return (f"https://cdn{n}.edgeon-bandwidth.test/engine/hls2/01/{ep.slug}-{ep.season}-{ep.episode}-"
            f"{LANG_TAGS[ep.language].lower()}/master.m3u8?t=tok{n}&s=1764600000&e=14400&i=84.170&asn=3320")


def write_strm(folder: Path, ep: Episode, url: str) -> Path:
    """One file as AniBridge's scheduler writes it: unique name, tmp file, replace."""
    folder.mkdir(parents=True, exist_ok=True)
    out = unique_path(folder, release_name(ep) + " [STRM]")
    tmp = out.with_suffix(".strm.tmp")
    tmp.write_bytes((url + "\n").encode())
    tmp.replace(out)
    return out


SPY = dict(site="aniworld.to", slug="spy-x-family", title="Spy x Family")
NINE = dict(site="s.to", slug="9-1-1", title="9-1-1")
MOVIE = dict(site="megakino", slug="der-tiger", title="Der Tiger 2025")  # torznab appends the film's year

EPISODES = [
    Episode(**SPY, season=1, episode=1, language="German Sub"),
    Episode(**SPY, season=1, episode=1, language="German Dub", provider="Filemoon"),
    Episode(**SPY, season=1, episode=2, language="English Sub", height=720),
    Episode(**SPY, season=2, episode=12, language="German Sub", codec="hevc"),
    Episode(**NINE, season=2, episode=1, language="English Dub", height=720),
    Episode(**NINE, season=2, episode=1, language="German Dub", height=720, provider="Vidmoly"),
    Episode(**NINE, season=6, episode=3, language="German Dub"),
]
COLLIDING = Episode(**SPY, season=1, episode=1, language="German Sub")  # grabbed again: `… [STRM].2.strm`
FILM = Episode(**MOVIE, season=None, episode=None, language="German Dub")
