"""Blame each ResourceWarning on the test that caused it (pyproject.toml makes the warning an error).

A socket, file or session nobody closed warns only when it is freed, often by the garbage collector long
after the test that leaked it; pytest then reports it as an unraisable exception in whichever test runs at
that moment. So garbage is collected after every test, once its fixtures are torn down: these autouse
fixtures are set up before a test's other fixtures of the same scope, so they are torn down after them, and
still before pytest gathers the unraisable warnings at the end of the teardown (a trylast
pytest_runtest_teardown hook would come after pytest's own).

Walking the whole heap after each test tripled the suite's run time, so what outlives a test module (imported
modules, caches) is frozen when the module is done (gc.freeze: exempt from later collections), and each
collection walks only what the current module created. The session's end collects everything once more.
"""
from __future__ import annotations

import gc
from typing import Iterator

import pytest


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    _collect_and_freeze()  # modules and test items live for the whole run


@pytest.fixture(scope="session", autouse=True)
def _collect_garbage_after_the_session() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.collect()


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_after_the_module() -> Iterator[None]:
    yield
    _collect_and_freeze()  # after the module's own fixtures are torn down


@pytest.fixture(autouse=True)
def _collect_garbage_after_the_test() -> Iterator[None]:
    yield
    gc.collect()
