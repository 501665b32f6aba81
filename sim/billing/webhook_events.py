"""Stripe webhook events, read strictly into typed records before anything is applied.

A correctly signed event is still input from outside: a bug at Stripe's end, a replayed test
fixture or a stolen signing secret can put anything in it. Every field the billing reads is
checked here for Stripe's JSON type (an amount is an integer, never ``"1000"`` or ``1000.9``; an
id is a string; metadata is an object of strings), and anything else raises
:class:`~sim.billing.errors.WebhookPayloadError` naming the event and the field. Nothing is
coerced: a value Stripe would never send is an invalid event, not a value to guess at.

The records hold only what the handler uses; checks that need the store (the user exists, the
customer is the user's, the price is a tier's) are the handler's, and also run before any write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import WebhookPayloadError

_COUNT = re.compile(r"[0-9]{1,9}")
#: The largest integer read from an event: JSON's safe integer (2**53 - 1). Stripe's amounts and
#: timestamps are far below it; a larger one is no Stripe value, and would not fit the store's
#: 64-bit integer columns either.
MAX_INTEGER = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """The event around the object: its id, type, creation time and ``data.object``."""

    event_id: str
    kind: str
    created: int
    obj: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class IntentEvent:
    """A ``payment_intent.*`` object: what was paid, by which customer, for what.

    ``amount`` is the amount received when the intent received any, else the amount asked for.
    ``user_id``, ``purpose``, ``credits`` and ``attempt`` come from the metadata the billing
    wrote when it created the intent (``None`` when absent).
    """

    intent_id: str
    amount: int
    currency: str
    customer: str | None
    metadata: Mapping[str, str]
    user_id: str | None
    purpose: str | None
    credits: int | None
    attempt: int | None


@dataclass(frozen=True, slots=True)
class InvoiceEvent:
    """An ``invoice.*`` object: the invoice, what it paid, and its subscription (if any)."""

    invoice_id: str
    amount_paid: int
    currency: str
    customer: str | None
    subscription_id: str | None
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SubscriptionEvent:
    """A ``customer.subscription.*`` object: its state and the metadata the billing wrote."""

    subscription_id: str
    status: str
    current_period_end: int | None
    cancel_at_period_end: bool
    currency: str | None
    customer: str | None
    metadata: Mapping[str, str]


def envelope(event: object) -> Envelope:
    """The event's envelope; ``WebhookPayloadError`` unless it has Stripe's shape."""
    if not isinstance(event, dict):
        raise WebhookPayloadError("not a Stripe event: the body is not a JSON object")
    data = event.get("data")
    fields = _Fields(event, "the event")
    event_id, kind, created = fields.text("id"), fields.text("type"), fields.integer("created")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise WebhookPayloadError(f"event {event_id}: data.object must be an object")
    return Envelope(event_id, kind, created, data["object"])


def intent_event(obj: Mapping[str, Any]) -> IntentEvent:
    """Read a PaymentIntent object."""
    fields = _Fields(obj, "the payment intent")
    received = fields.integer("amount_received", optional=True)
    metadata = fields.metadata()
    return IntentEvent(
        intent_id=fields.text("id"),
        amount=received if received else fields.integer("amount"),
        currency=fields.text("currency"),
        customer=fields.customer(),
        metadata=metadata,
        user_id=metadata.get("user_id"),
        purpose=metadata.get("purpose"),
        credits=fields.count_in(metadata, "credits"),
        attempt=fields.count_in(metadata, "attempt"),
    )


def invoice_event(obj: Mapping[str, Any]) -> InvoiceEvent:
    """Read an Invoice object, in the API shapes before and after subscription details moved
    under ``parent`` (2025-03-31)."""
    fields = _Fields(obj, "the invoice")
    parent = fields.mapping("parent")
    details = _Fields(parent, "the invoice's parent").mapping("subscription_details")
    legacy = fields.mapping("subscription_details")
    subscription = obj.get("subscription") or details.get("subscription")
    metadata = _Fields(details or legacy, "the invoice's subscription details").metadata()
    if isinstance(subscription, dict):  # expanded
        expanded = _Fields(subscription, "the invoice's subscription")
        metadata = metadata or expanded.metadata()
        subscription = expanded.text("id")
    if subscription is not None and not isinstance(subscription, str):
        raise WebhookPayloadError(f"invoice {obj.get('id')!r}: subscription must be a string id")
    return InvoiceEvent(
        invoice_id=fields.text("id"),
        amount_paid=fields.integer("amount_paid"),
        currency=fields.text("currency"),
        customer=fields.customer(),
        subscription_id=subscription,
        metadata=metadata,
    )


def subscription_event(obj: Mapping[str, Any]) -> SubscriptionEvent:
    """Read a Subscription object (its period and currency on the object or, in newer API
    versions, on its first item)."""
    fields = _Fields(obj, "the subscription")
    items = _Fields(fields.mapping("items"), "the subscription's items").sequence("data")
    first = _Fields(items[0] if items else {}, "the subscription's first item")
    price = _Fields(first.mapping("price"), "the subscription item's price")
    period_end = fields.integer("current_period_end", optional=True)
    if period_end is None:
        period_end = first.integer("current_period_end", optional=True)
    cancel = obj.get("cancel_at_period_end", False)
    if not isinstance(cancel, bool):
        raise WebhookPayloadError("the subscription's cancel_at_period_end must be a boolean")
    return SubscriptionEvent(
        subscription_id=fields.text("id"),
        status=fields.text("status"),
        current_period_end=period_end,
        cancel_at_period_end=cancel,
        currency=fields.text("currency", optional=True) or price.text("currency", optional=True),
        customer=fields.customer(),
        metadata=fields.metadata(),
    )


class _Fields:
    """Typed reads of one JSON object's fields; each refusal names the object and the field."""

    def __init__(self, obj: object, what: str) -> None:
        if not isinstance(obj, dict):
            raise WebhookPayloadError(f"{what} must be an object")
        self.obj, self.what = obj, what

    def _refuse(self, name: str, expected: str) -> WebhookPayloadError:
        value = repr(self.obj.get(name))[:40]
        return WebhookPayloadError(f"{self.what}'s {name} must be {expected}, not {value}")

    def text(self, name: str, *, optional: bool = False) -> Any:
        """A non-empty string (``None`` if absent or null and ``optional``)."""
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self._refuse(name, "a non-empty string")
        return value

    def integer(self, name: str, *, optional: bool = False) -> Any:
        """A JSON integer, not negative (``None`` if absent or null and ``optional``)."""
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if type(value) is not int or not 0 <= value <= MAX_INTEGER:
            raise self._refuse(name, f"an integer from 0 to {MAX_INTEGER}")
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        """A nested object (empty if absent or null)."""
        value = self.obj.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._refuse(name, "an object")
        return value

    def sequence(self, name: str) -> list[Any]:
        """A nested array (empty if absent or null)."""
        value = self.obj.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._refuse(name, "an array")
        return value

    def customer(self) -> str | None:
        """The customer id, also when the customer is expanded to an object."""
        value = self.obj.get("customer")
        if isinstance(value, dict):
            return _Fields(value, f"{self.what}'s customer").text("id")
        return self.text("customer", optional=True)

    def metadata(self) -> dict[str, str]:
        """Stripe metadata: an object whose values are all strings."""
        value = self.mapping("metadata")
        if not all(isinstance(v, str) for v in value.values()):
            raise self._refuse("metadata", "an object of strings")
        return value

    def count_in(self, metadata: Mapping[str, str], name: str) -> int | None:
        """A count the billing wrote into the metadata as decimal digits (``None`` if absent)."""
        value = metadata.get(name)
        if value is None:
            return None
        if not _COUNT.fullmatch(value):
            raise WebhookPayloadError(
                f"{self.what}'s metadata.{name} must be decimal digits, not {value[:40]!r}"
            )
        return int(value)
