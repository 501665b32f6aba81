"""The books: money against credits, and the billing's rules re-checked from a real run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim import Results, run
from sim.analysis import books

from .conftest import shipped


@pytest.fixture(scope="module")
def results() -> Results:
    """A small card_failures run (declines, SCA, top-ups)."""
    return run(shipped("card_failures", users=20, days=3), backend="memory")


def test_credits_per_user_match_what_payments_bought(results: Results) -> None:
    """In a real run every user was granted exactly the credits their payments bought."""
    per_user = books.credits_per_user(results)
    assert per_user["charged_minor"].sum() > 0
    assert (per_user["granted"] == per_user["paid_for"]).all()


def test_money_vs_credits_totals_per_currency(results: Results) -> None:
    """EUR 10 buys 10,000 credits: money in euros times 1,000 is the credits paid for."""
    money = books.money_vs_credits(results).loc["eur"]
    assert money["charged"] * 1_000 == money["credits_paid_for"] == money["credits_granted"]


def test_invariants_table_finds_no_breach_in_a_real_run(results: Results) -> None:
    """Every rule is checked on at least one item and holds."""
    table = books.invariants_table(results)
    assert (table["checked"] > 0).all() and (table["breaches"] == 0).all()


def test_invariants_table_reports_a_tampered_balance(results: Results) -> None:
    """A stored balance off by one credit breaks two rules, for that one user."""
    users = results.users.copy()
    users.loc[0, "final_balance"] += 1
    table = books.invariants_table(replace(results, users=users))
    assert table.loc["last balance logged = stored balance", "breaches"] == 1
    assert table.loc["credits granted = credits paid for", "breaches"] == 1
    assert table["breaches"].sum() == 2


def test_invariants_table_reports_a_paid_topup_left_unnotified(results: Results) -> None:
    """One success notification fewer than Stripe's payments is one breach of that rule only."""
    users = results.users.copy()
    paid = users.index[users["topups"] > 0][0]
    users.loc[paid, "topups"] -= 1
    table = books.invariants_table(replace(results, users=users))
    assert table.loc[books.NOTIFIED_RULE, "breaches"] == 1 and table["breaches"].sum() == 1
