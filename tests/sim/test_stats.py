"""95% intervals of a run's headline figures (``sim.stats``): the formulas against known
values, the summary's columns against the users frame, and their coverage over seeds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sim import parse_scenario, run
from sim.stats import Z95, mean_interval, wilson

from .conftest import shipped


def test_wilson_matches_known_values() -> None:
    """0 of 10: (0, 0.2775); 5 of 10: (0.2366, 0.7634); 10 of 10: (0.7225, 1) (to 4 places,
    the Wilson score interval at z = 1.96); fewer than 2: no interval."""
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(math.isnan(x) for x in wilson(1, 1))


def test_mean_interval_is_the_mean_plus_or_minus_two_standard_errors() -> None:
    """[1, 2, 3, 4]: mean 2.5, sample sd 1.291, so 2.5 +- 1.96 x 1.291 / 2."""
    low, high = mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    half = Z95 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert all(math.isnan(x) for x in mean_interval(np.array([3.0])))


def test_a_quantity_that_cannot_be_negative_gets_no_negative_bound() -> None:
    """Nineteen users at 0 and one at 1 (hours dry): the plain lower bound is below 0 and stops
    at 0, the upper stays; with a negative value in the data the bound is left as it is."""
    hours = np.array([0.0] * 19 + [1.0])
    half = Z95 * np.std(hours, ddof=1) / math.sqrt(20)
    assert 0.05 - half < 0
    assert mean_interval(hours) == pytest.approx((0.0, 0.05 + half))
    signed = np.array([-0.5] + [0.0] * 18 + [1.0])
    low, _ = mean_interval(signed)
    assert low < 0


def test_the_summarys_intervals_come_from_its_users() -> None:
    """Each interval column, recomputed by hand from the users frame, and the figure inside."""
    results = run(shipped("card_failures", users=60, days=3), seed=2, backend="memory")
    users, row = results.users, results.summary.iloc[0]
    dry = int((users["refused"] > 0).sum())
    low, high = wilson(dry, len(users))
    assert (row["dry_per_1000_users_ci_low"], row["dry_per_1000_users_ci_high"]) == (
        pytest.approx(1000 * low),
        pytest.approx(1000 * high),
    )
    monthly = users["topups"].to_numpy(float) * 30 / 3
    assert (row["topups_per_user_month_ci_low"], row["topups_per_user_month_ci_high"]) == (
        pytest.approx(mean_interval(monthly)[0]),
        pytest.approx(mean_interval(monthly)[1]),
    )
    for figure in ("dry_per_1000_users", "dry_hours_per_user", "topups_per_user_month"):
        assert row[f"{figure}_ci_low"] <= row[figure] <= row[f"{figure}_ci_high"]


def _dry_share_scenario(seed: int) -> dict[str, Any]:
    """Users whose card always declines (30%, drawn per user) run dry within 75 minutes for sure;
    the others never do: the true share of users who run dry is exactly 0.3."""
    return {
        "name": "coverage", "users": 50, "days": 0.1, "seed": seed,
        "auto_topup": {"threshold": 1000, "amount": 10000},
        "groups": {"g": {
            "share": 1.0, "balance": 1_500,
            "cards": {"pm_card_visa": 0.7, "pm_card_chargeDeclined": 0.3},
            "usage": {"arrivals": "constant", "requests_per_day": 1_440,
                      "cost": {"dist": "fixed", "value": 20}},
        }},
    }  # fmt: skip


def test_the_dry_share_interval_covers_the_true_share_in_about_95_percent_of_seeds() -> None:
    """Over 30 seeds the interval of ``dry_per_1000_users`` holds the true 300 in at least 25
    (about 28.5 expected; 25 or fewer has a chance under 2% if the coverage is 95%)."""
    covered = 0
    for seed in range(30):
        summary = run(
            parse_scenario(_dry_share_scenario(seed), "t.toml"), seed=seed, backend="memory",
            gateway="direct",
        ).summary.iloc[0]  # fmt: skip
        low, high = summary["dry_per_1000_users_ci_low"], summary["dry_per_1000_users_ci_high"]
        covered += low <= 300 <= high
    assert covered >= 25


def test_wilson_bounds_at_none_and_all_are_exact() -> None:
    """No successes: the lower bound is exactly 0; all of them: the upper bound is exactly 1
    (not a float residue a table would print as 0.000 and a test compare as non-zero)."""
    assert wilson(0, 1_000)[0] == 0.0 and wilson(1_000, 1_000)[1] == 1.0
    assert 0.0 < wilson(0, 1_000)[1] < 0.004 and 0.996 < wilson(1_000, 1_000)[0] < 1.0
