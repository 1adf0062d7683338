"""Every request the bridge's client sends and every answer FakeJellyfin gives, checked against Jellyfin's OpenAPI.

Two deliberate allowances, both matching the real server rather than the letter of the document:
- `format: uuid` also accepts 32 hex digits: Jellyfin writes GUIDs that way (JsonGuidConverter, "N" format)
  and its binder accepts both forms, while the spec's format checker wants RFC dashes;
- paths are matched case-insensitively, as ASP.NET routing does (the library asks for `system/info/public`).
The document itself does not pass strict spec validation (headers without a schema on 503 answers), so
spec validation is off and only request/response validation runs.
The legacy `Users/{userId}/Items` routes are absent from the document and are not checked here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from integrations.jellyfin.client import JellyfinAuthError, JellyfinClient, JellyfinNotFound
from tests.fakes.jellyfin import Call, FakeJellyfin

# The full document where it sits beside the repository; elsewhere (CI) the part of it this test needs, cut from
# it by tests/fixtures/jellyfin/make_openapi_subset.py with the same paths, parameters and schemas.
FULL_SPEC = Path(__file__).resolve().parents[3].parent / "shared" / "specs" / "jellyfin-openapi-10.11.json"
SUBSET_SPEC = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "jellyfin" / "openapi-10.11-subset.json"
SPEC = FULL_SPEC if FULL_SPEC.exists() else SUBSET_SPEC
_GUID = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
ITEM = "a1b2c3d4e5f60718293a4b5c6d7e8f90"



def _jellyfin_guid(value: Any) -> bool:
    return not isinstance(value, str) or bool(_GUID.match(value))


class Contract:
    """The OpenAPI document, loaded once, plus the case-insensitive path canonicaliser."""

    def __init__(self, path: Path) -> None:
        self.openapi = OpenAPI.from_file_path(
            str(path), config=Config(spec_validator_cls=None, extra_format_validators={"uuid": _jellyfin_guid})
        )
        document = json.loads(path.read_text())
        self.operations: dict[tuple[str, str], str] = {}
        self._paths: list[tuple[re.Pattern[str], str]] = []
        for template, methods in document["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
            self._paths.append((re.compile(pattern, re.I), template))
            for method, operation in methods.items():
                self.operations[(method.upper(), template)] = operation.get("operationId", "")

    def canonical(self, path: str) -> tuple[str, str] | None:
        """(concrete path in the document's casing, template) for a path as sent."""
        for pattern, template in self._paths:
            found = pattern.match(path)
            if found:
                values = iter(found.groups())
                return re.sub(r"\{[^}]+\}", lambda _: next(values), template), template
        return None


class _Request:
    def __init__(self, call: Call, path: str) -> None:
        self.host_url = "http://localhost"  # the document's only server; the fake's port is irrelevant
        self.path = path
        self.method = call.method.lower()
        self.body = call.body or None
        self.content_type = call.headers.get("Content-Type", "").lower() if call.body else ""
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(call.query.items())),
            header=Headers(list(call.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    def __init__(self, call: Call) -> None:
        self.data = call.response_body
        self.status_code = call.status
        self.content_type = call.response_content_type
        self.headers = Headers()


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(SPEC)


def validate(contract: Contract, calls: list[Call], *, requests: bool = True) -> Iterator[str]:
    """Yields the operationId of each validated exchange; raises on the first violation."""
    for call in calls:
        found = contract.canonical(call.path)
        assert found is not None, f"{call.method} {call.path} is not in the OpenAPI document"
        path, template = found
        operation = contract.operations.get((call.method, template))
        assert operation is not None, f"{call.method} is not allowed on {template}"
        request = _Request(call, path)
        if requests:
            contract.openapi.validate_request(request)
        contract.openapi.validate_response(request, _Response(call))
        yield f"{operation}:{call.status}"


async def test_bridge_traffic_matches_the_contract(fake: FakeJellyfin, contract: Contract) -> None:
    fake.add_item(ITEM, "/data/tv/Show/Season 01/S01E01.strm", Name="Pilot", SeriesName="Show",
                  SeriesId="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", ParentIndexNumber=1, IndexNumber=1,
                  ProviderIds={"Tvdb": "70350"})
    fake.add_item("c0ffee00c0ffee00c0ffee00c0ffee00", "/data/movies/Blade Runner (1982).strm", Type="Movie")
    client = JellyfinClient(fake.url, fake.api_key, timeout=2, retries=0)
    await client.check()
    assert await client.item_path(ITEM) is not None
    assert await client.item_path("c0ffee00c0ffee00c0ffee00c0ffee00") is not None
    assert await client.item_path("0123456789abcdef0123456789abcdef") is None
    await client.refresh_item(ITEM)
    with pytest.raises(JellyfinNotFound):
        await client.refresh_item("0123456789abcdef0123456789abcdef")  # 404, documented
    await client.report_media_updated(["/data/tv/Show/Season 01/S01E01.strm"])
    wrong = JellyfinClient(fake.url, "wrong-key", timeout=2, retries=0)
    with pytest.raises(JellyfinAuthError):
        await wrong.item_path(ITEM)  # 401 on System/Info, documented
    await client.close()
    await wrong.close()

    seen = list(validate(contract, fake.calls))
    assert set(seen) >= {
        "GetPublicSystemInfo:200",
        "GetSystemInfo:200",
        "GetSystemInfo:401",
        "GetItems:200",
        "RefreshItem:204",
        "RefreshItem:404",
        "PostUpdatedMedia:204",
    }


async def test_every_fake_route_answers_within_the_contract(fake: FakeJellyfin, contract: Contract) -> None:
    """The fake's answers to requests the client does not make (comma lists, legacy header, no auth)."""
    fake.add_item(ITEM, "/data/tv/a.strm", SeriesName="Show", ParentIndexNumber=2, IndexNumber=3)
    auth = {"Authorization": f'MediaBrowser Token="{fake.api_key}"'}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.url}/Items", params={"ids": ITEM, "fields": "Path,ProviderIds"}, headers=auth):
            pass
        async with http.get(f"{fake.url}/Items", params={"ids": ITEM}, headers={"X-Emby-Token": fake.api_key}):
            pass
        async with http.get(f"{fake.url}/Items", headers=auth):
            pass
        async with http.post(f"{fake.url}/Items/{ITEM}/Refresh", headers={"Authorization": "MediaBrowser "}):
            pass
        async with http.post(f"{fake.url}/Library/Media/Updated", json={"Updates": []}, headers=auth):
            pass
    assert [c.status for c in fake.calls] == [200, 200, 200, 401, 204]
    items = json.loads(fake.calls[0].response_body)["Items"]
    assert items[0]["Path"] == "/data/tv/a.strm" and "Path" not in json.loads(fake.calls[1].response_body)["Items"][0]
    # Answers are all checked. Requests only where the document can express them: it knows neither the
    # comma-list spelling Jellyfin's binder accepts, nor the legacy X-Emby-Token header.
    assert len(list(validate(contract, fake.calls, requests=False))) == 5
    list(validate(contract, [fake.calls[2], fake.calls[4]]))


def test_the_validator_catches_a_destructive_or_malformed_request(contract: Contract) -> None:
    """Without this, a validator that accepts everything would pass the tests above."""
    base = dict(metadataRefreshMode="FullRefresh", imageRefreshMode="None")
    for query in ({**base, "replaceAllMetadata": "perhaps"}, {**base, "metadataRefreshMode": "Everything"}):
        call = Call("POST", f"/Items/{ITEM}/Refresh", MultiDict(query), _auth_headers(), b"", 204)
        with pytest.raises(OpenAPIError):
            list(validate(contract, [call]))
    call = Call("GET", "/Items", MultiDict([("ids", ITEM), ("fields", "Bogus")]), _auth_headers(), b"", 200,
                b'{"Items": [], "TotalRecordCount": 0, "StartIndex": 0}', "application/json; charset=utf-8")
    with pytest.raises(OpenAPIError):
        list(validate(contract, [call]))
    call = Call("GET", "/Items", MultiDict([("ids", "not-a-guid")]), _auth_headers(), b"", 200,
                b'{"Items": [], "TotalRecordCount": 0, "StartIndex": 0}', "application/json; charset=utf-8")
    with pytest.raises(OpenAPIError):
        list(validate(contract, [call]))
    call = Call("GET", "/Items", MultiDict(), CIMultiDict(), b"", 200,
                b'{"Items": [], "TotalRecordCount": 0, "StartIndex": 0}', "application/json; charset=utf-8")
    with pytest.raises(OpenAPIError):
        list(validate(contract, [call]))  # no Authorization header: the security requirement fails


def test_the_validator_catches_a_malformed_response(contract: Contract) -> None:
    bad_bodies = [
        b'{"Items": [{"Id": "not-a-guid"}], "TotalRecordCount": 1, "StartIndex": 0}',
        b'{"Items": [], "TotalRecordCount": 0, "StartIndex": 0, "Extra": 1}',
        b'{"Items": [{"Id": "' + ITEM.encode() + b'", "IndexNumber": "one"}], "TotalRecordCount": 1}',
    ]
    for body in bad_bodies:
        call = Call("GET", "/Items", MultiDict([("ids", ITEM)]), _auth_headers(), b"", 200, body,
                    "application/json; charset=utf-8")
        with pytest.raises(OpenAPIError):
            list(validate(contract, [call]))


def _auth_headers() -> CIMultiDict[str]:
    return CIMultiDict({"Authorization": 'MediaBrowser Token="k"'})


@pytest.mark.skipif(not FULL_SPEC.exists(), reason="the full document is not beside the repository")
def test_the_vendored_subset_is_cut_from_the_full_document() -> None:
    """CI validates against the subset: it must be exactly what the script cuts from Jellyfin's document."""
    import importlib.util

    script = SUBSET_SPEC.with_name("make_openapi_subset.py")
    spec = importlib.util.spec_from_file_location("make_openapi_subset", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.subset(json.loads(FULL_SPEC.read_text())) == json.loads(SUBSET_SPEC.read_text())
