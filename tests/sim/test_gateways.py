"""The simulation's gateway answers each Stripe test card as Stripe test mode does."""

from __future__ import annotations

from sim.billing import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeSucceeded,
    Money,
)
from sim.gateways import TEST_CARDS, make_gateway


def _charge(card: str):  # type: ignore[no-untyped-def]
    request = ChargeRequest("cus_1", card, Money(1000, "eur"), f"key-{card}")
    return make_gateway().charge(request)


def test_good_cards_succeed() -> None:
    """pm_card_visa and the other good cards move money."""
    assert isinstance(_charge("pm_card_visa"), ChargeSucceeded)


def test_declining_cards_carry_their_decline_code() -> None:
    """Each declining test card is declined with its Stripe decline code."""
    result = _charge("pm_card_chargeDeclinedInsufficientFunds")
    assert isinstance(result, ChargeDeclined) and result.decline_code == "insufficient_funds"
    for card, outcome in TEST_CARDS.items():
        if outcome.startswith("declined:"):
            assert _charge(card).decline_code == outcome.removeprefix("declined:")


def test_authentication_required_card_asks_for_the_customer() -> None:
    """pm_card_authenticationRequired needs the customer present (SCA)."""
    assert isinstance(_charge("pm_card_authenticationRequired"), ChargeNeedsAuthentication)


def test_each_gateway_is_fresh() -> None:
    """Two runs never share gateway state (intent ids restart)."""
    first = _charge("pm_card_visa")
    second = _charge("pm_card_visa")
    assert first == second
