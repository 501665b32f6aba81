"""One user's balance: its history from the log and the chart of it."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim.analysis import balances

from .analysis_frames import STORY, USERS


def test_busiest_user_is_the_groups_user_with_most_topups() -> None:
    """Other groups are ignored, even with more top-ups."""
    users = pd.DataFrame({"user": ["a", "b", "c"], "group": ["x", "x", "y"], "topups": [1, 3, 9]})
    assert balances.busiest_user(users, "x") == "b"


def test_balance_history_keeps_one_users_rows_that_carry_a_balance() -> None:
    """Charge and webhook rows (no balance) are left out; times are in hours."""
    history = balances.balance_history(STORY, "u1")
    assert history["kind"].tolist() == [
        "request", "request", "request", "topup_succeeded", "request", "refused", "refused",
        "topup_succeeded",
    ]  # fmt: skip
    assert history["hour"].iloc[-1] == pytest.approx(4002 / 3600)


def test_plot_balance_draws_the_balance_threshold_topups_and_refusals() -> None:
    """The plot labels its axes, names each series with its count in the legend, and states the
    user's group and the run the user comes from in the title."""
    ax = Figure().subplots()
    balances.plot_balance(STORY, USERS, "u1", ax, sample="baseline: 100 users, 7 days")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "balance", "threshold (1,000)", "credits landed (2)", "refused requests (2)",
    ]  # fmt: skip
    assert "hours" in ax.get_xlabel() and "credits" in ax.get_ylabel()
    assert ax.get_title() == (
        "One regular user's balance, with auto top-ups\n(one user of baseline: 100 users, 7 days)"
    )


def test_plot_balance_puts_the_legend_beside_the_axes_not_over_the_balance() -> None:
    """Drawn, the legend lies wholly right of the axes, so it covers no point of the line."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    ax = figure.subplots()
    balances.plot_balance(STORY, USERS, "u1", ax, sample="s")
    figure.draw_without_rendering()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1
