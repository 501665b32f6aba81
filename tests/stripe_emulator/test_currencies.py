"""Currencies Stripe does not support are refused wherever a currency is read."""

from __future__ import annotations

import pytest
import stripe

from sim.stripe_emulator._currencies import SUPPORTED, ZERO_DECIMAL


def _refused(call: object) -> None:
    """``call()`` fails with Stripe's 400 naming ``currency``."""
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.http_status == 400
    assert caught.value.param == "currency"
    assert "Invalid currency: xxx" in str(caught.value.user_message)


def _price(client: stripe.StripeClient, currency: str) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Plan"})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 500,
            "currency": currency,
            "recurring": {"interval": "month"},
        }
    )


def test_the_billing_currencies_are_supported() -> None:
    """The currencies the billing module charges in are on the list, JPY without minor units."""
    assert {"eur", "usd", "jpy", "gbp", "chf"} <= SUPPORTED
    assert "jpy" in ZERO_DECIMAL and "eur" not in ZERO_DECIMAL
    assert ZERO_DECIMAL <= SUPPORTED


def test_payment_intent_in_an_unknown_currency_is_refused(client: stripe.StripeClient) -> None:
    """``currency=xxx`` on create and on update is a 400 on ``currency``; nothing is created."""
    _refused(lambda: client.v1.payment_intents.create(params={"amount": 2000, "currency": "xxx"}))
    assert client.v1.payment_intents.list().data == []
    pi = client.v1.payment_intents.create(params={"amount": 2000, "currency": "eur"})
    _refused(lambda: client.v1.payment_intents.update(pi.id, params={"currency": "xxx"}))
    assert client.v1.payment_intents.retrieve(pi.id).currency == "eur"


def test_currency_is_case_insensitive(client: stripe.StripeClient) -> None:
    """``JPY`` is read as Stripe's lower-case ``jpy``."""
    pi = client.v1.payment_intents.create(params={"amount": 400, "currency": "JPY"})
    assert pi.currency == "jpy"


def test_price_and_price_filter_in_an_unknown_currency_are_refused(
    client: stripe.StripeClient,
) -> None:
    """Prices cannot be made, nor listed, in an unsupported currency."""
    _refused(lambda: _price(client, "xxx"))
    _refused(lambda: client.v1.prices.list(params={"currency": "xxx"}))


def test_subscription_currency_is_checked(client: stripe.StripeClient, customer) -> None:
    """A subscription's ``currency`` must be supported and be its prices' currency."""
    price = _price(client, "eur")
    params = {"customer": customer.id, "items": [{"price": price.id}]}
    _refused(lambda: client.v1.subscriptions.create(params={**params, "currency": "xxx"}))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(params={**params, "currency": "usd"})
    assert caught.value.param == "currency"
    assert client.v1.subscriptions.create(params={**params, "currency": "eur"}).status == "active"


def test_refund_currency_is_checked(client: stripe.StripeClient) -> None:
    """A refund's ``currency`` must be supported and be the charge's."""
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    _refused(lambda: client.v1.refunds.create(params={"payment_intent": pi.id, "currency": "xxx"}))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id, "currency": "usd"})
    assert caught.value.param == "currency"
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "currency": "eur"})
    assert refund.amount == 2000
