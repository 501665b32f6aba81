"""Fault wrappers: they fail at their rate and in their windows, and only what they are told to."""

from __future__ import annotations

import numpy as np
import pytest

from sim.billing import (
    ChargeRequest,
    ManualClock,
    Money,
    SQLiteStore,
    StoreUnavailable,
    TransientGatewayError,
)
from sim.billing.claims import ClaimPolicy
from sim.billing.testing import ScriptedGateway
from sim.faults import FaultSchedule, FlakyGateway, FlakyStore

START = 1_767_225_600.0


def _schedule(rate: float, outages: tuple[tuple[float, float], ...] = ()) -> FaultSchedule:
    return FaultSchedule(np.random.default_rng(0), rate, outages, ManualClock(START), START)


def test_schedule_fails_at_its_rate() -> None:
    """A 20% rate fails about one call in five."""
    schedule = _schedule(0.2)
    assert abs(sum(schedule.fails() for _ in range(20_000)) / 20_000 - 0.2) < 0.01


def test_schedule_always_fails_inside_an_outage() -> None:
    """Inside an outage window every call fails; outside it none does at rate 0."""
    clock = ManualClock(START)
    schedule = FaultSchedule(np.random.default_rng(0), 0.0, ((10.0, 20.0),), clock, START)
    seen = []
    for _ in range(30):
        seen.append(schedule.fails())
        clock.advance(1)
    assert seen == [False] * 10 + [True] * 10 + [False] * 10


def test_schedule_stops_failing_when_the_traffic_ends() -> None:
    """From ``until`` on nothing fails, outage or not: the run settles up cleanly."""
    clock = ManualClock(START)
    schedule = FaultSchedule(
        np.random.default_rng(0), 1.0, ((0.0, 100.0),), clock, START, until=START + 10
    )
    assert schedule.fails()
    clock.advance(10)
    assert not schedule.fails()


def test_flaky_gateway_raises_transient_errors() -> None:
    """A failing charge raises TransientGatewayError; card checks still go through."""
    gateway = FlakyGateway(ScriptedGateway(), _schedule(1.0))
    request = ChargeRequest("cus", "pm_card_visa", Money(1000, "eur"), "k", {"user_id": "u1"})
    with pytest.raises(TransientGatewayError):
        gateway.charge(request)
    assert gateway.payment_method_usable("cus", "pm_card_visa")


def test_flaky_store_fails_only_armed_and_chosen_operations() -> None:
    """Only listed writes fail, only once armed; everything else reaches the inner store. The
    fault is reported with the operation that failed."""
    faults: list[tuple[str, str, str]] = []
    store = FlakyStore(SQLiteStore(), _schedule(1.0), ["credit"], lambda *f: faults.append(f))
    store.create_user("u1", b"k", None)
    assert store.credit("u1", 5, "grant", "opening", START)
    store.armed = True
    with pytest.raises(StoreUnavailable):
        store.credit("u1", 5, "grant", "again", START)
    store.deduct("u1", 2, START, ClaimPolicy(3_600.0, 300.0), lambda *a: b"")
    assert store.ledger_sum("u1") == 3 and store.user_ids() == ["u1"]
    assert faults == [("store_fault", "u1", "credit")]
