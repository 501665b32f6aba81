"""PaymentIntents through the real stripe library: test cards at charge time, idempotency, lists."""

from __future__ import annotations

import pytest
import stripe

DECLINES = [
    ("pm_card_chargeDeclined", "4000000000000002", "card_declined", "generic_decline"),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "4000000000009995",
        "card_declined",
        "insufficient_funds",
    ),
    ("pm_card_chargeDeclinedLostCard", "4000000000009987", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedExpiredCard", "4000000000000069", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "4000000000000127", "incorrect_cvc", "incorrect_cvc"),
    (
        "pm_card_chargeDeclinedProcessingError",
        "4000000000000119",
        "processing_error",
        "processing_error",
    ),
    ("pm_card_chargeCustomerFail", "4000000000000341", "card_declined", "generic_decline"),
]


def _card(client: stripe.StripeClient, customer: stripe.Customer, number: str) -> str:
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034}}
    )
    return client.v1.payment_methods.attach(pm.id, params={"customer": customer.id}).id


def _charge(client: stripe.StripeClient, customer: stripe.Customer, pm: str, **extra: object):
    params = {
        "amount": 2000,
        "currency": "eur",
        "customer": customer.id,
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
        **extra,
    }
    return client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]


def test_visa_succeeds(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """A Visa charged off-session succeeds with a succeeded latest charge."""
    pi = _charge(client, customer, _card(client, customer, "4242424242424242"))
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (pi.status, pi.amount_received, charge.status, charge.paid) == (
        "succeeded",
        2000,
        "succeeded",
        True,
    )


@pytest.mark.parametrize(("alias", "number", "code", "decline_code"), DECLINES)
def test_declining_cards_attach_then_fail_at_charge(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    alias: str,
    number: str,
    code: str,
    decline_code: str,
) -> None:
    """Each declining test card (number and alias) attaches fine and fails with a CardError."""
    for pm in (_card(client, customer, number), alias):
        with pytest.raises(stripe.CardError) as caught:
            _charge(client, customer, pm)
        error = caught.value
        assert (error.http_status, error.code, error.error.decline_code) == (
            402,
            code,
            decline_code,
        )
        assert error.user_message
        intent = error.error.payment_intent
        assert intent.status == "requires_payment_method"
        assert intent.last_payment_error.decline_code == decline_code
        assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"


def test_authentication_required_off_session(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """The 3-D Secure card off-session answers 402 authentication_required, intent reusable."""
    with pytest.raises(stripe.CardError) as caught:
        _charge(client, customer, "pm_card_authenticationRequired")
    assert caught.value.code == "authentication_required"
    assert caught.value.error.payment_intent.status == "requires_payment_method"


def test_authentication_required_on_session(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """The 3-D Secure card on-session leaves the intent in requires_action."""
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": _card(client, customer, "4000002760003184"),
            "confirm": True,
        }
    )
    assert (pi.status, pi.next_action.type) == ("requires_action", "use_stripe_sdk")


def test_error_on_requires_action_fails_instead(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """error_on_requires_action turns requires_action into an authentication_required error."""
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": "pm_card_authenticationRequired",
                "confirm": True,
                "error_on_requires_action": True,
            }
        )
    assert caught.value.code == "authentication_required"


def test_jpy_is_zero_decimal(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """amount=400 currency=jpy is ¥400 and is charged as such."""
    pi = _charge(client, customer, "pm_card_visa", amount=400, currency="jpy")
    assert (pi.amount, pi.currency, pi.amount_received) == (400, "jpy", 400)


def test_status_machine_without_confirm(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """create -> requires_payment_method -> requires_confirmation -> confirm -> succeeded."""
    pi = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "usd", "customer": customer.id}
    )
    assert pi.status == "requires_payment_method"
    pi = client.v1.payment_intents.update(pi.id, params={"payment_method": "pm_card_visa"})
    assert pi.status == "requires_confirmation"
    pi = client.v1.payment_intents.confirm(pi.id, params={"off_session": True})
    assert pi.status == "succeeded"


def test_cancel(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """An open intent cancels; a succeeded one refuses to."""
    pi = client.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})
    assert client.v1.payment_intents.cancel(pi.id).status == "canceled"
    done = _charge(client, customer, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(done.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_unmodelled_documented_parameters_are_echoed(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """description, receipt_email and statement_descriptor_suffix come back as sent."""
    pi = _charge(
        client,
        customer,
        "pm_card_visa",
        description="Top-up",
        receipt_email="ada@example.com",
        statement_descriptor_suffix="TOPUP",
        metadata={"user": "u1"},
        setup_future_usage="off_session",
    )
    assert (pi.description, pi.receipt_email, pi.statement_descriptor_suffix) == (
        "Top-up",
        "ada@example.com",
        "TOPUP",
    )
    assert (pi.metadata["user"], pi.setup_future_usage) == ("u1", "off_session")


def test_unknown_parameter_is_rejected(client: stripe.StripeClient) -> None:
    """A parameter Stripe does not know is a 400 parameter_unknown naming it."""
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "colour": "red"}  # type: ignore[typeddict-unknown-key]
        )
    error = caught.value
    assert (error.http_status, error.code, error.param) == (400, "parameter_unknown", "colour")
    assert error.error.type == "invalid_request_error"


def test_idempotent_replay(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """Same key and parameters replay the first answer, flagged Idempotent-Replayed."""
    params = {"amount": 900, "currency": "eur", "customer": customer.id}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k-1"})
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.payment_intents.list().data) == 1


def test_idempotent_replay_of_a_decline(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """A declined charge replays the same error for the same key, without a second attempt."""
    options: stripe.RequestOptions = {"idempotency_key": "k-decline"}
    params = {
        "amount": 900,
        "currency": "eur",
        "customer": customer.id,
        "payment_method": "pm_card_chargeDeclined",
        "confirm": True,
    }
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.create(params=params, options=options)  # type: ignore[arg-type]
        errors.append(caught.value)
    assert errors[0].error.payment_intent.id == errors[1].error.payment_intent.id
    assert errors[1].headers["Idempotent-Replayed"] == "true"


def test_idempotency_conflict(client: stripe.StripeClient) -> None:
    """Same key with other parameters is a 400 idempotency_error."""
    client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur"}, options={"idempotency_key": "k-2"}
    )
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.payment_intents.create(
            params={"amount": 901, "currency": "eur"}, options={"idempotency_key": "k-2"}
        )
    assert caught.value.http_status == 400


def test_idempotency_keys_expire_after_a_day(client: stripe.StripeClient, clock) -> None:
    """After 24 hours of emulator time a key can be reused for other parameters."""
    client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur"}, options={"idempotency_key": "k-3"}
    )
    clock.advance(24 * 3600)
    pi = client.v1.payment_intents.create(
        params={"amount": 901, "currency": "eur"}, options={"idempotency_key": "k-3"}
    )
    assert pi.amount == 901


def test_pagination(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """Lists page newest first with limit, starting_after and has_more; auto-paging sees all."""
    ids = [
        client.v1.payment_intents.create(params={"amount": 100 + i, "currency": "usd"}).id
        for i in range(5)
    ]
    first = client.v1.payment_intents.list(params={"limit": 2})
    assert ([p.id for p in first.data], first.has_more) == (ids[:2:-1][:2], True)
    second = client.v1.payment_intents.list(
        params={"limit": 2, "starting_after": first.data[-1].id}
    )
    assert [p.id for p in second.data] == [ids[2], ids[1]]
    assert [p.id for p in first.auto_paging_iter()] == ids[::-1]


def test_expand(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """expand[] replaces ids with objects, also through a path."""
    pi = _charge(client, customer, "pm_card_visa")
    got = client.v1.payment_intents.retrieve(
        pi.id, params={"expand": ["customer", "latest_charge.payment_method"]}
    )
    assert got.customer.email == "ada@example.com"
    assert got.latest_charge.payment_method.card.last4 == "4242"


def test_refund(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """A refund of a succeeded intent marks its charge refunded."""
    pi = _charge(client, customer, "pm_card_visa")
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (refund.amount, charge.refunded, charge.amount_refunded) == (2000, True, 2000)


def test_missing_object_is_404(client: stripe.StripeClient) -> None:
    """Retrieving an unknown id is Stripe's resource_missing 404."""
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.retrieve("pi_nope")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
