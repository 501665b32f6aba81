"""Webhook delivery faults: the billing endpoint down for a window, or failing at a rate.

Stripe sees a 503 and redelivers on its own schedule; the handler never sees the failed
delivery. The webhook is the billing's backup path (a charge's answer credits the top-up), so
an endpoint outage alone delays events but changes no balance.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from sim import ScenarioError, parse_scenario, run
from sim.scenario import HOUR
from sim.stripe_emulator._webhooks import RETRY_DELAYS

from .conftest import constant, one_group, shipped

#: Outcomes of a delivery the handler took (answered 200).
APPLIED = {"credited", "unchanged", "duplicate", "recovering", "updated", "ignored"}
WINDOW = (1.0, 2.0)  # hours


def _top_ups_every_ten_minutes(**faults: object) -> pd.DataFrame:
    """One user, a 100-credit request a minute, a 1,000-credit top-up every 10 requests."""
    scenario = one_group(
        constant(60, 100), days=0.25, balance=5_000,
        auto_topup={"threshold": 1_000, "amount": 1_000}, latency=1.0, cooldown_hours=0.1,
        faults={"webhooks": faults} if faults else None,
    )  # fmt: skip
    return run(scenario, seed=4, backend="memory").events


def test_an_endpoint_outage_fails_exactly_the_deliveries_inside_it() -> None:
    """Every delivery due in the window is answered 503 (``unreachable``), none outside it."""
    events = _top_ups_every_ten_minutes(outages=[list(WINDOW)])
    webhooks = events[events["kind"] == "webhook"]
    start, end = WINDOW[0] * HOUR, WINDOW[1] * HOUR
    inside = webhooks["time"].between(start, end, inclusive="left")
    assert inside.sum() >= 6  # a top-up every 10 minutes: the window holds several
    assert (webhooks.loc[inside, "outcome"] == "unreachable").all()
    assert webhooks.loc[~inside, "outcome"].isin(APPLIED).all()


def test_failed_deliveries_come_back_on_stripes_retry_schedule() -> None:
    """Each delivery refused in the window is retried after 1 min, 5 min, 30 min, ... from
    the previous try, until the first try after the window, which the handler applies."""
    events = _top_ups_every_ten_minutes(outages=[list(WINDOW)])
    webhooks = events[events["kind"] == "webhook"]
    refused = webhooks.loc[webhooks["outcome"] == "unreachable", "payment_intent"].unique()
    assert len(refused) >= 6
    for intent in refused:
        tries = webhooks[webhooks["payment_intent"] == intent]
        times, outcomes = tries["time"].tolist(), tries["outcome"].tolist()
        assert outcomes[:-1] == ["unreachable"] * (len(outcomes) - 1), intent
        assert outcomes[-1] in APPLIED and times[-1] >= WINDOW[1] * HOUR, intent
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Each gap is the schedule's delay, give or take the millisecond a wake-up rounds to.
        assert gaps == pytest.approx(list(RETRY_DELAYS[: len(gaps)]), abs=0.002), intent


def test_an_endpoint_outage_alone_changes_no_balance() -> None:
    """The charge's answer credits each top-up; the late webhook finds it done (``unchanged``),
    so every request and balance is as in a run without the outage."""
    clean = _top_ups_every_ten_minutes()
    down = _top_ups_every_ten_minutes(outages=[list(WINDOW)])
    requests = ["request", "refused", "topup_succeeded", "charge"]
    columns = ["time", "kind", "credits", "balance", "attempt", "outcome"]
    assert (
        down[down["kind"].isin(requests)][columns]
        .reset_index(drop=True)
        .equals(clean[clean["kind"].isin(requests)][columns].reset_index(drop=True))
    )
    late = down[(down["kind"] == "webhook") & (down["outcome"] != "unreachable")]
    assert set(late["outcome"]) == {"unchanged"}


def test_deliveries_fail_at_the_stated_rate_and_are_all_applied_in_the_end() -> None:
    """With ``rate`` 0.3, about 30% of delivery tries fail (binomial, 4 standard deviations),
    and every event is applied once all the same."""
    events = _top_ups_every_ten_minutes(rate=0.3)
    webhooks = events[events["kind"] == "webhook"]
    tries, failed = len(webhooks), int((webhooks["outcome"] == "unreachable").sum())
    assert tries > 30
    assert abs(failed - 0.3 * tries) <= 4 * (tries * 0.3 * 0.7) ** 0.5
    applied = webhooks[webhooks["outcome"].isin(APPLIED)]
    assert set(applied["payment_intent"]) == set(webhooks["payment_intent"])


def test_the_shipped_outage_scenario_counts_what_its_frame_shows() -> None:
    """``webhook_outage`` at a size that reaches its window: the summary's count of deliveries
    to the down endpoint is the frame's, and every refused event is applied afterwards."""
    results = run(shipped("webhook_outage", users=30, days=2), seed=11, backend="memory")
    webhooks = results.events[results.events["kind"] == "webhook"]
    unreachable = webhooks[webhooks["outcome"] == "unreachable"]
    assert len(unreachable) > 0
    assert int(results.summary["webhook_unreachable"].iloc[0]) == len(unreachable)
    for intent in unreachable["payment_intent"].unique():
        assert webhooks.loc[webhooks["payment_intent"] == intent, "outcome"].isin(APPLIED).any()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rate": 1.5}, "faults.webhooks.rate"),
        ({"outages": [[3, 1]]}, "faults.webhooks.outages"),
        ({"down": True}, "unknown key"),
    ],
)
def test_bad_webhook_faults_are_refused_by_name(table: dict[str, object], message: str) -> None:
    """A scenario's webhook faults are checked like every other table: the error names the key."""
    with pytest.raises(ScenarioError, match=message):
        one_group(constant(60, 1), faults={"webhooks": table})


def test_invoices_whose_every_delivery_failed_are_credited_by_the_reconcile() -> None:
    """Subscribers whose endpoint is down for longer than Stripe's whole retry schedule: no
    webhook of their first invoice is ever applied, so only the end-of-run reconcile credits
    it (once per invoice), and the books hold (``charged_equals_credited`` fails without it)."""
    assert sum(RETRY_DELAYS) < 60 * HOUR
    raw = {
        "name": "test", "users": 3, "days": 3,
        "payments": {"latency": {"dist": "fixed", "value": 0.0}},
        "auto_topup": {"enabled": False, "threshold": 1000, "amount": 10000, "currency": "eur"},
        "groups": {"g": {"share": 1.0, "balance": 5_000, "card": "pm_card_visa",
                         "subscription": 21_000, "usage": constant(600, 10)}},
        "faults": {"webhooks": {"outages": [[0, 60]]}},
    }  # fmt: skip
    events = run(parse_scenario(raw, "test.toml"), seed=2, backend="memory").events
    webhooks = events[events["kind"] == "webhook"]
    assert len(webhooks) and not webhooks["outcome"].isin(APPLIED).any()
    reconciled = events[(events["kind"] == "reconciled")]
    credited = reconciled[reconciled["outcome"] == "invoice_credited"]
    assert len(credited) == 3 and credited["user"].nunique() == 3
    assert credited["payment_intent"].str.startswith("in_").all()
