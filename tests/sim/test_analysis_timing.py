"""Trigger timing: percentiles per stage, timings and refusals per bin, and their charts."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim.analysis import timing, topups
from sim.stats import wilson

from .analysis_frames import STORY, USERS


def test_timing_summary_gives_percentiles_per_stage() -> None:
    """Median and maximum per stage, over the crossings that reached it."""
    crossed = pd.DataFrame(
        {"to_claim_s": [0.0, 0.0, 10.0], "to_charge_s": [2.0, 4.0, 12.0],
         "to_credit_s": [2.0, 4.0, float("nan")]}
    )  # fmt: skip
    summary = timing.timing_summary(crossed)
    assert summary.loc["claim", "median_s"] == 0 and summary.loc["charge", "max_s"] == 12
    assert summary.loc["credits land", "crossings"] == 2
    # Linear interpolation at ranks 0.9 x 2 and 0.95 x 2: 4 + 0.8 x 8 and 4 + 0.9 x 8.
    assert summary.loc["charge", "p90_s"] == pytest.approx(10.4)
    assert summary.loc["charge", "p95_s"] == pytest.approx(11.2)
    assert list(summary.columns) == ["crossings", "median_s", "p90_s", "p95_s", "p99_s", "max_s"]


CROSSED = pd.DataFrame(
    {"latency_s": [0.5, 1.5, 1.9, 3.0, 0.7, 2_000.0],
     "to_credit_s": [1.0, 2.0, 4.0, 9.0, None, 2_000.0], "refused": [0, 0, 3, 1, 50, 0]}
)  # fmt: skip


def test_timing_by_bins_crossings_and_counts_refusals() -> None:
    """Crossings fall into ``[lo, hi)`` bins; empty bins stay; uncredited ones are left out."""
    table = timing.timing_by(CROSSED, "latency_s", [0, 1, 2, 5, 10, 1_000, 10_000])
    assert table["crossings"].tolist() == [1, 2, 1, 0, 0, 1]
    assert table.loc["1-2 s", "median_s"] == 3.0
    assert table.loc["1-2 s", "with_refusals_pct"] == 50
    assert table.index.tolist() == [
        "0-1 s", "1-2 s", "2-5 s", "5-10 s", "10-1,000 s", "1,000-10,000 s",
    ]  # fmt: skip


def test_timing_by_gives_the_share_with_refusals_its_count_and_wilson_interval() -> None:
    """1 of 2 crossings refused: Wilson's interval of 1 in 2, in percent; none refused of one
    crossing has no interval, and an empty bin has no share."""
    table = timing.timing_by(CROSSED, "latency_s", [0, 1, 2, 5, 10])
    assert table["with_refusals"].tolist() == [0, 1, 1, 0]
    low, high = wilson(1, 2)
    row = table.loc["1-2 s"]
    assert (row["with_refusals_pct_ci_low"], row["with_refusals_pct_ci_high"]) == (
        100 * low, 100 * high,
    )  # fmt: skip
    assert pd.isna(table.loc["0-1 s", "with_refusals_pct_ci_high"])
    assert pd.isna(table.loc["5-10 s", "with_refusals_pct"])


def test_plot_timing_draws_one_cumulative_line_per_stage_on_a_seconds_axis() -> None:
    """Three labelled lines on a symlog time axis labelled in plain seconds, in percent of
    crossings, and a title with the sample and the number of crossings."""
    figure = Figure()
    ax = figure.subplots()
    timing.plot_timing(topups.crossings(STORY, USERS), ax, sample="s: 1 user, 1 day")
    assert [line.get_label() for line in ax.get_lines()] == [
        "claimed", "charged", "credits landed",
    ]  # fmt: skip
    assert ax.get_xscale() == "symlog" and ax.get_lines()[2].get_ydata()[-1] == 100
    figure.draw_without_rendering()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["0", "1", "10", "100", "1,000", "10,000"]  # the longest wait: 3,952 s
    assert "seconds" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert ax.get_title().endswith("(s: 1 user, 1 day; 2 crossings)")


def test_plot_refusals_draws_each_bins_share_with_its_interval_and_counts() -> None:
    """One bar per bin, error bars from the interval, ``k/n`` written over each bar, and an
    empty bin named as such rather than left blank."""
    table = timing.timing_by(CROSSED, "latency_s", [0, 1, 2, 5, 10])
    ax = Figure().subplots()
    timing.plot_refusals(table, ax, sample="s", what="latency (seconds)")
    assert [round(p.get_height(), 6) for p in ax.patches] == [0, 50, 100, 0]
    assert [t.get_text() for t in ax.texts] == ["0/1", "1/2", "1/1", "no\ncrossings"]
    assert ax.get_xlabel() == "latency (seconds)" and "95% CI" in ax.get_ylabel()
    assert "(s; 4 crossings;" in ax.get_title()
    lower, upper = (line.get_ydata() for line in ax.get_lines())  # the error bars' caps
    assert upper[1] == pytest.approx(100 * wilson(1, 2)[1]) and lower[1] < 50
