"""Monthly auto top-up: a subscription that charges a tier's price every month and credits the
tier's credits plus its bonus, once per paid invoice.

The original system granted these credits only from a webhook branch that could never run (it
returned early for events without an order id). Here every paid invoice of one of our
subscriptions credits, keyed by the invoice id, and an invoice that arrives before our record of
its subscription makes that record from what the invoice says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import (
    PaymentMethodMissing,
    PriceMismatch,
    SubscriptionError,
    WebhookPayloadError,
)
from .gateway import SubscriptionGateway, SubscriptionInfo
from .pricing import Money, check_currency, price_of, tier_for
from .service import BillingService
from .store import LIVE_SUBSCRIPTION_STATUSES, SubscriptionRecord
from .webhook_events import InvoiceEvent, SubscriptionEvent

PURPOSE = "monthly_topup"
#: The ledger kind of a paid invoice's credit (its reference is the invoice id).
SUBSCRIPTION_KIND = "subscription"


class Subscriptions:
    """Creates, cancels and settles monthly top-up subscriptions for the billing service."""

    def __init__(self, *, billing: BillingService, gateway: SubscriptionGateway) -> None:
        self.billing = billing
        self.store = billing.store
        self.gateway = gateway

    def live(self, user_id: str) -> SubscriptionRecord | None:
        """The user's subscription that still bills, if any (there is at most one)."""
        for record in self.store.subscriptions(user_id):
            if record.status in LIVE_SUBSCRIPTION_STATUSES:
                return record
        return None

    def check_create(self, user_id: str, credits: int, currency: str) -> None:
        """Refuse what :meth:`create` refuses, reading only the store (an API checks this before
        it takes a 2FA code): a tier or currency we do not sell, a tier without a monthly bonus,
        a live subscription already, no saved card."""
        tier = tier_for(credits)
        if not tier.subscribable:
            raise SubscriptionError(f"the {credits}-credit tier has no monthly subscription")
        price_of(credits, currency)
        if self.live(user_id) is not None:
            raise SubscriptionError(f"user {user_id!r} already has a live subscription")
        if self.billing.payment_method(user_id) is None:
            raise PaymentMethodMissing(user_id)

    def create(self, user_id: str, credits: int, currency: str) -> SubscriptionRecord:
        """Subscribe to a tier that has a monthly bonus, paid with the saved card."""
        self.check_create(user_id, credits, currency)
        saved = self.billing.payment_method(user_id)
        assert saved is not None  # check_create refused a user without a card
        number = len(self.store.subscriptions(user_id)) + 1
        info = self.gateway.create_subscription(
            saved[0],
            saved[1],
            price_of(credits, currency),
            f"subscription:{user_id}:{number}",
            {"user_id": user_id, "credits": str(credits), "purpose": PURPOSE},
        )
        return self._save(user_id, credits, currency, info, self.billing.clock.now())

    def check_cancel(self, user_id: str) -> SubscriptionRecord:
        """The live subscription :meth:`cancel` would stop; refuses when there is none."""
        record = self.live(user_id)
        if record is None:
            raise SubscriptionError(f"user {user_id!r} has no live subscription to cancel")
        return record

    def cancel(self, user_id: str) -> SubscriptionRecord:
        """Stop renewing the live subscription; it ends with the period already paid."""
        record = self.check_cancel(user_id)
        info = self.gateway.cancel_at_period_end(record.subscription_id)
        return self._save(user_id, record.credits, record.currency, info, self.billing.clock.now())

    def _save(
        self, user_id: str, credits: int, currency: str, info: SubscriptionInfo, as_of: float
    ) -> SubscriptionRecord:
        record = SubscriptionRecord(
            info.subscription_id, user_id, credits, currency, info.status,
            info.current_period_end, info.cancel_at_period_end, as_of,
        )  # fmt: skip
        self.store.save_subscription(record)
        return self.store.subscription(info.subscription_id) or record

    # ------------------------------------------------------------------ webhook events
    #
    # Each event is checked first (reads only: ours? whose? the right customer and price?), and
    # only a checked event is applied, so a refused event has written nothing.

    def subscription_update(
        self, subscription: SubscriptionEvent, as_of: float
    ) -> SubscriptionRecord | None:
        """The record a ``customer.subscription.*`` event would save; ``None`` if the
        subscription is not a monthly top-up.

        Refuses (``WebhookPayloadError``, ``UnknownUser``, ``UnknownTier``, ``UnknownCurrency``)
        an event without its user, of an unknown user or another customer, or of a tier or
        currency the billing does not sell.
        """
        metadata = subscription.metadata
        if metadata.get("purpose") != PURPOSE:
            return None
        user_id = metadata.get("user_id")
        if not user_id:
            raise WebhookPayloadError(
                f"subscription {subscription.subscription_id}: metadata.user_id is missing"
            )
        check_customer(self.billing, user_id, subscription.customer, subscription.subscription_id)
        existing = self.store.subscription(subscription.subscription_id)
        if existing is not None:
            credits, currency = existing.credits, existing.currency
        else:
            credits = _subscribable(metadata.get("credits"), subscription.subscription_id)
            currency = check_currency(subscription.currency)
        return SubscriptionRecord(
            subscription.subscription_id, user_id, credits, currency, subscription.status,
            None if subscription.current_period_end is None
            else float(subscription.current_period_end),
            subscription.cancel_at_period_end, as_of,
        )  # fmt: skip

    def save_update(self, record: SubscriptionRecord) -> bool:
        """Apply a checked subscription event; ``False`` if a newer state is already held."""
        return self.store.save_subscription(record)

    def invoice_record(self, invoice: InvoiceEvent, *, paid: bool) -> InvoiceOf | None:
        """Our subscription behind an invoice; ``None`` if the invoice is not a monthly top-up.

        Refuses an invoice of an unknown user or another customer, of a tier without a monthly
        bonus, and (``paid``) one that paid anything but the tier's price (``PriceMismatch``).

        An invoice can arrive before our own record of its subscription: Stripe sends the first
        invoice's events while :meth:`create` is still waiting for Stripe's answer. The invoice
        carries all the record needs (subscription id, user, tier, currency), so that record is
        made from it, as of time 0: any ``customer.subscription.*`` event, and :meth:`create`'s
        own save, supersede it. No retry is needed and none is asked for.
        """
        if invoice.subscription_id is None:
            return None
        record = self.store.subscription(invoice.subscription_id)
        recorded = record is not None
        if record is None:
            if invoice.metadata.get("purpose") != PURPOSE:
                return None
            user_id = invoice.metadata.get("user_id")
            if not user_id:
                raise WebhookPayloadError(f"invoice {invoice.invoice_id}: no metadata.user_id")
            credits = _subscribable(invoice.metadata.get("credits"), invoice.invoice_id)
            record = SubscriptionRecord(
                invoice.subscription_id, user_id, credits, check_currency(invoice.currency),
                "active" if paid else "past_due", None, False, 0.0,
            )  # fmt: skip
        check_customer(self.billing, record.user_id, invoice.customer, invoice.invoice_id)
        price = price_of(record.credits, record.currency)
        if paid and Money(invoice.amount_paid, invoice.currency) != price:
            raise PriceMismatch(
                f"invoice {invoice.invoice_id} paid {invoice.amount_paid} {invoice.currency},"
                f" but the {record.credits}-credit tier costs {price}"
            )
        return InvoiceOf(record, recorded)

    def credit_invoice(self, of: InvoiceOf, invoice: InvoiceEvent) -> bool:
        """Credit a checked paid invoice: the tier's credits and its bonus, once per invoice
        (recording its subscription first if this invoice is the first news of it)."""
        record = of.record
        if not of.recorded:
            self.store.save_subscription(record)
        credits = record.credits + tier_for(record.credits).monthly_bonus
        credited = self.billing.add_credits(
            record.user_id, credits, kind=SUBSCRIPTION_KIND, reference=invoice.invoice_id
        )
        if credited:
            self.billing.notify(
                record.user_id, "subscription_renewed", invoice=invoice.invoice_id,
                credits=str(credits),
            )  # fmt: skip
        return credited

    def mark_past_due(self, of: InvoiceOf, invoice: InvoiceEvent, as_of: float) -> bool:
        """Mark the subscription of a checked failed invoice past due and tell the user; ``True``
        if it was news."""
        record = of.record
        changed = self.store.save_subscription(replace(record, status="past_due", as_of=as_of))
        if changed:
            self.billing.notify(
                record.user_id, "subscription_payment_failed", invoice=invoice.invoice_id
            )
        return changed


def check_customer(billing: BillingService, user_id: str, customer: str | None, about: str) -> None:
    """Refuse a webhook event (about ``about``) whose customer is not the user's: a payment,
    invoice or subscription of another customer never reaches this user (``UnknownUser`` when
    there is no such user). Shared by every event the billing applies."""
    expected = billing.customer_id(user_id)
    if customer is None or customer != expected:
        raise WebhookPayloadError(
            f"{about}: customer {customer!r} is not the customer of user {user_id!r}"
        )


def _subscribable(value: str | None, about: str) -> int:
    """The tier named by metadata ``credits`` (decimal digits) if it has a monthly bonus."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise WebhookPayloadError(f"{about}: metadata.credits must be decimal digits")
    tier = tier_for(int(value))
    if not tier.subscribable:
        raise WebhookPayloadError(f"{about}: the {tier.credits}-credit tier has no subscription")
    return tier.credits


@dataclass(frozen=True, slots=True)
class InvoiceOf:
    """The subscription a checked invoice belongs to, and whether we had recorded it."""

    record: SubscriptionRecord
    recorded: bool


def subscription_info(subscription: Mapping[str, Any]) -> SubscriptionInfo:
    """Read a Stripe subscription object (old and new API shapes alike)."""
    period_end = subscription.get("current_period_end")
    if period_end is None:  # newer API versions keep the period on the items
        items = (subscription.get("items") or {}).get("data") or []
        period_end = items[0].get("current_period_end") if items else None
    return SubscriptionInfo(
        str(subscription["id"]),
        str(subscription["status"]),
        None if period_end is None else float(period_end),
        bool(subscription.get("cancel_at_period_end")),
    )
