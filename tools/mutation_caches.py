"""pytest plugin for `tools/mutation.py`: empties mailaction's caches before every test, and
stops a test that runs far past its time.

mutmut learns which tests reach a function by running them once; a function behind
``functools.lru_cache`` is reached only by the first test that computes a given value, so
without this the later tests would never be run against that function's mutants.

mutmut's own timeout is set for the whole set of tests a mutant runs (over a minute for the
sender's), so a mutant that makes one test wait forever held a worker for minutes. A test still
running after ``TEST_LIMIT`` seconds (the slowest takes under 7 s unmutated) ends the run with
the exit code mutmut counts as a timeout.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

TEST_LIMIT = 60.0
MUTMUT_TIMEOUT = 36


@pytest.fixture(autouse=True)
def _empty_caches() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("mailaction") and module is not None:
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear):
                    clear()


def _overran() -> None:
    os._exit(MUTMUT_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timer = threading.Timer(TEST_LIMIT, _overran)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
