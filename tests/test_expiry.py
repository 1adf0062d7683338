"""Expiry prediction from URL markers: proactive refresh only works if we read each CDN's clock correctly."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.probe import egress_bound, expiry_iso, predict_expiry

NOW = 1_763_700_000.0  # 2025-11-21T04:40:00Z, a fixed "now" so the plausibility windows are deterministic


CLOUDFRONT_RESOURCE = "https://d111111abcdef8.cloudfront.net/video/naruto/s01e02/*?"


def cloudfront_policy(epoch: int, resource: str = CLOUDFRONT_RESOURCE) -> str:
    """Encode a custom policy the way CloudFront documents it: base64, then + → -, = → _, / → ~."""
    document = {
        "Statement": [
            {
                "Resource": resource,
                "Condition": {
                    "DateLessThan": {"AWS:EpochTime": epoch},
                    "IpAddress": {"AWS:SourceIp": "84.170.0.0/16"},
                },
            }
        ]
    }
    encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
    return encoded.replace("+", "-").replace("=", "_").replace("/", "~")


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


# ------------------------------------------------------------------------------------------ each marker


def test_googlevideo_expire() -> None:
    url = (
        "https://rr3---sn-4g5ednsz.googlevideo.com/videoplayback?expire=1763721600&ei=q2JAZ_abc&ip=84.170.12.34"
        "&id=o-AJx&itag=22&source=youtube&requiressl=yes&mime=video%2Fmp4&dur=1421.5"
        "&sparams=expire%2Cei%2Cip%2Cid%2Citag%2Csource%2Crequiressl&sig=AJfQdSswRQIh"
    )
    assert predict_expiry(url, now=NOW) == 1763721600.0


def test_googlevideo_manifest_path_form() -> None:
    url = (
        "https://manifest.googlevideo.com/api/manifest/hls_playlist/expire/1763722000/ei/q2JAZ/ip/84.170.12.34"
        "/id/abcdef.1/itag/95/source/yt_live_broadcast/playlist/index.m3u8"
    )
    assert predict_expiry(url, now=NOW) == 1763722000.0
    assert egress_bound(url)


def test_googlevideo_expire_trusted_outside_generic_window() -> None:
    # A link that expired two years ago is still an expiry on googlevideo, not noise.
    url = "https://rr1---sn-abc.googlevideo.com/videoplayback?expire=1700000000&itag=18"
    assert predict_expiry(url, now=NOW) == 1700000000.0


def test_cloudfront_canned_policy() -> None:
    url = (
        "https://d111111abcdef8.cloudfront.net/tv/naruto/s01e02.mp4"
        "?Expires=1763710000&Signature=nitfHRCrtziwO2HwPfWw~yYDhUF5EwRunQA-j19DzZrvDh6hQ73lDx~"
        "&Key-Pair-Id=K2JCJMDEHXQW5F"
    )
    assert predict_expiry(url, now=NOW) == 1763710000.0


def test_cloudfront_custom_policy() -> None:
    policy = cloudfront_policy(1763712345)
    # The example exercises CloudFront's own alphabet, not plain base64.
    assert "~" in policy and "_" in policy
    url = (
        "https://d111111abcdef8.cloudfront.net/tv/naruto/s01e02.mp4"
        f"?Policy={policy}&Signature=H6xYz~abc-def_&Key-Pair-Id=K2JCJMDEHXQW5F"
    )
    assert predict_expiry(url, now=NOW) == 1763712345.0


def test_cloudfront_policy_that_is_not_a_policy_is_ignored() -> None:
    url = "https://d111111abcdef8.cloudfront.net/a.mp4?Policy=bm90IGpzb24_&Signature=x&Key-Pair-Id=K2"
    assert predict_expiry(url, now=NOW) is None


def test_s3_sigv4() -> None:
    url = (
        "https://media-bucket.s3.eu-central-1.amazonaws.com/tv/naruto/s01e02.mkv"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20251121%2Feu-central-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20251121T043000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
    )
    signed = datetime(2025, 11, 21, 4, 30, tzinfo=UTC).timestamp()
    assert predict_expiry(url, now=NOW) == signed + 3600


def test_parameter_names_are_case_insensitive() -> None:
    url = "https://minio.example.net/tv/ep.mkv?x-amz-date=20251121T043000Z&x-amz-expires=600&x-amz-signature=ab"
    signed = datetime(2025, 11, 21, 4, 30, tzinfo=UTC).timestamp()
    assert predict_expiry(url, now=NOW) == signed + 600
    assert predict_expiry("https://cdn.example.net/v.mp4?EXP=1763703600", now=NOW) == 1763703600.0


def test_s3_sigv2_style() -> None:
    url = (
        "https://obs.cn-east-3.example-cloud.com/anime/naruto/S01E02.mkv"
        "?AWSAccessKeyId=AKIDEXAMPLE&Expires=1763705000&Signature=h8z%2Fx7bHk9xQ%3D"
    )
    assert predict_expiry(url, now=NOW) == 1763705000.0


def test_sigv2_expires_is_trusted_beyond_thirty_days() -> None:
    far = int(NOW) + 90 * 24 * 3600
    signed = f"https://s3.example.com/b/k.mp4?AWSAccessKeyId=AK&Expires={far}&Signature=s"
    bare = f"https://s3.example.com/b/k.mp4?Expires={far}"
    assert predict_expiry(signed, now=NOW) == float(far)
    # The same number without the signature markers is outside the generic plausibility window.
    assert predict_expiry(bare, now=NOW) is None


ALIST = "https://alist.example.net/d/anime/Naruto/S01E02.mkv?sign=x1Yz7bq2Kc9mFh3PqWn0aB5dE8gJkLmNoPqRsTuVwXy="


def test_alist_sign_with_expiry() -> None:
    url = f"{ALIST}:1763709999"
    assert predict_expiry(url, now=NOW) == 1763709999.0


def test_alist_sign_zero_means_never() -> None:
    url = f"{ALIST}:0"
    assert predict_expiry(url, now=NOW) is None
    assert expiry_iso(url) is None


def test_voe_style_issue_time_plus_ttl() -> None:
    url = (
        "https://delivery-node-k9x2.edgeon-bandwidth.com/engine/hls2/01/08123/q1w2e3r4t5y6_,n,.urlset/master.m3u8"
        "?t=Zr5s0mQeFh1O-token&s=1763700000&e=14400&f=40615511&node=delivery-node-k9x2&i=84.170&sp=2500&asn=3320"
    )
    assert predict_expiry(url, now=NOW) == 1763700000.0 + 14400
    assert egress_bound(url)


def test_jwt_exp_in_any_query_value() -> None:
    token = jwt({"sub": "naruto-1-2", "iat": 1763700000, "exp": 1763703600})
    url = f"https://stream.example.org/hls/naruto/1/2/index.m3u8?auth={token}"
    assert predict_expiry(url, now=NOW) == 1763703600.0


def test_jwt_payloads_of_every_padding_length_decode() -> None:
    for filler in ("", "a", "ab", "abc"):
        token = jwt({"exp": 1763703600, "pad": filler})
        url = f"https://stream.example.org/v.mp4?token={quote(token)}"
        assert predict_expiry(url, now=NOW) == 1763703600.0, filler


def test_jwt_without_exp_or_broken_is_ignored() -> None:
    assert predict_expiry(f"https://s.example.org/v.mp4?token={jwt({'sub': 'x'})}", now=NOW) is None
    assert predict_expiry("https://s.example.org/v.mp4?token=eyJhbGciOi.!!!notbase64!!!.x", now=NOW) is None
    assert predict_expiry("https://s.example.org/v.mp4?token=eyJonlyonepart", now=NOW) is None


# ------------------------------------------------------------------------------------------ generic params


@pytest.mark.parametrize("name", ["exp", "expires", "expire", "expiry"])
def test_generic_absolute_epoch(name: str) -> None:
    assert predict_expiry(f"https://cdn.example.net/v.mp4?{name}=1763703600&hash=ab12", now=NOW) == 1763703600.0


def test_generic_milliseconds() -> None:
    assert predict_expiry("https://cdn.example.net/v.mp4?expires=1763703600250", now=NOW) == 1763703600.25


@pytest.mark.parametrize("value", ["1000000000", "1999999999", "1000000000000"])
def test_generic_values_outside_plausible_window_are_ignored(value: str) -> None:
    # 2001, 2033 and 2001-in-ms: not a link lifetime anybody issues today.
    assert predict_expiry(f"https://cdn.example.net/v.mp4?exp={value}", now=NOW) is None


def test_generic_small_integer_is_ttl_from_resolved_at() -> None:
    resolved = NOW - 100
    url = "https://cdn.example.net/v.mp4?expires=3600&token=abc"
    assert predict_expiry(url, resolved_at=resolved, now=NOW) == resolved + 3600
    # Stored rows carry ISO strings; the same answer must come out.
    assert predict_expiry(url, resolved_at="2025-11-21T04:38:20.000000Z", now=NOW) == resolved + 3600


def test_generic_ttl_without_resolved_at_counts_from_now() -> None:
    assert predict_expiry("https://cdn.example.net/v.mp4?ttl=9&exp=600", now=NOW) == NOW + 600


def test_generic_ttl_longer_than_a_week_is_not_a_ttl() -> None:
    assert predict_expiry("https://cdn.example.net/v.mp4?exp=604801", now=NOW) is None
    assert predict_expiry("https://cdn.example.net/v.mp4?exp=604800", now=NOW) == NOW + 604800


@pytest.mark.parametrize("value", ["0", "", "soon", "-5", "12.5", "1763703600x"])
def test_generic_non_times_are_ignored(value: str) -> None:
    assert predict_expiry(f"https://cdn.example.net/v.mp4?exp={value}", now=NOW) is None


# ------------------------------------------------------------------------------------------ doodstream


def test_doodstream_expiry_is_an_issue_time() -> None:
    url = "https://ak23.dood.video/u5kj3sxyz1lhq6m/naruto-s01e02.mp4?token=7rqmz3x9c2abc&expiry=1763700000"
    assert predict_expiry(url, now=NOW) is None
    path_form = "https://cdn7.example-cdn.net/dood/u5kj3sx/naruto.mp4?token=7rqmz3x9c2abc&expiry=1763700000123"
    assert predict_expiry(path_form, now=NOW) is None


def test_doodstream_other_markers_still_count() -> None:
    token = jwt({"exp": 1763709000})
    url = f"https://ak23.dood.video/u5kj/naruto.mp4?token=7rqmz&expiry=1763700000&auth={token}"
    assert predict_expiry(url, now=NOW) == 1763709000.0


def test_expiry_not_after_resolution_is_an_issue_time() -> None:
    """Doodstream's CDN hosts often do not say 'dood'; a bare expiry that predates the resolution is no expiry."""
    url = "https://x91.cloudatacdn.com/u5kj3sxyz1lhq6m/naruto.mp4?token=7rqmz3x9c2abc&expiry=1763699990000"
    assert predict_expiry(url, resolved_at=1763700000.0, now=NOW) is None
    later = "https://cdn.example.net/v.mp4?expiry=1763703600"
    assert predict_expiry(later, resolved_at=1763700000.0, now=NOW) == 1763703600.0


# ------------------------------------------------------------------------------------------ combinations


def test_earliest_marker_wins() -> None:
    token = jwt({"exp": 1763702000})
    url = (
        "https://d111111abcdef8.cloudfront.net/tv/naruto/s01e02.mp4"
        f"?Expires=1763710000&Signature=abc&Key-Pair-Id=K2JCJMDEHXQW5F&jwt={token}&exp=1763705000"
    )
    assert predict_expiry(url, now=NOW) == 1763702000.0
    without_jwt = url.replace(f"&jwt={token}", "")
    assert predict_expiry(without_jwt, now=NOW) == 1763705000.0


def test_repeated_parameter_earliest_wins() -> None:
    assert predict_expiry("https://cdn.example.net/v.mp4?exp=1763709000&exp=1763704000", now=NOW) == 1763704000.0


def test_no_markers_no_expiry() -> None:
    assert predict_expiry("https://cdn.example.net/tv/naruto/s01e02.mp4", now=NOW) is None
    assert predict_expiry("https://cdn.example.net/v.mp4?t=1763703600&token=abc&e=3600", now=NOW) is None


def test_expiry_iso_format() -> None:
    assert expiry_iso("https://cdn.example.net/v.mp4?exp=1763703600", now=NOW) == "2025-11-21T05:40:00.000000Z"
    assert expiry_iso("https://cdn.example.net/v.mp4?expires=60", resolved_at=NOW) == "2025-11-21T04:41:00.000000Z"
    assert expiry_iso("https://cdn.example.net/plain.mp4") is None


# ------------------------------------------------------------------------------------------ egress binding


@pytest.mark.parametrize(
    ("url", "bound"),
    [
        ("https://rr3---sn-4g5e.googlevideo.com/videoplayback?expire=1763721600&ip=2a02%3A8108%3A%3A1", True),
        ("https://cdn.example.net/v.m3u8?s=1763700000&e=14400&i=84.170", True),
        ("https://cdn.example.net/v.m3u8?i=2a02:8108::/32", True),
        ("https://cdn.example.net/v.m3u8?asn=3320", True),
        ("https://cdn.example.net/v.m3u8?IP=84.170.12.34", True),
        ("https://cdn.example.net/v.m3u8?i=3&page=2", False),  # an index, not an address
        ("https://cdn.example.net/v.m3u8?ip=", False),
        ("https://cdn.example.net/v.m3u8?exp=1763703600&sig=ab", False),
        ("https://cdn.example.net/ip/84.170.1.2/v.mp4", False),  # path form only means something on googlevideo
    ],
)
def test_egress_bound(url: str, bound: bool) -> None:
    assert egress_bound(url) is bound


# ------------------------------------------------------------------------------------------ properties

_query_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
_names = st.sampled_from(
    ["exp", "Expires", "expire", "expiry", "sign", "s", "e", "Policy", "X-Amz-Date", "X-Amz-Expires", "token", "ip"]
)
_values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(alphabet="0123456789", min_size=1, max_size=6000),
    st.builds(lambda tail: "eyJ" + tail, st.text(max_size=60)),
    st.builds(lambda tail: "abc:" + tail, st.text(alphabet="0123456789", max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(raw=_query_text, pairs=st.lists(st.tuples(_names, _values), max_size=6))
def test_predict_expiry_never_raises(raw: str, pairs: list[tuple[str, str]]) -> None:
    for url in (
        f"https://cdn.example.net/v.mp4?{raw}",
        f"https://cdn.example.net/v.mp4?{urlencode(pairs)}",
        f"https://x.googlevideo.com/videoplayback/expire/{raw}?{urlencode(pairs)}",
    ):
        result = predict_expiry(url, resolved_at=NOW, now=NOW)
        assert result is None or 0 < result < 253402300800
        iso = expiry_iso(url, resolved_at=NOW, now=NOW)
        assert (iso is None) == (result is None)
        assert isinstance(egress_bound(url), bool)


@settings(max_examples=100, deadline=None)
@given(
    epoch=st.integers(min_value=1_000_000_000, max_value=4_000_000_000),
    resource=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80),
)
def test_cloudfront_policy_round_trips(epoch: int, resource: str) -> None:
    url = f"https://d1.cloudfront.net/a.mp4?Policy={cloudfront_policy(epoch, resource)}&Signature=x&Key-Pair-Id=K"
    assert predict_expiry(url, now=NOW) == float(epoch)
