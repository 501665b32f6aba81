"""The threshold review (``sim.review``): the review table, its heat maps, and a recommendation
that states its rule, says when its constraints were not met and which choices are tied."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sim.review import (
    Rule,
    heatmap,
    interval_pivot,
    interval_text,
    pivot,
    plot_heatmap,
    precision,
    recommend,
    review_table,
    sample_size,
    standing,
    ties,
)

GRID = pd.DataFrame(
    {"auto_topup.threshold": [500, 500, 2000, 2000], "auto_topup.amount": [1000, 10000] * 2,
     "users": 100, "days": 15.0, "dry_per_1000_users": [200.0, 50.0, 50.0, 50.0],
     "dry_per_1000_users_ci_low": [150.0, 30.0, 30.0, 30.0],
     "dry_per_1000_users_ci_high": [250.0, 70.0, 70.0, 70.0],
     "dry_hours_per_user": 0.5, "topups_per_user_month": [9.0, 1.0, 1.0, 1.0],
     "failed_topups": [4, 2, 1, 1], "revenue_eur": [30.0, 40.0, 40.0, 40.0],
     "users_churned": [10, 0, 0, 0]}
)  # fmt: skip


def _options(**columns: list[float]) -> pd.DataFrame:
    """A segment's review table: four settings, threshold x amount."""
    base = {
        "segment": "all", "threshold": [500, 500, 2000, 2000], "amount": [1000, 10000] * 2,
        "topups_per_user_month": [2.0] * 4, "failed_per_1000_month": [0.0] * 4,
        "revenue_per_1000_month": [100.0] * 4, "users": 400,
    }  # fmt: skip
    return pd.DataFrame(base | columns)


def test_review_table_renames_grid_keys_and_rates_per_thousand_per_month() -> None:
    """Half a month of 100 users: 4 failures are 80 per 1,000 users per month; the intervals
    and the number of users come along."""
    table = review_table(GRID, currency="eur")
    assert list(table.columns[:2]) == ["threshold", "amount"]
    assert table["failed_per_1000_month"].tolist() == [80, 40, 20, 20]
    assert table.loc[0, "revenue_per_1000_month"] == 600
    assert table["dry_per_1000_users_ci_high"].tolist() == [250, 70, 70, 70]
    assert table["users"].tolist() == [100] * 4
    assert table["days"].tolist() == [15] * 4


def test_pivot_lays_a_value_out_threshold_by_amount() -> None:
    """Rows are thresholds, columns amounts."""
    grid = pivot(review_table(GRID, "eur"), "dry_per_1000_users")
    assert grid.loc[500, 1000] == 200 and grid.shape == (2, 2)


def test_plot_heatmap_writes_each_value_in_its_cell() -> None:
    """One text per cell, axis labels in credits, a colour bar with its label."""
    fig = Figure()
    ax = fig.subplots()
    grid = pivot(review_table(GRID, "eur"), "dry_per_1000_users")
    plot_heatmap(grid, ax, title="Runs dry", label="per 1,000 users")
    assert sorted(t.get_text() for t in ax.texts) == ["200", "50", "50", "50"]
    assert ax.get_xlabel() == "amount (credits)" and len(fig.axes) == 2


def test_a_map_with_one_value_everywhere_is_flat_and_says_so() -> None:
    """Failed charges equal in every cell: no colour bar spreading them over the palette, and
    the title says the value is the same everywhere."""
    fig = Figure()
    ax = fig.subplots()
    table = review_table(GRID.assign(failed_topups=2), "eur")  # 40 per 1,000 a month everywhere
    grid = pivot(table, "failed_per_1000_month")
    plot_heatmap(grid, ax, title="Failed charges", label="per 1,000 users per month")
    assert len(fig.axes) == 1
    assert ax.get_title() == (
        "Failed charges\nthe same in every cell: 40 per 1,000 users per month"
    )
    assert sorted(t.get_text() for t in ax.texts) == ["40"] * 4


def test_interval_text_reads_value_then_interval() -> None:
    """Each cell reads "value (low to high)"; a figure without an interval reads its value
    alone, and so does a row whose interval is missing (fewer than two users)."""
    table = review_table(GRID, "eur")
    assert interval_text(table, "dry_per_1000_users").tolist()[:2] == ["200 (150 to 250)",
                                                                       "50 (30 to 70)"]  # fmt: skip
    assert interval_text(table, "failed_per_1000_month").tolist() == ["80", "40", "20", "20"]
    table.loc[0, "dry_per_1000_users_ci_low"] = math.nan
    assert interval_text(table, "dry_per_1000_users", sep="\n").tolist()[:2] == [
        "200", "50\n(30 to 70)"
    ]  # fmt: skip


def test_interval_pivot_lays_the_texts_out_as_a_table() -> None:
    """Thresholds down, amounts across, each cell its value and interval (the cooldown tables)."""
    grid = interval_pivot(review_table(GRID, "eur"), "dry_per_1000_users")
    assert grid.loc[500].tolist() == ["200 (150 to 250)", "50 (30 to 70)"]
    assert grid.index.name == "threshold" and grid.columns.name == "amount"


def test_ties_are_the_rows_whose_interval_reaches_the_lowest_one() -> None:
    """Lowest 30 (20 to 40): 35 (from 25) and 40 (from 28) overlap it, 90 (from 80) does not;
    without intervals only equal values tie."""
    options = _options(
        dry_per_1000_users=[90.0, 35.0, 40.0, 30.0],
        dry_per_1000_users_ci_low=[80.0, 25.0, 28.0, 20.0],
        dry_per_1000_users_ci_high=[100.0, 45.0, 52.0, 40.0],
    )
    assert ties(options, "dry_per_1000_users").tolist() == [False, True, True, True]
    assert ties(options, "failed_per_1000_month").tolist() == [True] * 4  # all 0.0
    assert ties(options.assign(revenue_per_1000_month=[1.0, 2.0, 1.0, 3.0]),
                "revenue_per_1000_month").tolist() == [True, False, True, False]  # fmt: skip


def test_sample_size_names_users_and_days_and_refuses_mixed_sizes() -> None:
    """One size for every row, in words; rows of different sizes cannot share one caption."""
    table = review_table(GRID, "eur")
    assert sample_size(table) == "100 users x 15 days"
    table.loc[0, "users"] = 50
    with pytest.raises(ValueError, match="different sizes"):
        sample_size(table)


def test_heatmap_writes_intervals_outlines_ties_and_states_the_sample_size() -> None:
    """Each cell shows its value over its interval; the three cells tied with the lowest
    (50, 30 to 70) are outlined and the 200 (150 to 250) cell is not; the title says 100 users
    for 15 days."""
    ax = Figure().subplots()
    heatmap(review_table(GRID, "eur"), "dry_per_1000_users", ax, title="Runs dry",
            label="per 1,000 users", outline_ties=True)  # fmt: skip
    assert sorted(t.get_text() for t in ax.texts) == ["200\n(150 to 250)"] + ["50\n(30 to 70)"] * 3
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted(p.get_xy() for p in frames) == [(-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)]
    assert ax.get_title() == (
        "Runs dry\n100 users x 15 days per setting; outlined: tied with the lowest"
    )
    bare = heatmap(review_table(GRID, "eur"), "failed_per_1000_month", Figure().subplots(),
                   title="Failed", label="per 1,000")  # fmt: skip
    assert (
        bare.get_title() == "Failed\n100 users x 15 days per setting; no interval for this figure"
    )


def test_plot_heatmap_marks_hatched_starred_and_boxed_cells() -> None:
    """A hatch per marked cell, one star at the starred cell, one dashed frame at the boxed."""
    ax = Figure().subplots()
    grid = pivot(review_table(GRID, "eur"), "dry_per_1000_users")
    hatched = grid > 100
    plot_heatmap(grid, ax, title="t", label="l", hatched=hatched, starred=(2000, 10000),
                 boxed=(500, 1000))  # fmt: skip
    hatches = [p for p in ax.patches if p.get_hatch()]
    assert [p.get_xy() for p in hatches] == [(-0.5, -0.5)]  # threshold 500, amount 1,000
    boxes = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert [p.get_xy() for p in boxes] == [(-0.45, -0.45)]
    (star,) = ax.lines
    assert star.get_marker() == "*" and star.get_xdata()[0] > 0.5 and star.get_ydata()[0] > 1


def test_standing_says_which_settings_are_feasible_tied_and_chosen() -> None:
    """The best feasible setting is 35 at 500/10,000 (30 at 2,000/10,000 tops up too often) and
    is chosen; 40 at 2,000/1,000 overlaps it: tied, listed, not chosen."""
    options = _options(
        dry_per_1000_users=[90.0, 35.0, 40.0, 30.0],
        dry_per_1000_users_ci_low=[80.0, 25.0, 28.0, 20.0],
        dry_per_1000_users_ci_high=[100.0, 45.0, 52.0, 40.0],
        topups_per_user_month=[2.0, 2.0, 2.0, 6.0],
    )
    ranks = standing(options, Rule())
    assert ranks["excess"].tolist() == [0, 0, 0, 0.5]
    assert ranks["tied"].tolist() == [False, True, True, False]
    assert ranks["chosen"].tolist() == [False, True, False, False]


def test_a_clear_winner_is_chosen_with_its_margin() -> None:
    """Intervals apart: the lowest objective wins, tied with nothing, and beats the next
    setting by the difference."""
    options = _options(
        dry_per_1000_users=[10.0, 100.0, 120.0, 200.0],
        dry_per_1000_users_ci_low=[5.0, 80.0, 100.0, 170.0],
        dry_per_1000_users_ci_high=[15.0, 120.0, 140.0, 230.0],
    )
    best = recommend(options, by="segment").loc["all"]
    assert (best["threshold"], best["amount"], best["tied"], best["margin"]) == (500, 1000, 0, 90)
    assert best["constraints_met"]
    assert best["recommendation"] == (
        "top up below 500 credits, buy 1,000 credits: 10 dry per 1000 users (95% CI 5 to 15), "
        "2.0 top-ups a month each, from 400 users. Beats the next setting by 90."
    )


def test_the_best_is_chosen_and_the_settings_within_its_interval_are_listed_as_tied() -> None:
    """The best (30 at 2,000/10,000) overlaps 35 at 500/10,000 and 40 at 2,000/1,000: it is
    chosen, and the other two are listed as tied with it."""
    options = _options(
        dry_per_1000_users=[90.0, 35.0, 40.0, 30.0],
        dry_per_1000_users_ci_low=[80.0, 25.0, 28.0, 20.0],
        dry_per_1000_users_ci_high=[100.0, 45.0, 52.0, 40.0],
    )
    best = recommend(options, by="segment").loc["all"]
    assert (best["threshold"], best["amount"]) == (2000, 10000)
    assert best["tied"] == 2
    assert best["tied_with"] == (
        "top up below 500 credits, buy 10,000 credits; "
        "top up below 2,000 credits, buy 1,000 credits"
    )
    assert best["margin"] == 60  # 90 at 500/1,000 is the best outside the tie
    assert "Tied within the 95% intervals with 2 other setting(s)" in best["recommendation"]


def test_when_no_setting_meets_the_limits_the_closest_is_shown_and_says_so() -> None:
    """Every setting tops up more than 4 times a month: none is feasible; the one that
    exceeds the limit least (5 a month) is shown, marked as not meeting the limits."""
    options = _options(
        dry_per_1000_users=[0.0, 10.0, 5.0, 20.0], topups_per_user_month=[9.0, 5.0, 6.0, 5.0]
    )
    best = recommend(options, by="segment").loc["all"]
    assert not best["constraints_met"]
    assert (best["threshold"], best["amount"]) == (500, 10000)  # 5 a month, then fewer dry
    assert math.isnan(best["margin"])
    assert (
        "No setting meets the limits (at most 4 top-ups per user per month)"
        in (best["recommendation"])
    )


def test_a_failed_charge_limit_is_a_constraint_too() -> None:
    """With at most 10 failed charges per 1,000 users a month, the otherwise best setting
    (20 failures) is passed over."""
    options = _options(
        dry_per_1000_users=[10.0, 50.0, 60.0, 70.0], failed_per_1000_month=[20.0, 5.0, 5.0, 5.0]
    )
    rule = Rule(max_failed_per_1000_month=10)
    best = recommend(options, by="segment", rule=rule).loc["all"]
    assert (best["threshold"], best["amount"], best["constraints_met"]) == (500, 10000, True)
    assert "at most 10 failed charges per 1,000 users a month" in rule.text()


def test_the_rule_states_itself() -> None:
    """The rule in words names its objective, its limits, what wins and what counts as tied."""
    text = Rule().text()
    assert text.startswith("Minimise dry per 1000 users, subject to at most 4 top-ups")
    assert "lowest value wins" in text and "95% intervals overlap its interval" in text


def test_one_row_per_segment_in_their_order() -> None:
    """Segments keep the table's order."""
    table = pd.concat([
        _options(dry_per_1000_users=[1.0, 2.0, 3.0, 4.0]).assign(segment="light"),
        _options(dry_per_1000_users=[4.0, 3.0, 2.0, 1.0]).assign(segment="heavy"),
    ])  # fmt: skip
    best = recommend(table, by="segment")
    assert best.index.tolist() == ["light", "heavy"]
    assert best.loc["heavy", "threshold"] == 2000 and best.loc["light", "threshold"] == 500
    assert best.loc["light", "users"] == pytest.approx(400)


def test_equal_values_go_to_the_smallest_amount_then_the_lowest_threshold() -> None:
    """Two settings at the same lowest figure: the smaller amount wins, whatever the order."""
    options = _options(dry_per_1000_users=[50.0, 20.0, 20.0, 20.0])
    best = recommend(options, by="segment").loc["all"]
    assert (best["threshold"], best["amount"]) == (2000, 1000)
    reordered = recommend(options.iloc[::-1], by="segment").loc["all"]
    assert (reordered["threshold"], reordered["amount"]) == (2000, 1000)


def test_precision_gives_each_intervals_half_width_in_the_median_and_the_widest_row() -> None:
    """Half-widths 50, 20, 20, 20 for users who ran dry: median 20, widest 50; a figure without
    intervals (hours dry here) is left out rather than shown as exact."""
    found = precision(GRID)
    assert list(found.index) == ["dry_per_1000_users"]
    row = found.loc["dry_per_1000_users"]
    assert (row["median_value"], row["median_half_width"], row["widest_half_width"]) == (
        50.0, 20.0, 50.0,
    )  # fmt: skip
    assert row["settings"] == 4


def test_users_who_left_are_a_share_with_its_wilson_interval() -> None:
    """10 of 100 users left: 100 per 1,000, with the Wilson interval of 10/100 (about 55 to
    174); none left: 0, and an interval that still says how few could have."""
    table = review_table(GRID, "eur")
    assert list(table["left_per_1000_users"]) == [100.0, 0.0, 0.0, 0.0]
    low, high = table.loc[0, ["left_per_1000_users_ci_low", "left_per_1000_users_ci_high"]]
    assert (round(low, 1), round(high, 1)) == (55.2, 174.4)
    assert table.loc[1, "left_per_1000_users_ci_low"] == 0.0
    assert round(table.loc[1, "left_per_1000_users_ci_high"], 1) == 37.0
    assert "left_per_1000_users" in precision(table).index
