"""Time to recover after each fault window (``sim.recovery``), by hand count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim import parse_scenario, run
from sim.recovery import RECOVERY_COLUMNS, fault_recovery, fault_windows


def _scenario(faults: dict[str, Any], days: float = 0.1) -> dict[str, Any]:
    """One user: 100 credits a minute from 1,200, a 1,000-credit top-up under 1,000 with a
    6-minute cooldown and a one-second charge: credited at 121 s, 721 s, 1,321 s, ..."""
    return {
        "name": "recovery", "users": 1, "days": days, "seed": 1,
        "billing": {"cooldown_hours": 0.1},
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"threshold": 1000, "amount": 1000},
        "groups": {"g": {"share": 1.0, "balance": 1_200, "usage": {
            "arrivals": "constant", "requests_per_day": 1_440,
            "cost": {"dist": "fixed", "value": 100},
        }}},
        "faults": faults,
    }  # fmt: skip


def _recovery(faults: dict[str, Any], days: float = 0.1) -> Any:
    results = run(parse_scenario(_scenario(faults, days), "t.toml"), seed=1, backend="memory",
                  gateway="direct")  # fmt: skip
    return results, fault_recovery(results)


def test_a_gateway_outage_recovers_at_the_next_credit() -> None:
    """Stripe down 900-1,800 s: the claim at 1,320 s fails its three tries (1,321 s on), its
    recovery at 1,681 s fails again; the refusal at 2,040 s finds the attempt and it is credited
    at 2,041 s: 241 s after the window's end. At the end the user still had credits."""
    results, table = _recovery({"gateway": {"outages": [[0.25, 0.5]]}})
    assert list(table.columns) == list(RECOVERY_COLUMNS)
    row = table.iloc[0]
    assert (row["fault"], row["start_s"], row["end_s"]) == ("gateway", 900.0, 1800.0)
    assert (row["affected"], row["unrecovered"], row["users_dry_at_end"]) == (1, 0, 0)
    assert row["recovered_after_s"] == pytest.approx(241.0)
    credited = results.events.loc[results.events["kind"] == "topup_succeeded", "time"]
    assert credited[credited > 1800].min() == pytest.approx(2041.0)


def test_a_store_outage_recovers_at_the_next_served_request() -> None:
    """The store down 3,600-5,400 s: every request inside fails; the one at 5,400 s is served,
    so the recovery is immediate (0 s after the end); failed requests took nothing, so nobody
    is dry at the end."""
    _, table = _recovery({"store": {"outages": [[1, 1.5]]}}, days=0.1)
    row = table.iloc[0]
    assert (row["fault"], row["affected"], row["unrecovered"]) == ("store", 1, 0)
    assert row["recovered_after_s"] == 0.0 and row["users_dry_at_end"] == 0


def test_a_webhook_outage_recovers_when_its_last_delivery_is_applied() -> None:
    """Each delivery refused in the window is applied on a later try: the recovery is the last
    of those tries, counted from the end."""
    results, table = _recovery({"webhooks": {"outages": [[0.25, 0.5]]}})
    row = table.iloc[0]
    webhooks = results.events[results.events["kind"] == "webhook"]
    refused = webhooks[webhooks["outcome"] == "unreachable"]
    assert row["affected"] == refused["payment_intent"].nunique() > 0
    later = webhooks[webhooks["payment_intent"].isin(refused["payment_intent"])
                     & (webhooks["outcome"] != "unreachable")]  # fmt: skip
    assert row["recovered_after_s"] == pytest.approx(later["time"].max() - 1800.0)


def test_daily_windows_each_get_a_row_and_nothing_hit_is_zero() -> None:
    """A daily store outage at 23:00-23:30 over 2 days: two rows, each hitting the one user."""
    results, table = _recovery({"store": {"daily_outages": [[23, 23.5]]}}, days=2)
    assert table["start_s"].tolist() == [23 * 3600.0, 47 * 3600.0]
    assert table["affected"].tolist() == [1, 1]
    assert len(fault_windows(results)) == 2


def test_no_fault_windows_no_rows() -> None:
    """A run without outages has an empty table with the documented columns."""
    _, table = _recovery({})
    assert table.empty and list(table.columns) == list(RECOVERY_COLUMNS)


def test_a_hit_never_made_good_is_unrecovered() -> None:
    """A store outage to the end of the run: the failures inside are never followed by a served
    request, so the window is unrecovered and its recovery time unknown."""
    _, table = _recovery({"store": {"outages": [[2, 3]]}}, days=0.1)
    row = table.iloc[0]
    assert row["end_s"] == pytest.approx(0.1 * 86_400)  # cut to the run
    assert row["unrecovered"] == 1 and np.isnan(row["recovered_after_s"])
