"""The payment gateway the simulation charges, behind one factory.

Today that is the billing module's :class:`~sim.billing.testing.ScriptedGateway`, answering each
of Stripe's test payment methods the way Stripe test mode does at charge time. When the offline
Stripe emulator and the Stripe gateway land, :func:`make_gateway` returns them instead (the
"Stripe test mode" path) and nothing else in the simulation changes.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from sim.billing import PaymentGateway
from sim.billing.testing import ScriptedGateway

#: Stripe's test payment methods and how an off-session charge of each ends.
TEST_CARDS: Final = MappingProxyType(
    {
        "pm_card_visa": "succeeded",
        "pm_card_mastercard": "succeeded",
        "pm_card_amex": "succeeded",
        "pm_card_chargeDeclined": "declined:generic_decline",
        "pm_card_chargeDeclinedInsufficientFunds": "declined:insufficient_funds",
        "pm_card_chargeDeclinedExpiredCard": "declined:expired_card",
        "pm_card_chargeDeclinedLostCard": "declined:lost_card",
        "pm_card_chargeDeclinedStolenCard": "declined:stolen_card",
        "pm_card_chargeDeclinedFraudulent": "declined:fraudulent",
        "pm_card_chargeDeclinedProcessingError": "declined:processing_error",
        "pm_card_authenticationRequired": "authentication_required",
    }
)


def make_gateway() -> PaymentGateway:
    """A fresh gateway that knows every test card (no state is shared between runs)."""
    return ScriptedGateway(cards=TEST_CARDS)
