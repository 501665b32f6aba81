"""Crash consistency: the seven ways a killed worker, a lost cache or a late answer broke the
billing before its store-decides, versioned-cache and leased-attempt protocol, each as a test.

A worker is killed with :class:`sim.crashes.Crash` at a named boundary (a ``BaseException``:
nothing in the billing module can catch it and carry on, as with SIGKILL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    CacheUnavailable,
    ChargeRequest,
    ChargeResult,
    InlineRunner,
    ManualClock,
    Money,
    QueueRunner,
    RecordingNotifier,
    StoreUnavailable,
    TransientGatewayError,
    Trigger,
)
from sim.billing.payments import StripeGateway
from sim.billing.reconcile import reconcile_user
from sim.billing.testing import ScriptedGateway
from sim.crashes import Boundaries, Crash, CrashPlan

from .conftest import BillingFactory, CacheBackend, FlakyStore

AddUser = Callable[..., str]
HOUR = 3_600.0
LEASE = 300.0


def _killed_at(billing: BillingService, boundary: str) -> CrashPlan:
    """Route the service's store and cache through boundaries; the first pass of
    ``boundary`` (``port.method:side``) kills the worker."""
    plan = CrashPlan(at=f"test/{boundary}", armed=True, operation="test")
    billing.store = Boundaries(billing.store, "store", plan)  # type: ignore[assignment]
    billing.cache = Boundaries(billing.cache, "cache", plan)  # type: ignore[assignment]
    return plan


def _agree(billing: BillingService, store: FlakyStore, user: str) -> int:
    """Cache, store and ledger agree (a cached snapshot, if any, equals the store's)."""
    cached = billing.cache.get(user)
    assert cached is None or cached == store.snapshot(user), (cached, store.snapshot(user))
    balance = store.get_user(user).balance
    assert billing.balance(user) == balance == store.ledger_sum(user)
    return balance


class LosingGateway:
    """Stripe applies every charge and every answer is lost on the way back while ``losing``."""

    def __init__(self, inner: ScriptedGateway) -> None:
        self.inner, self.losing = inner, True

    def charge(self, request: ChargeRequest) -> ChargeResult:
        result = self.inner.charge(request)
        if self.losing:
            raise TransientGatewayError("the connection dropped after Stripe answered")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# 1 ---------------------------------------------------------------------------------------------


def test_killed_between_store_and_cache_converges_on_the_next_request(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """Killed after the deduction committed and before the cache write: the cache lags one
    version (never runs ahead of the store), and the user's next request brings it level."""
    add_user(balance=5_000)
    plan = _killed_at(billing, "cache.put:before")
    with pytest.raises(Crash):
        billing.deduct_credits("u1", 300)
    assert plan.crashes and store.get_user("u1").balance == 4_700
    assert billing.cache.balance("u1") == 5_000  # behind, not below
    billing.deduct_credits("u1", 1)
    assert _agree(billing, store, "u1") == 4_699


# 2 ---------------------------------------------------------------------------------------------


def test_claim_whose_worker_died_is_recovered_within_the_lease(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
    cache_backend: CacheBackend,
) -> None:
    """Killed after the claim was stored, before its charge was handed on: minutes later (the
    lease), not a day, the next request takes the attempt over and it is charged once; a cache
    loss in between brings nothing back as open that is not open in the store."""
    add_user(balance=1_200)
    _killed_at(billing, "cache.put:before")
    with pytest.raises(Crash):
        billing.deduct_credits("u1", 300)  # claimed attempt 1, never handed to the runner
    assert len(tasks) == 0 and store.get_user("u1").open_attempt == 1
    cache_backend.flush()
    clock.advance(LEASE - 1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.PENDING
    clock.advance(1)
    done = billing.deduct_credits("u1", 1)
    assert (done.trigger, done.attempt) == (Trigger.RECOVER, 1)
    tasks.run_pending()
    assert [c.idempotency_key for c in gateway.calls] == ["auto-topup:u1:1"]
    assert [(a.seq, a.status) for a in store.attempts("u1")] == [(1, "succeeded")]
    assert _agree(billing, store, "u1") == 1_200 - 302 + 10_000


# 3 ---------------------------------------------------------------------------------------------


def test_refill_racing_a_credit_keeps_the_credit(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """A refill reads the store, a credit commits and writes the cache, then the refill writes
    what it read: the older snapshot loses, the cache keeps the credit."""
    add_user(balance=5_000)
    cache_backend.flush()
    read = store.inner.snapshot

    def racing(user_id: str) -> Any:
        before = read(user_id)
        billing.add_credits(user_id, 10_000, kind="grant", reference="goodwill")
        return before

    store.snapshot = racing  # type: ignore[method-assign]
    assert billing.balance("u1") == 5_000  # this read answers what it read ...
    del store.snapshot
    assert _agree(billing, store, "u1") == 15_000  # ... and the cache kept the newer credit


def test_cache_lost_after_a_claim_never_reuses_an_attempt_number(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    tasks: QueueRunner,
    clock: ManualClock,
    cache_backend: CacheBackend,
) -> None:
    """A claim the cache never saw, then a cache loss: later claims take the next number (the
    store hands them out), so no request fails on a duplicate attempt."""
    add_user(balance=1_200)
    _killed_at(billing, "cache.put:before")
    with pytest.raises(Crash):
        billing.deduct_credits("u1", 300)
    billing.store, billing.cache = store, cache_backend.cache  # a fresh worker
    cache_backend.flush()
    clock.advance(LEASE)
    billing.deduct_credits("u1", 1)  # recovers attempt 1
    tasks.run_pending()
    clock.advance(HOUR)
    for _ in range(12):
        billing.deduct_credits("u1", 900)
    tasks.run_pending()
    assert [(a.seq, a.status) for a in store.attempts("u1")] == [(1, "succeeded"), (2, "succeeded")]


# 4 ---------------------------------------------------------------------------------------------


def test_late_failure_of_a_superseded_attempt_changes_nothing(
    make_billing: BillingFactory,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
    notifier: RecordingNotifier,
) -> None:
    """Attempt 1 ended (its decline learnt by recovery), the user saved a working card and
    attempt 2 was paid; attempt 1's late payment_failed event then changes nothing."""
    losing = LosingGateway(gateway)
    billing = make_billing(payment_gateway=losing)  # type: ignore[arg-type]
    add_user(balance=1_200, card="pm_bad", service=billing)
    gateway._cards["pm_bad"] = "declined:card_declined"
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "unknown" and notifier.kinds("u1") == []
    losing.losing = False
    clock.advance(LEASE)
    billing.deduct_credits("u1", 1)  # recovers attempt 1: Stripe replays the decline
    tasks.run_pending()
    billing.save_payment_method("u1", "cus_u1", "pm_good")
    clock.advance(HOUR)
    billing.deduct_credits("u1", 1)  # attempt 2, paid
    tasks.run_pending()
    assert [a.status for a in store.attempts("u1")] == ["declined", "succeeded"]
    assert not billing.payment_failed("u1", 1)
    user = store.get_user("u1")
    assert (user.state, user.consecutive_failures) == ("active", 0)
    assert notifier.kinds("u1") == ["topup_declined", "topup_succeeded"]


def test_failure_event_before_the_success_never_records_a_paid_attempt_declined(
    make_billing: BillingFactory,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
) -> None:
    """A failed-payment event for an attempt whose charge in fact went through is not taken at
    its word: Stripe is asked again, and the attempt ends paid, told once, nothing counted."""
    losing = LosingGateway(gateway)
    billing = make_billing(payment_gateway=losing)  # type: ignore[arg-type]
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()  # paid at Stripe, every answer lost
    losing.losing = False
    assert billing.payment_failed("u1", 1)
    tasks.run_pending()
    attempt, user = store.attempts("u1")[0], store.get_user("u1")
    assert (attempt.status, user.consecutive_failures) == ("succeeded", 0)
    assert notifier.kinds("u1") == ["topup_succeeded"]
    assert _agree(billing, store, "u1") == 900 + 10_000


# 5 ---------------------------------------------------------------------------------------------


class FailingCache:
    """A cache whose writes fail while ``down`` (reads of the fixture's cache still work)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.down = inner, True

    def put(self, user_id: str, user: Any) -> bool:
        if self.down:
            raise CacheUnavailable("cache error: connection refused")
        return bool(self.inner.put(user_id, user))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_settings_saved_with_the_cache_down_are_saved_not_refused(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """The store holds the new settings, so the change succeeded (no "nothing changed" error),
    and the cache takes them at the user's next write once it is back."""
    add_user(balance=5_000, enabled=False)
    billing.cache = FailingCache(cache_backend.cache)  # type: ignore[assignment]
    billing.update_settings("u1", AutoTopupSettings(True, 2_000, 21_000, "usd"))
    assert store.get_user("u1").settings == AutoTopupSettings(True, 2_000, 21_000, "usd")
    billing.cache.down = False  # type: ignore[attr-defined]
    billing.deduct_credits("u1", 1)
    cached = billing.cache.get("u1")
    assert cached is not None and (cached.enabled, cached.threshold) == (True, 2_000)
    _agree(billing, store, "u1")


# 6 ---------------------------------------------------------------------------------------------


def test_every_answer_lost_is_unknown_and_nobody_is_told_failed(
    make_billing: BillingFactory,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
) -> None:
    """Every try's answer lost (the charge went through): the attempt is unknown, not failed;
    the succeeded webhook credits it and the user hears only that it succeeded."""
    billing = make_billing(payment_gateway=LosingGateway(gateway))  # type: ignore[arg-type]
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "unknown" and notifier.kinds("u1") == []
    paid = gateway.succeeded_charges("cus_u1")[0]
    assert billing.settle_payment("u1", paid.payment_intent_id, paid.price, paid.metadata)
    assert store.attempts("u1")[0].status == "succeeded"
    assert notifier.kinds("u1") == ["topup_succeeded"]


# 7 ---------------------------------------------------------------------------------------------


def test_no_second_charge_while_a_paid_top_up_waits_for_its_credit(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """The credit path is down for two hours after a paid charge: the cooldown ends, the balance
    is still low, and no new top-up is claimed; the same attempt is retried (same key) until
    its credit lands, once."""
    add_user(balance=1_200)
    store.failing.add("settle_topup")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()  # paid, not credited
    for _ in range(24):  # two hours of requests, every five minutes
        clock.advance(LEASE)
        done = billing.deduct_credits("u1", 1)
        assert done.trigger in (Trigger.PENDING, Trigger.RECOVER) and done.attempt in (None, 1)
        tasks.run_pending()
    store.failing.clear()
    clock.advance(LEASE)
    billing.deduct_credits("u1", 1)
    tasks.run_pending()
    assert {c.idempotency_key for c in gateway.calls} == {"auto-topup:u1:1"}
    assert len(gateway.succeeded_keys) == 1
    assert _agree(billing, store, "u1") == 1_200 - 300 - 25 + 10_000


# reconciliation --------------------------------------------------------------------------------


def test_reconcile_repairs_cache_recovers_attempts_and_credits_orphans(
    make_billing: BillingFactory,
    add_user: AddUser,
    store: FlakyStore,
    gateway: ScriptedGateway,
    clock: ManualClock,
    cache_backend: CacheBackend,
) -> None:
    """One pass: a stale cache is replaced, an attempt past its lease is run again under its
    key, and a charge Stripe holds without a credit is credited; a second pass finds nothing."""
    losing = LosingGateway(gateway)
    billing = make_billing(payment_gateway=losing, tasks_runner=InlineRunner())  # type: ignore[arg-type]
    add_user(balance=1_200, service=billing)
    store.failing.add("settle_topup")
    billing.deduct_credits("u1", 300)  # charged (answers lost), then unknown
    store.failing.clear()
    losing.losing = False
    stale = store.snapshot("u1")
    billing.grant_credits("u1", 50, reference="support")
    cache_backend.cache.forget("u1")
    cache_backend.cache.put("u1", stale)  # a cache that missed the grant
    clock.advance(LEASE)
    found = reconcile_user(billing, "u1")
    assert (found.cache_repaired, found.attempt_recovered) == (True, 1)
    assert _agree(billing, store, "u1") == 900 + 50 + 10_000
    assert reconcile_user(billing, "u1").clean
    orphan = gateway.charge(
        ChargeRequest("cus_u1", "pm_card_visa", Money(1_000, "eur"), "by-hand-1",
                      {"user_id": "u1", "credits": "10000", "purpose": "auto_topup"})
    )  # fmt: skip
    assert reconcile_user(billing, "u1").uncredited_charges == (orphan.payment_intent_id,)
    assert _agree(billing, store, "u1") == 900 + 50 + 2 * 10_000


def test_store_outage_on_a_deduction_changes_nothing(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A deduction the store could not record is refused whole: no balance moved anywhere."""
    add_user(balance=1_200)
    store.failing.add("deduct")
    with pytest.raises(StoreUnavailable):
        billing.deduct_credits("u1", 300)
    assert _agree(billing, store, "u1") == 1_200


# the idempotency key's lifetime ----------------------------------------------------------------


def test_paid_attempt_recovered_after_a_day_is_not_charged_again(
    make_billing: BillingFactory,
    stripe_gateway: StripeGateway,
    store: FlakyStore,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """An attempt paid at Stripe but left uncredited (store down, webhook not delivered) and
    first recovered 25 h later charges the customer once, not twice."""
    billing = make_billing(payment_gateway=stripe_gateway)
    billing.create_user("u1", balance=1_200)
    customer = stripe_gateway.ensure_customer("u1", "u1@example.com")
    card = stripe_gateway.attach_card(customer, "pm_card_visa")
    billing.save_payment_method("u1", customer, card)
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    store.failing.add("settle_topup")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()  # paid at Stripe; the credit did not commit, the attempt stays open
    store.failing.clear()
    clock.advance(25 * HOUR)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.RECOVER
    tasks.run_pending()
    assert len(stripe_gateway.succeeded_charges(customer)) == 1
