"""Past Stripe's idempotency window an open attempt is read back, never charged again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sim.billing import BillingConfig, ManualClock, QueueRunner, RecordingNotifier, Trigger
from sim.billing.testing import ScriptedGateway

from .conftest import BillingFactory, FlakyStore
from .test_crash_consistency import LosingGateway

HOUR = 3_600.0
WINDOW = BillingConfig().idempotency_window_seconds


def _open_attempt(
    make_billing: BillingFactory, add_user: Callable[..., str], store: FlakyStore,
    gateway: ScriptedGateway, tasks: QueueRunner, outcome: str,
) -> None:  # fmt: skip
    """A top-up whose charge got ``outcome`` at Stripe but none of whose answers reached us."""
    billing = make_billing(payment_gateway=LosingGateway(gateway))  # type: ignore[arg-type]
    add_user(balance=1_200, service=billing)
    gateway.queue(outcome)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "unknown"


def test_paid_attempt_past_the_window_is_read_back_and_credited_once(
    make_billing: BillingFactory, add_user: Callable[..., str], store: FlakyStore,
    gateway: ScriptedGateway, tasks: QueueRunner, clock: ManualClock,
    notifier: RecordingNotifier,
) -> None:  # fmt: skip
    """Stripe forgot the key: the recovery asks which PaymentIntent the attempt made, credits
    it, and sends no new charge."""
    _open_attempt(make_billing, add_user, store, gateway, tasks, "succeeded")
    gateway.forget("auto-topup:u1:1")
    calls = len(gateway.calls)
    clock.advance(WINDOW)
    billing = make_billing()
    assert billing.deduct_credits("u1", 1).trigger is Trigger.RECOVER
    tasks.run_pending()
    assert len(gateway.calls) == calls and gateway.succeeded_keys == []
    assert store.attempts("u1")[0].status == "succeeded"
    assert store.get_user("u1").balance == 900 - 1 + 10_000
    assert notifier.kinds("u1") == ["topup_succeeded"]


def test_declined_attempt_past_the_window_is_recorded_declined(
    make_billing: BillingFactory, add_user: Callable[..., str], store: FlakyStore,
    gateway: ScriptedGateway, tasks: QueueRunner, clock: ManualClock,
) -> None:  # fmt: skip
    """A decline read back past the window counts as the decline it was."""
    _open_attempt(make_billing, add_user, store, gateway, tasks, "declined:insufficient_funds")
    clock.advance(WINDOW)
    make_billing().deduct_credits("u1", 1)
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.decline_code) == ("declined", "insufficient_funds")
    assert store.get_user("u1").consecutive_failures == 1


def test_attempt_stripe_never_saw_ends_failed_without_a_charge(
    make_billing: BillingFactory, add_user: Callable[..., str], store: FlakyStore,
    gateway: ScriptedGateway, tasks: QueueRunner, clock: ManualClock,
    notifier: RecordingNotifier,
) -> None:  # fmt: skip
    """No PaymentIntent at all: nothing was charged, so the attempt ends failed and the next
    crossing may claim again."""
    billing = make_billing()
    add_user(balance=1_200, service=billing)
    gateway.queue("transient", "transient", "transient")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    clock.advance(WINDOW)
    billing.deduct_credits("u1", 1)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "failed" and gateway.succeeded_keys == []
    assert notifier.kinds("u1") == ["topup_failed"]
    clock.advance(HOUR)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED


def test_inside_the_window_the_charge_is_resent_under_its_key(
    make_billing: BillingFactory, add_user: Callable[..., str], store: FlakyStore,
    gateway: ScriptedGateway, tasks: QueueRunner, clock: ManualClock,
) -> None:  # fmt: skip
    """A second before the window ends, the recovery resends (Stripe replays its answer)."""
    _open_attempt(make_billing, add_user, store, gateway, tasks, "succeeded")
    calls = len(gateway.calls)
    clock.advance(WINDOW - 1)
    make_billing().deduct_credits("u1", 1)
    tasks.run_pending()
    assert len(gateway.calls) == calls + 1 and len(gateway.succeeded_keys) == 1
    assert store.attempts("u1")[0].status == "succeeded"


def test_window_must_be_positive() -> None:
    """A zero or negative window is a configuration error."""
    with pytest.raises(ValueError, match="idempotency_window_seconds"):
        BillingConfig(idempotency_window_seconds=0)
