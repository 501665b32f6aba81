"""Per-charge declines (``[groups.<name>].declines``): a good card that its issuer declines now
and then, so that the consecutive-failure rule (suspend after N declines in a row, reset by a
success) is exercised, and checked against its closed form."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim import ScenarioError, parse_scenario, run

K = 3  # BillingConfig.failures_before_suspension's default, the scenario's too


def _scenario(
    declines: dict[str, float], users: int, days: float = 1.0, *, dry: bool = False
) -> dict[str, object]:
    """Users who spend 50 credits about every 7 minutes and top up 1,000 at a time, with a
    6-minute cooldown. ``dry``: users who spend 600 credits a minute against a 5,000 threshold,
    so they stay below it whatever their charges do and are charged at every crossing past
    a 3-minute cooldown (a charge every 3 to 4 minutes, paid or declined)."""
    usage = {"requests_per_day": 200, "cost": {"dist": "fixed", "value": 50}}
    cooldown, threshold = 0.1, 1000
    if dry:
        usage = {"requests_per_day": 1440, "cost": {"dist": "fixed", "value": 600}}
        cooldown, threshold = 0.05, 5000
    return {
        "name": "declines", "users": users, "days": days, "seed": 21,
        "billing": {"cooldown_hours": cooldown, "failures_before_suspension": K},
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"threshold": threshold, "amount": 1000},
        "groups": {"all": {
            "share": 1.0, "balance": 2000, "declines": declines, "usage": usage,
        }},
    }  # fmt: skip


def _charges(events: pd.DataFrame) -> pd.DataFrame:
    charges = events[events["kind"] == "charge"]
    assert set(charges["outcome"]) <= {"succeeded", "declined"}
    return charges


def test_suspension_comes_after_the_closed_form_number_of_charges() -> None:
    """With each charge declined at p = 0.5, the number of charges up to the K-th decline in a
    row has mean (1 - p^K) / ((1 - p) p^K) = 14 and variance
    (1 - (2K + 1)(1 - p) p^K - p^(2K + 1)) / ((1 - p)^2 p^(2K)) (about 142); over 200 users the
    mean is within 4 standard errors of it, and every user is suspended exactly at their first
    run of K declines (a success in between resets the count)."""
    p, users = 0.5, 200
    # About 150 charges a user in 9 hours: P(no K declines in a row by then) < 1e-5 each.
    scenario = _scenario({"generic_decline": p}, users, days=0.375, dry=True)
    results = run(parse_scenario(scenario, "t.toml"), seed=21, backend="memory", gateway="direct")
    charges = _charges(results.events)
    suspended = set(results.events.loc[results.events["kind"] == "topup_suspended", "user"])
    assert len(suspended) == users  # the horizon is long enough for all of them
    counts = []
    for _, mine in charges.groupby("user"):
        declined = (mine["outcome"] == "declined").tolist()
        first_run = next(i for i in range(K - 1, len(declined)) if all(declined[i - K + 1 : i + 1]))
        assert first_run == len(declined) - 1  # suspended there, and never charged again
        counts.append(len(declined))
    mean = (1 - p**K) / ((1 - p) * p**K)
    variance = (1 - (2 * K + 1) * (1 - p) * p**K - p ** (2 * K + 1)) / ((1 - p) ** 2 * p ** (2 * K))
    assert mean == 14 and math.isclose(variance, 142, abs_tol=0.1)
    observed = sum(counts) / len(counts)
    assert abs(observed - mean) <= 4 * math.sqrt(variance / users), observed


def test_declines_carry_the_codes_of_their_law() -> None:
    """Under 0.2 ``insufficient_funds`` and 0.1 ``expired_card``, two declines in three are
    for insufficient funds (binomial, 4 standard deviations), and declines are about 30% of
    charges."""
    law = {"insufficient_funds": 0.2, "expired_card": 0.1}
    results = run(parse_scenario(_scenario(law, 40), "t.toml"), seed=21)
    charges = _charges(results.events)
    declined = charges[charges["outcome"] == "declined"]
    n, share = len(declined), 2 / 3
    assert set(declined["decline_code"]) == {"insufficient_funds", "expired_card"}
    funds = int((declined["decline_code"] == "insufficient_funds").sum())
    assert abs(funds - n * share) <= 4 * math.sqrt(n * share * (1 - share))
    m = len(charges)
    assert abs(n - 0.3 * m) <= 4 * math.sqrt(m * 0.3 * 0.7)
    assert int(results.summary["declines"].iloc[0]) == n


def test_no_declines_draw_nothing() -> None:
    """An empty law is the card's own behaviour: every charge succeeds."""
    results = run(parse_scenario(_scenario({}, 5, days=0.5), "t.toml"), seed=21)
    assert set(_charges(results.events)["outcome"]) == {"succeeded"}


@pytest.mark.parametrize(
    ("declines", "message"),
    [
        ({"nope": 0.1}, r"groups\.all\.declines\.nope: unknown decline code; allowed: expired"),
        ({"lost_card": 1.5}, r"groups\.all\.declines\.lost_card"),
        ({"lost_card": 0.6, "stolen_card": 0.5}, "must add up to at most 1"),
        ({"lost_card": "often"}, r"groups\.all\.declines\.lost_card"),
    ],
)
def test_bad_declines_are_refused_by_name(declines: dict[str, object], message: str) -> None:
    """The error names the file, the dotted key and what is allowed."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(declines, 1), "t.toml")  # type: ignore[arg-type]
