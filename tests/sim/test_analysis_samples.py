"""Sample sizes and intervals: the caption every figure carries and the 95% intervals of its
shares and means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim.analysis import samples
from sim.stats import mean_interval, wilson


def summary(*sizes: tuple[str, int, float]) -> pd.DataFrame:
    """A summary (or sweep) frame of runs of the given (scenario, users, days)."""
    return pd.DataFrame(sizes, columns=["scenario", "users", "days"])


def test_sample_size_names_the_scenario_users_and_days() -> None:
    """One run reads ``scenario: n users, d days``, with separators and singular units."""
    assert samples.sample_size(summary(("baseline", 1_200, 10.0))) == (
        "baseline: 1,200 users, 10 days"
    )
    assert samples.sample_size(summary(("x", 1, 1.0))) == "x: 1 user, 1 day"


def test_sample_size_of_several_runs_of_one_size_counts_the_runs() -> None:
    """A sweep says the size is per run and how many runs there were."""
    grid = summary(*[("cooldown_stress", 20, 3.0)] * 7)
    assert samples.sample_size(grid) == "cooldown_stress: 20 users, 3 days per run, 7 runs"


def test_sample_size_refuses_runs_of_different_sizes() -> None:
    """No one caption fits runs of 20 and 30 users."""
    with pytest.raises(ValueError, match="2 different sizes"):
        samples.sample_size(summary(("a", 20, 3.0), ("a", 30, 3.0)))


def test_titled_puts_the_sample_under_the_title() -> None:
    """The sample goes on its own line, in brackets."""
    ax = Figure().subplots()
    samples.titled(ax, "Title", "a: 2 users, 1 day")
    assert ax.get_title() == "Title\n(a: 2 users, 1 day)"


def test_with_share_adds_the_share_and_its_wilson_interval_per_row() -> None:
    """Each row's share is scaled by ``per``; its bounds are Wilson's, so none (0 of 20) still
    has an upper bound above 0, and fewer than two items have no interval."""
    frame = pd.DataFrame(index=["a", "b", "c", "d"])
    out = samples.with_share(frame, "pct", pd.Series([0, 10, 1, 0], index=frame.index),
                             pd.Series([20, 20, 1, 0], index=frame.index), per=100)  # fmt: skip
    assert out["pct"].tolist()[:3] == [0, 50, 100] and math.isnan(out.loc["d", "pct"])
    low, high = wilson(10, 20)
    assert (out.loc["b", "pct_ci_low"], out.loc["b", "pct_ci_high"]) == (100 * low, 100 * high)
    assert out.loc["a", "pct_ci_low"] == 0 and out.loc["a", "pct_ci_high"] > 10
    assert out[["pct_ci_low", "pct_ci_high"]].loc[["c", "d"]].isna().all().all()


def test_with_share_takes_one_size_for_every_row() -> None:
    """Users per 1,000 over a run of 30 users: one size for all rows."""
    frame = pd.DataFrame({"users": [3, 30]}, index=["x", "y"])
    out = samples.with_share(frame, "per_1000", frame["users"], 30, per=1000)
    assert out["per_1000"].tolist() == [100, 1000]
    assert out.loc["y", "per_1000_ci_high"] == pytest.approx(1000)


def test_with_mean_adds_each_groups_mean_and_its_interval() -> None:
    """Means per group, scaled, with mean +- 1.96 SE across the group's values."""
    values = pd.Series([3600.0, 7200.0, 10800.0, 0.0])
    by = pd.Series(["hit", "hit", "hit", "miss"])
    out = samples.with_mean(pd.DataFrame(index=["hit", "miss"]), "hours", values, by, 1 / 3600)
    assert out.loc["hit", "hours"] == 2
    low, high = mean_interval(np.array([1.0, 2.0, 3.0]))
    assert out.loc["hit", "hours_ci_low"] == pytest.approx(low)
    assert out.loc["hit", "hours_ci_high"] == pytest.approx(high)
    assert math.isnan(out.loc["miss", "hours_ci_low"])  # one user: no interval


def test_error_bars_are_distances_below_and_above_with_zero_for_no_interval() -> None:
    """Matplotlib wants distances, not bounds; a missing interval draws no bar."""
    frame = pd.DataFrame(
        {"v": [5.0, 0.0, 2.0], "v_ci_low": [3.0, 0.0, np.nan], "v_ci_high": [9.0, 4.0, np.nan]}
    )
    assert samples.error_bars(frame, "v").tolist() == [[2.0, 0.0, 0.0], [4.0, 4.0, 0.0]]
