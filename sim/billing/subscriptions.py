"""Monthly auto top-up: a subscription that charges a tier's price every month and credits the
tier's credits plus its bonus, once per paid invoice.

The original system granted these credits only from a webhook branch that could never run (it
returned early for events without an order id). Here every paid invoice of one of our
subscriptions credits, keyed by the invoice id, and an invoice whose subscription we have not
recorded yet is answered with an error so that Stripe delivers it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .errors import PaymentMethodMissing, PriceMismatch, SubscriptionError
from .gateway import SubscriptionGateway, SubscriptionInfo
from .pricing import Money, price_of, tier_for
from .service import BillingService
from .store import LIVE_SUBSCRIPTION_STATUSES, SubscriptionRecord

PURPOSE = "monthly_topup"


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

    def create(self, user_id: str, credits: int, currency: str) -> SubscriptionRecord:
        """Subscribe to a tier that has a monthly bonus, paid with the saved card."""
        tier = tier_for(credits)
        if not tier.subscribable:
            raise SubscriptionError(f"the {credits}-credit tier has no monthly subscription")
        price = price_of(credits, currency)
        if self.live(user_id) is not None:
            raise SubscriptionError(f"user {user_id!r} already has a live subscription")
        saved = self.billing.payment_method(user_id)
        if saved is None:
            raise PaymentMethodMissing(user_id)
        number = len(self.store.subscriptions(user_id)) + 1
        info = self.gateway.create_subscription(
            saved[0],
            saved[1],
            price,
            f"subscription:{user_id}:{number}",
            {"user_id": user_id, "credits": str(credits), "purpose": PURPOSE},
        )
        return self._save(user_id, credits, currency, info, self.billing.clock.now())

    def cancel(self, user_id: str) -> SubscriptionRecord:
        """Stop renewing the live subscription; it ends with the period already paid."""
        record = self.live(user_id)
        if record is None:
            raise SubscriptionError(f"user {user_id!r} has no live subscription to cancel")
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

    def subscription_changed(self, subscription: Mapping[str, Any], as_of: float) -> bool:
        """Apply ``customer.subscription.*``: keep status and period end in step.

        Ignores subscriptions that are not monthly top-ups; an event older than the state we hold
        changes nothing (events may arrive out of order). ``True`` if applied.
        """
        metadata = subscription.get("metadata") or {}
        if metadata.get("purpose") != PURPOSE:
            return False
        existing = self.store.subscription(subscription["id"])
        credits = existing.credits if existing else int(metadata["credits"])
        currency = existing.currency if existing else _currency_of(subscription)
        info = subscription_info(subscription)
        record = SubscriptionRecord(
            info.subscription_id,
            metadata["user_id"],
            credits,
            currency,
            info.status,
            info.current_period_end,
            info.cancel_at_period_end,
            as_of,
        )
        return self.store.save_subscription(record)

    def invoice_paid(self, invoice: Mapping[str, Any]) -> bool:
        """Credit a paid invoice of a monthly top-up: credits + bonus, once per invoice."""
        record = self._record_for(invoice)
        if record is None:
            return False
        paid = Money(int(invoice["amount_paid"]), str(invoice["currency"]))
        if paid != price_of(record.credits, record.currency):
            raise PriceMismatch(
                f"invoice {invoice['id']} paid {paid}, but the {record.credits}-credit tier costs"
                f" {price_of(record.credits, record.currency)}"
            )
        credits = record.credits + tier_for(record.credits).monthly_bonus
        credited = self.billing.add_credits(
            record.user_id, credits, kind="subscription", reference=str(invoice["id"])
        )
        if credited:
            self.billing.notify(
                record.user_id, "subscription_renewed", invoice=str(invoice["id"]),
                credits=str(credits),
            )  # fmt: skip
        return credited

    def invoice_failed(self, invoice: Mapping[str, Any], as_of: float) -> bool:
        """Mark the subscription past due and tell the user; ``True`` if it was news."""
        record = self._record_for(invoice)
        if record is None:
            return False
        changed = self.store.save_subscription(replace(record, status="past_due", as_of=as_of))
        if changed:
            self.billing.notify(
                record.user_id, "subscription_payment_failed", invoice=str(invoice["id"])
            )
        return changed

    def _record_for(self, invoice: Mapping[str, Any]) -> SubscriptionRecord | None:
        """Our subscription behind an invoice; ``None`` if the invoice is not a monthly top-up.

        Raises when the invoice is ours by its metadata but the subscription is not recorded yet,
        so the webhook answers non-2xx and Stripe retries after our own write has landed.
        """
        subscription_id, metadata = _invoice_subscription(invoice)
        if subscription_id is None:
            return None
        record = self.store.subscription(subscription_id)
        if record is None and metadata.get("purpose") == PURPOSE:
            raise SubscriptionError(f"subscription {subscription_id} is not recorded yet")
        return record


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


def _currency_of(subscription: Mapping[str, Any]) -> str:
    currency = subscription.get("currency")
    if currency is None:
        items = (subscription.get("items") or {}).get("data") or []
        currency = items[0]["price"]["currency"]
    return str(currency)


def _invoice_subscription(invoice: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The subscription id and its metadata from an invoice, in old and new API shapes."""
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    subscription = invoice.get("subscription") or details.get("subscription")
    metadata = details.get("metadata") or invoice.get("subscription_details", {}).get("metadata")
    if isinstance(subscription, Mapping):  # expanded
        metadata = metadata or subscription.get("metadata")
        subscription = subscription.get("id")
    return (None if subscription is None else str(subscription)), metadata or {}
