"""Stripe's documented test cards and ``pm_card_*`` aliases, and what each does **when charged**.

Attaching never fails (as in Stripe: the issuer is only asked at charge time); the outcome is
decided when a PaymentIntent is confirmed. Any other number that passes the Luhn check behaves like
a plain successful card of the brand its prefix says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import StripeAPIError


@dataclass(frozen=True, slots=True)
class Decline:
    """How the issuer refuses a charge: Stripe's ``code``, ``decline_code`` and customer message."""

    code: str
    decline_code: str
    message: str

    def error(self, **extra: Any) -> StripeAPIError:
        """The 402 ``card_error`` Stripe answers with (saved for idempotent replay)."""
        return StripeAPIError(
            402,
            "card_error",
            self.message,
            code=self.code,
            decline_code=self.decline_code,
            saved=True,
            **extra,
        )


@dataclass(frozen=True, slots=True)
class TestCard:
    """A card number's brand data and its behaviour at charge time."""

    number: str
    brand: str = "visa"
    funding: str = "credit"
    country: str = "US"
    decline: Decline | None = None
    #: Always asks for 3-D Secure: off-session charges fail, on-session ones need customer action.
    requires_authentication: bool = False

    @property
    def last4(self) -> str:
        """The last four digits, as Stripe shows them."""
        return self.number[-4:]


_GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")

AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)

_CARDS = (
    TestCard("4242424242424242"),
    TestCard("4000056655665556", funding="debit"),
    TestCard("5555555555554444", brand="mastercard"),
    TestCard("378282246310005", brand="amex"),
    TestCard("3566002020360505", brand="jcb", country="JP"),
    TestCard("4000003920000003", country="JP"),
    TestCard("4000000000000002", decline=_GENERIC),
    TestCard(
        "4000000000009995",
        decline=Decline("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    ),
    TestCard(
        "4000000000009987", decline=Decline("card_declined", "lost_card", "Your card was declined.")
    ),
    TestCard(
        "4000000000009979",
        decline=Decline("card_declined", "stolen_card", "Your card was declined."),
    ),
    TestCard(
        "4000000000000069",
        decline=Decline("expired_card", "expired_card", "Your card has expired."),
    ),
    TestCard(
        "4000000000000127",
        decline=Decline(
            "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
        ),
    ),
    TestCard(
        "4000000000000119",
        decline=Decline(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    TestCard("4000000000000341", decline=_GENERIC),
    TestCard("4000002760003184", requires_authentication=True),
    TestCard("4000000000003220", requires_authentication=True),
)

CARDS: dict[str, TestCard] = {card.number: card for card in _CARDS}

#: Every decline a test card can give, by its ``decline_code``: what an issuer's per-charge law
#: (:func:`issuer_decline`) may draw.
DECLINES: dict[str, Decline] = {
    card.decline.decline_code: card.decline for card in _CARDS if card.decline is not None
}

#: A per-charge law: each decline with its chance; the card is charged the rest of the time.
DeclineLaw = tuple[tuple[Decline, float], ...]


def decline_law(rates: dict[str, float]) -> DeclineLaw:
    """``rates`` (decline code -> chance per charge) checked and made a law.

    Raises ``ValueError`` naming an unknown code (and the known ones), a chance outside [0, 1],
    or chances that add up to more than 1.
    """
    for code, rate in rates.items():
        if code not in DECLINES:
            raise ValueError(f"unknown decline code {code!r}; known: {', '.join(sorted(DECLINES))}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the chance of {code!r} must be in [0, 1], got {rate!r}")
    if sum(rates.values()) > 1.0 + 1e-9:
        raise ValueError(f"the chances add up to {sum(rates.values())!r}, more than 1")
    return tuple((DECLINES[code], rate) for code, rate in rates.items())


def issuer_decline(law: DeclineLaw, draw: float) -> Decline | None:
    """The decline that ``draw`` (uniform in [0, 1)) picks under ``law``, or ``None`` to charge:
    the codes take consecutive slices of [0, 1) in the law's order."""
    edge = 0.0
    for decline, rate in law:
        edge += rate
        if draw < edge:
            return decline
    return None


#: Stripe's ``pm_card_*`` test PaymentMethod aliases and the card number each stands for.
ALIASES: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_jcb": "3566002020360505",
    "pm_card_jp": "4000003920000003",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_threeDSecure2Required": "4000000000003220",
}

_BRAND_PREFIXES = (
    ("34", "amex"),
    ("37", "amex"),
    ("35", "jcb"),
    ("5", "mastercard"),
    ("4", "visa"),
)


def luhn_valid(number: str) -> bool:
    """Whether ``number`` is all digits and passes the Luhn checksum."""
    if not (number.isascii() and number.isdigit()) or not 12 <= len(number) <= 19:
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_for(number: str) -> TestCard:
    """The test card for ``number`` (a plain successful card when it is not a listed one)."""
    known = CARDS.get(number)
    if known is not None:
        return known
    brand = next((b for prefix, b in _BRAND_PREFIXES if number.startswith(prefix)), "unknown")
    return TestCard(number, brand=brand)
