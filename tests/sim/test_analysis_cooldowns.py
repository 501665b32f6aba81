"""The cooldown: blocked triggers, refusal reasons, who runs dry, and a cooldown sweep."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim.analysis import cooldowns
from sim.stats import INTERVALS, mean_interval, wilson

from .analysis_frames import STORY, USERS, frame, row


def test_triggers_count_served_requests_by_trigger() -> None:
    """Refused rows carry no trigger and are not counted."""
    table = cooldowns.triggers(STORY)
    assert table["requests"].to_dict() == {"claimed": 1, "cooling": 1, "none": 1, "pending": 1}


def test_refusal_reasons_tell_payment_wait_cooldown_threshold_and_hold_apart() -> None:
    """Each refused request gets the reason no credits were there."""
    events = frame(
        row(0, "u1", "refused", credits=50, balance=10, attempt=1),
        row(1, "u1", "refused", credits=50, balance=10),
        row(2, "u1", "topup_declined", balance=10, attempt=1),
        row(60, "u1", "refused", credits=50, balance=10),
        row(70, "u1", "refused", credits=5_000, balance=4_000),
        row(7200, "u1", "refused", credits=50, balance=10),
    )
    reasons = cooldowns.refusal_reasons(events, USERS, cooldown_hours=1)
    assert reasons["reason"].tolist() == [
        "awaiting payment", "awaiting payment", "cooldown", "above threshold", "auto top-up held",
    ]  # fmt: skip


def test_refusals_by_reason_counts_users_per_thousand_with_its_interval() -> None:
    """Two refusals of one user out of four users is 250 per 1,000, within Wilson's bounds of
    1 in 4."""
    reasons = pd.DataFrame({"user": ["a", "a", "b"], "reason": ["cooldown"] * 2 + ["held"]})
    table = cooldowns.refusals_by_reason(reasons, users=4)
    assert table.loc["cooldown", "refused"] == 2 and table.loc["cooldown", "users_per_1000"] == 250
    low, high = wilson(1, 4)
    assert table.loc["cooldown", "users_per_1000_ci_low"] == pytest.approx(1000 * low)
    assert table.loc["cooldown", "users_per_1000_ci_high"] == pytest.approx(1000 * high)


def test_who_ran_dry_compares_users_refused_for_a_reason_with_the_rest() -> None:
    """Usage is averaged per group of users and divided by the days run; hours dry carry their
    interval across the group's users."""
    users = pd.DataFrame(
        {"user": ["a", "b", "c", "d"], "requests": [200, 20, 40, 100],
         "credits_used": [2000, 200, 400, 1000], "topups": [4, 0, 0, 2],
         "dry_seconds": [7200.0, 0.0, 0.0, 3600.0]}
    )  # fmt: skip
    reasons = pd.DataFrame({"user": ["a", "b", "d"], "reason": ["cooldown", "held", "cooldown"]})
    table = cooldowns.who_ran_dry(reasons, users, days=2)
    hit = table.loc["refused in cooldown"]
    usage = ["users", "requests_per_day", "credits_used_per_day", "topups_per_day"]
    assert hit[usage].tolist() == [2, 75, 750, 1.5]
    assert hit["dry_hours_per_user"] == 1.5
    low, high = mean_interval(pd.Series([2.0, 1.0]).to_numpy())
    assert (hit["dry_hours_per_user_ci_low"], hit["dry_hours_per_user_ci_high"]) == pytest.approx(
        (low, high)
    )
    assert table.loc["never refused in cooldown", "requests_per_day"] == 15


def sweep_grid() -> pd.DataFrame:
    """A two-point cooldown sweep with every headline figure and its interval."""
    grid = pd.DataFrame({"billing.cooldown_hours": [4.0, 0.5], "users": [10, 10],
                         "charge_calls": [20, 80]})  # fmt: skip
    for i, figure in enumerate(INTERVALS):
        grid[figure] = [300.0 + i, 0.0 + i]
        grid[f"{figure}_ci_low"] = grid[figure] - 1
        grid[f"{figure}_ci_high"] = grid[figure] + 2
    return grid


def test_cooldown_effect_orders_a_sweep_by_cooldown_with_users_and_intervals() -> None:
    """Rows by cooldown; the users each point rests on, then every headline figure with its
    bounds; figures without an interval (charge calls) are left out."""
    effect = cooldowns.cooldown_effect(sweep_grid())
    assert effect.index.tolist() == [0.5, 4.0]
    assert list(effect.columns) == ["users"] + [
        f"{f}{end}" for f in INTERVALS for end in ("", "_ci_low", "_ci_high")
    ]
    assert effect["dry_per_1000_users"].tolist() == [0.0, 300.0]
    assert effect["dry_per_1000_users_ci_high"].tolist() == [2.0, 302.0]


def test_plot_cooldown_effect_draws_each_figure_with_error_bars_in_hours() -> None:
    """Three panels on a log hour axis, each point with its interval; the share of users who
    ran dry spans its whole range; the figure's title states the sample."""
    effect = cooldowns.cooldown_effect(sweep_grid())
    figure = Figure()
    axes = figure.subplots(1, 3)
    cooldowns.plot_cooldown_effect(effect, axes, sample="c: 10 users, 3 days per run, 2 runs")
    assert all(ax.get_xscale() == "log" and "hours" in ax.get_xlabel() for ax in axes)
    assert all("95% CI" in ax.get_ylabel() for ax in axes)
    assert "per 1,000" in axes[0].get_ylabel() and axes[0].get_ylim()[1] >= 1000
    lower, upper = (line.get_ydata() for line in axes[0].get_lines()[1:])  # the caps
    assert upper.tolist() == [2.0, 302.0] and lower.tolist() == [-1.0, 299.0]
    assert axes[1].get_legend() is None
    assert figure.get_suptitle().endswith("(c: 10 users, 3 days per run, 2 runs)")
