"""Who a run's users are: its scenario's groups, read before any figure about them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from ..scenario import Scenario

#: Stripe's test cards whose off-session charges succeed.
GOOD_CARDS = ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")


def groups_table(scenario: Scenario) -> pd.DataFrame:
    """The scenario's population, one row per group: who the users are and what they were given.

    Read before a run's figures, so a reader knows whose behaviour the figures describe.
    """
    rows = {}
    for group, count in zip(scenario.groups, scenario.counts(), strict=True):
        rows[group.name] = {
            "users": count,
            "balance": group.balance,
            "threshold": group.settings.threshold,
            "amount": group.settings.amount,
            "currency": group.settings.currency,
            "requests_per_day": group.usage.requests_per_day,
            "mean_cost": group.usage.cost.expected(),
            "bursts_per_day": group.usage.bursts_per_day,
            "good_card_pct": 100 * sum(w for card, w in group.cards if card in GOOD_CARDS),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out
