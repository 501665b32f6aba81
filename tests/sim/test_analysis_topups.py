"""Attempts and crossings: the event log joined into one row per top-up and per crossing."""

from __future__ import annotations

import pandas as pd

from sim.analysis import topups

from .analysis_frames import STORY, USERS, frame, row


def test_attempts_join_claim_calls_and_outcome() -> None:
    """A retried attempt is one row: two calls, one transient, ended by its notification."""
    events = frame(
        row(0, "u1", "request", credits=10, balance=900, trigger="claimed", attempt=1),
        row(2, "u1", "charge", attempt=1, outcome="transient"),
        row(3, "u1", "charge", attempt=1, outcome="declined", decline_code="card_declined"),
        row(3, "u1", "topup_declined", balance=900, attempt=1),
        row(9, "u2", "refused", credits=10, balance=0, attempt=4),
    )
    tried = topups.attempts(events).set_index("user")
    first = tried.loc["u1"]
    assert (first["claimed_at"], first["charged_at"], first["answered_at"]) == (0, 2, 3)
    assert (first["calls"], first["transient"], first["outcome"]) == (2, 1, "declined")
    assert (first["decline_code"], first["result"]) == ("card_declined", "topup_declined")
    assert tried.loc["u2", "calls"] == 0 and tried.loc["u2", "result"] == "none"


def test_linked_kinds_are_found_by_payment_intent_not_by_name() -> None:
    """Any kind other than ``charge`` and the billing's notices that names a PaymentIntent is
    linked; others are not (the success notices of STORY name theirs, and are not linked)."""
    events = frame(*STORY.itertuples(index=False), row(1, "u1", "renewal_x", payment_intent="in"))
    assert topups.linked_kinds(STORY) == ["webhook"]
    assert topups.linked_kinds(events) == ["renewal_x", "webhook"]
    assert topups.linked_kinds(events.iloc[:3]) == []


def test_crossings_time_each_stage_and_count_refusals_in_the_gap() -> None:
    """Two crossings: one claimed at once and paid; one held by the cooldown, refused twice."""
    crossed = topups.crossings(STORY, USERS)
    assert crossed["time"].tolist() == [10, 50]
    assert crossed["requests"].tolist() == [2, 3] and crossed["refused"].tolist() == [0, 2]
    assert crossed["claims"].tolist() == [1, 1] and crossed["paid"].tolist() == [1, 1]
    assert crossed["to_claim_s"].tolist() == [0, 3950]
    assert crossed["to_credit_s"].tolist() == [2, 3952]
    assert crossed["latency_s"].tolist() == [2, 2]
    assert crossed.loc[0, "webhook_delay_s"] == 5 and pd.isna(crossed.loc[1, "webhook_delay_s"])
    assert "topup_succeeded_delay_s" not in crossed


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
    assert topups.crossings(events, USERS)["paid"].tolist() == [2]


def test_crossings_end_when_any_kind_reports_a_balance_above_the_threshold() -> None:
    """A new kind that lifts the balance (a renewal, say) ends the crossing; others are ignored."""
    events = frame(
        row(0, "u1", "request", credits=200, balance=900, trigger="cooling"),
        row(1, "u1", "cache_flush"),
        row(2, "u1", "subscription_renewed", balance=21_900),
        row(3, "u1", "request", credits=21_000, balance=900, trigger="cooling"),
    )
    crossed = topups.crossings(events, USERS)
    assert crossed["time"].tolist() == [0, 3] and crossed["claims"].tolist() == [0, 0]
    assert topups.crossings(events, USERS.assign(enabled=False)).empty
