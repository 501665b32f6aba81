"""Price tiers, currencies and minor units.

Prices are kept as :class:`~decimal.Decimal` in major units and converted to the integer minor units
Stripe expects with each currency's own exponent: EUR and USD have two decimals, JPY has none (an
amount of 400 means ¥400). No float ever touches a price, so nothing is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from .errors import UnknownCurrency, UnknownTier

#: ISO 4217 minor-unit exponents of the currencies we sell in.
CURRENCY_EXPONENTS: Final = MappingProxyType({"eur": 2, "usd": 2, "jpy": 0})
CURRENCIES: Final[tuple[str, ...]] = tuple(CURRENCY_EXPONENTS)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency's minor units (cents for EUR/USD, yen for JPY)."""

    amount_minor: int
    currency: str

    def __str__(self) -> str:
        exponent = CURRENCY_EXPONENTS[self.currency]
        major = Decimal(self.amount_minor).scaleb(-exponent)
        return f"{major:.{exponent}f} {self.currency.upper()}"


@dataclass(frozen=True, slots=True)
class Tier:
    """One package of credits, its price per currency, its monthly-subscription bonus, and
    whether it is the tier the billing page recommends (the design brief's table marks one)."""

    credits: int
    prices: MappingProxyType[str, Decimal]
    monthly_bonus: int = 0
    recommended: bool = False

    @property
    def subscribable(self) -> bool:
        """Only tiers with a bonus can be bought as a monthly subscription."""
        return self.monthly_bonus > 0


def _tier(
    credits: int, eur: str, usd: str, jpy: str, bonus: int = 0, *, recommended: bool = False
) -> Tier:
    prices = {"eur": Decimal(eur), "usd": Decimal(usd), "jpy": Decimal(jpy)}
    return Tier(credits, MappingProxyType(prices), bonus, recommended)


#: The price table of the design brief (section 3).
TIERS: Final[tuple[Tier, ...]] = (
    _tier(1_000, "2", "3", "400"),
    _tier(10_000, "10", "15", "2000", bonus=500),
    _tier(21_000, "20", "30", "4000", bonus=1_000, recommended=True),
    _tier(54_000, "50", "60", "9000", bonus=3_000),
)
TIER_CREDITS: Final[tuple[int, ...]] = tuple(t.credits for t in TIERS)
_BY_CREDITS: Final = MappingProxyType({t.credits: t for t in TIERS})


def check_currency(currency: object) -> str:
    """Return ``currency`` if we sell in it, else raise :class:`UnknownCurrency`."""
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(currency, CURRENCIES)
    return currency


def tier_for(credits: object) -> Tier:
    """Return the tier that sells exactly ``credits``, else raise :class:`UnknownTier`."""
    # bool is an int subclass; True credits is never a tier.
    if isinstance(credits, bool) or not isinstance(credits, int) or credits not in _BY_CREDITS:
        raise UnknownTier(credits, TIER_CREDITS)
    return _BY_CREDITS[credits]


def to_minor(amount: Decimal, currency: str) -> int:
    """Convert a major-unit Decimal to integer minor units, refusing fractions of a minor unit."""
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    minor = amount.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(minor)


def price_of(credits: int, currency: str) -> Money:
    """The price of a tier in minor units, e.g. ``price_of(1000, "jpy") == Money(400, "jpy")``."""
    currency = check_currency(currency)
    return Money(to_minor(tier_for(credits).prices[currency], currency), currency)


def credits_for_payment(amount_minor: int, currency: str) -> int:
    """The credits that a payment of exactly this amount buys; raises :class:`UnknownTier`.

    Used when settling a payment, so that the credits granted follow from the money received.
    """
    credits = _BY_PRICE.get((amount_minor, check_currency(currency)))
    if credits is None:
        raise UnknownTier(f"{amount_minor} minor units of {currency}", TIER_CREDITS)
    return credits


def _prices() -> dict[tuple[int, str], int]:
    """Each tier's price in minor units and currency -> its credits (the cheapest tier first,
    should two tiers ever share a price)."""
    table: dict[tuple[int, str], int] = {}
    for tier in TIERS:
        for currency in CURRENCIES:
            table.setdefault((to_minor(tier.prices[currency], currency), currency), tier.credits)
    return table


#: Read on every settled payment (a sweep settles tens of thousands): one lookup, not a Decimal
#: conversion per tier.
_BY_PRICE: Final = MappingProxyType(_prices())
