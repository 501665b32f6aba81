"""Reading Stripe events into typed records: every field where Stripe puts it, in each API shape,
and every refusal naming the object and the field (the reason a dead letter keeps)."""

from __future__ import annotations

from typing import Any

import pytest

from sim.billing import WebhookPayloadError
from sim.billing.webhook_events import (
    MAX_INTEGER,
    Envelope,
    IntentEvent,
    InvoiceEvent,
    SubscriptionEvent,
    envelope,
    intent_event,
    invoice_event,
    subscription_event,
)

TOPUP = {"user_id": "u1", "credits": "10000", "purpose": "auto_topup", "attempt": "3"}
MONTHLY = {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"}


def _refused(read: Any, obj: object) -> str:
    with pytest.raises(WebhookPayloadError) as caught:
        read(obj)
    return str(caught.value)


# ------------------------------------------------------------------------- the envelope


def test_envelope_reads_id_type_time_and_object() -> None:
    """The event's id, type, creation time and ``data.object``, as they are."""
    obj = {"id": "pi_1"}
    event = {"id": "evt_1", "type": "invoice.paid", "created": 7, "data": {"object": obj}}
    assert envelope(event) == Envelope("evt_1", "invoice.paid", 7, obj)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([], "not a Stripe event: the body is not a JSON object"),
        ({"type": "x", "created": 1, "data": {"object": {}}}, "the event's id must be"),
        ({"id": "e", "type": "", "created": 1, "data": {"object": {}}}, "the event's type must"),
        ({"id": "e", "type": "x", "created": 1.5, "data": {"object": {}}}, "the event's created"),
        ({"id": "e", "type": "x", "created": True, "data": {"object": {}}}, "the event's created"),
        ({"id": "e", "type": "x", "created": -1, "data": {"object": {}}}, "the event's created"),
        ({"id": "e", "type": "x", "created": 1}, "event e: data.object must be an object"),
        ({"id": "e", "type": "x", "created": 1, "data": []}, "event e: data.object must be an"),
        ({"id": "e", "type": "x", "created": 1, "data": {"object": [1]}}, "event e: data.object"),
    ],
)
def test_envelope_refusals_name_the_field(event: object, reason: str) -> None:
    """Each malformed envelope is refused with a reason naming what is wrong."""
    assert _refused(envelope, event).startswith(reason)


def test_integers_are_bounded_by_json_safe_integers() -> None:
    """The largest integer read is 2**53 - 1; one more is refused, naming the bound."""
    base = {"id": "e", "type": "x", "data": {"object": {}}}
    assert envelope({**base, "created": MAX_INTEGER}).created == MAX_INTEGER
    reason = _refused(envelope, {**base, "created": MAX_INTEGER + 1})
    assert reason == (
        f"the event's created must be an integer from 0 to {MAX_INTEGER}, not {MAX_INTEGER + 1}"
    )


# ------------------------------------------------------------------------- payment intents


def _intent(**changes: Any) -> dict[str, Any]:
    intent = {
        "id": "pi_1", "amount": 1000, "amount_received": 1000, "currency": "eur",
        "customer": "cus_1", "metadata": dict(TOPUP),
    }  # fmt: skip
    intent.update(changes)
    return {k: v for k, v in intent.items() if v is not ...}


def test_intent_reads_what_was_paid_by_whom_for_what() -> None:
    """Amount received, currency, customer and the billing's metadata, counts as integers."""
    assert intent_event(_intent()) == IntentEvent(
        "pi_1", 1000, "eur", "cus_1", TOPUP, "u1", "auto_topup", 10_000, 3
    )


@pytest.mark.parametrize(("received", "amount"), [(0, 1000), (..., 1000), (None, 1000), (400, 400)])
def test_intent_amount_is_what_was_received_or_else_what_was_asked(
    received: Any, amount: int
) -> None:
    """A failed intent received nothing: its amount is the amount asked for."""
    assert intent_event(_intent(amount_received=received, amount=1000)).amount == amount


def test_intent_customer_may_be_expanded_or_absent() -> None:
    """An expanded customer is read by its id; no customer is ``None``."""
    assert intent_event(_intent(customer={"id": "cus_9", "object": "customer"})).customer == "cus_9"
    assert intent_event(_intent(customer=None)).customer is None
    assert intent_event(_intent(metadata=...)).user_id is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount_received": "1000"}, "the payment intent's amount_received must be an integer"),
        ({"amount_received": 0, "amount": 99.5}, "the payment intent's amount must be an integer"),
        ({"currency": ""}, "the payment intent's currency must be a non-empty string"),
        ({"id": None}, "the payment intent's id must be a non-empty string, not None"),
        ({"customer": 5}, "the payment intent's customer must be a non-empty string, not 5"),
        ({"customer": {"name": "x"}}, "the payment intent's customer's id must be"),
        ({"metadata": []}, "the payment intent's metadata must be an object, not []"),
        ({"metadata": {"credits": 1}}, "the payment intent's metadata must be an object of"),
        ({"metadata": {"credits": "1e4"}}, "the payment intent's metadata.credits must be decimal"),
        ({"metadata": {"attempt": "-1"}}, "the payment intent's metadata.attempt must be decimal"),
        ({"metadata": {"attempt": "1234567890"}}, "the payment intent's metadata.attempt must"),
    ],
)
def test_intent_refusals_name_the_field(changes: dict[str, Any], reason: str) -> None:
    """Wrong JSON types are refused, never coerced, with the field named."""
    assert _refused(intent_event, _intent(**changes)).startswith(reason)


# ------------------------------------------------------------------------- invoices


def _invoice(**changes: Any) -> dict[str, Any]:
    invoice = {"id": "in_1", "amount_paid": 1000, "currency": "eur", "customer": "cus_1"}
    invoice.update(changes)
    return invoice


def test_invoice_of_the_newer_shape_reads_its_subscription_under_parent() -> None:
    """Since 2025-03-31 the subscription and its metadata are under ``parent``."""
    details = {"subscription": "sub_1", "metadata": MONTHLY}
    read = invoice_event(_invoice(parent={"subscription_details": details}))
    assert read == InvoiceEvent("in_1", 1000, "eur", "cus_1", "sub_1", MONTHLY)


def test_invoice_of_the_older_shape_reads_its_subscription_at_the_top() -> None:
    """Before, the id was ``subscription`` and the metadata ``subscription_details``."""
    read = invoice_event(_invoice(subscription="sub_2", subscription_details={"metadata": MONTHLY}))
    assert (read.subscription_id, read.metadata) == ("sub_2", MONTHLY)


def test_invoice_with_an_expanded_subscription_reads_its_id_and_metadata() -> None:
    """An expanded subscription gives the id, and its metadata when the details have none."""
    read = invoice_event(_invoice(subscription={"id": "sub_3", "metadata": MONTHLY}))
    assert (read.subscription_id, read.metadata) == ("sub_3", MONTHLY)
    details = {"metadata": {"purpose": "other"}}
    read = invoice_event(
        _invoice(subscription={"id": "sub_3", "metadata": MONTHLY}, subscription_details=details)
    )
    assert read.metadata == {"purpose": "other"}


def test_invoice_without_a_subscription_has_none() -> None:
    """A one-off invoice: no subscription, no metadata."""
    read = invoice_event(_invoice(parent=None, subscription_details=None))
    assert (read.subscription_id, read.metadata) == (None, {})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount_paid": "1000"}, "the invoice's amount_paid must be an integer"),
        ({"parent": []}, "the invoice's parent must be an object"),
        ({"parent": {"subscription_details": 1}}, "the invoice's parent's subscription_details"),
        ({"subscription_details": "x"}, "the invoice's subscription_details must be an object"),
        ({"subscription": 5}, "invoice 'in_1': subscription must be a string id"),
        ({"subscription": {"object": "subscription"}}, "the invoice's subscription's id must"),
        (
            {"subscription_details": {"metadata": {"a": 1}}},
            "the invoice's subscription details's metadata must be an object of strings",
        ),
        ({"id": 1}, "the invoice's id must be a non-empty string, not 1"),
    ],
)
def test_invoice_refusals_name_the_field(changes: dict[str, Any], reason: str) -> None:
    """Wrong JSON types anywhere on the path to the subscription are refused, named."""
    assert _refused(invoice_event, _invoice(**changes)).startswith(reason)


# ------------------------------------------------------------------------- subscriptions


def _subscription(**changes: Any) -> dict[str, Any]:
    subscription = {
        "id": "sub_1", "status": "active", "customer": "cus_1", "metadata": dict(MONTHLY),
    }  # fmt: skip
    subscription.update(changes)
    return subscription


def test_subscription_of_the_older_shape_reads_period_and_currency_on_itself() -> None:
    """Before 2025-03-31 the period end and currency were on the subscription."""
    read = subscription_event(
        _subscription(current_period_end=500, currency="usd", cancel_at_period_end=True)
    )
    assert read == SubscriptionEvent("sub_1", "active", 500, True, "usd", "cus_1", MONTHLY)


def test_subscription_of_the_newer_shape_reads_them_on_its_first_item() -> None:
    """Since, they are on the first item (and its price); a value on the object still wins."""
    items = {"data": [{"current_period_end": 900, "price": {"currency": "jpy"}}, {}]}
    read = subscription_event(_subscription(items=items))
    assert (read.current_period_end, read.currency, read.cancel_at_period_end) == (
        900, "jpy", False,
    )  # fmt: skip
    read = subscription_event(_subscription(items=items, current_period_end=5, currency="eur"))
    assert (read.current_period_end, read.currency) == (5, "eur")


def test_subscription_without_period_or_currency_reads_none() -> None:
    """No items and no period: both ``None`` (the store keeps what it had)."""
    read = subscription_event(_subscription(items={"data": []}))
    assert (read.current_period_end, read.currency) == (None, None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"cancel_at_period_end": "true"}, "the subscription's cancel_at_period_end must be a"),
        ({"cancel_at_period_end": None}, "the subscription's cancel_at_period_end must be a"),
        ({"items": []}, "the subscription's items must be an object"),
        ({"items": {"data": {}}}, "the subscription's items's data must be an array"),
        ({"items": {"data": [5]}}, "the subscription's first item must be an object"),
        (
            {"items": {"data": [{"current_period_end": "9"}]}},
            "the subscription's first item's current_period_end must be an integer",
        ),
        (
            {"items": {"data": [{"price": []}]}},
            "the subscription's first item's price must be an object",
        ),
        (
            {"items": {"data": [{"price": {"currency": 1}}]}},
            "the subscription item's price's currency must be a non-empty string",
        ),
        ({"current_period_end": 1.5}, "the subscription's current_period_end must be an integer"),
        ({"status": None}, "the subscription's status must be a non-empty string, not None"),
        ({"id": ""}, "the subscription's id must be a non-empty string, not ''"),
        ({"metadata": [1]}, "the subscription's metadata must be an object, not [1]"),
    ],
)
def test_subscription_refusals_name_the_field(changes: dict[str, Any], reason: str) -> None:
    """Wrong JSON types in the subscription or its first item are refused, named."""
    assert _refused(subscription_event, _subscription(**changes)).startswith(reason)
