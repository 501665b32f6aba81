"""Every object the emulator renders carries Stripe's whole field set for the pinned API version.

The source of truth is the installed ``stripe`` library: each resource class declares every field
of its object as a class annotation (generated from Stripe's OpenAPI spec for the API version the
library pins). Each test creates objects through the public API and checks the raw JSON answer's
keys cover those annotations, minus :data:`ABSENT`: the few fields Stripe itself leaves out of
such an object.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
import stripe

from sim.stripe_emulator import StripeEmulator

from .conftest import START

#: Fields Stripe does not send on the objects these tests make, by object type. Each is one of:
#: only on a DELETE's answer; an "includable" field sent only when asked for with ``expand[]``;
#: or a field the spec marks optional *and* non-nullable, which Stripe omits (it cannot be null)
#: until the feature behind it is used.
ABSENT: dict[str, frozenset[str]] = {
    # Only in the answer to a DELETE (``{"id", "object", "deleted": true}``).
    "*": frozenset({"deleted"}),
    "customer": frozenset(
        {
            # Includable: sent only when expanded.
            "cash_balance",
            "invoice_credit_balance",
            "sources",
            "subscriptions",
            "tax",
            "tax_ids",
            # Optional, non-nullable: absent until set.
            "business_name",
            "individual_name",
        }
    ),
    # Includable (``refunds``), else only for card-present, Level 3, Adaptive Pricing, Radar
    # sessions and Connect transfers.
    "charge": frozenset(
        {"refunds", "authorization_code", "level3", "presentment_details", "radar_options"}
        | {"transfer"}
    ),
    # Only when restricted by configuration, hooks, payment details or Adaptive Pricing are used.
    "payment_intent": frozenset(
        {"allowed_payment_method_types", "hooks", "payment_details", "presentment_details"}
    ),
    # Only when restricted by configuration, as on a PaymentIntent.
    "setup_intent": frozenset({"allowed_payment_method_types"}),
    # Only for a Radar session, or a custom payment method type.
    "payment_method": frozenset({"radar_options", "custom"}),
    # Only for refunds that are pending, failed, by other payment methods, or Adaptive Pricing.
    "refund": frozenset(
        {"description", "failure_balance_transaction", "failure_reason", "instructions_email"}
        | {"next_action", "pending_reason", "presentment_details"}
    ),
    # Includable: sent only when expanded.
    "price": frozenset({"currency_options", "tiers"}),
    "plan": frozenset({"tiers"}),
    # Only with Adaptive Pricing.
    "subscription": frozenset({"presentment_details"}),
    # Only under billing mode ``flexible`` with schedules.
    "subscription_item": frozenset({"billed_until"}),
    # Includable (``confirmation_secret``); only for out-of-band payments and threshold billing.
    "invoice": frozenset({"confirmation_secret", "amount_paid_off_stripe", "threshold_reason"}),
    # Only on Connect events (``account``) and organization events (``context``).
    "event": frozenset({"account", "context"}),
}

#: Payment method types: a payment method (and a charge's details) carries the hash of its own
#: type only, never the other types' hashes.
PAYMENT_METHOD_TYPES = frozenset(
    typing.get_args(typing.get_args(stripe.PaymentMethod.__annotations__["type"])[0])
)


def annotated_fields(cls: type) -> set[str]:
    """The fields ``cls`` declares, through its bases, as the library generated them."""
    fields: set[str] = set()
    for klass in cls.__mro__:
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if not name.startswith("_") and typing.get_origin(annotation) is not typing.ClassVar:
                fields.add(name)
    return fields


def missing_fields(obj: dict[str, Any], cls: type) -> set[str]:
    """Annotated fields of ``cls`` that ``obj`` (a raw JSON object) lacks, allowed absences off."""
    kind = obj["object"].removeprefix("test_helpers.")
    allowed = ABSENT["*"] | ABSENT.get(kind, frozenset())
    if kind == "payment_method":
        allowed |= PAYMENT_METHOD_TYPES - {obj["type"]}
    return annotated_fields(cls) - set(obj) - allowed


def _raw(resource: Any) -> dict[str, Any]:
    """The JSON object the emulator answered with (not the library's view of it)."""
    return json.loads(resource.last_response.body)


def test_annotated_fields_reads_the_library_declarations() -> None:
    """The helper sees real fields (receipt_url, customer_address) and no class variables."""
    assert {"receipt_url", "payment_method_details", "id"} <= annotated_fields(stripe.Charge)
    assert "customer_address" in annotated_fields(stripe.Invoice)
    assert "OBJECT_NAME" not in annotated_fields(stripe.Charge)
    assert {"card", "sepa_debit"} <= PAYMENT_METHOD_TYPES


def test_payment_objects_carry_every_field(client: stripe.StripeClient) -> None:
    """Customer, payment method, payment intent, charge and refund: nothing Stripe sends is
    missing."""
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": pm.id,
            "confirm": True,
        }
    )
    charge = client.v1.charges.retrieve(pi.latest_charge)  # type: ignore[arg-type]
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    for resource, cls in [
        (customer, stripe.Customer),
        (pm, stripe.PaymentMethod),
        (pi, stripe.PaymentIntent),
        (charge, stripe.Charge),
        (refund, stripe.Refund),
    ]:
        assert missing_fields(_raw(resource), cls) == set(), cls.__name__


def test_declined_intent_and_failed_charge_carry_every_field(client: stripe.StripeClient) -> None:
    """The intent inside a 402 and the failed charge are whole objects too."""
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "eur",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    intent = caught.value.json_body["error"]["payment_intent"]  # type: ignore[index]
    assert missing_fields(intent, stripe.PaymentIntent) == set()
    charge = client.v1.charges.retrieve(intent["latest_charge"])
    assert missing_fields(_raw(charge), stripe.Charge) == set()


def test_billing_objects_carry_every_field(client: stripe.StripeClient, customer) -> None:
    """Product, price, subscription (and its items), invoice (its lines and payments)."""
    product = client.v1.products.create(params={"name": "Monthly"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 500,
            "currency": "eur",
            "recurring": {"interval": "month"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    invoice = _raw(client.v1.invoices.retrieve(sub.latest_invoice))  # type: ignore[arg-type]
    raw_sub = _raw(sub)
    for obj, cls in [
        (_raw(product), stripe.Product),
        (_raw(price), stripe.Price),
        (raw_sub, stripe.Subscription),
        (raw_sub["items"]["data"][0], stripe.SubscriptionItem),
        (raw_sub["items"]["data"][0]["plan"], stripe.Plan),
        (invoice, stripe.Invoice),
        (invoice["lines"]["data"][0], stripe.InvoiceLineItem),
        (invoice["payments"]["data"][0], stripe.InvoicePayment),
    ]:
        assert missing_fields(obj, cls) == set(), cls.__name__


def test_events_endpoints_clocks_and_lists_carry_every_field(
    client: stripe.StripeClient,
) -> None:
    """Webhook endpoint (as created), test clock, event, and the list envelope."""
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "https://example.test/hook", "enabled_events": ["*"]}
    )
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    events = _raw(client.v1.events.list())
    assert missing_fields(_raw(endpoint), stripe.WebhookEndpoint) == set()
    assert missing_fields(_raw(clock), stripe.test_helpers.TestClock) == set()
    assert missing_fields(events["data"][0], stripe.Event) == set()
    assert annotated_fields(stripe.ListObject) - set(events) == set()


def test_deleted_objects_answer_stripes_deleted_shape(client: stripe.StripeClient) -> None:
    """A DELETE answers exactly ``id``, ``object`` and ``deleted: true``, as Stripe does."""
    customer = client.v1.customers.create(params={})
    assert _raw(client.v1.customers.delete(customer.id)) == {
        "id": customer.id,
        "object": "customer",
        "deleted": True,
    }


def test_an_unmodelled_field_reads_as_stripes_default(emulator: StripeEmulator) -> None:
    """The fields of features the emulator leaves out read as Stripe shows them unused."""
    client = emulator.stripe_client()
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    charge = _raw(client.v1.charges.retrieve(pi.latest_charge))  # type: ignore[arg-type]
    assert charge["receipt_url"] is None and charge["fraud_details"] == {}
    assert charge["transfer_group"] is None and charge["review"] is None


def test_setup_intents_carry_every_field(client: stripe.StripeClient) -> None:
    """A SetupIntent waiting for 3-D Secure and one that succeeded: nothing Stripe sends is
    missing."""
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    waiting = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
        }
    )
    done = client.v1.setup_intents.confirm(waiting.id)
    for resource in (waiting, done):
        assert missing_fields(_raw(resource), stripe.SetupIntent) == set()
