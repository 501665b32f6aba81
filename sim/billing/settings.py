"""Low-balance auto top-up settings: the model and its validation.

Every accepted combination has a price behind it: the amount must be a tier's credits and the
currency one the tier table prices, so no setting can silently never charge (a pitfall of the
original system, which accepted any amount and any currency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import InvalidSettings, UnknownCurrency, UnknownTier
from .pricing import CURRENCIES, TIER_CREDITS, check_currency, tier_for

THRESHOLDS: Final[tuple[int, ...]] = (500, 1_000, 2_000, 5_000)
DEFAULT_COOLDOWN_SECONDS: Final = 3_600.0

#: Auto top-up states. Only ``active`` lets a deduction claim a top-up.
ACTIVE, PAUSED, SUSPENDED = "active", "paused", "suspended"


@dataclass(frozen=True, slots=True)
class AutoTopupSettings:
    """What a user chose: whether to top up, below which balance, how much, in which currency."""

    enabled: bool = False
    threshold: int = 1_000
    amount: int = 10_000
    currency: str = "eur"

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidSettings("enabled", self.enabled, (True, False))
        if isinstance(self.threshold, bool) or self.threshold not in THRESHOLDS:
            raise InvalidSettings("threshold", self.threshold, THRESHOLDS)
        try:
            tier_for(self.amount)
        except UnknownTier:
            raise InvalidSettings("amount", self.amount, TIER_CREDITS) from None
        try:
            check_currency(self.currency)
        except UnknownCurrency:
            raise InvalidSettings("currency", self.currency, CURRENCIES) from None
