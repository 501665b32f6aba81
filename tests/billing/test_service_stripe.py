"""The billing core end to end through the Stripe gateway and the offline emulator.

The same rules as ``test_service.py``, with outcomes decided by Stripe's test cards at charge time
instead of a script.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
    RecordingNotifier,
    ThreadRunner,
    Trigger,
)
from sim.billing.payments import StripeGateway
from sim.stripe_emulator import Fault, Faults, StripeEmulator

from .conftest import BillingFactory, FlakyStore, run_concurrently

HOUR = 3_600.0


@pytest.fixture
def billing(make_billing: BillingFactory, stripe_gateway: StripeGateway) -> BillingService:
    """The service charging through Stripe (the emulator)."""
    return make_billing(payment_gateway=stripe_gateway)


@pytest.fixture
def add_user(billing: BillingService, stripe_gateway: StripeGateway) -> Callable[..., str]:
    """A user with a Stripe customer, a test card attached as default, and auto top-up on."""

    def add(card: str, *, user_id: str = "u1", balance: int = 1_200, currency: str = "eur") -> str:
        billing.create_user(user_id, email=f"{user_id}@example.com", balance=balance)
        customer = stripe_gateway.ensure_customer(user_id, f"{user_id}@example.com")
        billing.save_payment_method(user_id, customer, stripe_gateway.attach_card(customer, card))
        billing.update_settings(user_id, AutoTopupSettings(True, 1_000, 10_000, currency))
        return customer

    return add


def _intents(gateway: StripeGateway, customer: str) -> list[tuple[str, int, str]]:
    listed = gateway.client.v1.payment_intents.list(params={"customer": customer})
    return [(i.status, i.amount, i.currency) for i in reversed(listed.data)]


def test_visa_top_up_charges_once_and_credits(
    billing: BillingService,
    add_user: Callable[..., str],
    stripe_gateway: StripeGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """A crossing creates one succeeded off-session intent and credits its credits once."""
    customer = add_user("pm_card_visa")
    assert billing.deduct_credits("u1", 300).trigger is Trigger.CLAIMED
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert _intents(stripe_gateway, customer) == [("succeeded", 1_000, "eur")]
    attempt = store.attempts("u1")[0]
    assert attempt.status == "succeeded" and attempt.payment_intent_id is not None
    assert billing.balance("u1") == store.ledger_sum("u1") == 10_600


def test_jpy_top_up_charges_zero_decimal_amount(
    billing: BillingService,
    add_user: Callable[..., str],
    stripe_gateway: StripeGateway,
    tasks: QueueRunner,
) -> None:
    """10,000 credits in JPY is an intent of 2000 (¥2,000)."""
    customer = add_user("pm_card_visa", currency="jpy")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert _intents(stripe_gateway, customer) == [("succeeded", 2_000, "jpy")]


def test_insufficient_funds_is_declined_at_charge_time(
    billing: BillingService,
    add_user: Callable[..., str],
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
    clock: ManualClock,
) -> None:
    """The card attaches fine and is declined when charged; the cooldown holds."""
    add_user("pm_card_chargeDeclinedInsufficientFunds")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.decline_code) == ("declined", "insufficient_funds")
    assert notifier.kinds("u1") == ["topup_declined"]
    clock.advance(HOUR - 1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.COOLING


def test_sca_card_pauses_auto_top_up(
    billing: BillingService, add_user: Callable[..., str], tasks: QueueRunner, store: FlakyStore
) -> None:
    """The 3-D Secure card off-session needs the customer: paused, nothing credited."""
    add_user("pm_card_authenticationRequired")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "requires_action"
    assert store.get_user("u1").state == "paused"
    assert billing.balance("u1") == 900


def test_three_declines_suspend(
    billing: BillingService,
    add_user: Callable[..., str],
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """A card that always fails is charged three times, one cooldown apart, then suspended."""
    add_user("pm_card_chargeCustomerFail")
    for _ in range(4):
        billing.deduct_credits("u1", 100)
        tasks.run_pending()
        clock.advance(HOUR)
    assert store.get_user("u1").state == "suspended"
    assert [a.status for a in store.attempts("u1")] == ["declined"] * 3


def test_lost_response_then_error_retries_with_the_same_key(
    billing: BillingService,
    add_user: Callable[..., str],
    stripe_gateway: StripeGateway,
    emulator: StripeEmulator,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """Charge applied but its answer lost, then a 500: the third try replays the one charge."""
    customer = add_user("pm_card_visa")
    # Setup made 4 requests (customer, attach, default card, card check when enabling); the
    # top-up checks the card (5) and creates the intent (6, applied but dropped), retried as 7
    # (a 500) and 8 (the replay).
    emulator.faults = Faults(schedule={6: Fault.DROP_RESPONSE, 7: Fault.SERVER_ERROR})
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert _intents(stripe_gateway, customer) == [("succeeded", 1_000, "eur")]
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.retries) == ("succeeded", 2)
    assert billing.balance("u1") == 10_900


def test_fifty_threads_one_charge_through_stripe(
    make_billing: BillingFactory, stripe_gateway: StripeGateway, store: FlakyStore
) -> None:
    """50 threads cross the threshold together: Stripe sees exactly one PaymentIntent."""
    runner = ThreadRunner(workers=4)
    billing = make_billing(payment_gateway=stripe_gateway, tasks_runner=runner)
    billing.create_user("u1", balance=1_500)
    customer = stripe_gateway.ensure_customer("u1")
    billing.save_payment_method(
        "u1", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    run_concurrently(50, lambda: billing.deduct_credits("u1", 20), runner)
    assert _intents(stripe_gateway, customer) == [("succeeded", 1_000, "eur")]
    assert billing.balance("u1") == store.ledger_sum("u1") == 1_500 - 50 * 20 + 10_000


def test_stripe_outage_ends_the_attempt_as_failed_and_the_next_one_charges(
    billing: BillingService,
    add_user: Callable[..., str],
    emulator: StripeEmulator,
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
    clock: ManualClock,
) -> None:
    """Stripe down for the whole attempt: the card check never answered, so nothing was sent and
    it ends as failed (not the card's fault, nothing counted); once Stripe is back the next
    crossing after the cooldown charges."""
    add_user("pm_card_visa")
    emulator.faults = Faults(server_error_rate=1.0)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "failed"
    assert notifier.kinds("u1") == ["topup_failed"]
    assert store.get_user("u1").consecutive_failures == 0
    emulator.faults = Faults()
    clock.advance(HOUR)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED
    tasks.run_pending()
    assert billing.balance("u1") == 10_899
