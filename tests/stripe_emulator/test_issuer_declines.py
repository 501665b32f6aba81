"""Per-charge decline laws (``StripeEmulator.set_decline_law``): a good card that an issuer
declines now and then, with the decline codes of Stripe's declining test cards."""

from __future__ import annotations

import pytest
import stripe

from sim.stripe_emulator import StripeEmulator
from sim.stripe_emulator._cards import DECLINES, issuer_decline


def _customer_card(client: stripe.StripeClient) -> tuple[str, str]:
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    return customer.id, pm.id


def _charge(client: stripe.StripeClient, customer: str, pm: str) -> tuple[str, str | None]:
    """Charge off-session; (status, decline code)."""
    params = {
        "amount": 2000, "currency": "eur", "customer": customer, "payment_method": pm,
        "confirm": True, "off_session": True,
    }  # fmt: skip
    try:
        return client.v1.payment_intents.create(params=params).status, None  # type: ignore[arg-type]
    except stripe.CardError as error:
        return "declined", error.error.decline_code if error.error else None


def test_a_certain_decline_declines_every_charge_with_its_code(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """Chance 1 for ``insufficient_funds``: every charge of that card is refused with it (a 402
    card error, a failed charge, the intent back at ``requires_payment_method``)."""
    customer, pm = _customer_card(client)
    emulator.set_decline_law(pm, {"insufficient_funds": 1.0})
    assert [_charge(client, customer, pm) for _ in range(3)] == [
        ("declined", "insufficient_funds")
    ] * 3
    intents = client.v1.payment_intents.list(params={"customer": customer}).data
    assert {pi.status for pi in intents} == {"requires_payment_method"}
    assert {client.v1.charges.retrieve(pi.latest_charge).status for pi in intents} == {"failed"}


def test_declines_follow_their_chances(emulator: StripeEmulator) -> None:
    """Over 400 charges at 0.2 ``generic_decline`` and 0.1 ``expired_card``, each count is
    within 4 standard deviations of its binomial mean; the rest are charged."""
    client = emulator.stripe_client()
    customer, pm = _customer_card(client)
    emulator.set_decline_law(pm, {"generic_decline": 0.2, "expired_card": 0.1})
    n = 400
    outcomes = [_charge(client, customer, pm) for _ in range(n)]
    for code, p in (("generic_decline", 0.2), ("expired_card", 0.1), (None, 0.7)):
        count = sum(code == c for _, c in outcomes)
        assert abs(count - n * p) <= 4 * (n * p * (1 - p)) ** 0.5, (code, count)
    assert {s for s, c in outcomes if c is None} == {"succeeded"}


def test_a_law_leaves_other_cards_and_card_outcomes_alone(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """The law is the card's own: another Visa is charged; an empty law clears it."""
    customer, pm = _customer_card(client)
    other_customer, other = _customer_card(client)
    emulator.set_decline_law(pm, {"lost_card": 1.0})
    assert _charge(client, customer, pm) == ("declined", "lost_card")
    assert _charge(client, other_customer, other) == ("succeeded", None)
    emulator.set_decline_law(pm, {})
    assert _charge(client, customer, pm) == ("succeeded", None)


def test_a_declining_test_card_keeps_its_own_decline(emulator: StripeEmulator) -> None:
    """A card that always declines still declines with its own code under any law, and a card
    whose law never declines is charged."""
    client = emulator.stripe_client()
    customer = client.v1.customers.create(params={}).id
    pm = client.v1.payment_methods.attach(
        "pm_card_chargeDeclinedExpiredCard", params={"customer": customer}
    ).id
    emulator.set_decline_law(pm, {"insufficient_funds": 1.0})
    assert _charge(client, customer, pm) == ("declined", "expired_card")


def test_the_same_seed_draws_the_same_declines() -> None:
    """Two emulators with one seed decline the same charges; a snapshot restores the stream."""

    def outcomes(emulator: StripeEmulator, n: int) -> list[tuple[str, str | None]]:
        client = emulator.stripe_client()
        customer, pm = _customer_card(client)
        emulator.set_decline_law(pm, {"generic_decline": 0.5})
        return [_charge(client, customer, pm) for _ in range(n)]

    first, second = StripeEmulator(seed=3), StripeEmulator(seed=3)
    assert outcomes(first, 30) == outcomes(second, 30)
    assert len({c for _, c in outcomes(StripeEmulator(seed=3), 30)}) == 2  # both outcomes occur
    client = first.stripe_client()
    customer, pm = _customer_card(client)
    first.set_decline_law(pm, {"generic_decline": 0.5})
    saved = first.snapshot()
    before = [_charge(client, customer, pm) for _ in range(20)]
    first.restore(saved)
    assert [_charge(client, customer, pm) for _ in range(20)] == before


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"nope": 0.1}, "unknown decline code 'nope'; known: expired_card, generic_decline"),
        ({"lost_card": 1.5}, r"chance of 'lost_card' must be in \[0, 1\]"),
        ({"lost_card": -0.1}, r"chance of 'lost_card' must be in \[0, 1\]"),
        ({"lost_card": 0.6, "stolen_card": 0.5}, "add up to 1.1, more than 1"),
    ],
)
def test_bad_laws_are_refused_by_name(
    emulator: StripeEmulator, rates: dict[str, float], message: str
) -> None:
    """A law with an unknown code or impossible chances is a ValueError that says which."""
    _, pm = _customer_card(emulator.stripe_client())
    with pytest.raises(ValueError, match=message):
        emulator.set_decline_law(pm, rates)


def test_a_law_needs_a_card_payment_method(emulator: StripeEmulator) -> None:
    """An unknown PaymentMethod id is refused (and nothing is stored for it)."""
    with pytest.raises(ValueError, match="no card PaymentMethod 'pm_missing'"):
        emulator.set_decline_law("pm_missing", {"lost_card": 0.1})


def test_issuer_decline_slices_the_unit_interval_in_order() -> None:
    """Codes take consecutive slices of [0, 1): the edges are exact, past the last is a charge."""
    law = ((DECLINES["lost_card"], 0.25), (DECLINES["stolen_card"], 0.25))
    assert issuer_decline(law, 0.0) is DECLINES["lost_card"]
    assert issuer_decline(law, 0.2499) is DECLINES["lost_card"]
    assert issuer_decline(law, 0.25) is DECLINES["stolen_card"]
    assert issuer_decline(law, 0.4999) is DECLINES["stolen_card"]
    assert issuer_decline(law, 0.5) is None
    assert issuer_decline((), 0.0) is None
    assert sorted(DECLINES) == [
        "expired_card", "generic_decline", "incorrect_cvc", "insufficient_funds", "lost_card",
        "processing_error", "stolen_card",
    ]  # fmt: skip
