"""Failures: gateway outcomes, how attempts ended, declines, retries, notices, card states."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim.analysis import failures
from sim.stats import wilson

from .analysis_frames import FAILURES, frame, row


def test_charge_outcomes_count_calls_attempts_and_users() -> None:
    """A retried attempt is two calls but one attempt."""
    table = failures.charge_outcomes(FAILURES)
    assert table.loc["transient"].tolist() == [1, 1, 1]
    assert table.loc["declined"].tolist() == [3, 3, 2]


def test_attempt_outcomes_name_every_ending_with_its_attempts_and_users() -> None:
    """Declines split by code, an attempt with no notice yet counted as such, endings nobody
    had listed with zeros, in a fixed order (credited first)."""
    table = failures.attempt_outcomes(FAILURES, users=10)
    assert table.index.tolist() == [
        "credited", failures.UNANSWERED, "declined: insufficient_funds",
        "needs authentication (SCA)", "failed after retries", "no card saved",
        failures.ENDINGS["none"],
    ]  # fmt: skip
    assert table["attempts"].tolist() == [1, 0, 2, 0, 0, 0, 1]
    assert table["users"].tolist() == [1, 0, 1, 0, 0, 0, 1]


def test_attempt_outcomes_give_each_share_its_wilson_interval() -> None:
    """Shares of the 4 attempts in percent, and of the run's 10 users per 1,000."""
    table = failures.attempt_outcomes(FAILURES, users=10)
    declined = table.loc["declined: insufficient_funds"]
    assert (declined["attempts_pct"], declined["users_per_1000"]) == (50, 100)
    low, high = wilson(2, 4)
    assert (declined["attempts_pct_ci_low"], declined["attempts_pct_ci_high"]) == pytest.approx(
        (100 * low, 100 * high)
    )
    assert table.loc["no card saved", "users_per_1000_ci_high"] == pytest.approx(
        1000 * wilson(0, 10)[1]
    )


def test_attempt_outcomes_tell_an_unanswered_credited_attempt_apart() -> None:
    """Credited although its last call got no answer (a lost answer): its own ending; a decline
    with no code is still a decline."""
    events = frame(
        row(0, "u1", "charge", attempt=1, outcome="transient"),
        row(3, "u1", "topup_succeeded", balance=10_000, attempt=1),
        row(5, "u2", "charge", attempt=1, outcome="declined"),
        row(5, "u2", "topup_declined", balance=0, attempt=1),
    )
    table = failures.attempt_outcomes(events, users=2)
    assert table.loc[failures.UNANSWERED, "attempts"] == 1
    assert table.loc["credited", "attempts"] == 0
    assert table.loc["declined: no code", "attempts"] == 1


def test_plot_attempt_outcomes_draws_both_shares_with_counts_and_the_sample() -> None:
    """Two panels of horizontal bars, first ending at the top, the counts written beside the
    bars, plain-number symlog axes, the sample and the attempts in the title."""
    table = failures.attempt_outcomes(FAILURES, users=10)
    figure = Figure()
    axes = figure.subplots(1, 2)
    failures.plot_attempt_outcomes(table, axes, sample="chaos: 10 users, 1 day")
    left, right = axes
    assert [p.get_width() for p in left.patches][::-1] == pytest.approx(
        table["attempts_pct"].tolist()
    )
    assert [t.get_text() for t in right.texts][::-1] == ["1", "0", "1", "0", "0", "0", "1"]
    assert left.get_xscale() == "symlog" and "95% CI" in left.get_xlabel()
    assert "per 1,000" in right.get_xlabel() and left.get_legend() is None
    assert figure.get_suptitle() == (
        "How top-up attempts ended\n(chaos: 10 users, 1 day; 4 attempts; counts beside the bars)"
    )


def test_declines_by_code_sorts_the_commonest_first() -> None:
    """Codes are counted per declined call, with the users who hit them."""
    table = failures.declines_by_code(FAILURES)
    assert table.index.tolist() == ["insufficient_funds", "expired_card"]
    assert table["declines"].tolist() == [2, 1] and table["users"].tolist() == [1, 1]


def test_retries_cross_calls_per_attempt_with_the_last_outcome() -> None:
    """One attempt needed two calls and succeeded; three declined at the first call."""
    table = failures.retries(FAILURES)
    assert table.loc[2, "succeeded"] == 1 and table.loc[1, "declined"] == 3
    assert table.loc[1, "succeeded"] == 0


def test_notifications_count_only_notification_kinds() -> None:
    """Charges and webhook deliveries are not notifications."""
    table = failures.notifications(FAILURES)
    assert table["sent"].to_dict() == {
        "topup_declined": 2, "topup_succeeded": 1, "topup_suspended": 1,
    }  # fmt: skip


def test_states_by_card_crosses_cards_with_final_states() -> None:
    """Each user counts once, under their card and the state they ended in."""
    users = pd.DataFrame(
        {"card": ["visa", "visa", "sca"], "final_state": ["active", "active", "paused"]}
    )
    table = failures.states_by_card(users)
    assert table.loc["visa", "active"] == 2 and table.loc["sca", "paused"] == 1
    assert table.loc["sca", "active"] == 0
