"""The Stripe adapter: the payment and subscription gateway ports on ``stripe.StripeClient``,
and webhook signature verification on the injected clock.

It never touches the module-global ``stripe.api_key``: a client is passed in (pointing at the
offline emulator in the simulation and tests, or at real Stripe test mode), and a live key is
refused outright, because nothing in this project may move real money.

Every charge is ``confirm=True, off_session=True`` with the saved card and the idempotency key of
the claimed attempt; Stripe's answers map to the core's result types:

=====================================  ==========================================
Stripe                                 core
=====================================  ==========================================
status ``succeeded``                   :class:`ChargeSucceeded`
402 ``authentication_required``,       :class:`ChargeNeedsAuthentication`
status ``requires_action``
402 card error (``decline_code``)      :class:`ChargeDeclined`
429, 5xx, connection errors            :class:`TransientGatewayError` (retry, same key)
=====================================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import stripe

from .claims import TOPUP_PURPOSE
from .clock import Clock
from .errors import (
    GatewayConfigurationError,
    SubscriptionError,
    TransientGatewayError,
    WebhookSignatureError,
)
from .gateway import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    SubscriptionInfo,
)
from .pricing import Money
from .subscriptions import subscription_info

API_KEY_ENV = "STRIPE_API_KEY"
_TRANSIENT = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)


def check_test_key(api_key: str) -> str:
    """Return ``api_key`` if it is a Stripe *test* key; refuse live and malformed keys."""
    if api_key.startswith(("sk_live_", "rk_live_")):
        raise GatewayConfigurationError("live Stripe keys are refused: use a sk_test_ key")
    if not api_key.startswith(("sk_test_", "rk_test_")):
        raise GatewayConfigurationError("a Stripe test key starts with sk_test_ or rk_test_")
    return api_key


class StripeGateway:
    """:class:`~sim.billing.gateway.PaymentGateway` and ``SubscriptionGateway`` on Stripe."""

    def __init__(
        self,
        api_key: str,
        *,
        http_client: stripe.HTTPClient | None = None,
        base_addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Build the client from a *test* key; pass ``http_client`` (e.g. the emulator's
        in-process transport) or ``base_addresses`` (e.g. the emulator's HTTP server) to aim it
        elsewhere than api.stripe.com."""
        self.client = stripe.StripeClient(
            check_test_key(api_key),
            http_client=http_client,
            base_addresses=dict(base_addresses or {}),  # type: ignore[arg-type]
            max_network_retries=0,  # retries are the billing core's, with the same key
        )
        self._prices: dict[tuple[int, str], str] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StripeGateway:
        """Real Stripe test mode from ``STRIPE_API_KEY`` (which must be a test key)."""
        api_key = environ.get(API_KEY_ENV)
        if not api_key:
            raise GatewayConfigurationError(f"{API_KEY_ENV} is not set")
        return cls(api_key)

    # ------------------------------------------------------------------ customers and cards

    def ensure_customer(self, user_id: str, email: str | None = None) -> str:
        """Create the Stripe customer of a user (idempotent per user) and return its id."""
        params: dict[str, Any] = {"metadata": {"user_id": user_id}}
        if email:
            params["email"] = email
        customer = self._call(
            self.client.v1.customers.create,
            params=params,
            options={"idempotency_key": f"customer:{user_id}"},
        )
        return str(customer.id)

    def attach_card(self, customer_id: str, payment_method_id: str) -> str:
        """Attach a card to the customer and make it the default; return the card's id."""
        card = self._call(
            self.client.v1.payment_methods.attach,
            payment_method_id,
            params={"customer": customer_id},
        )
        self._call(
            self.client.v1.customers.update,
            customer_id,
            params={"invoice_settings": {"default_payment_method": card.id}},
        )
        return str(card.id)

    def payment_method_usable(self, customer_id: str, payment_method_id: str) -> bool:
        """Whether the card exists and is attached to this customer."""
        try:
            card = self._call(self.client.v1.payment_methods.retrieve, payment_method_id)
        except stripe.InvalidRequestError:
            return False
        return card.customer == customer_id

    # ------------------------------------------------------------------ charges

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm an off-session PaymentIntent with the attempt's idempotency key."""
        params: dict[str, Any] = {
            "amount": request.price.amount_minor,
            "currency": request.price.currency,
            "customer": request.customer_id,
            "payment_method": request.payment_method_id,
            "confirm": True,
            "off_session": True,
            "metadata": dict(request.metadata),
        }
        try:
            intent = self._call(
                self.client.v1.payment_intents.create,
                params=params,
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as exc:
            error = exc.error
            intent_id = _id_of(error.payment_intent) if error is not None else None
            if exc.code == "authentication_required":
                return ChargeNeedsAuthentication(intent_id, exc.user_message or "")
            decline = error.decline_code if error is not None else None
            return ChargeDeclined(
                intent_id, exc.code or "card_declined", decline, exc.user_message or ""
            )
        if intent.status == "succeeded":
            received = intent.amount_received or intent.amount
            return ChargeSucceeded(
                intent.id, Money(received, intent.currency), intent.metadata.to_dict()
            )
        if intent.status == "requires_action":
            return ChargeNeedsAuthentication(intent.id, "the bank asks the customer to confirm")
        # processing or any other non-final status: the webhook will settle it; ask for a retry,
        # which replays this same intent under the same key.
        raise TransientGatewayError(f"payment intent {intent.id} is {intent.status}")

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The PaymentIntent that ``request`` created, read back by its customer and metadata
        (attempt and user), mapped like a confirm response; ``None`` when there is none."""
        page = self._call(
            self.client.v1.payment_intents.list,
            params={"customer": request.customer_id, "limit": 100},
        )
        wanted = {k: request.metadata.get(k) for k in ("user_id", "attempt", "purpose")}
        found = [
            intent for intent in page.auto_paging_iter()
            if all(intent.metadata.to_dict().get(k) == v for k, v in wanted.items())
        ]  # fmt: skip
        if not found:
            return None
        paid = [intent for intent in found if intent.status == "succeeded"]
        intent = paid[0] if paid else found[0]  # a success wins; else the newest
        if intent.status == "succeeded":
            received = Money(intent.amount_received or intent.amount, intent.currency)
            return ChargeSucceeded(intent.id, received, intent.metadata.to_dict())
        if intent.status == "requires_action":
            return ChargeNeedsAuthentication(intent.id, "the bank asks the customer to confirm")
        error = intent.last_payment_error
        if intent.status == "requires_payment_method" and error is not None:
            if error.code == "authentication_required":
                return ChargeNeedsAuthentication(intent.id, error.message or "")
            return ChargeDeclined(
                intent.id, error.code or "card_declined", error.decline_code, error.message or ""
            )
        raise TransientGatewayError(f"payment intent {intent.id} is {intent.status}")

    def succeeded_charges(self, customer_id: str) -> list[ChargeSucceeded]:
        """The customer's succeeded auto top-up PaymentIntents, oldest first."""
        page = self._call(
            self.client.v1.payment_intents.list, params={"customer": customer_id, "limit": 100}
        )
        found = []
        for intent in page.auto_paging_iter():
            metadata = intent.metadata.to_dict()
            if intent.status == "succeeded" and metadata.get("purpose") == TOPUP_PURPOSE:
                received = Money(intent.amount_received or intent.amount, intent.currency)
                found.append(ChargeSucceeded(intent.id, received, metadata))
        return found[::-1]

    # ------------------------------------------------------------------ subscriptions

    def create_subscription(
        self,
        customer_id: str,
        payment_method_id: str,
        price: Money,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> SubscriptionInfo:
        """Subscribe the customer monthly to ``price`` (one Price per tier and currency)."""
        price_id = self._monthly_price(int(metadata["credits"]), price)
        try:
            subscription = self._call(
                self.client.v1.subscriptions.create,
                params={
                    "customer": customer_id,
                    "items": [{"price": price_id}],
                    "default_payment_method": payment_method_id,
                    "off_session": True,
                    "payment_behavior": "error_if_incomplete",
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            # The first month is charged at once; a card that fails it creates no subscription.
            reason = (exc.error.decline_code if exc.error else None) or exc.code or "declined"
            raise SubscriptionError(f"the card was refused for the first month: {reason}") from exc
        return subscription_info(subscription.to_dict())

    def cancel_at_period_end(self, subscription_id: str) -> SubscriptionInfo:
        """Stop renewing at the end of the paid period."""
        subscription = self._call(
            self.client.v1.subscriptions.update,
            subscription_id,
            params={"cancel_at_period_end": True},
        )
        return subscription_info(subscription.to_dict())

    def _monthly_price(self, credits: int, price: Money) -> str:
        """The recurring Price of a tier in a currency, found by lookup key or created once."""
        key = (credits, price.currency)
        if key not in self._prices:
            lookup_key = f"topup-monthly-{credits}-{price.currency}"
            found = self._call(
                self.client.v1.prices.list, params={"lookup_keys": [lookup_key], "limit": 1}
            )
            if found.data:
                self._prices[key] = str(found.data[0].id)
            else:
                product = self._call(
                    self.client.v1.products.create,
                    params={"name": f"{credits} credits (monthly auto top-up)"},
                    options={"idempotency_key": f"product:{lookup_key}"},
                )
                created = self._call(
                    self.client.v1.prices.create,
                    params={
                        "currency": price.currency,
                        "unit_amount": price.amount_minor,
                        "recurring": {"interval": "month"},
                        "lookup_key": lookup_key,
                        "product": product.id,
                    },
                    options={"idempotency_key": f"price:{lookup_key}"},
                )
                self._prices[key] = str(created.id)
        return self._prices[key]

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the Stripe client; rate limits, 5xx and connection errors become transient."""
        try:
            return method(*args, **kwargs)
        except _TRANSIENT as exc:
            raise TransientGatewayError(f"{type(exc).__name__}: {exc.user_message or exc}") from exc


def _id_of(obj: Any) -> str | None:
    if obj is None:
        return None
    return obj if isinstance(obj, str) else str(obj.id)


class WebhookVerifier:
    """Checks ``Stripe-Signature`` with the stripe library's own verifier, and its timestamp
    against the injected clock (the library's check reads the wall clock, which is wrong under a
    virtual clock).

    It uses ``stripe.WebhookSignature.verify_header``, the check ``stripe.Webhook.construct_event``
    runs first, without building the library's ``Event`` object, which the handler would throw
    away (it parses the payload once, itself): that object cost a millisecond per delivery.
    """

    def __init__(self, secret: str, clock: Clock, tolerance: float = 300.0) -> None:
        self.secret = secret
        self.clock = clock
        self.tolerance = tolerance

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Raise ``WebhookSignatureError`` unless the payload is signed and recent."""
        try:
            # tolerance=None switches the library's wall-clock check off; ours follows below.
            stripe.WebhookSignature.verify_header(payload, signature, self.secret, tolerance=None)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError(f"bad webhook signature: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise WebhookSignatureError("the payload is not UTF-8 text") from exc
        assert signature is not None  # verify_header refuses a missing header
        # The library signs "<t>.<payload>" with t as text and, tolerance off, never parses t:
        # a sender holding the secret can sign any t, so it is parsed here, strictly.
        stamps = [p[2:] for p in signature.split(",") if p.startswith("t=")]
        if not stamps or not (stamps[0].isascii() and stamps[0].isdigit()):
            raise WebhookSignatureError("the Stripe-Signature timestamp is not a whole number")
        timestamp = int(stamps[0])
        if abs(self.clock.now() - timestamp) > self.tolerance:
            raise WebhookSignatureError(
                f"webhook timestamp {timestamp:.0f} is outside the {self.tolerance:.0f}s tolerance"
            )
