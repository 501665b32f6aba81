"""Analysis: each notebook figure computed from small hand-built frames with known answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim import Results, analysis, run
from sim.eventlog import COLUMNS
from sim.results import events_frame
from sim.usage import TICKS

from .conftest import shipped


def row(seconds: float, user: str | None, kind: str, **fields: Any) -> tuple[Any, ...]:
    """One event-log row at ``seconds``, every column not given left empty."""
    values = {"time": round(seconds * TICKS), "user": user, "kind": kind, **fields}
    return tuple(values.get(column) for column in COLUMNS)


def frame(*rows: tuple[Any, ...]) -> pd.DataFrame:
    """An events frame with the simulation's own column types."""
    return events_frame(list(rows))


def people(*users: tuple[str, int], card: str = "pm_card_visa") -> pd.DataFrame:
    """A users frame: (user, threshold) pairs, auto top-up on, for 10,000 credits in EUR."""
    return pd.DataFrame(
        {
            "user": [u for u, _ in users],
            "enabled": True,
            "threshold": [t for _, t in users],
            "amount": 10_000,
            "currency": "eur",
            "card": card,
            "final_state": "active",
        }
    )


def paid_topup(at: float, user: str, attempt: int, balance: int, intent: str) -> list[tuple]:
    """The rows of a successful charge: the gateway call, then the credit notification."""
    return [
        row(at, user, "charge", credits=10_000, attempt=attempt, outcome="succeeded",
            amount_minor=1_000, currency="eur", payment_intent=intent),
        row(at, user, "topup_succeeded", balance=balance, attempt=attempt, outcome="succeeded"),
    ]  # fmt: skip


# One user, threshold 1,000: a crossing at t=10 claims attempt 1, which lands at t=12; a second
# crossing at t=100 is blocked by the cooldown, then refused, and claims attempt 2 at t=4000.
STORY = frame(
    row(0, "u1", "request", credits=400, balance=1_100, trigger="none"),
    row(10, "u1", "request", credits=200, balance=900, trigger="claimed", attempt=1),
    row(11, "u1", "request", credits=100, balance=800, trigger="pending"),
    *paid_topup(12, "u1", 1, 10_800, "pi_a"),
    row(17, "u1", "webhook", attempt=1, outcome="unchanged", payment_intent="pi_a"),
    row(50, "u1", "request", credits=9_850, balance=950, trigger="cooling"),
    row(60, "u1", "refused", credits=1_000, balance=950),
    row(4000, "u1", "refused", credits=1_000, balance=950, attempt=2),
    *paid_topup(4002, "u1", 2, 10_950, "pi_b"),
)
USERS = people(("u1", 1_000))


def test_groups_table_gives_each_groups_users_settings_and_usage() -> None:
    """Shares become user counts; good cards are the share of cards that pay."""
    scenario = shipped("baseline", users=100)
    table = analysis.groups_table(scenario)
    assert table["users"].to_dict() == {"light": 60, "regular": 30, "heavy": 10}
    assert table.loc["heavy", "amount"] == 54_000 and table.loc["light", "good_card_pct"] == 98


def test_busiest_user_is_the_groups_user_with_most_topups() -> None:
    """Other groups are ignored, even with more top-ups."""
    users = pd.DataFrame({"user": ["a", "b", "c"], "group": ["x", "x", "y"], "topups": [1, 3, 9]})
    assert analysis.busiest_user(users, "x") == "b"


def test_balance_history_keeps_one_users_rows_that_carry_a_balance() -> None:
    """Charge and webhook rows (no balance) are left out; times are in hours."""
    history = analysis.balance_history(STORY, "u1")
    assert history["kind"].tolist() == [
        "request", "request", "request", "topup_succeeded", "request", "refused", "refused",
        "topup_succeeded",
    ]  # fmt: skip
    assert history["hour"].iloc[-1] == pytest.approx(4002 / 3600)


def test_plot_balance_draws_the_balance_threshold_topups_and_refusals() -> None:
    """The plot labels its axes and names each series with its count in the legend."""
    ax = Figure().subplots()
    analysis.plot_balance(STORY, USERS, "u1", ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "balance", "threshold (1,000)", "credits landed (2)", "refused requests (2)",
    ]  # fmt: skip
    assert "hours" in ax.get_xlabel() and "credits" in ax.get_ylabel()


def test_attempts_join_claim_calls_and_outcome() -> None:
    """A retried attempt is one row: two calls, one transient, ended by its notification."""
    events = frame(
        row(0, "u1", "request", credits=10, balance=900, trigger="claimed", attempt=1),
        row(2, "u1", "charge", attempt=1, outcome="transient"),
        row(3, "u1", "charge", attempt=1, outcome="declined", decline_code="card_declined"),
        row(3, "u1", "topup_declined", balance=900, attempt=1),
        row(9, "u2", "refused", credits=10, balance=0, attempt=4),
    )
    tried = analysis.attempts(events).set_index("user")
    first = tried.loc["u1"]
    assert (first["claimed_at"], first["charged_at"], first["answered_at"]) == (0, 2, 3)
    assert (first["calls"], first["transient"], first["outcome"]) == (2, 1, "declined")
    assert (first["decline_code"], first["result"]) == ("card_declined", "topup_declined")
    assert tried.loc["u2", "calls"] == 0 and tried.loc["u2", "result"] == "none"


def test_linked_kinds_are_found_by_payment_intent_not_by_name() -> None:
    """Any kind other than ``charge`` that names a PaymentIntent is linked; others are not."""
    events = frame(*STORY.itertuples(index=False), row(1, "u1", "renewal_x", payment_intent="in"))
    assert analysis.linked_kinds(STORY) == ["webhook"]
    assert analysis.linked_kinds(events.iloc[:3]) == []


def test_crossings_time_each_stage_and_count_refusals_in_the_gap() -> None:
    """Two crossings: one claimed at once and paid; one held by the cooldown, refused twice."""
    crossed = analysis.crossings(STORY, USERS)
    assert crossed["time"].tolist() == [10, 50]
    assert crossed["requests"].tolist() == [2, 3] and crossed["refused"].tolist() == [0, 2]
    assert crossed["claims"].tolist() == [1, 1] and crossed["paid"].tolist() == [1, 1]
    assert crossed["to_claim_s"].tolist() == [0, 3950]
    assert crossed["to_credit_s"].tolist() == [2, 3952]
    assert crossed["latency_s"].tolist() == [2, 2]
    assert crossed.loc[0, "webhook_delay_s"] == 5 and pd.isna(crossed.loc[1, "webhook_delay_s"])


def test_crossings_count_two_paid_charges_when_one_crossing_gets_them() -> None:
    """A double charge (two claims paid before credits land) shows as ``paid == 2``."""
    events = frame(
        row(0, "u1", "request", credits=200, balance=900, trigger="claimed", attempt=1),
        row(1, "u1", "request", credits=100, balance=800, trigger="claimed", attempt=2),
        row(2, "u1", "charge", attempt=1, outcome="succeeded", payment_intent="pi_a"),
        row(2, "u1", "charge", attempt=2, outcome="succeeded", payment_intent="pi_b"),
        row(2, "u1", "topup_succeeded", balance=10_800, attempt=1),
        row(2, "u1", "topup_succeeded", balance=20_800, attempt=2),
    )
    assert analysis.crossings(events, USERS)["paid"].tolist() == [2]


def test_crossings_end_when_any_kind_reports_a_balance_above_the_threshold() -> None:
    """A new kind that lifts the balance (a renewal, say) ends the crossing; others are ignored."""
    events = frame(
        row(0, "u1", "request", credits=200, balance=900, trigger="cooling"),
        row(1, "u1", "cache_flush"),
        row(2, "u1", "subscription_renewed", balance=21_900),
        row(3, "u1", "request", credits=21_000, balance=900, trigger="cooling"),
    )
    crossed = analysis.crossings(events, USERS)
    assert crossed["time"].tolist() == [0, 3] and crossed["claims"].tolist() == [0, 0]
    assert analysis.crossings(events, USERS.assign(enabled=False)).empty


def test_timing_summary_gives_percentiles_per_stage() -> None:
    """Median and maximum per stage, over the crossings that reached it."""
    crossed = pd.DataFrame(
        {"to_claim_s": [0.0, 0.0, 10.0], "to_charge_s": [2.0, 4.0, 12.0],
         "to_credit_s": [2.0, 4.0, float("nan")]}
    )  # fmt: skip
    summary = analysis.timing_summary(crossed)
    assert summary.loc["claim", "median_s"] == 0 and summary.loc["charge", "max_s"] == 12
    assert summary.loc["credits land", "crossings"] == 2
    # Linear interpolation at ranks 0.9 x 2 and 0.95 x 2: 4 + 0.8 x 8 and 4 + 0.9 x 8.
    assert summary.loc["charge", "p90_s"] == pytest.approx(10.4)
    assert summary.loc["charge", "p95_s"] == pytest.approx(11.2)
    assert list(summary.columns) == ["crossings", "median_s", "p90_s", "p95_s", "p99_s", "max_s"]


def test_timing_by_bins_crossings_and_counts_refusals() -> None:
    """Crossings fall into ``[lo, hi)`` bins; empty bins stay; uncredited ones are left out."""
    crossed = pd.DataFrame(
        {"latency_s": [0.5, 1.5, 1.9, 3.0, 0.7], "to_credit_s": [1.0, 2.0, 4.0, 9.0, None],
         "refused": [0, 0, 3, 1, 50]}
    )  # fmt: skip
    table = analysis.timing_by(crossed, "latency_s", [0, 1, 2, 5, 10])
    assert table["crossings"].tolist() == [1, 2, 1, 0]
    assert table.loc["1-2 s", "median_s"] == 3.0
    assert table.loc["1-2 s", "with_refusals_pct"] == 50
    assert table.index.tolist() == ["0-1 s", "1-2 s", "2-5 s", "5-10 s"]


def test_plot_timing_draws_one_cumulative_line_per_stage() -> None:
    """Three labelled lines on a symlog time axis, in percent of crossings."""
    ax = Figure().subplots()
    analysis.plot_timing(analysis.crossings(STORY, USERS), ax)
    assert [line.get_label() for line in ax.get_lines()] == [
        "claimed", "charged", "credits landed",
    ]  # fmt: skip
    assert ax.get_xscale() == "symlog" and ax.get_lines()[2].get_ydata()[-1] == 100


def test_triggers_count_served_requests_by_trigger() -> None:
    """Refused rows carry no trigger and are not counted."""
    table = analysis.triggers(STORY)
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
    reasons = analysis.refusal_reasons(events, USERS, cooldown_hours=1)
    assert reasons["reason"].tolist() == [
        "awaiting payment", "awaiting payment", "cooldown", "above threshold", "auto top-up held",
    ]  # fmt: skip


def test_refusals_by_reason_counts_users_per_thousand() -> None:
    """Two refusals of one user out of four users is 250 per 1,000."""
    reasons = pd.DataFrame({"user": ["a", "a", "b"], "reason": ["cooldown"] * 2 + ["held"]})
    table = analysis.refusals_by_reason(reasons, users=4)
    assert table.loc["cooldown", "refused"] == 2 and table.loc["cooldown", "users_per_1000"] == 250


def test_who_ran_dry_compares_users_refused_for_a_reason_with_the_rest() -> None:
    """Usage is averaged per group of users and divided by the days run."""
    users = pd.DataFrame(
        {"user": ["a", "b", "c"], "requests": [200, 20, 40], "credits_used": [2000, 200, 400],
         "topups": [4, 0, 0], "dry_seconds": [7200.0, 0.0, 0.0]}
    )  # fmt: skip
    reasons = pd.DataFrame({"user": ["a", "b"], "reason": ["cooldown", "above threshold"]})
    table = analysis.who_ran_dry(reasons, users, days=2)
    assert table.loc["refused in cooldown"].tolist() == [1, 100, 1000, 2, 2]
    assert table.loc["never refused in cooldown", "requests_per_day"] == 15


def test_cooldown_effect_orders_a_sweep_by_cooldown_with_per_user_rates() -> None:
    """Charges per user are the sweep's gateway calls divided by its users."""
    grid = pd.DataFrame(
        {"billing.cooldown_hours": [4.0, 0.5], "users": [10, 10], "dry_per_1000_users": [300, 0],
         "dry_hours_per_user": [1.0, 0.0], "refused": [50, 0], "charge_calls": [20, 80],
         "topups_per_user_month": [2.0, 8.0]}
    )  # fmt: skip
    effect = analysis.cooldown_effect(grid)
    assert effect.index.tolist() == [0.5, 4.0]
    assert effect["charges_per_user"].tolist() == [8.0, 2.0]


def test_plot_cooldown_effect_labels_both_panels_in_hours() -> None:
    """Both panels have a log hour axis and a y label with its unit."""
    effect = pd.DataFrame(
        {"dry_per_1000_users": [0, 100], "charges_per_user": [8, 2]},
        index=pd.Index([0.5, 4.0], name="cooldown_h"),
    )
    axes = Figure().subplots(1, 2)
    analysis.plot_cooldown_effect(effect, axes)
    assert all(ax.get_xscale() == "log" and "hours" in ax.get_xlabel() for ax in axes)
    assert "per 1,000" in axes[0].get_ylabel() and "count" in axes[1].get_ylabel()


FAILURES = frame(
    row(0, "u1", "charge", attempt=1, outcome="transient"),
    row(0, "u1", "charge", attempt=1, outcome="succeeded", payment_intent="pi_a"),
    row(0, "u1", "topup_succeeded", balance=10_000, attempt=1),
    row(5, "u2", "charge", attempt=1, outcome="declined", decline_code="insufficient_funds"),
    row(5, "u2", "topup_declined", balance=0, attempt=1),
    row(9, "u2", "charge", attempt=2, outcome="declined", decline_code="insufficient_funds"),
    row(9, "u2", "topup_declined", balance=0, attempt=2),
    row(9, "u2", "topup_suspended", balance=0),
    row(9, "u3", "charge", attempt=1, outcome="declined", decline_code="expired_card"),
    row(9, "u3", "webhook", attempt=1, payment_intent="pi_c"),
)


def test_charge_outcomes_count_calls_attempts_and_users() -> None:
    """A retried attempt is two calls but one attempt."""
    table = analysis.charge_outcomes(FAILURES)
    assert table.loc["transient"].tolist() == [1, 1, 1]
    assert table.loc["declined"].tolist() == [3, 3, 2]


def test_declines_by_code_sorts_the_commonest_first() -> None:
    """Codes are counted per declined call, with the users who hit them."""
    table = analysis.declines_by_code(FAILURES)
    assert table.index.tolist() == ["insufficient_funds", "expired_card"]
    assert table["declines"].tolist() == [2, 1] and table["users"].tolist() == [1, 1]


def test_retries_cross_calls_per_attempt_with_the_last_outcome() -> None:
    """One attempt needed two calls and succeeded; three declined at the first call."""
    table = analysis.retries(FAILURES)
    assert table.loc[2, "succeeded"] == 1 and table.loc[1, "declined"] == 3
    assert table.loc[1, "succeeded"] == 0


def test_notifications_count_only_notification_kinds() -> None:
    """Charges and webhook deliveries are not notifications."""
    table = analysis.notifications(FAILURES)
    assert table["sent"].to_dict() == {
        "topup_declined": 2, "topup_succeeded": 1, "topup_suspended": 1,
    }  # fmt: skip


def test_states_by_card_crosses_cards_with_final_states() -> None:
    """Each user counts once, under their card and the state they ended in."""
    users = pd.DataFrame(
        {"card": ["visa", "visa", "sca"], "final_state": ["active", "active", "paused"]}
    )
    table = analysis.states_by_card(users)
    assert table.loc["visa", "active"] == 2 and table.loc["sca", "paused"] == 1
    assert table.loc["sca", "active"] == 0


@pytest.fixture(scope="module")
def results() -> Results:
    """A small card_failures run (declines, SCA, top-ups)."""
    return run(shipped("card_failures", users=20, days=3), backend="memory")


def test_credits_per_user_match_what_payments_bought(results: Results) -> None:
    """In a real run every user was granted exactly the credits their payments bought."""
    per_user = analysis.credits_per_user(results)
    assert per_user["charged_minor"].sum() > 0
    assert (per_user["granted"] == per_user["paid_for"]).all()


def test_money_vs_credits_totals_per_currency(results: Results) -> None:
    """EUR 10 buys 10,000 credits: money in euros times 1,000 is the credits paid for."""
    money = analysis.money_vs_credits(results).loc["eur"]
    assert money["charged"] * 1_000 == money["credits_paid_for"] == money["credits_granted"]


def test_invariants_table_finds_no_breach_in_a_real_run(results: Results) -> None:
    """Every rule is checked on at least one item and holds."""
    table = analysis.invariants_table(results)
    assert (table["checked"] > 0).all() and (table["breaches"] == 0).all()


def test_invariants_table_reports_a_tampered_balance(results: Results) -> None:
    """A stored balance off by one credit breaks two rules, for that one user."""
    users = results.users.copy()
    users.loc[0, "final_balance"] += 1
    table = analysis.invariants_table(replace(results, users=users))
    assert table.loc["last balance logged = stored balance", "breaches"] == 1
    assert table.loc["credits granted = credits paid for", "breaches"] == 1
    assert table["breaches"].sum() == 2


def test_invariants_table_reports_a_paid_topup_left_unnotified(results: Results) -> None:
    """One success notification fewer than Stripe's payments is one breach of that rule only."""
    users = results.users.copy()
    paid = users.index[users["topups"] > 0][0]
    users.loc[paid, "topups"] -= 1
    table = analysis.invariants_table(replace(results, users=users))
    assert table.loc[analysis.NOTIFIED_RULE, "breaches"] == 1 and table["breaches"].sum() == 1


def test_plot_bars_draws_one_labelled_bar_per_value() -> None:
    """One bar per index value, with the title and axis labels given."""
    ax = Figure().subplots()
    counts = pd.Series([3, 1], index=["a", "b"], name="declines")
    analysis.plot_bars(counts, ax, title="T", xlabel="code", ylabel="declines (count)")
    assert [p.get_height() for p in ax.patches] == [3, 1]
    assert (ax.get_title(), ax.get_ylabel()) == ("T", "declines (count)")
