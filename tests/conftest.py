"""Test settings: hypothesis profiles.

- ``default``: random examples, a fresh search on every run (development);
- ``ci`` (chosen when ``CI`` is set, as on the CI runner): the same examples on every run, so a
  landing never hangs on a counterexample found by chance; a new counterexample shows up in
  development and in the ``thorough`` profile instead;
- ``thorough`` (``HYPOTHESIS_PROFILE=thorough``): 3000 examples per property.

A run keeps built feeders and power-flow models in a cache directory of its own (made by the
run's first process and shared with its xdist workers, which inherit it; removed after the run),
so no test reads what an earlier run (or the user) left in ``~/.cache/transactive``, and a grid
is parsed once per run, not once per worker.
"""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile(
    "thorough", deadline=None, max_examples=3000, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI") else "default"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


_RUN_CACHE_DIRS: list[str] = []
#: Set to the run's cache directory by the process that made it (its workers inherit both).
_RUN_CACHE_MARK = "TRANSACTIVE_TEST_RUN_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    made = os.environ.get(_RUN_CACHE_MARK)
    if made and os.environ.get("PYTEST_XDIST_WORKER") and os.path.isdir(made):
        os.environ["TRANSACTIVE_CACHE_DIR"] = made  # the controller's, for this run
        return
    _RUN_CACHE_DIRS.append(tempfile.mkdtemp(prefix="transactive-test-cache-"))
    os.environ["TRANSACTIVE_CACHE_DIR"] = os.environ[_RUN_CACHE_MARK] = _RUN_CACHE_DIRS[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    while _RUN_CACHE_DIRS:
        shutil.rmtree(_RUN_CACHE_DIRS.pop(), ignore_errors=True)
