"""Fixtures shared by the core tests and every integration's tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.db import open_database
from bridge.mappings import MappingStore
from bridge.strm import Library

pytest_plugins = ["tests.leakcheck"]  # every ResourceWarning fails the test that caused it


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The crash test's figures (the README's Reliability section), after the run; the fuzz ones print their own."""
    from tests.fuzz import figures

    if figures.NOTES:
        terminalreporter.section("crash figures")
        for name, line in sorted(figures.NOTES.items()):
            terminalreporter.write_line(f"{name}: {line}")
