"""The Stripe webhook handler (``POST /v1/payments/webhook``).

Rules, each a pitfall of the original system closed:

- The signature is verified first (:class:`~sim.billing.payments.WebhookVerifier`, with the
  injected clock for the timestamp tolerance); a forged or stale delivery changes nothing.
- Each event id is processed once: a redelivery is answered ``duplicate`` and changes nothing.
  The id is recorded only after processing succeeded, so a failure raises, the endpoint answers
  non-2xx, and Stripe's retry processes the event again. Every action below is idempotent on its
  own (credits are keyed by PaymentIntent or invoice id), so a crash between the action and the
  record cannot double anything either.
- Events may arrive in any order: crediting is keyed, subscription state carries the event time
  and an older event never overwrites a newer state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from .errors import WebhookPayloadError
from .pricing import Money
from .service import TOPUP_PURPOSE, BillingService
from .subscriptions import Subscriptions


class Verifier(Protocol):
    """Checks a delivery's signature; raises ``WebhookSignatureError``."""

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Raise unless ``payload`` was signed by Stripe with our secret, recently."""
        ...


class WebhookHandler:
    """Verifies, de-duplicates and applies Stripe events to the billing module."""

    def __init__(
        self, *, billing: BillingService, subscriptions: Subscriptions, verifier: Verifier
    ) -> None:
        self.billing = billing
        self.subscriptions = subscriptions
        self.verifier = verifier

    def handle(self, payload: bytes, signature: str | None) -> str:
        """Process one delivery; return what happened (``credited``, ``duplicate``, ...).

        Raises ``WebhookSignatureError`` for a bad signature and ``WebhookPayloadError`` for a
        malformed event (answer 400 to both), and any other error for a processing failure
        (answer 5xx so that Stripe retries).
        """
        self.verifier.verify(payload, signature)
        event_id, kind, obj, created = _envelope(payload)
        store = self.billing.store
        if store.event_processed(event_id):
            return "duplicate"
        try:
            outcome = self._apply(kind, obj, created)
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookPayloadError(f"event {event_id} ({kind}) is malformed: {exc!r}") from exc
        store.mark_event_processed(event_id, kind, self.billing.clock.now())
        return outcome

    def _apply(self, kind: str, obj: Mapping[str, Any], created: float) -> str:
        if kind == "payment_intent.succeeded":
            return self._intent_succeeded(obj)
        if kind == "payment_intent.payment_failed":
            return self._intent_failed(obj)
        if kind in ("invoice.payment_succeeded", "invoice.paid"):
            return "credited" if self.subscriptions.invoice_paid(obj) else "unchanged"
        if kind == "invoice.payment_failed":
            return "past_due" if self.subscriptions.invoice_failed(obj, created) else "unchanged"
        if kind.startswith("customer.subscription."):
            changed = self.subscriptions.subscription_changed(obj, created)
            return "updated" if changed else "unchanged"
        return "ignored"

    def _intent_succeeded(self, intent: Mapping[str, Any]) -> str:
        metadata = intent.get("metadata") or {}
        user_id = metadata.get("user_id")
        if user_id is None or metadata.get("purpose") != TOPUP_PURPOSE:
            return "ignored"  # not an auto top-up (subscription invoices credit by invoice)
        received = intent.get("amount_received") or intent["amount"]
        paid = Money(int(received), str(intent["currency"]))
        credited = self.billing.settle_payment(user_id, str(intent["id"]), paid, metadata)
        return "credited" if credited else "unchanged"

    def _intent_failed(self, intent: Mapping[str, Any]) -> str:
        """A failed payment never decides its attempt by itself: the billing asks Stripe again
        (see :meth:`BillingService.payment_failed`)."""
        metadata = intent.get("metadata") or {}
        user_id, attempt = metadata.get("user_id"), metadata.get("attempt")
        if user_id is None or attempt is None or metadata.get("purpose") != TOPUP_PURPOSE:
            return "ignored"
        applied = self.billing.payment_failed(user_id, int(attempt))
        return "recovering" if applied else "unchanged"


def _envelope(payload: bytes) -> tuple[str, str, Mapping[str, Any], float]:
    """The event's id, type, object and creation time; ``WebhookPayloadError`` if malformed."""
    try:
        event = json.loads(payload)
        data = event["data"]["object"]
        event_id, kind, created = event["id"], event["type"], float(event["created"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookPayloadError(f"not a Stripe event: {exc!r}") from exc
    if not (isinstance(event_id, str) and isinstance(kind, str) and isinstance(data, dict)):
        raise WebhookPayloadError("not a Stripe event: id, type and data.object are required")
    return event_id, kind, data, created
