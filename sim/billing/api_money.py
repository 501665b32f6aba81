"""The API's routes where money moves with the user present, and the usage endpoint.

- ``POST /v1/purchases``: buy a tier with a card (on-session; 2FA). Answers the PaymentIntent's
  ``status``: ``succeeded`` (credited), or ``requires_action`` with Stripe's ``next_action`` and
  ``client_secret`` for Stripe.js (3-D Secure); a declined card is 402 ``card_declined``.
- ``POST /v1/purchases/{id}/confirm``: after the customer authenticated, confirm and credit. No
  code: it completes the payment the code already allowed, for the amount fixed then, and only a
  purchase of the same user is found (another's id is 404 ``unknown_intent``).
- ``POST /v1/payment-method``: save or replace the card without buying (a SetupIntent; 2FA), and
  ``POST /v1/payment-method/setups/{id}/confirm`` after 3-D Secure.
- ``GET /v1/payment-method``: the saved card's brand, last four digits, expiry and whether auto
  top-up can use it.
- ``POST /v1/usage``: spend credits, called by the product's backend with a service token and an
  ``Idempotency-Key`` (see :mod:`~sim.billing.spending`); not a user route.

Every check that needs no code runs before the code is used (the body, the user, the tier), as on
the settings route. A payment method Stripe refuses outright (unknown id, another customer's) is
422 naming ``payment_method``; Stripe unreachable is 503, with nothing credited or saved (a payment
that went through anyway is credited by its webhook; the app's handler answers it, as for every
route). Routes are added by :func:`add_money_routes`
so that the existing routes of :mod:`~sim.billing.api` stay as they are.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .api import ApiError, TotpCode, User
from .errors import (
    CardDeclined,
    GatewayRequestError,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidAmount,
    UnknownIntent,
)
from .gateway import OnSessionIntent
from .purchases import CardStatus, Checkout, CheckoutResult
from .spending import MAX_CREDITS_PER_REQUEST
from .twofactor import TwoFactor

#: A Stripe PaymentMethod id as a client sends it (``pm_...``, test aliases included).
PaymentMethodId = Annotated[
    str, Field(pattern=r"^pm_[A-Za-z0-9_]{1,100}$", description="a Stripe PaymentMethod id")
]
#: An ``Idempotency-Key`` header: printable ASCII without spaces, at most 255 characters.
_KEY_PATTERN = r"^[!-~]{1,255}$"
_PI_ID = r"^pi_[A-Za-z0-9]{1,100}$"
_SETI_ID = r"^seti_[A-Za-z0-9]{1,100}$"


class PurchaseRequest(BaseModel):
    """``POST /v1/purchases``: the tier (credits), its currency, the card, and the code.
    ``save_card`` keeps the card as the user's saved card for auto top-up once paid."""

    model_config = ConfigDict(extra="forbid", strict=True)

    credits: int
    currency: str
    payment_method: PaymentMethodId
    save_card: bool = False
    totp_code: TotpCode


class CardSetupRequest(BaseModel):
    """``POST /v1/payment-method``: the card to save (replacing the saved one) and the code."""

    model_config = ConfigDict(extra="forbid", strict=True)

    payment_method: PaymentMethodId
    totp_code: TotpCode


class UsageRequest(BaseModel):
    """``POST /v1/usage``: whose credits, and how many (1 to the per-request cap)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")]
    credits: Annotated[int, Field(ge=1, le=MAX_CREDITS_PER_REQUEST)]


@contextmanager
def _gateway_errors() -> Iterator[None]:
    """The typed errors of a call that reaches Stripe, as the API's answers (Stripe not
    answering, ``TransientGatewayError``, is the app's own 503 for every route: ``api._STATUS``)."""
    try:
        yield
    except CardDeclined as exc:
        raise ApiError(402, "card_declined", str(exc), decline_code=exc.decline_code) from None
    except UnknownIntent as exc:
        raise ApiError(404, "unknown_intent", str(exc)) from None
    except GatewayRequestError:
        raise ApiError(
            422,
            "invalid_field",
            "payment_method: Stripe refused this payment method",
            field="payment_method",
        ) from None


def _intent(intent: OnSessionIntent) -> dict[str, Any]:
    """What the client needs of an intent: its id and status, and for 3-D Secure the
    ``next_action`` and ``client_secret`` Stripe.js handles."""
    waiting = intent.status == "requires_action"
    return {
        "id": intent.intent_id,
        "status": intent.status,
        "next_action": intent.next_action if waiting else None,
        "client_secret": intent.client_secret if waiting else None,
    }


def _card(status: CardStatus) -> dict[str, Any]:
    details = status.details
    return {
        "saved": status.saved,
        "usable": status.usable,
        "brand": None if details is None else details.brand,
        "last4": None if details is None else details.last4,
        "exp_month": None if details is None else details.exp_month,
        "exp_year": None if details is None else details.exp_year,
    }


def add_money_routes(
    app: FastAPI,
    *,
    checkout: Checkout,
    twofactor: TwoFactor,
    service_token: str | None,
) -> None:
    """Add the purchase, card and usage routes to ``app`` (built by ``create_app``)."""
    billing = checkout.billing

    def purchase_answer(user_id: str, done: CheckoutResult) -> dict[str, Any]:
        intent = done.intent
        metadata = intent.metadata
        return {
            "purchase": {
                **_intent(intent),
                "credits": int(metadata["credits"]) if "credits" in metadata else None,
                "amount": None if intent.price is None else intent.price.amount_minor,
                "currency": None if intent.price is None else intent.price.currency,
                "credited": done.credited,
            },
            "card_saved": done.card_saved,
            "balance": billing.balance(user_id),
        }

    def setup_answer(user_id: str, done: CheckoutResult) -> dict[str, Any]:
        return {"setup": _intent(done.intent), "card": _card(checkout.card_status(user_id))}

    @app.post("/v1/purchases")
    def buy_credits(
        body: PurchaseRequest,
        user_id: User,
        idempotency_key: Annotated[str | None, Header(pattern=_KEY_PATTERN)] = None,
    ) -> dict[str, Any]:
        """Buy a tier on-session: checked (2FA enrolled, tier, currency), then the code (used
        up once it passes), then charged; credited now when it succeeded, else after confirm
        or by the webhook, once either way."""
        twofactor.require(user_id)
        checkout.check_buy(user_id, body.credits, body.currency)
        twofactor.verify(user_id, body.totp_code)
        with _gateway_errors():
            done = checkout.buy(
                user_id,
                body.credits,
                body.currency,
                body.payment_method,
                save_card=body.save_card,
                request_key=idempotency_key,
            )
        return purchase_answer(user_id, done)

    @app.post("/v1/purchases/{intent_id}/confirm")
    def confirm_purchase(
        intent_id: Annotated[str, Path(pattern=_PI_ID)], user_id: User
    ) -> dict[str, Any]:
        """Confirm a purchase after the customer authenticated (3-D Secure) and credit it."""
        with _gateway_errors():
            done = checkout.confirm(user_id, intent_id)
        return purchase_answer(user_id, done)

    @app.post("/v1/payment-method")
    def save_card(body: CardSetupRequest, user_id: User) -> dict[str, Any]:
        """Save or replace the card without buying: 2FA enrolled, then the code, then a
        SetupIntent; saved now unless the bank asks the customer to authenticate."""
        twofactor.require(user_id)
        billing.store.get_user(user_id)
        twofactor.verify(user_id, body.totp_code)
        with _gateway_errors():
            done = checkout.setup_card(user_id, body.payment_method)
        return setup_answer(user_id, done)

    @app.post("/v1/payment-method/setups/{setup_intent_id}/confirm")
    def confirm_card(
        setup_intent_id: Annotated[str, Path(pattern=_SETI_ID)], user_id: User
    ) -> dict[str, Any]:
        """Confirm a card setup after the customer authenticated, and save the card."""
        with _gateway_errors():
            done = checkout.confirm_setup(user_id, setup_intent_id)
        return setup_answer(user_id, done)

    @app.get("/v1/payment-method")
    def card_status(user_id: User) -> dict[str, Any]:
        """The saved card: brand, last four digits, expiry, and whether it is usable."""
        with _gateway_errors():
            return _card(checkout.card_status(user_id))

    @app.post("/v1/usage")
    def spend_credits(
        body: UsageRequest,
        x_service_token: Annotated[str | None, Header()] = None,
        idempotency_key: Annotated[str | None, Header(pattern=_KEY_PATTERN)] = None,
    ) -> JSONResponse:
        """Spend a user's credits (the product backend's call): the service token, then the
        key (a retry replays the first answer), then the deduction."""
        given = (x_service_token or "").encode()
        if service_token is None or not hmac.compare_digest(given, service_token.encode()):
            raise ApiError(401, "unauthenticated", "a valid 'X-Service-Token' is needed")
        if idempotency_key is None:
            raise ApiError(
                422, "invalid_field", "Idempotency-Key: the header is required",
                field="Idempotency-Key",
            )  # fmt: skip
        try:
            done = billing.deduct_credits(body.user_id, body.credits, request_key=idempotency_key)
        except IdempotencyKeyReused as exc:
            raise ApiError(422, "idempotency_key_reused", str(exc)) from None
        except InsufficientCredits as exc:
            raise ApiError(402, "insufficient_credits", str(exc), balance=exc.balance) from None
        except InvalidAmount as exc:  # unreachable past the model's bounds; kept typed anyway
            raise ApiError(422, "invalid_field", str(exc), field="credits") from None
        answer = {
            "user_id": done.user_id,
            "credits": done.credits,
            "balance": done.balance,
            "auto_topup": done.trigger.value,
        }
        replayed = {"Idempotent-Replayed": "true"} if done.replayed else None
        return JSONResponse(answer, headers=replayed)
