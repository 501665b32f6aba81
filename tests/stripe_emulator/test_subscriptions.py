"""Customers, payment methods, products, prices, subscriptions, invoices and test clocks."""

from __future__ import annotations

import pytest
import stripe

from .conftest import START

MONTH = 31 * 86_400


def _monthly_price(client: stripe.StripeClient) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Monthly 21,000 credits"})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 2000,
            "currency": "eur",
            "recurring": {"interval": "month"},
        }
    )


def _clocked_customer(client: stripe.StripeClient, card: str) -> tuple[str, str]:
    test_clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    customer = client.v1.customers.create(params={"test_clock": test_clock.id})
    pm = client.v1.payment_methods.attach(card, params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    return test_clock.id, customer.id


def _advance(client: stripe.StripeClient, clock_id: str, to: int) -> None:
    clock = client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})
    assert clock.status == "ready"


def test_payment_methods_attach_detach_and_list(client: stripe.StripeClient) -> None:
    """Cards attach to a customer, list per customer, and detach (clearing the default)."""
    customer = client.v1.customers.create(params={})
    a = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    b = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": a.id}}
    )
    listed = client.v1.customers.payment_methods.list(customer.id)
    assert [pm.id for pm in listed.data] == [b.id, a.id]
    client.v1.payment_methods.detach(a.id)
    after = client.v1.customers.retrieve(customer.id)
    assert after.invoice_settings.default_payment_method is None
    listed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    assert [pm.id for pm in listed.data] == [b.id]


def test_incorrect_number_is_refused_at_creation(client: stripe.StripeClient) -> None:
    """A number failing the Luhn check is a 402 incorrect_number when the card is created."""
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_methods.create(
            params={"type": "card", "card": {"number": "4242424242424241"}}
        )
    assert caught.value.code == "incorrect_number"


def test_subscription_renews_twice_with_a_test_clock(client: stripe.StripeClient) -> None:
    """Advancing a test clock two months bills two renewals, each paid with its events."""
    clock_id, customer_id = _clocked_customer(client, "pm_card_visa")
    sub = client.v1.subscriptions.create(
        params={"customer": customer_id, "items": [{"price": _monthly_price(client).id}]}
    )
    assert sub.status == "active"
    _advance(client, clock_id, START + MONTH + 60)
    _advance(client, clock_id, START + 2 * MONTH)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    renewals = [i for i in invoices if i.billing_reason == "subscription_cycle"]
    assert [(i.status, i.amount_paid, i.attempt_count) for i in renewals] == [("paid", 2000, 1)] * 2
    succeeded = client.v1.events.list(params={"type": "invoice.payment_succeeded"}).data
    renewal_events = {e.data.object.id for e in succeeded} & {i.id for i in renewals}
    assert len(renewal_events) == 2
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].current_period_start == renewals[0].period_start


def test_failed_renewal_goes_past_due_then_retries(client: stripe.StripeClient) -> None:
    """A card failing at renewal opens the invoice, marks past_due, and retries later."""
    clock_id, customer_id = _clocked_customer(client, "pm_card_visa")
    sub = client.v1.subscriptions.create(
        params={"customer": customer_id, "items": [{"price": _monthly_price(client).id}]}
    )
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeDeclinedInsufficientFunds", params={"customer": customer_id}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
    _advance(client, clock_id, START + MONTH + 60)
    invoice = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert invoice.next_payment_attempt is not None
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    _advance(client, clock_id, START + MONTH + 4 * 86_400)
    assert client.v1.invoices.retrieve(invoice.id).attempt_count == 2
    failed = client.v1.events.list(params={"type": "invoice.payment_failed"}).data
    assert len(failed) == 2


def test_cancel_at_period_end(client: stripe.StripeClient) -> None:
    """cancel_at_period_end ends the subscription at the period end, with a deleted event."""
    clock_id, customer_id = _clocked_customer(client, "pm_card_visa")
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer_id,
            "items": [{"price": _monthly_price(client).id}],
            "cancel_at_period_end": True,
        }
    )
    _advance(client, clock_id, START + MONTH + 60)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    deleted = client.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert [e.data.object.id for e in deleted] == [sub.id]


def test_cancel_now(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """Canceling ends the subscription at once and hides it from the default list."""
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": _monthly_price(client).id}]}
    )
    assert client.v1.subscriptions.cancel(sub.id).status == "canceled"
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    listed = client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"})
    assert [s.id for s in listed.data] == [sub.id]


def test_first_invoice_declined_leaves_incomplete(client: stripe.StripeClient) -> None:
    """A declining default card leaves a new subscription incomplete with an open invoice."""
    customer = client.v1.customers.create(params={})
    pm = client.v1.payment_methods.attach(
        "pm_card_chargeDeclined", params={"customer": customer.id}
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": _monthly_price(client).id}],
            "default_payment_method": pm.id,
        }
    )
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.status, invoice.status, invoice.attempt_count) == ("incomplete", "open", 1)


def test_renewal_on_the_emulator_clock(client: stripe.StripeClient, clock, emulator) -> None:
    """Without a test clock, renewals follow the emulator's own (virtual) clock."""
    customer = client.v1.customers.create(params={})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": _monthly_price(client).id}],
            "default_payment_method": pm.id,
        }
    )
    clock.advance(MONTH + 1)
    emulator.run_due()
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices[0].created == START + MONTH


def test_prices_are_found_by_lookup_key(client) -> None:
    """lookup_keys filters the price list (and an unmodelled filter is refused, not ignored)."""
    product = client.v1.products.create(params={"name": "credits"})
    for amount, key in ((1000, "small"), (5000, "large")):
        client.v1.prices.create(
            params={
                "currency": "eur", "unit_amount": amount, "product": product.id,
                "recurring": {"interval": "month"}, "lookup_key": key,
            }
        )  # fmt: skip
    found = client.v1.prices.list(params={"lookup_keys": ["large"]})
    assert [p.unit_amount for p in found.data] == [5000]
    assert client.v1.prices.list(params={"lookup_keys": ["none"]}).data == []
    with pytest.raises(stripe.InvalidRequestError, match="created"):
        client.v1.prices.list(params={"created": {"gt": 0}})
