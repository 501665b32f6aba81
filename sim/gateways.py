"""Stripe test mode for a run, offline: the emulator, the real Stripe gateway, the webhook endpoint.

Each run gets its own :class:`~sim.stripe_emulator.StripeEmulator` on the run's clock and seed,
and the billing module's own :class:`~sim.billing.payments.StripeGateway` on top of it, talking
through the real ``stripe`` library over the in-process transport: the same code path a server
uses against Stripe, minus the network. Cards are Stripe's test payment methods
(``pm_card_visa``, ``pm_card_chargeDeclinedInsufficientFunds``, ...), declined or challenged at
charge time exactly as Stripe test mode does.

The emulator is also the ground truth of a run's money: :func:`payments_made` lists every
succeeded auto top-up PaymentIntent and every paid subscription invoice, whatever the billing
module saw of them (an answer lost on the way still moved money).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from sim.billing import Clock, Money, UnknownTier, tier_for
from sim.billing.payments import StripeGateway
from sim.billing.pricing import credits_for_payment
from sim.billing.service import TOPUP_PURPOSE
from sim.billing.subscriptions import PURPOSE as SUBSCRIPTION_PURPOSE
from sim.stripe_emulator import TEST_CARD_ALIASES, Faults, StripeEmulator

#: Stripe's test payment methods a scenario may give its users.
TEST_CARDS: Final[tuple[str, ...]] = tuple(sorted(TEST_CARD_ALIASES))

#: The events the billing module's webhook endpoint subscribes to, as a deployment would.
HANDLED_EVENTS: Final = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
WEBHOOK_URL: Final = "sim://billing/v1/payments/webhook"


@dataclass(frozen=True, slots=True)
class StripeTestMode:
    """The emulator of one run and the gateway the billing module charges through."""

    emulator: StripeEmulator
    gateway: StripeGateway


def stripe_test_mode(clock: Clock, seed: int, faults: Faults, webhooks: bool) -> StripeTestMode:
    """A fresh emulator on ``clock`` (ids and faults from ``seed``) and a gateway into it.

    With ``webhooks`` the billing module's endpoint is registered for :data:`HANDLED_EVENTS`.
    """
    emulator = StripeEmulator(clock=clock, seed=seed, faults=faults)
    if webhooks:
        emulator.add_webhook_endpoint(WEBHOOK_URL, HANDLED_EVENTS)
    gateway = StripeGateway("sk_test_simulation", http_client=emulator.http_client())
    return StripeTestMode(emulator, gateway)


@dataclass(frozen=True, slots=True)
class Payment:
    """Money that moved: a succeeded top-up PaymentIntent or a paid subscription invoice."""

    user_id: str
    reference: str
    kind: str  #: ``topup`` or ``subscription``, as the ledger entry that credits it
    price: Money
    #: The auto top-up attempt a PaymentIntent paid for (``None`` for an invoice).
    attempt: int | None = None

    @property
    def credits(self) -> int:
        """What it buys at the price table, plus the monthly bonus for a subscription invoice
        (-1 when the amount matches no tier: then no credit can be right)."""
        try:
            credits = credits_for_payment(self.price.amount_minor, self.price.currency)
        except UnknownTier:
            return -1
        return credits + (tier_for(credits).monthly_bonus if self.kind == "subscription" else 0)


def payments_made(gateway: StripeGateway) -> list[Payment]:
    """Every payment of the run as Stripe holds it, ordered by user and reference."""
    client = gateway.client
    found = []
    for intent in _all(client.v1.payment_intents.list(params={"limit": 100})):
        metadata = intent.metadata.to_dict()
        if intent.status == "succeeded" and metadata.get("purpose") == TOPUP_PURPOSE:
            price = Money(intent.amount_received, intent.currency)
            attempt = int(metadata["attempt"])
            found.append(Payment(metadata["user_id"], intent.id, "topup", price, attempt))
    for invoice in _all(client.v1.invoices.list(params={"limit": 100})):
        details = invoice.to_dict().get("parent", {}).get("subscription_details") or {}
        metadata = details.get("metadata") or {}
        if invoice.status == "paid" and metadata.get("purpose") == SUBSCRIPTION_PURPOSE:
            price = Money(invoice.amount_paid, invoice.currency)
            found.append(Payment(metadata["user_id"], invoice.id, "subscription", price))
    return sorted(found, key=lambda p: (p.user_id, p.reference))


def _all(page: Any) -> Iterator[Any]:
    return iter(page.auto_paging_iter())
