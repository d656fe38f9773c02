"""pytest plugin for `tools/mutation.py`: empties mailaction's caches before every test.

mutmut learns which tests reach a function by running them once; a function behind
``functools.lru_cache`` is reached only by the first test that computes a given value, so
without this the later tests would never be run against that function's mutants.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _empty_caches() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("mailaction") and module is not None:
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear):
                    clear()
