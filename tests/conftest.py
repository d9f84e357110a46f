"""Test settings: hypothesis profiles.

- ``default``: random examples, a fresh search on every run (development);
- ``ci`` (chosen when ``CI`` is set, as on the CI runner): the same examples on every run, so a
  landing never hangs on a counterexample found by chance; a new counterexample shows up in
  development and in the ``thorough`` profile instead;
- ``thorough`` (``HYPOTHESIS_PROFILE=thorough``): 3000 examples per property.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile(
    "thorough", deadline=None, max_examples=3000, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI") else "default"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
