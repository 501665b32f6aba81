"""Low-balance auto top-up settings: the model and its validation.

Every accepted combination has a price behind it: the amount must be a tier's credits and the
currency one the tier table prices, so no setting can silently never charge (a pitfall of the
original system, which accepted any amount and any currency). For the same reason a monthly
limit must leave room for at least one top-up of the chosen amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import InvalidSettings, UnknownCurrency, UnknownTier
from .pricing import CURRENCIES, TIER_CREDITS, check_currency, tier_for

THRESHOLDS: Final[tuple[int, ...]] = (500, 1_000, 2_000, 5_000)
DEFAULT_COOLDOWN_SECONDS: Final = 3_600.0
#: The largest monthly auto top-up limit, in credits: far above any real month (185 top-ups of
#: the largest tier), and small enough for any store's integer column.
MAX_MONTHLY_LIMIT: Final = 10_000_000

#: Auto top-up states. Only ``active`` lets a deduction claim a top-up.
ACTIVE, PAUSED, SUSPENDED = "active", "paused", "suspended"


@dataclass(frozen=True, slots=True)
class AutoTopupSettings:
    """What a user chose: whether to top up, below which balance, how much, in which currency,
    and at most how many credits auto top-up may claim in a calendar month (UTC).

    ``monthly_limit`` is in credits, like ``amount``, so that it reads the same in every
    currency; ``None`` is no limit. Purchases other than auto top-up do not count towards it
    (see :func:`~sim.billing.claims.decide`).
    """

    enabled: bool = False
    threshold: int = 1_000
    amount: int = 10_000
    currency: str = "eur"
    monthly_limit: int | None = None

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
        limit = self.monthly_limit
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not self.amount <= limit <= MAX_MONTHLY_LIMIT
        ):
            # A limit under the amount would hold every top-up: a setting that never charges.
            raise InvalidSettings(
                "monthly_limit", limit, (None, f"{self.amount}..{MAX_MONTHLY_LIMIT}")
            )
