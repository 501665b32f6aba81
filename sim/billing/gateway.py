"""The payment gateway port: what the billing core asks of a payment provider.

The core never imports ``stripe``: it calls a :class:`PaymentGateway` and gets back one of the
result types below. ``sim.billing.payments`` adapts Stripe to this port; tests use small fakes.
A transient failure (timeout, 5xx, 429) is raised as
:class:`~sim.billing.errors.TransientGatewayError` so the caller can retry the same attempt with the
same idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .pricing import Money
from .webhook_events import InvoiceEvent


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """An off-session charge of a saved card, identified by an idempotency key."""

    customer_id: str
    payment_method_id: str
    price: Money
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChargeSucceeded:
    """The money was taken: credit the user exactly once for ``payment_intent_id``."""

    payment_intent_id: str
    price: Money
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChargeDeclined:
    """The card was declined; ``code``/``decline_code`` are Stripe's."""

    payment_intent_id: str | None
    code: str
    decline_code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class ChargeNeedsAuthentication:
    """The bank wants the customer present (SCA / 3-D Secure): nothing was charged."""

    payment_intent_id: str | None
    message: str = ""


ChargeResult = ChargeSucceeded | ChargeDeclined | ChargeNeedsAuthentication


class PaymentGateway(Protocol):
    """Charges saved cards off-session."""

    def payment_method_usable(self, customer_id: str, payment_method_id: str) -> bool:
        """Whether the saved payment method exists and belongs to the customer."""
        ...

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm a PaymentIntent; raise ``TransientGatewayError`` to be retried."""
        ...

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """What became of ``request`` at the provider, without sending it again: the result of
        its PaymentIntent (found by the customer and the request's metadata), or ``None`` when
        the provider holds none (nothing was charged). For requests older than the provider
        keeps idempotency keys; raises ``TransientGatewayError`` while it cannot tell."""
        ...

    def succeeded_charges(self, customer_id: str) -> list[ChargeSucceeded]:
        """Every succeeded auto top-up charge of the customer, as the provider records them
        (for reconciliation: money that moved, whatever answers were lost)."""
        ...


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A subscription as the provider sees it."""

    subscription_id: str
    status: str
    current_period_end: float | None
    cancel_at_period_end: bool


class SubscriptionGateway(Protocol):
    """Creates and cancels monthly subscriptions billed to a saved card."""

    def create_subscription(
        self,
        customer_id: str,
        payment_method_id: str,
        price: Money,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> SubscriptionInfo:
        """Subscribe the customer to a monthly charge of ``price``, paid with the saved card."""
        ...

    def cancel_at_period_end(self, subscription_id: str) -> SubscriptionInfo:
        """Stop renewing: the subscription ends when the paid period does."""
        ...

    def paid_invoices(self, customer_id: str) -> list[InvoiceEvent]:
        """The customer's paid invoices, oldest first, read as the webhook reads an invoice
        (what the reconcile checks against the ledger)."""
        ...


@dataclass(frozen=True, slots=True)
class OnSessionIntent:
    """A PaymentIntent (a purchase) or SetupIntent (a saved card) the customer is present for, as
    the provider answers it: one shape for both, since the client handles them the same way.

    ``status`` is ``succeeded``, ``requires_action`` (the bank asks the customer to authenticate:
    the client completes ``next_action`` with ``client_secret``, then the intent is confirmed),
    ``declined`` (``decline_code`` and ``message`` say why; nothing was charged or saved) or, for
    a state that is not final yet, the provider's own status. ``price`` is the money received by a
    succeeded PaymentIntent (what a purchase credits), else the amount asked; ``None`` for a
    SetupIntent.
    """

    intent_id: str
    status: str
    customer_id: str | None
    payment_method_id: str | None
    price: Money | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    next_action: Mapping[str, object] | None = None
    client_secret: str | None = None
    decline_code: str | None = None
    message: str = ""
    #: The PaymentIntent asked Stripe to keep its card for off-session use
    #: (``setup_future_usage``): only then may a paid purchase save the card.
    keeps_card: bool = False


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What the user may see of a saved card: never its number, only brand, last four digits and
    expiry, and the customer it is attached to (``None`` when it is not attached)."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer_id: str | None


class CheckoutGateway(Protocol):
    """On-session payments and card setups: the customer is present and may be asked to
    authenticate (3-D Secure)."""

    def ensure_customer(self, user_id: str, email: str | None = None) -> str:
        """The provider's customer of a user, created once."""
        ...

    def pay_on_session(
        self,
        customer_id: str,
        payment_method_id: str,
        price: Money,
        idempotency_key: str,
        metadata: Mapping[str, str],
        *,
        save_card: bool,
    ) -> OnSessionIntent:
        """Create and confirm a PaymentIntent with the customer present; ``save_card`` keeps the
        card for off-session charges (``setup_future_usage=off_session``)."""
        ...

    def confirm_payment(self, customer_id: str, intent_id: str) -> OnSessionIntent:
        """Confirm the customer's PaymentIntent after they authenticated; a finished one is
        answered as it is. ``GatewayRequestError`` if it is not this customer's."""
        ...

    def setup_card(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> OnSessionIntent:
        """Create and confirm a SetupIntent (``usage=off_session``) saving the card."""
        ...

    def confirm_setup(self, customer_id: str, setup_intent_id: str) -> OnSessionIntent:
        """Confirm the customer's SetupIntent after they authenticated (as ``confirm_payment``)."""
        ...

    def card_details(self, payment_method_id: str) -> CardDetails | None:
        """The card's brand, last four digits and expiry; ``None`` if the provider has none."""
        ...

    def succeeded_purchases(self, customer_id: str) -> list[ChargeSucceeded]:
        """Every succeeded purchase of the customer, as the provider records them, oldest
        first (for reconciliation: a purchase paid while its answer and webhooks were lost)."""
        ...
