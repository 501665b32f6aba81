"""The Stripe webhook handler (``POST /v1/payments/webhook``).

Rules, each a pitfall of the original system (or of an attack on this one) closed:

- The signature is verified first (:class:`~sim.billing.payments.WebhookVerifier`, with the
  injected clock for the timestamp tolerance); a forged or stale delivery changes nothing (400).
- Each event id is processed once: a redelivery is answered ``duplicate`` and changes nothing.
- **Every check runs before any write.** The body is strict, bounded JSON
  (:mod:`~sim.billing.json_limits`); the object is read into a typed record with Stripe's JSON
  types and nothing coerced (:mod:`~sim.billing.webhook_events`); then the store is read to check
  that the user exists, that the event's customer is the user's, and that the amount is exactly
  the tier's price in a currency we sell. Only then is the event applied.
- **Outcomes by class.** A signed event that fails a check can never succeed, so retrying it is
  pointless: it is kept in the dead-letter table with its reason (:class:`DeadLetter`, logged at
  warning level, listed by the reconcile report), its id is marked processed, and Stripe is
  answered 2xx (``dead_letter``) so that it stops retrying. A transient failure (store or cache
  unreachable) raises, and the endpoint answers 503 so that Stripe delivers it again. The id is
  recorded only after the event was applied, and every action is idempotent on its own (credits
  are keyed by PaymentIntent or invoice id), so a crash between the two cannot double anything.
- Events may arrive in any order: crediting is keyed, subscription state carries the event time
  and an older event never overwrites a newer state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Final, Protocol

from .claims import TOPUP_PURPOSE
from .errors import (
    PriceMismatch,
    UnknownCurrency,
    UnknownTier,
    UnknownUser,
    WebhookPayloadError,
    WebhookSignatureError,
)
from .json_limits import MalformedJson, load_json
from .metrics import log_event
from .pricing import Money
from .purchases import PURCHASE_PURPOSE, settle_purchase
from .service import BillingService
from .store import DeadLetter
from .subscriptions import Subscriptions, check_customer
from .webhook_events import (
    Envelope,
    IntentEvent,
    envelope,
    intent_event,
    invoice_event,
    subscription_event,
)

log = logging.getLogger(__name__)

#: The largest delivery read. Stripe's events are a few kilobytes (an invoice with many lines
#: stays well under 100 KB); anything larger is refused before it is parsed.
MAX_PAYLOAD_BYTES = 256 * 1024

#: Errors that say an event can never be applied, whatever the state: it is dead-lettered.
PERMANENT = (WebhookPayloadError, UnknownUser, PriceMismatch, UnknownTier, UnknownCurrency)

#: The event types :class:`WebhookHandler` acts on: what a deployment's endpoint subscribes to
#: (``enabled_events``). Any other type would only be verified, parsed and ignored.
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

Apply = Callable[[], str]


class Verifier(Protocol):
    """Checks a delivery's signature; raises ``WebhookSignatureError``."""

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Raise unless ``payload`` was signed by Stripe with our secret, recently."""
        ...


class WebhookHandler:
    """Verifies, checks, de-duplicates and applies Stripe events to the billing module."""

    def __init__(
        self, *, billing: BillingService, subscriptions: Subscriptions, verifier: Verifier
    ) -> None:
        self.billing = billing
        self.subscriptions = subscriptions
        self.verifier = verifier

    def handle(self, payload: bytes, signature: str | None) -> str:
        """Process one delivery; return what happened (``credited``, ``duplicate``,
        ``dead_letter``, ...).

        Raises ``WebhookSignatureError`` for a bad signature (answer 400), and a transient error
        (``StoreUnavailable``, ``CacheUnavailable``) when the event could not be processed now
        (answer 503 so that Stripe retries).

        Every delivery is counted by its result (``topup_webhooks_total``): the outcome, or
        ``rejected`` (bad signature) or ``failed`` (an error; Stripe delivers it again).
        """
        metrics = self.billing.metrics
        try:
            outcome = self._handle(payload, signature)
        except WebhookSignatureError:
            metrics.webhook("rejected")
            log_event(log, logging.WARNING, "webhook_rejected", bytes=len(payload))
            raise
        except Exception as exc:
            metrics.webhook("failed")
            log_event(log, logging.WARNING, "webhook_failed", error=type(exc).__name__)
            raise
        metrics.webhook(outcome)
        return outcome

    def _handle(self, payload: bytes, signature: str | None) -> str:
        self.verifier.verify(payload, signature)
        store = self.billing.store
        try:
            event = envelope(load_json(payload, max_bytes=MAX_PAYLOAD_BYTES))
        except (MalformedJson, WebhookPayloadError) as exc:
            digest = hashlib.sha256(payload).hexdigest()[:32]
            return self._dead_letter(f"unparsed:{digest}", "unknown", str(exc), payload)
        if store.event_processed(event.event_id):
            return "duplicate"
        try:
            apply = self._check(event)
        except PERMANENT as exc:
            return self._dead_letter(event.event_id, event.kind, str(exc), payload)
        outcome = apply()
        store.mark_event_processed(event.event_id, event.kind, self.billing.clock.now())
        return outcome

    def _dead_letter(self, event_id: str, kind: str, reason: str, payload: bytes) -> str:
        letter = DeadLetter(event_id, kind, reason, payload, self.billing.clock.now())
        if not self.billing.store.dead_letter(letter):
            return "duplicate"
        self.billing.metrics.dead_letter(kind)
        log_event(log, logging.WARNING, "webhook_dead_letter", event_id=event_id, type=kind,
                  reason=repr(reason))  # fmt: skip
        return "dead_letter"

    def _check(self, event: Envelope) -> Apply:
        """Check the event against its type and the store; return how to apply it."""
        kind, obj = event.kind, event.obj
        if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            return self._check_intent(event)
        if kind in ("invoice.payment_succeeded", "invoice.paid", "invoice.payment_failed"):
            invoice = invoice_event(obj)
            paid = kind != "invoice.payment_failed"
            record = self.subscriptions.invoice_record(invoice, paid=paid)
            if record is None:
                return lambda: "unchanged"
            if paid:
                credit = self.subscriptions.credit_invoice
                return lambda: "credited" if credit(record, invoice) else "unchanged"
            mark = self.subscriptions.mark_past_due
            return lambda: "past_due" if mark(record, invoice, event.created) else "unchanged"
        if kind.startswith("customer.subscription."):
            update = self.subscriptions.subscription_update(subscription_event(obj), event.created)
            if update is None:
                return lambda: "unchanged"
            save = self.subscriptions.save_update
            return lambda: "updated" if save(update) else "unchanged"
        return lambda: "ignored"

    def _check_intent(self, event: Envelope) -> Apply:
        """A PaymentIntent event of an auto top-up: of a known user, paid by the user's
        customer; a success for exactly a tier's price, a failure naming its attempt."""
        intent = intent_event(event.obj)
        user_id = intent.user_id
        if user_id is not None and intent.purpose == PURCHASE_PURPOSE:
            return self._check_purchase(event, intent, user_id)
        if user_id is None or intent.purpose != TOPUP_PURPOSE:
            return lambda: "ignored"  # not an auto top-up (subscription invoices credit by invoice)
        check_customer(self.billing, user_id, intent.customer, f"payment {intent.intent_id}")
        billing = self.billing
        if event.kind == "payment_intent.payment_failed":
            # A failure never decides its attempt by itself: the billing asks Stripe again.
            attempt = intent.attempt
            if attempt is None:
                return lambda: "ignored"
            return lambda: "recovering" if billing.payment_failed(user_id, attempt) else "unchanged"
        paid = Money(intent.amount, intent.currency)
        billing.payment_credits(user_id, intent.intent_id, paid, intent.metadata)
        settle = billing.settle_payment
        return lambda: (
            "credited" if settle(user_id, intent.intent_id, paid, intent.metadata) else "unchanged"
        )

    def _check_purchase(self, event: Envelope, intent: IntentEvent, user_id: str) -> Apply:
        """A purchase's PaymentIntent event: a success credits it once (the synchronous answer
        may have done so already: the ledger reference is the PaymentIntent id either way); a
        failure changes nothing (the customer was told at once, and no attempt waits on it)."""
        if event.kind != "payment_intent.succeeded":
            return lambda: "ignored"
        check_customer(self.billing, user_id, intent.customer, f"payment {intent.intent_id}")
        paid = Money(intent.amount, intent.currency)
        billing = self.billing
        billing.payment_credits(user_id, intent.intent_id, paid, intent.metadata)
        return lambda: (
            "credited"
            if settle_purchase(billing, user_id, intent.intent_id, paid, intent.metadata)
            else "unchanged"
        )
