"""schemathesis against the live bridge: every documented operation, positive and negative data.

No answer may be a 5xx, and every answer must match the document (status code, content type, body schema,
headers). The default run is bounded (`EXAMPLES` per operation, derandomised so CI sees the same requests);
`-m fuzz_long` runs `LONG_EXAMPLES` per operation with fresh randomness.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from bridge.openapi import document
from tests.appfactory import AUTH
from tests.fuzz import figures
from tests.fuzz.live import LiveBridge

EXAMPLES = 25
LONG_EXAMPLES = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


def _schema(max_examples: int, deterministic: bool) -> Any:
    schema = schemathesis.openapi.from_dict(document())
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=max_examples, deterministic=deterministic,
                                    with_security_parameters=False)
    return schema


schema = _schema(EXAMPLES, deterministic=True)
long_schema = _schema(LONG_EXAMPLES, deterministic=False)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBridge]:
    bridge = LiveBridge(tmp_path_factory.mktemp("schemathesis")).start()
    files = bridge.library_snapshot()
    started = time.monotonic()
    yield bridge
    figures.record("schemathesis", bridge.statuses, time.monotonic() - started)
    try:
        assert bridge.library_snapshot() == files, "a generated request changed the library"
    finally:
        bridge.stop()
        SESSION.close()  # its pooled sockets would otherwise be left to the garbage collector


SESSION = requests.Session()


def _exercise(case: Any, live: LiveBridge) -> None:
    # sent with a plain session rather than case.call(): schemathesis' own transport counts urllib3 pools in a
    # way urllib3-future (installed beside urllib3 by other packages) does not support
    kwargs = case.as_transport_kwargs(base_url=live.url, headers=AUTH)
    response = SESSION.request(**kwargs, timeout=30, allow_redirects=False)
    live.statuses[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_api_conforms_and_never_5xx(case: Any, live: LiveBridge) -> None:
    _exercise(case, live)


@pytest.mark.fuzz_long
@long_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_api_conforms_and_never_5xx_long(case: Any, live: LiveBridge) -> None:
    _exercise(case, live)
