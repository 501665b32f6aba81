"""SetupIntents and 3-D Secure confirmation, through a real ``stripe.StripeClient``."""

from __future__ import annotations

import pytest
import stripe

from sim.stripe_emulator import StripeEmulator


def test_setup_saves_the_card(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """create+confirm with a plain card succeeds and attaches it to the customer off-session."""
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_mastercard",
            "usage": "off_session",
            "confirm": True,
        }
    )
    assert (si.status, si.usage, si.next_action) == ("succeeded", "off_session", None)
    pm = client.v1.payment_methods.retrieve(str(si.payment_method))
    assert pm.customer == customer.id and pm.card is not None and pm.card.brand == "mastercard"


@pytest.mark.parametrize(
    "card", ["pm_card_authenticationRequired", "pm_card_threeDSecure2Required"]
)
def test_three_d_secure_setup_needs_a_second_confirm(
    client: stripe.StripeClient, customer: stripe.Customer, card: str
) -> None:
    """A 3-D Secure card: requires_action with next_action, then confirm (authenticated)."""
    si = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": card, "confirm": True}
    )
    assert (si.status, si.next_action.type) == ("requires_action", "use_stripe_sdk")
    assert client.v1.payment_methods.retrieve(str(si.payment_method)).customer is None
    done = client.v1.setup_intents.confirm(si.id)
    assert (done.status, done.next_action) == ("succeeded", None)
    assert client.v1.payment_methods.retrieve(str(si.payment_method)).customer == customer.id
    again = client.v1.setup_intents.retrieve(si.id)
    assert again.status == "succeeded"


def test_declined_setup(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    """A declined card: 402 card_error naming the setup intent, which waits for another card."""
    with pytest.raises(stripe.CardError) as caught:
        client.v1.setup_intents.create(
            params={
                "customer": customer.id,
                "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                "confirm": True,
            }
        )
    error = caught.value.error
    assert error is not None and error.decline_code == "insufficient_funds"
    assert error.setup_intent is not None
    assert error.setup_intent.status == "requires_payment_method"


def test_succeeded_setup_cannot_be_confirmed_again(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    """A finished SetupIntent refuses another confirm (400 setup_intent_unexpected_state)."""
    si = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.setup_intents.confirm(si.id)
    assert caught.value.code == "setup_intent_unexpected_state"


def test_three_d_secure_payment_completes_on_confirm(
    client: stripe.StripeClient, customer: stripe.Customer, emulator: StripeEmulator
) -> None:
    """On-session 3-D Secure: requires_action, then confirm charges; setup_future_usage saves."""
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": "pm_card_threeDSecure2Required",
            "setup_future_usage": "off_session",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action" and pi.next_action is not None
    done = client.v1.payment_intents.confirm(pi.id)
    assert (done.status, done.amount_received, done.next_action) == ("succeeded", 2000, None)
    assert client.v1.payment_methods.retrieve(str(pi.payment_method)).customer == customer.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.confirm(pi.id)
