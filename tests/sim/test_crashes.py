"""Worker crashes at every write boundary: after recovery, every invariant holds.

Deterministic simulation testing: one run records every boundary the scenario passes (listed
by the code: each writing method of each port, before and after), then one run per boundary
kills the worker there, at its first pass. Each run must end with its books balanced, its cache
equal to its store, no attempt stuck and every attempt's notices agreeing with its outcome
(``run`` raises otherwise).
"""

from __future__ import annotations

import pytest

from sim import run
from sim.billing import SQLiteStore, Store
from sim.crashes import STORE_READS, WRITES, Boundaries, Crash, CrashPlan, all_boundaries

from .conftest import shipped

#: chaos at a size where one run takes about a second: faults, lost answers, retries, webhooks
#: copied and reordered, a cache flush, subscriptions' first invoices.
SCENARIO = shipped("chaos", users=12, days=2)


def _discovered() -> list[str]:
    plan = CrashPlan()
    run(SCENARIO, backend="memory", crash=plan)
    return sorted(plan.seen)


DISCOVERED = _discovered()


def test_discovery_passes_every_kind_of_write() -> None:
    """The scenario reaches each operation's writes: deduct, charge, settle, webhook, renewal."""
    for boundary in [
        "deduct/store.deduct:after", "deduct/cache.put:before", "topup/store.start_charge:after",
        "topup/gateway.charge:after", "topup/store.settle_topup:before",
        "topup/store.finish_attempt:after", "topup/store.hold_lease:after",
        "webhook/store.settle_topup:after", "webhook/store.mark_event_processed:before",
        "webhook/store.credit:after", "webhook/store.save_subscription:after",
    ]:  # fmt: skip
        assert boundary in DISCOVERED


@pytest.mark.parametrize("boundary", DISCOVERED)
def test_crash_at_boundary_keeps_every_invariant(boundary: str) -> None:
    """A worker killed at this boundary leaves nothing that recovery does not repair."""
    plan = CrashPlan(at=boundary)
    results = run(SCENARIO, backend="memory", crash=plan)
    assert plan.crashes == [boundary]
    crashes = results.events[results.events["kind"] == "crash"]
    assert crashes["outcome"].tolist() == [boundary.split("/")[1]]


def test_store_boundaries_are_every_write_of_the_port() -> None:
    """The store's boundaries come from the Store port itself: every method but the reads."""
    methods = {m for m in dir(Store) if not m.startswith("_")}
    assert set(WRITES["store"]) == methods - STORE_READS
    assert {"deduct", "settle_topup", "finish_attempt", "credit"} <= set(WRITES["store"])
    assert "store.deduct:after" in all_boundaries()


def test_crash_rolls_back_an_uncommitted_transaction() -> None:
    """Dying inside a transaction (before its commit) leaves the store as it was."""
    store = SQLiteStore()
    plan = CrashPlan(at="setup/store.create_user:after", armed=True)
    wrapped = Boundaries(store, "store", plan)
    with pytest.raises(Crash):
        wrapped.create_user("u1", b"k", None)
    assert store.user_ids() == ["u1"]  # after: the write had committed
    plan = CrashPlan(at="setup/store.credit:before", armed=True)
    with pytest.raises(Crash):
        Boundaries(store, "store", plan).credit("u1", 5, "grant", "g", 0.0)
    assert store.ledger_sum("u1") == 0


def test_plan_counts_passes_and_dies_at_the_chosen_one() -> None:
    """``occurrence`` picks which pass dies; a disarmed plan neither counts nor kills."""
    plan = CrashPlan(at="deduct/cache.put:after", occurrence=2)
    plan.passing("cache.put:after")
    assert plan.seen == {}
    plan.armed, plan.operation = True, "deduct"
    plan.passing("cache.put:after")
    with pytest.raises(Crash, match=r"cache\.put:after during deduct"):
        plan.passing("cache.put:after")
    assert plan.seen == {"deduct/cache.put:after": 2} and plan.crashes == ["deduct/cache.put:after"]


def test_random_crashes_in_chaos_keep_every_invariant() -> None:
    """The chaos scenario kills workers at random boundaries too; the books still balance."""
    results = run(shipped("chaos", users=30, days=2), backend="memory")
    assert (results.events["kind"] == "crash").sum() > 0
