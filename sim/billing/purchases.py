"""Buying credits and saving a card with the customer present (on-session).

A **purchase** is one PaymentIntent for exactly one tier's price in the user's currency, created
and confirmed with the customer present, so a card that asks for 3-D Secure answers
``requires_action`` (the client completes Stripe's ``next_action``, then :meth:`Checkout.confirm`
confirms) instead of failing as an off-session auto top-up does. It is credited **exactly once**,
by :func:`settle_purchase`, from whichever arrives first: the synchronous answer (create or
confirm) or the ``payment_intent.succeeded`` webhook (metadata ``purpose=purchase``). Both go
through the ledger's unique reference (the PaymentIntent id), the same guarantee top-ups and
subscription invoices rely on, so the later one is a no-op.

A purchase is ledger kind ``purchase``, not an auto top-up attempt: the monthly auto top-up limit
counts attempts (:mod:`~sim.billing.claims`), so what a user buys by hand never uses it up.

``save_card`` asks Stripe to keep the card for off-session charges (``setup_future_usage``); the
card becomes the user's saved card only once the payment succeeded. A **card setup** saves or
replaces the card without buying anything (a SetupIntent with ``usage=off_session``); a new card
lifts a pause or suspension of auto top-up, as :meth:`BillingService.save_payment_method` does.

Authentication (2FA) is the caller's, as for settings: see the API, which checks, then takes the
code, then calls :meth:`Checkout.buy` or :meth:`Checkout.setup_card`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .clock import Clock
from .errors import CardDeclined, GatewayRequestError, UnknownIntent
from .gateway import CardDetails, CheckoutGateway, OnSessionIntent
from .pricing import Money, price_of
from .service import BillingService
from .vault import F_CUSTOMER

#: Metadata ``purpose`` of a purchase's PaymentIntent (auto top-ups are ``auto_topup``).
PURCHASE_PURPOSE = "purchase"
#: Ledger kind of a purchase's credit.
PURCHASE_KIND = "purchase"


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What a purchase or card setup did: the provider's intent and, for a purchase, whether
    this call credited it (``False`` when it was credited before, or is not paid yet)."""

    intent: OnSessionIntent
    credited: bool = False
    card_saved: bool = False


@dataclass(frozen=True, slots=True)
class CardStatus:
    """The saved card as the user sees it: ``usable`` when Stripe has it attached to the user's
    customer and it has not expired (the checks auto top-up needs)."""

    saved: bool
    usable: bool
    details: CardDetails | None = None


def settle_purchase(
    billing: BillingService,
    user_id: str,
    intent_id: str,
    paid: Money,
    metadata: Mapping[str, str],
) -> bool:
    """Credit a succeeded purchase exactly once; ``False`` if its PaymentIntent was credited.

    The credits follow from the money received (one tier's price, agreeing with the metadata:
    :meth:`BillingService.payment_credits`), and the ledger reference is the PaymentIntent id.
    """
    credits = billing.payment_credits(user_id, intent_id, paid, metadata)
    return billing.add_credits(user_id, credits, kind=PURCHASE_KIND, reference=intent_id)


class Checkout:
    """Purchases, card setups and the saved card's status, on a :class:`CheckoutGateway`."""

    def __init__(self, *, billing: BillingService, gateway: CheckoutGateway) -> None:
        self.billing = billing
        self.gateway = gateway

    # ----------------------------------------------------------------- purchases

    def check_buy(self, user_id: str, credits: int, currency: str) -> Money:
        """The tier's price, or the refusal :meth:`buy` would give (``UnknownTier``,
        ``UnknownCurrency``, ``UnknownUser``), before anything is sent or written."""
        price = price_of(credits, currency)
        self.billing.store.get_user(user_id)
        return price

    def buy(
        self,
        user_id: str,
        credits: int,
        currency: str,
        payment_method_id: str,
        *,
        save_card: bool = False,
        request_key: str | None = None,
    ) -> CheckoutResult:
        """Charge the tier's price on-session and credit it if it succeeded now.

        ``request_key`` (the client's ``Idempotency-Key``) makes a resent request the same
        PaymentIntent at Stripe; without one, each call is a new payment. ``CardDeclined`` when
        the bank declined (nothing charged or credited).
        """
        price = self.check_buy(user_id, credits, currency)
        customer = self._customer(user_id)
        metadata = {"user_id": user_id, "credits": str(credits), "purpose": PURCHASE_PURPOSE}
        key = f"purchase:{user_id}:{request_key or secrets.token_hex(16)}"
        intent = self.gateway.pay_on_session(
            customer, payment_method_id, price, key, metadata, save_card=save_card
        )
        return self._after_payment(user_id, intent)

    def confirm(self, user_id: str, intent_id: str) -> CheckoutResult:
        """Confirm the user's purchase after 3-D Secure and credit it if it succeeded.

        ``UnknownIntent`` unless it is a purchase of this user (another user's id tells nothing).
        """
        customer = self._existing_customer(user_id)
        try:
            intent = self.gateway.confirm_payment(customer, intent_id)
        except GatewayRequestError:
            raise UnknownIntent(f"no purchase {intent_id!r} of this user") from None
        if (
            intent.metadata.get("purpose") != PURCHASE_PURPOSE
            or intent.metadata.get("user_id") != user_id
        ):
            raise UnknownIntent(f"no purchase {intent_id!r} of this user")
        return self._after_payment(user_id, intent)

    def _after_payment(self, user_id: str, intent: OnSessionIntent) -> CheckoutResult:
        _refuse_declined(intent)
        if intent.status != "succeeded" or intent.price is None:
            return CheckoutResult(intent)
        credited = settle_purchase(
            self.billing, user_id, intent.intent_id, intent.price, intent.metadata
        )
        saved = False
        if self._kept_for_later(intent):
            assert intent.customer_id is not None and intent.payment_method_id is not None
            self.billing.save_payment_method(user_id, intent.customer_id, intent.payment_method_id)
            saved = True
        return CheckoutResult(intent, credited, saved)

    def _kept_for_later(self, intent: OnSessionIntent) -> bool:
        """Whether a paid purchase's card was kept for off-session use: the purchase asked for
        it (``setup_future_usage``) and Stripe attached it to the customer. A purchase that did
        not ask saves nothing, even paid with a card the customer already holds (saving a card
        lifts a pause or suspension), and costs no second request."""
        if not intent.keeps_card or intent.payment_method_id is None or intent.customer_id is None:
            return False
        details = self.gateway.card_details(intent.payment_method_id)
        return details is not None and details.customer_id == intent.customer_id

    # ----------------------------------------------------------------- cards

    def setup_card(
        self, user_id: str, payment_method_id: str, *, request_key: str | None = None
    ) -> CheckoutResult:
        """Save (or replace) the user's card with a SetupIntent; saved at once unless the bank
        asks the customer to authenticate (then :meth:`confirm_setup`). ``CardDeclined`` when
        the bank refused the card (nothing saved)."""
        self.billing.store.get_user(user_id)
        customer = self._customer(user_id)
        key = f"card-setup:{user_id}:{request_key or secrets.token_hex(16)}"
        return self._after_setup(user_id, self.gateway.setup_card(customer, payment_method_id, key))

    def confirm_setup(self, user_id: str, setup_intent_id: str) -> CheckoutResult:
        """Confirm the user's card setup after 3-D Secure and save the card if it succeeded."""
        customer = self._existing_customer(user_id)
        try:
            intent = self.gateway.confirm_setup(customer, setup_intent_id)
        except GatewayRequestError:
            raise UnknownIntent(f"no card setup {setup_intent_id!r} of this user") from None
        return self._after_setup(user_id, intent)

    def _after_setup(self, user_id: str, intent: OnSessionIntent) -> CheckoutResult:
        _refuse_declined(intent)
        if intent.status != "succeeded" or intent.payment_method_id is None:
            return CheckoutResult(intent)
        assert intent.customer_id is not None
        self.billing.save_payment_method(user_id, intent.customer_id, intent.payment_method_id)
        return CheckoutResult(intent, card_saved=True)

    def card_status(self, user_id: str) -> CardStatus:
        """The saved card's brand, last four digits and expiry, and whether auto top-up can use
        it (attached to the user's customer at Stripe, not expired on the injected clock)."""
        saved = self.billing.payment_method(user_id)
        if saved is None:
            return CardStatus(saved=False, usable=False)
        customer, payment_method = saved
        details = self.gateway.card_details(payment_method)
        if details is None:
            return CardStatus(saved=True, usable=False)
        usable = details.customer_id == customer and not _expired(details, self.billing.clock)
        return CardStatus(True, usable, details)

    # ----------------------------------------------------------------- customers

    def _customer(self, user_id: str) -> str:
        """The user's Stripe customer: the saved one, else created (idempotent per user) and
        saved before anything is paid, so that the webhook of a first purchase finds the
        customer it checks every payment against (a user may buy before saving any card)."""
        saved = self.billing.customer_id(user_id)
        if saved is not None:
            return saved
        customer = self.gateway.ensure_customer(user_id)
        user = self.billing.store.get_user(user_id)
        sealed = self.billing.vault.encrypt(user_id, user.wrapped_key, F_CUSTOMER, customer)
        self.billing.store.save_customer(user_id, sealed)
        return self.billing.customer_id(user_id) or customer

    def _existing_customer(self, user_id: str) -> str:
        """The user's saved customer for a confirm: a user without one has no intent to confirm
        (``UnknownIntent``), and nothing is created for them."""
        saved = self.billing.customer_id(user_id)
        if saved is None:
            raise UnknownIntent("this user has no purchase or card setup to confirm")
        return saved


def _expired(card: CardDetails, clock: Clock) -> bool:
    """Whether the card's expiry month is over (cards expire at the end of their month)."""
    now = datetime.fromtimestamp(clock.now(), UTC)
    return (card.exp_year, card.exp_month) < (now.year, now.month)


def _refuse_declined(intent: OnSessionIntent) -> None:
    """``CardDeclined`` for an intent the bank declined (nothing was charged or saved)."""
    if intent.status == "declined":
        raise CardDeclined(intent.decline_code or "card_declined", intent.message)
