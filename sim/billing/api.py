"""The HTTP API (FastAPI): auto top-up settings, the billing overview, subscriptions, webhooks.

``create_app(...)`` takes the already-built services, so a deployment wires its own Redis, store,
Stripe gateway and notifier, and tests wire the emulator. Run it locally with
``python -m sim.billing.serve`` (see the README).

Authentication: ``Authorization: Bearer <token>``, resolved by :class:`Sessions`, a small in-memory
token table. A real deployment replaces it by overriding the :func:`current_user` dependency
(``app.dependency_overrides[current_user] = its_own``).

Errors are JSON ``{"error": {"code": ..., "message": ..., "field": ...}}`` with the status that
names the problem: 400 (bad webhook signature), 401 (no or unknown token), 403 (2FA missing, wrong
or replayed code), 404 (unknown user), 409 (conflict: no card, subscription exists), 422 (invalid
field; names it and what it allows), 429 (too many wrong codes; ``Retry-After``), 503 (cache or
store unavailable: nothing was changed). Bad input never produces a 500.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .errors import (
    BillingError,
    CacheUnavailable,
    CodeReplayed,
    InvalidCode,
    InvalidSettings,
    PaymentMethodMissing,
    StoreUnavailable,
    SubscriptionError,
    TooManyAttempts,
    TwoFactorRequired,
    UnknownCurrency,
    UnknownTier,
    UnknownUser,
    WebhookPayloadError,
    WebhookSignatureError,
)
from .gateway import PaymentGateway, SubscriptionGateway
from .payments import WebhookVerifier
from .service import BillingService
from .settings import AutoTopupSettings
from .subscriptions import Subscriptions
from .twofactor import TwoFactor
from .webhooks import WebhookHandler

log = logging.getLogger(__name__)


class Sessions:
    """Bearer tokens mapped to user ids (in memory; swap :func:`current_user` in production)."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: str) -> str:
        """Return a new random token for ``user_id``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._users[token] = user_id
        return token

    def user_for(self, token: str) -> str | None:
        """The user a token belongs to, or ``None``."""
        with self._lock:
            return self._users.get(token)


class ApiError(Exception):
    """An error answered as JSON with a status code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


# Typed billing errors -> (status, code). Order matters only for subclasses (none overlap here).
_STATUS: dict[type[BillingError], tuple[int, str]] = {
    InvalidSettings: (422, "invalid_field"),
    UnknownTier: (422, "invalid_field"),
    UnknownCurrency: (422, "invalid_field"),
    TwoFactorRequired: (403, "two_factor_required"),
    InvalidCode: (403, "invalid_code"),
    CodeReplayed: (403, "code_replayed"),
    TooManyAttempts: (429, "too_many_attempts"),
    UnknownUser: (404, "unknown_user"),
    PaymentMethodMissing: (409, "payment_method_required"),
    SubscriptionError: (409, "subscription_conflict"),
    WebhookSignatureError: (400, "invalid_signature"),
    WebhookPayloadError: (400, "invalid_event"),
    StoreUnavailable: (503, "unavailable"),
    CacheUnavailable: (503, "unavailable"),
}
_FIELD_OF: dict[type[BillingError], str] = {UnknownTier: "credits", UnknownCurrency: "currency"}


class LowBalanceSettingsRequest(BaseModel):
    """``POST /v1/settings/auto-topup/low-balance``. Strict: ``"1000"`` is not a threshold.

    Ranges (thresholds, tiers, currencies) are checked by :class:`AutoTopupSettings`, the one
    place that knows them, and reported as 422 naming the field and its allowed values.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    threshold: int
    amount: int
    currency: str
    totp_code: str = Field(pattern=r"^[0-9]{6}$", description="six digits from the 2FA app")


class SubscriptionRequest(BaseModel):
    """``POST /v1/subscriptions``: the tier (credits) and currency of a monthly top-up."""

    model_config = ConfigDict(extra="forbid", strict=True)

    credits: int
    currency: str


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(int(extra["retry_after"]) + 1)
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The user of a request, from its bearer token (override this dependency in production)."""
    scheme, _, token = (authorization or "").partition(" ")
    user_id = request.app.state.sessions.user_for(token) if scheme.lower() == "bearer" else None
    if user_id is None:
        raise ApiError(401, "unauthenticated", "a valid 'Authorization: Bearer <token>' is needed")
    return user_id


User = Annotated[str, Depends(current_user)]


class Gateway(PaymentGateway, SubscriptionGateway, Protocol):
    """A provider that charges cards and runs subscriptions (``StripeGateway``)."""


@dataclass(frozen=True, slots=True)
class BillingApp:
    """The app and the services behind it, as :func:`build_app` wired them."""

    app: FastAPI
    sessions: Sessions
    twofactor: TwoFactor
    subscriptions: Subscriptions
    webhooks: WebhookHandler


def build_app(billing: BillingService, gateway: Gateway, webhook_secret: str) -> BillingApp:
    """Wire 2FA, subscriptions and webhooks around ``billing`` and build the app."""
    twofactor = TwoFactor(store=billing.store, vault=billing.vault, clock=billing.clock)
    subscriptions = Subscriptions(billing=billing, gateway=gateway)
    verifier = WebhookVerifier(webhook_secret, billing.clock)
    webhooks = WebhookHandler(billing=billing, subscriptions=subscriptions, verifier=verifier)
    sessions = Sessions()
    app = create_app(
        billing=billing,
        twofactor=twofactor,
        subscriptions=subscriptions,
        webhooks=webhooks,
        sessions=sessions,
    )
    return BillingApp(app, sessions, twofactor, subscriptions, webhooks)


def create_app(
    *,
    billing: BillingService,
    twofactor: TwoFactor,
    subscriptions: Subscriptions,
    webhooks: WebhookHandler,
    sessions: Sessions,
) -> FastAPI:
    """Build the API around the given services."""
    app = FastAPI(title="topup-sim billing API", version="1")
    app.state.sessions = sessions

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(BillingError)
    async def billing_error(_: Request, exc: BillingError) -> JSONResponse:
        status, code = next(
            (v for k, v in _STATUS.items() if isinstance(exc, k)), (500, "internal_error")
        )
        if status == 500:
            log.exception("unmapped billing error", exc_info=exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidSettings):
            extra = {"field": exc.field, "allowed": exc.allowed}
        elif type(exc) in _FIELD_OF:
            extra = {"field": _FIELD_OF[type(exc)]}
        elif isinstance(exc, TooManyAttempts):
            extra = {"retry_after": round(exc.retry_after)}
        return _error(status, code, str(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = ".".join(location) or "body"
        return _error(422, "invalid_field", f"{field}: {first.get('msg', 'invalid')}", field=field)

    @app.post("/v1/settings/auto-topup/low-balance")
    def save_low_balance_settings(body: LowBalanceSettingsRequest, user_id: User) -> dict[str, Any]:
        """Change auto top-up settings: validated, then 2FA, then saved (store, then cache)."""
        settings = AutoTopupSettings(body.enabled, body.threshold, body.amount, body.currency)
        twofactor.verify(user_id, body.totp_code)
        billing.update_settings(user_id, settings)
        return overview(user_id)

    @app.get("/v1/settings/billing")
    def billing_overview(user_id: User) -> dict[str, Any]:
        """Balance, settings, auto top-up state, card status and subscription."""
        return overview(user_id)

    @app.post("/v1/subscriptions", status_code=201)
    def create_subscription(body: SubscriptionRequest, user_id: User) -> dict[str, Any]:
        """Start a monthly top-up for a tier with a bonus, paid with the saved card."""
        subscriptions.create(user_id, body.credits, body.currency)
        return overview(user_id)

    @app.post("/v1/subscriptions/cancel")
    def cancel_subscription(user_id: User) -> dict[str, Any]:
        """Stop the monthly top-up at the end of the paid period."""
        subscriptions.cancel(user_id)
        return overview(user_id)

    @app.post("/v1/payments/webhook")
    async def stripe_webhook(
        request: Request, stripe_signature: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Stripe's deliveries: 400 for a bad signature or a malformed event, 500 when processing
        failed (Stripe retries), 200 otherwise, duplicates included."""
        payload = await request.body()
        try:
            outcome = webhooks.handle(payload, stripe_signature)
        except (WebhookSignatureError, WebhookPayloadError):
            raise
        except Exception:
            log.exception("webhook processing failed; answering 500 so that Stripe retries")
            return _error(500, "processing_failed", "the event could not be processed; retry")
        return JSONResponse({"received": True, "outcome": outcome})

    def overview(user_id: str) -> dict[str, Any]:
        user = billing.store.get_user(user_id)
        live = subscriptions.live(user_id)
        return {
            "balance": billing.balance(user_id),
            "auto_topup": {
                "enabled": user.settings.enabled,
                "threshold": user.settings.threshold,
                "amount": user.settings.amount,
                "currency": user.settings.currency,
                "state": user.state,
                "consecutive_failures": user.consecutive_failures,
                "last_triggered": billing.last_triggered(user_id),
            },
            "payment_method": {"saved": user.encrypted_payment_method_id is not None},
            "two_factor_enabled": user.encrypted_tfa_secret is not None,
            "subscription": None
            if live is None
            else {
                "id": live.subscription_id,
                "credits": live.credits,
                "currency": live.currency,
                "status": live.status,
                "current_period_end": live.current_period_end,
                "cancel_at_period_end": live.cancel_at_period_end,
            },
        }

    return app
