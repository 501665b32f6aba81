"""Price tiers, currencies and minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sim.billing import Money, UnknownCurrency, UnknownTier, price_of, tier_for
from sim.billing.pricing import credits_for_payment, to_minor

TABLE = [
    (1_000, "eur", 200), (1_000, "usd", 300), (1_000, "jpy", 400),
    (10_000, "eur", 1_000), (10_000, "usd", 1_500), (10_000, "jpy", 2_000),
    (21_000, "eur", 2_000), (21_000, "usd", 3_000), (21_000, "jpy", 4_000),
    (54_000, "eur", 5_000), (54_000, "usd", 6_000), (54_000, "jpy", 9_000),
]  # fmt: skip


@pytest.mark.parametrize(("credits", "currency", "minor"), TABLE)
def test_price_in_minor_units_matches_the_table(credits: int, currency: str, minor: int) -> None:
    """Every tier's price converts to the exact minor units (JPY has none: ¥400 is 400)."""
    assert price_of(credits, currency) == Money(minor, currency)


@pytest.mark.parametrize(("credits", "currency", "minor"), TABLE)
def test_a_payment_buys_exactly_its_tier(credits: int, currency: str, minor: int) -> None:
    """The reverse lookup gives the credits a payment of that amount buys."""
    assert credits_for_payment(minor, currency) == credits


def test_jpy_is_zero_decimal() -> None:
    """JPY amounts are never multiplied by 100 (the original system's bug)."""
    assert price_of(1_000, "jpy").amount_minor == 400
    assert str(price_of(1_000, "jpy")) == "400 JPY"
    assert str(price_of(1_000, "usd")) == "3.00 USD"


def test_fractions_of_a_minor_unit_are_refused() -> None:
    """No silent truncation: 0.005 EUR is not a whole number of cents."""
    assert to_minor(Decimal("19.99"), "eur") == 1999
    with pytest.raises(ValueError, match="whole number"):
        to_minor(Decimal("0.005"), "eur")
    with pytest.raises(ValueError, match="whole number"):
        to_minor(Decimal("0.5"), "jpy")


@pytest.mark.parametrize("credits", [0, 999, 110_000, "1000", 1000.0, True, None])
def test_unknown_tier_is_a_typed_error(credits: object) -> None:
    """A credit amount no tier sells raises UnknownTier naming the allowed amounts."""
    with pytest.raises(UnknownTier, match="allowed: 1000, 10000, 21000, 54000"):
        tier_for(credits)


@pytest.mark.parametrize("currency", ["gbp", "EUR", "", None, 1])
def test_unknown_currency_is_a_typed_error(currency: object) -> None:
    """A currency without prices raises UnknownCurrency (never falls back to EUR)."""
    with pytest.raises(UnknownCurrency, match="allowed: eur, usd, jpy"):
        price_of(1_000, currency)  # type: ignore[arg-type]


def test_payment_of_no_tier_amount_is_refused() -> None:
    """An amount that matches no tier buys nothing rather than a guess."""
    with pytest.raises(UnknownTier):
        credits_for_payment(999, "eur")


def test_only_tiers_with_a_bonus_are_subscribable() -> None:
    """The 1,000-credit tier has no monthly subscription; the others carry their bonus."""
    tiers = map(tier_for, (1_000, 21_000))
    assert [(t.credits, t.monthly_bonus, t.subscribable) for t in tiers] == [
        (1_000, 0, False),
        (21_000, 1_000, True),
    ]
