"""Test settings: hypothesis profiles.

- ``default``: random examples, a fresh search on every run (development);
- ``ci`` (chosen when ``CI`` is set, as on the CI runner): the same examples on every run, so a
  landing never hangs on a counterexample found by chance; a new counterexample shows up in
  development and in the ``thorough`` profile instead;
- ``thorough`` (``HYPOTHESIS_PROFILE=thorough``): 3000 examples per property.

Each test process keeps built nets in a cache directory of its own, made for the run and removed
after it, so no test reads what an earlier run (or the user) left in ``~/.cache/transactive``.
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


def pytest_configure(config: pytest.Config) -> None:
    _RUN_CACHE_DIRS.append(tempfile.mkdtemp(prefix="transactive-test-cache-"))
    os.environ["TRANSACTIVE_CACHE_DIR"] = _RUN_CACHE_DIRS[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    while _RUN_CACHE_DIRS:
        shutil.rmtree(_RUN_CACHE_DIRS.pop(), ignore_errors=True)
