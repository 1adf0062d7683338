"""Fixtures shared by the core tests and every integration's tests."""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Iterator

import pytest

from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.strm import Library


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what exists once the tests are collected (modules, test items) from every later collection.

    Those objects live for the whole run; without this, each per-test collection below walks them again
    (about 100 ms on the development machine, which tripled the run time).
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_the_test() -> Iterator[None]:
    """Collect garbage once the test's other fixtures are torn down.

    A socket or session nobody closed warns (ResourceWarning) only when it is collected. An autouse fixture
    of the root conftest is set up first, so it is torn down last; collecting there, before pytest gathers
    the unraisable warnings at the end of the teardown, blames the test that leaked instead of whichever
    later test happened to trigger the collector (pyproject.toml makes the warning an error). A trylast
    pytest_runtest_teardown hook would run after pytest's own, which is why this is a fixture.
    """
    yield
    gc.collect()


@pytest.fixture
def library_root(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    return root


@pytest.fixture
def library(library_root: Path) -> Library:
    return Library([str(library_root)])


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(tmp_path / "data" / "strm-bridge.db")
    yield database
    database.conn.close()


@pytest.fixture
def store(db) -> MappingStore:
    return MappingStore(db)


from tests.fakes.provider_fixture import fake_provider  # noqa: E402,F401  (shared fixture)
