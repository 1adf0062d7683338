"""Which links strm-bridge may replace: only direct URLs; AniBridge's, the configured and its own never."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config
from bridge.links import LinkRules, anibridge_identity, compile_patterns

# The shapes AniBridge's build_stream_url writes (keys sorted, provider omitted without a hint).
TOKEN_LINK = ("http://anibridge:8000/strm/stream?e=1&lang=German+Dub&provider=VOE&s=1"
              "&sig=5f1c0e9a4b7d2e8f3a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f&site=s.to&slug=9-1-1")
APIKEY_LINK = "https://media.example.net/anibridge/strm/stream?apikey=s3cret&e=12&lang=German+Sub&s=2&site=aniworld.to&slug=spy-x-family"
NO_AUTH_LINK = "http://10.0.0.5:8000/strm/stream?e=3&lang=English+Dub&s=1&slug=frieren"
DIRECT = "https://edge.example-cdn.net/engine/hls2/01/x/master.m3u8?t=abc&s=1764600000&e=14400&i=84.170&asn=3320"


def test_anibridge_token_and_apikey_forms_carry_their_identity() -> None:
    token = anibridge_identity(TOKEN_LINK)
    assert token == {"site": "s.to", "slug": "9-1-1", "season": 1, "episode": 1, "language": "German Dub",
                     "provider": "VOE", "auth": "sig"}
    apikey = anibridge_identity(APIKEY_LINK)
    assert apikey is not None and apikey["auth"] == "apikey" and apikey["season"] == 2 and apikey["episode"] == 12
    assert apikey["provider"] == ""
    plain = anibridge_identity(NO_AUTH_LINK)
    assert plain is not None and plain["site"] == "aniworld.to" and plain["auth"] == "none"  # AniBridge's default site


@pytest.mark.parametrize("url", [
    "http://anibridge:8000/strm/stream?slug=x&s=1&e=1",            # no lang: AniBridge answers 400
    "http://anibridge:8000/strm/stream?slug=x&lang=de&s=one&e=1",   # season not an integer
    "http://anibridge:8000/strm/proxy/seg.ts?u=https%3A%2F%2Fcdn%2Fa.ts&exp=1&sig=ab",  # expiring sub-resource link
    "http://anibridge:8000/other?slug=x&lang=de&s=1&e=1",
    "ftp://anibridge/strm/stream?slug=x&lang=de&s=1&e=1",
])
def test_shapes_that_are_not_anibridge_stable_links(url: str) -> None:
    assert anibridge_identity(url) is None
    assert LinkRules().classify(url).kind != "anibridge"


@pytest.mark.parametrize("url", [TOKEN_LINK, NO_AUTH_LINK, "http://anibridge:8000/strm/stream?slug=x&s=1&e=1"])
def test_import_takes_an_identity_from_exactly_the_links_the_classifier_keeps(url: str) -> None:
    """One parser: a link the refresh leaves alone gives the identity and `source_url`; any other gives neither."""
    from bridge.importer import derive_identity

    identity = derive_identity("/lib/Show (2020)/Season 4/Show - S04E07.strm", url)
    link = anibridge_identity(url)
    assert (link is not None) == (LinkRules().classify(url).kind == "anibridge") == ("source_url" in identity)
    if link is None:
        assert (identity["slug"], identity["season"], identity["episode"]) == ("show", 4, 7)  # from the name
    else:
        assert identity == {**{k: link[k] for k in identity if k != "source_url"}, "source_url": url}


def test_classify_kinds() -> None:
    rules = LinkRules(["https://alist.example/d/", r"^https?://zurg\.local(:\d+)?/strm/"],
                      public_url="https://bridge.example.org/sb", host="127.0.0.1", port=8765)
    assert rules.classify(DIRECT).kind == "direct" and rules.classify(DIRECT).owned
    anibridge = rules.classify(TOKEN_LINK)
    assert anibridge.kind == "anibridge" and anibridge.re_resolves and not anibridge.owned
    assert rules.classify(APIKEY_LINK).kind == "anibridge"
    prefix = rules.classify("https://ALIST.example/d/tv/show/e1.mkv?sign=abc:0")
    assert prefix.kind == "pattern" and "stable_link_patterns[0]" in prefix.detail and not prefix.re_resolves
    assert rules.classify("https://alist.example/other/e1.mkv").kind == "direct"
    assert rules.classify("http://zurg.local:9999/strm/abc").kind == "pattern"
    play = rules.classify("https://bridge.example.org/sb/play/12?sig=ab")
    assert play.kind == "own" and "/play/" in play.detail
    assert rules.classify("http://127.0.0.1:8765/play/3?sig=x").kind == "own"
    assert rules.classify("http://localhost:8765/api/mappings").kind == "own"
    assert rules.classify(f"http://{socket.gethostname()}:8765/play/1").kind == "own"
    assert rules.classify("http://127.0.0.1:8766/play/3").kind == "direct"  # another port is another service
    for spelling in ("http://user:pw@127.0.0.1:8765/play/1", "HTTP://LOCALHOST:8765/x", "http://[::1]:8765/play/2",
                     "http://127.0.0.1:08765/play/1", "https://BRIDGE.example.org/sb/play/9"):
        assert rules.classify(spelling).kind == "own" and not rules.owned(spelling), spelling
    for url in (DIRECT, TOKEN_LINK, "https://alist.example/d/x", "http://cdn.example:8765/play/1"):
        assert rules.owned(url) == rules.classify(url).owned, url


def test_without_a_configured_address_only_the_public_url_is_the_bridge() -> None:
    rules = LinkRules(public_url="http://bridge:8765")
    assert rules.points_at_bridge("http://bridge:8765/play/1") and rules.is_play_link("http://bridge:8765/play/1")
    assert not rules.points_at_bridge("http://127.0.0.1:8765/play/1")
    assert not LinkRules().points_at_bridge("http://127.0.0.1:8765/play/1")


@pytest.mark.parametrize("pattern, message", [
    ("", "empty pattern"),
    ("https:///nohost", "has no host"),
    ("(unclosed", "neither an http(s) URL prefix nor a valid regular expression"),
    (".*", "matches every URL"),
])
def test_bad_patterns_are_refused_naming_the_entry(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"library\.stable_link_patterns\[1\]: .*" + message.split("(")[0][:20]):
        compile_patterns(["https://ok.example/", pattern])


def test_config_validates_patterns_at_start_up(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[library]\nstable_link_patterns = ["https://alist.example/d/", "zurg"]\n')
    assert load_config(good, env={}).library.stable_link_patterns == ["https://alist.example/d/", "zurg"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[library]\nstable_link_patterns = ["[oops"]\n')
    with pytest.raises(ConfigError, match=r"library\.stable_link_patterns\[0\]"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match=r"library\.stable_link_patterns\[0\]"):
        load_config(None, env={"STRM_BRIDGE_LIBRARY_STABLE_LINK_PATTERNS": "(x"})
    env = load_config(None, env={"STRM_BRIDGE_LIBRARY_STABLE_LINK_PATTERNS": "https://a.example/d/,https://b.example/"})
    assert env.library.stable_link_patterns == ["https://a.example/d/", "https://b.example/"]
