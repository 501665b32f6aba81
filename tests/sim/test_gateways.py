"""Stripe test mode for a run: test cards decline at charge time, payments are read back."""

from __future__ import annotations

from sim.billing import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeSucceeded,
    ManualClock,
    Money,
)
from sim.billing.webhooks import HANDLED_EVENTS
from sim.gateways import TEST_CARDS, StripeTestMode, payments_made, stripe_test_mode
from sim.stripe_emulator import Faults

META = {"user_id": "u1", "credits": "1000", "attempt": "1", "purpose": "auto_topup"}


def _mode(webhooks: bool = True) -> StripeTestMode:
    return stripe_test_mode(ManualClock(), seed=1, faults=Faults(), webhooks=webhooks)


def _charge(mode: StripeTestMode, card: str, key: str = "k1"):  # type: ignore[no-untyped-def]
    customer = mode.gateway.ensure_customer("u1")
    card_id = mode.gateway.attach_card(customer, card)
    return mode.gateway.charge(ChargeRequest(customer, card_id, Money(200, "eur"), key, META))


def test_cards_are_judged_at_charge_time() -> None:
    """Every test card attaches; visa pays, declining cards decline with their code, the 3-D
    Secure card asks for the customer."""
    mode = _mode()
    assert "pm_card_visa" in TEST_CARDS
    assert isinstance(_charge(mode, "pm_card_visa", "a"), ChargeSucceeded)
    declined = _charge(mode, "pm_card_chargeDeclinedInsufficientFunds", "b")
    assert isinstance(declined, ChargeDeclined) and declined.decline_code == "insufficient_funds"
    assert isinstance(
        _charge(mode, "pm_card_authenticationRequired", "c"), ChargeNeedsAuthentication
    )


def test_payments_made_lists_succeeded_top_ups_only() -> None:
    """Stripe's records give each succeeded auto top-up with its user, amount and credits."""
    mode = _mode()
    paid = _charge(mode, "pm_card_visa", "a")
    _charge(mode, "pm_card_chargeDeclined", "b")
    payments = payments_made(mode.emulator)
    assert [(p.user_id, p.reference, p.kind, p.credits) for p in payments] == [
        ("u1", paid.payment_intent_id, "topup", 1000)
    ]


def test_subscription_invoices_count_with_their_bonus() -> None:
    """A paid monthly top-up invoice is a payment of the tier's credits plus its bonus."""
    mode = _mode()
    customer = mode.gateway.ensure_customer("u1")
    card = mode.gateway.attach_card(customer, "pm_card_visa")
    metadata = {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"}
    mode.gateway.create_subscription(customer, card, Money(1000, "eur"), "s1", metadata)
    (payment,) = payments_made(mode.emulator)
    assert (payment.kind, payment.credits, payment.price) == (
        "subscription", 10_500, Money(1000, "eur"),
    )  # fmt: skip


def test_webhook_endpoint_gets_only_the_handled_events() -> None:
    """The billing endpoint subscribes to the events it handles, and none without webhooks."""
    mode = _mode()
    _charge(mode, "pm_card_visa")
    mode.emulator.faults = Faults()
    types = {d.event_type for d in mode.emulator.due_deliveries(1e12)}
    assert types and types <= set(HANDLED_EVENTS)
    quiet = _mode(webhooks=False)
    _charge(quiet, "pm_card_visa")
    assert quiet.emulator.due_deliveries(1e12) == []
