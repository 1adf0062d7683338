"""Property tests: hostile bodies at every webhook parser, the multipart and JSON readers and every /api body.

Each example is sent to a live bridge over HTTP and must get a 2xx, or a 4xx in the JSON error shape; never
a 5xx. No example may change a file in the library, and none may create a mapping. The default run is
bounded (`EXAMPLES` per property); `-m fuzz_long` runs each property `LONG_EXAMPLES` times.
"""
from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.strm import parse_strm, read_strm
from tests.appfactory import AUTH
from tests.fuzz import figures, strategies as s
from tests.fuzz.live import LiveBridge

EXAMPLES = 60
LONG_EXAMPLES = 2000
SESSION = requests.Session()
MULTIPART_ROUTES = ("/webhooks/plex",)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBridge]:
    bridge = LiveBridge(tmp_path_factory.mktemp("properties")).start()
    bridge.baseline = (bridge.library_snapshot(), bridge.mapping_count())  # type: ignore[attr-defined]
    started = time.monotonic()
    yield bridge
    figures.record("hypothesis", bridge.statuses, time.monotonic() - started)
    bridge.stop()
    # the sessions' pooled sockets would otherwise outlive the module, left to the garbage collector
    SESSION.close()
    dashboard = getattr(bridge, "dashboard_session", None)
    if dashboard is not None:
        dashboard[0].close()


def send(live: LiveBridge, route: str, body: bytes, content_type: str | bytes | None) -> requests.Response:
    headers: dict[str, Any] = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = SESSION.post(live.url + route, data=body, headers=headers, timeout=30)
    live.statuses[response.status_code] += 1
    return response


def assert_contract(live: LiveBridge, response: requests.Response) -> None:
    """2xx, or a 4xx whose body is {"error", "detail"}; and nothing in the library or the store changed."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
        body = response.json()
        assert set(body) == {"error", "detail"} and isinstance(body["error"], str), body
    else:
        assert 200 <= response.status_code < 300, response.status_code
    files, mappings = live.baseline  # type: ignore[attr-defined]
    assert live.library_snapshot() == files, "a request changed the library"
    assert live.mapping_count() == mappings, "a request created a mapping"


def twin(strategy: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], tuple[Callable[..., None], Callable[..., None]]]:
    """The same property as a bounded default test and a long one marked fuzz_long."""
    def make(fn: Callable[..., None]) -> tuple[Callable[..., None], Callable[..., None]]:
        common = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
        short = settings(max_examples=EXAMPLES, derandomize=True, **common)(given(strategy)(fn))
        long = pytest.mark.fuzz_long(settings(max_examples=LONG_EXAMPLES, **common)(given(strategy)(fn)))
        return short, long
    return make


# ---- webhook parsers -----------------------------------------------------------------------------------
JSON_WEBHOOKS = {"/webhooks/jellyfin": s.mutated("jellyfin") | s.JELLYFIN, "/webhooks/tautulli": s.mutated("tautulli") | s.TAUTULLI,
                 "/webhooks/emby": s.mutated("emby") | s.EMBY, "/webhooks/sonarr": s.mutated("sonarr"),
                 "/webhooks/radarr": s.mutated("radarr")}
SHAPED = st.one_of(*(st.tuples(st.just(route), strategy.map(s.encode), st.just("application/json") | s.CONTENT_TYPES)
                     for route, strategy in JSON_WEBHOOKS.items()))


def _shaped_webhook(live: LiveBridge, example: tuple[str, bytes, str]) -> None:
    route, body, content_type = example
    assert_contract(live, send(live, route, body, content_type))


test_webhook_payloads_of_wrong_types, test_webhook_payloads_of_wrong_types_long = twin(SHAPED)(_shaped_webhook)


def _quote(text: str) -> str:
    """Percent-encoding that keeps lone surrogates as their (invalid) UTF-8 bytes: hostile on purpose."""
    return urllib.parse.quote(text, safe="", errors="surrogatepass")


def _form_webhook(live: LiveBridge, example: tuple[str, Any, str]) -> None:
    """The form-encoded shapes: Jellyfin's GenericForm and Emby's `data` field."""
    route, payload, field = example
    if route == "/webhooks/jellyfin":
        body = "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in payload.items()).encode()
    else:
        body = f"{field}={_quote(s.encode(payload).decode())}".encode()
    assert_contract(live, send(live, route, body, "application/x-www-form-urlencoded"))


FORMS = st.tuples(st.just("/webhooks/jellyfin"), s.JELLYFIN, st.just("")) | st.tuples(
    st.just("/webhooks/emby"), s.EMBY | s.JSON_VALUES, st.sampled_from(["data", "Data", "other"]))
test_form_webhooks, test_form_webhooks_long = twin(FORMS)(_form_webhook)


def _raw_to_any_route(live: LiveBridge, example: tuple[str, bytes, str]) -> None:
    route, body, content_type = example
    assert_contract(live, send(live, route, body, content_type))


RAW = st.tuples(st.sampled_from(["/webhooks/jellyfin", "/webhooks/plex", "/webhooks/tautulli", "/webhooks/emby",
                                 "/webhooks/sonarr", "/webhooks/radarr", "/api/mappings", "/api/refresh",
                                 "/api/rescan", "/api/mappings/prune"]), s.RAW_BODIES, s.CONTENT_TYPES)
test_raw_bodies_and_content_types, test_raw_bodies_and_content_types_long = twin(RAW)(_raw_to_any_route)


def _plex_multipart(live: LiveBridge, example: tuple[bytes, str]) -> None:
    body, content_type = example
    assert_contract(live, send(live, "/webhooks/plex", body, content_type))


test_plex_multipart_edge_cases, test_plex_multipart_edge_cases_long = twin(s.plex_multipart())(_plex_multipart)


def _plex_payload(live: LiveBridge, payload: Any) -> None:
    """A well-framed multipart body whose `payload` field holds any JSON (the parser's own checks)."""
    body = (b'--B\r\nContent-Disposition: form-data; name="payload"\r\nContent-Type: application/json\r\n\r\n'
            + s.encode(payload) + b"\r\n--B--\r\n")
    assert_contract(live, send(live, "/webhooks/plex", body, "multipart/form-data; boundary=B"))


test_plex_payload_values, test_plex_payload_values_long = twin(s.mutated("plex") | s.PLEX | s.JSON_VALUES)(_plex_payload)


# ---- /api bodies ---------------------------------------------------------------------------------------
API_BODIES = (st.tuples(st.just("/api/mappings"), s.MAPPING_BODY) | st.tuples(st.just("/api/refresh"), s.REFRESH_BODY)
              | st.tuples(st.just("/api/rescan"), s.RESCAN_BODY))


def _api_body(live: LiveBridge, example: tuple[str, Any]) -> None:
    route, body = example
    if route == "/api/refresh" and body.get("all") is True and len(body) == 1:
        body = {**body, "dry_run": True}  # a real bulk job over nothing is fine, but keep the run read-only
    assert_contract(live, send(live, route, s.encode(body), "application/json"))


test_api_bodies, test_api_bodies_long = twin(API_BODIES)(_api_body)


def _api_query(live: LiveBridge, example: tuple[str, dict[str, str]]) -> None:
    route, query = example
    response = SESSION.get(live.url + route, params=query, headers=AUTH, timeout=30)
    live.statuses[response.status_code] += 1
    assert_contract(live, response)


QUERY_TEXT = s.HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1"))
QUERIES = st.tuples(st.sampled_from(["/api/mappings", "/api/events", "/api/jobs/1", "/api/mappings/1",
                                     "/api/mappings/99999999999999999999", "/api/jobs/%ED%A0%80"]),
                    st.dictionaries(st.sampled_from(["path", "slug", "season", "state", "limit", "offset"]),
                                    QUERY_TEXT | st.integers().map(str), max_size=4))
test_api_queries, test_api_queries_long = twin(QUERIES)(_api_query)


# ---- the .strm reader ----------------------------------------------------------------------------------
STRM_BYTES = st.binary(max_size=2000) | st.lists(
    st.sampled_from([b"#EXTM3U", b"", b"   ", b"\t", b"https://a.example/v.mp4", b"\xef\xbb\xbfhttp://x/y",
                     b"\xff\xfe", b"\x00", b"# comment", b"http://[::1/x", "\ud800".encode("utf-8", "surrogatepass")]),
    max_size=8).map(b"\r\n".join) | st.just(b"h" * 200_000)


def _strm_reader(strm_dir: Path, data: bytes) -> None:
    """Whatever bytes a .strm holds, reading gives one stripped line or None, and never raises."""
    path = strm_dir / "x.strm"
    path.write_bytes(data)
    found = read_strm(path)
    assert found is None or (found and "\n" not in found and "\r" not in found and found == found.strip())
    assert parse_strm(data.decode("utf-8", "replace")) is None or isinstance(parse_strm(data.decode("utf-8", "replace")), str)


@pytest.fixture(scope="module")
def strm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("strm")


test_strm_reader, test_strm_reader_long = twin(STRM_BYTES)(_strm_reader)


# ---- every field of a valid payload, one at a time, set to each value that broke a parser ----------------
SOURCE_ROUTES = {"jellyfin": "/webhooks/jellyfin", "tautulli": "/webhooks/tautulli", "emby": "/webhooks/emby",
                 "plex": "/webhooks/plex", "mapping": "/api/mappings", "refresh-identity": "/api/refresh",
                 "refresh-series": "/api/refresh", "refresh-stale": "/api/refresh", "refresh-id": "/api/refresh",
                 "rescan": "/api/rescan", "prune": "/api/mappings/prune", "sonarr": "/webhooks/sonarr",
                 "radarr": "/webhooks/radarr"}


def _plex_body(payload: Any) -> tuple[bytes, str]:
    return (b'--B\r\nContent-Disposition: form-data; name="payload"\r\nContent-Type: application/json\r\n\r\n'
            + s.encode(payload) + b"\r\n--B--\r\n"), "multipart/form-data; boundary=B"


@pytest.mark.parametrize("source", sorted(SOURCE_ROUTES))
def test_each_field_with_each_known_killer(live: LiveBridge, source: str) -> None:
    """Deterministic sweep: fields x killers (about 40 values for each of 16-20 fields), each one request."""
    sent = 0
    for path in s.field_paths(source):
        for value in s.KILLERS:
            payload = s.with_field(source, path, value)
            if source == "plex":
                body, content_type = _plex_body(payload)
            else:
                body, content_type = s.encode(payload), "application/json"
            response = send(live, SOURCE_ROUTES[source], body, content_type)
            assert response.status_code < 500, (source, path, repr(value)[:80], response.text[:300])
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "detail"}
            sent += 1
    assert sent == len(s.field_paths(source)) * len(s.KILLERS)
    files, mappings = live.baseline  # type: ignore[attr-defined]
    assert live.library_snapshot() == files and live.mapping_count() == mappings


# ---- dashboard forms -------------------------------------------------------------------------------------
DASHBOARD_FORMS = ("/login", "/logout", "/ui/refresh", "/ui/check", "/ui/convert")
_FORM_KEYS = st.sampled_from(["id", "site", "slug", "season", "stale", "all", "token", "next", "csrf_token", "to", "run"]) | st.text(max_size=12)
_FORM_VALUES = st.text(max_size=300) | st.sampled_from(["1", "0", "-1", "", "999999999999999999999", "1e3", "fake",
                                                        "//evil.example/", "/ui/../api", "\x00", "1" * 5000])
DASHBOARD_BODIES = st.tuples(
    st.sampled_from(DASHBOARD_FORMS),
    st.dictionaries(_FORM_KEYS, _FORM_VALUES, max_size=6).map(
        lambda form: "&".join(f"{_quote(k)}={_quote(v)}" for k, v in form.items()).encode()) | s.RAW_BODIES,
    st.just("application/x-www-form-urlencoded") | s.CONTENT_TYPES)


def _dashboard_session(live: LiveBridge) -> tuple[requests.Session, str]:
    """One logged-in browser-like session per module (cookie plus the page's CSRF token)."""
    import re as _re

    from tests.appfactory import TOKEN

    cached = getattr(live, "dashboard_session", None)
    if cached is None:
        browser = requests.Session()
        answer = browser.post(live.url + "/login", data={"token": TOKEN}, allow_redirects=False, timeout=30)
        assert answer.status_code == 303, answer.text[:200]
        page = browser.get(live.url + "/", timeout=30).text
        cached = browser, _re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)  # type: ignore[union-attr]
        live.dashboard_session = cached  # type: ignore[attr-defined]
    return cached


def _dashboard_form(live: LiveBridge, example: tuple[str, bytes, str]) -> None:
    """Any form at the dashboard's POST routes, with a valid session and CSRF token (logout: without it, so the
    session survives the run): a 2xx/3xx, the login page's own 401, or a JSON 4xx; never a 5xx."""
    route, body, content_type = example
    browser, csrf = _dashboard_session(live)
    headers = {"Content-Type": content_type} if content_type is not None else {}
    if route.startswith("/ui/"):
        headers["X-CSRF-Token"] = csrf
    response = browser.post(live.url + route, data=body, headers=headers, allow_redirects=False, timeout=30)
    live.statuses[response.status_code] += 1
    assert response.status_code < 500, f"{route} {response.status_code}: {response.text[:300]}"
    if route == "/logout":
        assert response.status_code in (400, 403), response.text[:200]  # no CSRF token: the session stays
    if response.status_code >= 400 and not (route == "/login" and response.status_code == 401):
        assert set(response.json()) == {"error", "detail"}, response.text[:200]
    files, mappings = live.baseline  # type: ignore[attr-defined]
    assert live.library_snapshot() == files and live.mapping_count() == mappings


test_dashboard_forms, test_dashboard_forms_long = twin(DASHBOARD_BODIES)(_dashboard_form)


def test_every_route_with_a_body_is_covered() -> None:
    """The properties above reach every POST route the app has (a new one must be added to them)."""
    from bridge.openapi import document

    posted = {p for p, item in document()["paths"].items() if "post" in item}
    covered = set(JSON_WEBHOOKS) | set(MULTIPART_ROUTES) | set(SOURCE_ROUTES.values()) | set(DASHBOARD_FORMS)
    uncovered = posted - covered - {"/api/cache/purge"}  # takes no body
    assert not uncovered, f"POST routes with no property test: {sorted(uncovered)}"


def test_contract_check_fails_on_a_5xx(live: LiveBridge) -> None:
    """The assertion the properties rely on really catches a server error and a changed file."""
    fake = requests.Response()
    fake.status_code = 500
    fake._content = json.dumps({"error": "internal_error", "detail": "x"}).encode()
    with pytest.raises(AssertionError):
        assert_contract(live, fake)
    target = live.library / "Film (2020)" / "Film.strm"
    original = target.read_bytes()
    target.write_bytes(b"https://changed.example/\n")
    ok = requests.Response()
    ok.status_code = 202
    ok._content = b"{}"
    try:
        with pytest.raises(AssertionError):
            assert_contract(live, ok)
    finally:
        target.write_bytes(original)
