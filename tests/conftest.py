"""Test-suite-wide settings: Hypothesis profiles.

``make test`` runs the property and fuzz tests with the bounded ``ci`` profile; a longer search is
``HYPOTHESIS_PROFILE=long make test`` (or ``make proptest``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

#: The long search runs the lean crash machine (``tests/billing/test_crash_machine.py``) this
#: many times longer than the profile says: at 100 steps an example, a million steps or more.
LONG_SEARCH_FACTOR = 12 if PROFILE == "long" else 1
