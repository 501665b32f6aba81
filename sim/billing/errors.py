"""Typed errors of the billing module.

Every error a caller can act on has its own class, so an API layer can map it to a status code and a
simulation can count it, without parsing messages. All derive from :class:`BillingError`.
"""

from __future__ import annotations


class BillingError(Exception):
    """Base class of every error the billing module raises on purpose."""


class UnknownUser(BillingError):
    """No user with this id exists in the store."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"unknown user {user_id!r}")
        self.user_id = user_id


class DuplicateUser(BillingError):
    """A user with this id already exists."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} already exists")
        self.user_id = user_id


class InsufficientCredits(BillingError):
    """The request costs more than the balance holds; no credits were taken."""

    def __init__(
        self,
        user_id: str,
        requested: int,
        balance: int,
        attempt: int | None = None,
        trigger: str | None = None,
    ) -> None:
        super().__init__(f"user {user_id!r} cannot afford {requested} credits (balance {balance})")
        self.user_id = user_id
        self.requested = requested
        self.balance = balance
        #: The auto top-up attempt this refused request claimed (or took over), if any.
        self.attempt = attempt
        #: What the refused request did about auto top-up (a ``Trigger`` value: ``claimed``,
        #: ``cooling``, ...), as a served request's ``Deduction.trigger`` says.
        self.trigger = trigger


class InvalidAmount(BillingError, ValueError):
    """A credit amount is not a positive whole number."""


class UnknownCurrency(BillingError, ValueError):
    """The currency has no price column in the tier table."""

    def __init__(self, currency: object, allowed: tuple[str, ...]) -> None:
        super().__init__(f"unknown currency {currency!r}; allowed: {', '.join(allowed)}")
        self.currency = currency
        self.allowed = allowed


class UnknownTier(BillingError, ValueError):
    """No price tier sells exactly this many credits."""

    def __init__(self, credits: object, allowed: tuple[int, ...]) -> None:
        super().__init__(
            f"no price tier for {credits!r} credits; allowed: {', '.join(map(str, allowed))}"
        )
        self.credits = credits
        self.allowed = allowed


#: How ``true``, ``false`` and ``null`` are written in a message: as the API's JSON writes them.
_JSON_WORDS: dict[object, str] = {True: "true", False: "false", None: "null"}


class InvalidSettings(BillingError, ValueError):
    """An auto top-up setting is out of range. Names the field and what it allows."""

    def __init__(self, field: str, value: object, allowed: tuple[object, ...]) -> None:
        shown = ", ".join(
            _JSON_WORDS[v] if v is None or isinstance(v, bool) else str(v) for v in allowed
        )
        super().__init__(f"invalid {field}: {value!r}; allowed: {shown}")
        self.field = field
        self.value = value
        self.allowed = allowed


class PaymentMethodMissing(BillingError):
    """The user has no saved, usable payment method."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} has no saved, usable payment method")
        self.user_id = user_id


class PriceMismatch(BillingError):
    """A payment's amount or currency does not match the price table for its credits.

    Raised instead of crediting: credits are granted from what was actually paid, never from
    metadata alone.
    """


class DecryptionError(BillingError):
    """A ciphertext was tampered with, truncated, or belongs to another user or field."""


class StoreUnavailable(BillingError):
    """The durable store could not complete a write; the operation changed nothing."""


class CacheUnavailable(BillingError):
    """The cache could not be reached; the operation changed nothing."""


class TransientGatewayError(BillingError):
    """The payment provider did not answer usefully (timeout, 5xx, 429, dropped connection).

    The same attempt may be retried with the same idempotency key: it can never charge twice.
    """


class GatewayRequestError(BillingError):
    """The payment provider refused a request itself, not the card (a 400, 401, 403 or 404:
    an unknown customer, a revoked key): sending it again would be refused again."""


class GatewayConfigurationError(BillingError):
    """The payment gateway is set up in a way that must never reach production (e.g. a live key)."""


class TwoFactorRequired(BillingError):
    """The user has not enabled two-factor authentication, which this change requires."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} must enable two-factor authentication first")
        self.user_id = user_id


class InvalidCode(BillingError):
    """The TOTP code is wrong (or not six digits)."""


class CodeReplayed(BillingError):
    """The TOTP code (or a later one) was already used: a code is accepted once."""


class TooManyAttempts(BillingError):
    """Too many wrong codes: every change that needs a code is locked for ``retry_after`` s."""

    def __init__(self, user_id: str, retry_after: float) -> None:
        super().__init__(
            f"too many wrong codes for {user_id!r}; try again in {retry_after:.0f} seconds"
        )
        self.user_id = user_id
        self.retry_after = retry_after


class SubscriptionError(BillingError):
    """A subscription request that cannot be honoured (no bonus tier, one already live, none to
    cancel)."""


class WebhookSignatureError(BillingError):
    """A webhook's signature is missing, forged, or its timestamp is outside the tolerance."""


class WebhookPayloadError(BillingError):
    """A correctly signed webhook whose event is invalid for good (malformed, of an unknown user
    or another customer, a wrong price): retrying it cannot help, so it is dead-lettered."""


class CardDeclined(BillingError):
    """The bank declined the card of a purchase or card setup (``decline_code`` says why):
    nothing was charged, credited or saved."""

    def __init__(self, decline_code: str, message: str = "") -> None:
        said = f": {message}" if message else ""
        super().__init__(f"the card was declined ({decline_code}){said}")
        self.decline_code = decline_code


class UnknownIntent(BillingError):
    """No purchase or card setup of this user has this id (it may be another user's)."""


class IdempotencyKeyReused(BillingError):
    """An ``Idempotency-Key`` was sent again with a different request: it names one request."""
