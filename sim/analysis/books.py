"""The books: money charged against credits granted, and the billing's rules re-checked from a
run's frames alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from sim.billing.pricing import CURRENCY_EXPONENTS

from .kinds import ATTEMPT, HOUR
from .topups import attempts, crossings

if TYPE_CHECKING:
    from ..results import Results


def credits_per_user(results: Results) -> pd.DataFrame:
    """Per user: money charged (minor units), the credits it buys, and the credits granted.

    The money side is Stripe's record of the run (the users frame's ``spend_minor``,
    ``credits_bought`` and, with subscriptions, ``subscription_credits``), so a payment whose
    answer was lost on the way back still counts. The credits side is measured apart from it: the
    final stored balance minus the starting balance plus the credits served requests used. The
    billing promises ``paid_for == granted`` for every user.
    """
    by_user = results.users.set_index("user")
    out = by_user[["currency"]].astype({"currency": object})
    out["charged_minor"] = by_user["spend_minor"].astype("int64")
    paid_for = by_user["credits_bought"]
    if "subscription_credits" in by_user:
        paid_for = paid_for + by_user["subscription_credits"]
    out["paid_for"] = paid_for.astype("int64")
    granted = by_user["final_balance"] - by_user["starting_balance"] + by_user["credits_used"]
    out["granted"] = granted.astype("int64")
    return out


def money_vs_credits(results: Results) -> pd.DataFrame:
    """Per currency: top-ups credited, money charged (major units), the credits that money buys
    at the price table, and the credits granted (see :func:`credits_per_user`)."""
    per_user = credits_per_user(results).assign(topups=results.users.set_index("user")["topups"])
    grouped = per_user.groupby("currency")
    out = pd.DataFrame(
        {
            "users": grouped.size(),
            "topups_credited": grouped["topups"].sum(),
            "charged": grouped["charged_minor"].sum().astype("float64"),
            "credits_paid_for": grouped["paid_for"].sum(),
            "credits_granted": grouped["granted"].sum(),
        }
    )
    out["charged"] /= [10 ** CURRENCY_EXPONENTS[c] for c in out.index]
    return out


#: The one rule of :func:`invariants_table` about what users are told rather than the money.
NOTIFIED_RULE = "paid top-ups notified as succeeded"


def invariants_table(results: Results) -> pd.DataFrame:
    """The billing's rules, re-checked from the frames alone: items checked and breaches.

    ``sim.run`` already checks its invariants against the store and the gateway; this table
    checks the same promises from what the frames show, so a notebook states them in numbers,
    and adds the notification promise (:data:`NOTIFIED_RULE`), which ``sim.run`` does not check.
    """
    events, users = results.events, results.users
    cooldown = results.scenario.billing.cooldown_hours * HOUR
    crossed = crossings(events, users)

    last_seen = events[events["balance"].notna()].groupby("user")["balance"].last()
    final = users.set_index("user")["final_balance"].reindex(last_seen.index)
    money = credits_per_user(results)

    claimed = attempts(events).dropna(subset=["claimed_at"]).sort_values(ATTEMPT)
    gaps = claimed.groupby("user")["claimed_at"].diff().dropna()

    # "Every success produces a notification": top-ups notified as succeeded, at the user's
    # amount, against the top-up credits Stripe was paid for.
    by_user = users.set_index("user")
    notified = by_user["topups"] * by_user["amount"]
    rows = [
        ("last balance logged = stored balance", len(final), int((last_seen != final).sum())),
        ("credits granted = credits paid for", len(money),
         int((money["granted"] != money["paid_for"]).sum())),
        (NOTIFIED_RULE, len(by_user), int((notified != by_user["credits_bought"]).sum())),
        ("at most one paid charge per crossing", len(crossed), int((crossed["paid"] > 1).sum())),
        ("claims at least one cooldown apart", len(gaps), int((gaps < cooldown).sum())),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["rule", "checked", "breaches"]).set_index("rule")
