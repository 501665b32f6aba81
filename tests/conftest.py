"""Test-suite-wide settings: Hypothesis profiles.

``make test`` runs the property and fuzz tests with the bounded ``ci`` profile; a longer search is
``HYPOTHESIS_PROFILE=long make test`` (or ``make proptest``).

The ``ci`` profile is derandomized: each test draws the same examples on every run and machine,
so the gate that decides what lands passes or fails on the code alone, and a failure seen in CI
is one seen here. Finding new inputs is the ``long`` profile's job, which draws fresh ones each
run. A random draw found the scenario loader's unbounded ``days``: ``tests/sim/test_scenario.py``
keeps that case.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "long", max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

#: The long search runs the lean crash machine (``tests/billing/test_crash_machine.py``) this
#: many times longer than the profile says: at 100 steps an example, a million steps or more.
LONG_SEARCH_FACTOR = 12 if PROFILE == "long" else 1
