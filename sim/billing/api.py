"""The HTTP API (FastAPI): auto top-up settings, the billing overview, subscriptions, webhooks.

``create_app(...)`` takes the already-built services, so a deployment wires its own Redis, store,
Stripe gateway and notifier, and tests wire the emulator. Run it locally with
``python -m sim.billing.serve`` (see the README).

Authentication: ``Authorization: Bearer <token>``, resolved by :class:`Sessions`, a small in-memory
token table. A real deployment replaces it by overriding the :func:`current_user` dependency
(``app.dependency_overrides[current_user] = its_own``).

Buying a tier, saving a card and spending credits over HTTP are the routes of
:mod:`~sim.billing.api_money`, and the billing settings page (``GET /billing``) is
:mod:`~sim.billing.page`; :func:`build_app` adds both.

Step-up authentication: every request that moves money or changes what a user is charged (the
auto top-up settings, subscribing, cancelling, buying, replacing the card) carries a
``totp_code``, and a valid code is used
up once (:class:`TwoFactor`). Every check that does not need the code runs before it (the body,
the user, the card, subscription conflicts), so a refused change leaves the code unused and the
client can send it again. Using the code and applying the change are two steps (the change may
call Stripe, which no store transaction can include): if the change then fails for a passing
reason (store or cache unavailable, 503), the code stays used and the client retries with the
next one, 30 seconds later at most.

Errors are JSON ``{"error": {"code": ..., "message": ..., "field": ..., "allowed": [...]}}``
(``field`` and ``allowed`` when they apply), every 4xx included, with the status that names the
problem: 400 (bad webhook signature; a body that is not JSON within the limits), 401 (no or
unknown token), 403 (2FA missing, wrong or replayed code), 404 (unknown user or route), 405
(method; ``Allow``), 409 (conflict: no card, subscription exists), 413 (body too large), 415 (body
not JSON), 422 (invalid field; names it and what it allows), 429 (too many wrong codes;
``Retry-After``), 503 (cache or store unavailable: the change was not made, though a code it
carried may be used). Bad input never produces a 500.

Limits on the JSON bodies, checked before FastAPI parses them (:class:`_JsonBodyRoute`): at most
:data:`MAX_BODY_BYTES` (the largest valid body is under 200 bytes; 413 ``payload_too_large``,
without reading further), a JSON media type (415 ``unsupported_media_type``), then strict UTF-8
JSON (:func:`~sim.billing.json_limits.load_json`: no ``NaN``, no infinite numbers, integers within
Python's digit limit) with arrays and objects nested at most :data:`MAX_JSON_DEPTH` levels deep
(400 ``invalid_body``, syntax errors included). A readable body that does not fit the request's
schema is 422. The webhook reads its own body under its own limit.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from .claims import month_of
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
    TransientGatewayError,
    TwoFactorRequired,
    UnknownCurrency,
    UnknownTier,
    UnknownUser,
    WebhookPayloadError,
    WebhookSignatureError,
)
from .gateway import CheckoutGateway, PaymentGateway, SubscriptionGateway
from .json_limits import MalformedJson, load_json
from .metrics import CONTENT_TYPE, PrometheusMetrics
from .page import TEST_CARDS, add_page_routes
from .payments import WebhookVerifier
from .purchases import Checkout
from .service import BillingService
from .settings import AutoTopupSettings
from .subscriptions import Subscriptions
from .twofactor import TwoFactor
from .webhooks import MAX_PAYLOAD_BYTES, WebhookHandler

log = logging.getLogger(__name__)

#: Failures that pass: a webhook that met one is answered 503 and delivered again by Stripe.
TRANSIENT = (StoreUnavailable, CacheUnavailable, TransientGatewayError)


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
    TransientGatewayError: (503, "unavailable"),
}
#: What a client is told when Stripe did not answer (the gateway's own text names the library's
#: connection error, which is no business of the client's). Whether the code was used depends on
#: the step that met the outage, as for any 503 (see the module doc).
_GATEWAY_DOWN = "the payment provider did not answer; retry"
_FIELD_OF: dict[type[BillingError], str] = {UnknownTier: "credits", UnknownCurrency: "currency"}
#: What each auto top-up setting allows, as JSON values: ``InvalidSettings`` names the field and
#: says it in words only.
# Starlette's and FastAPI's own HTTP errors (unknown route, wrong method, an unreadable body
# FastAPI met first) -> error code.
_HTTP_CODES: dict[int, str] = {
    400: "invalid_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

#: The largest JSON body read, in bytes: the largest valid one is under 200.
MAX_BODY_BYTES = 8 * 1024
#: How deep arrays and objects may nest in a JSON body (the body's own object is level 1; every
#: valid body is flat).
MAX_JSON_DEPTH = 8

#: A TOTP code as the requests carry it.
TotpCode = Annotated[str, Field(pattern=r"^[0-9]{6}$", description="six digits from the 2FA app")]


class LowBalanceSettingsRequest(BaseModel):
    """``POST /v1/settings/auto-topup/low-balance``. Strict: ``"1000"`` is not a threshold.

    Ranges (thresholds, tiers, currencies, the monthly limit) are checked by
    :class:`AutoTopupSettings`, the one place that knows them, and reported as 422 naming the
    field and its allowed values.

    ``monthly_limit`` (credits per calendar month, UTC) may be left out: the saved limit is then
    kept, so that a client that does not know the field never lifts a user's limit by changing
    the threshold; ``null`` removes the limit.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    threshold: int
    amount: int
    currency: str
    monthly_limit: int | None = None
    totp_code: TotpCode

    def settings(self, saved: AutoTopupSettings) -> AutoTopupSettings:
        """The settings this body asks for, validated; the ``saved`` limit when it gives none."""
        given = "monthly_limit" in self.model_fields_set
        limit = self.monthly_limit if given else saved.monthly_limit
        return AutoTopupSettings(self.enabled, self.threshold, self.amount, self.currency, limit)


class SubscriptionRequest(BaseModel):
    """``POST /v1/subscriptions``: the tier (credits) and currency of a monthly top-up."""

    model_config = ConfigDict(extra="forbid", strict=True)

    credits: int
    currency: str
    totp_code: TotpCode


class CancelSubscriptionRequest(BaseModel):
    """``POST /v1/subscriptions/cancel``: only the code (cancelling changes what is charged)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    totp_code: TotpCode


def _error(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    headers = dict(headers or {})
    if "retry_after" in extra:
        headers["Retry-After"] = str(int(extra["retry_after"]) + 1)
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` (already read) first, then the connection's own."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _parse_json(body: bytes, content_type: str | None) -> Any:
    """``body`` as strict JSON within the limits, or the :class:`ApiError` that says why not."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (application/json)")
    try:
        return load_json(body, max_bytes=MAX_BODY_BYTES, max_depth=MAX_JSON_DEPTH)
    except MalformedJson as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None


class _ParsedRequest(Request):
    """A request whose body was already read and parsed under the limits: FastAPI's handler gets
    the same bytes and the same value, without reading or parsing again."""

    def __init__(self, request: Request, body: bytes, parsed: Any) -> None:
        super().__init__(request.scope, _replay(body, request.receive))
        self._parsed = parsed

    async def json(self) -> Any:
        """The body's JSON value, as parsed under the limits."""
        return self._parsed


class _JsonBodyRoute(APIRoute):
    """A route that reads its JSON body under the API's limits before FastAPI parses it.

    On its own, FastAPI reads a body of any size, parses any depth, and answers what it cannot
    parse (an overlong integer, invalid UTF-8, another media type) with a bare 400 or a 422 about
    bytes, outside the error envelope; here each is an :class:`ApiError`. Routes without a body
    model are left as they are (the webhook reads its own body, under its own limit).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind the body limits when the route has a body model."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_then_handle(request: Request) -> Response:
            body = await _bounded_body(request, MAX_BODY_BYTES)
            if body is None:
                raise ApiError(
                    413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes"
                )
            parsed = _parse_json(body, request.headers.get("content-type")) if body else None
            return await handler(_ParsedRequest(request, body, parsed))

        return read_then_handle


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` past ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The user of a request, from its bearer token (override this dependency in production)."""
    scheme, _, token = (authorization or "").partition(" ")
    user_id = request.app.state.sessions.user_for(token) if scheme.lower() == "bearer" else None
    if user_id is None:
        raise ApiError(401, "unauthenticated", "a valid 'Authorization: Bearer <token>' is needed")
    return user_id


User = Annotated[str, Depends(current_user)]


class Gateway(PaymentGateway, SubscriptionGateway, CheckoutGateway, Protocol):
    """A provider that charges cards, runs subscriptions and takes on-session payments
    (``StripeGateway``)."""


@dataclass(frozen=True, slots=True)
class BillingApp:
    """The app and the services behind it, as :func:`build_app` wired them."""

    app: FastAPI
    sessions: Sessions
    twofactor: TwoFactor
    subscriptions: Subscriptions
    webhooks: WebhookHandler
    checkout: Checkout | None = None


def build_app(
    billing: BillingService,
    gateway: Gateway,
    webhook_secret: str,
    *,
    service_token: str | None = None,
    page_cards: Mapping[str, str] | None = TEST_CARDS,
) -> BillingApp:
    """Wire 2FA, subscriptions, webhooks, purchases and card setups around ``billing`` and build
    the app, with the billing settings page (:mod:`~sim.billing.page`). ``service_token`` is the
    secret of ``POST /v1/usage`` (see :mod:`~sim.billing.spending`); without one, that endpoint
    refuses every call (401). ``page_cards`` are the test cards the page offers by name (``None``
    with live keys: the page then takes no card)."""
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
    checkout = Checkout(billing=billing, gateway=gateway)
    # The purchase, card and usage routes (sim/billing/api_money.py); imported here because that
    # module builds on this one's request types.
    from .api_money import add_money_routes

    add_money_routes(app, checkout=checkout, twofactor=twofactor, service_token=service_token)
    add_page_routes(app, cards=page_cards)
    return BillingApp(app, sessions, twofactor, subscriptions, webhooks, checkout)


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
    app.router.route_class = _JsonBodyRoute  # every route declared below
    app.state.sessions = sessions

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(BillingError)
    async def billing_error(_: Request, exc: BillingError) -> JSONResponse:
        status, code = next(
            (v for k, v in _STATUS.items() if isinstance(exc, k)), (500, "internal_error")
        )
        if status == 500:
            log.exception("unmapped billing error", exc_info=exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidSettings):
            extra = {"field": exc.field, "allowed": list(exc.allowed)}
        elif isinstance(exc, UnknownTier | UnknownCurrency):
            extra = {"field": _FIELD_OF[type(exc)], "allowed": list(exc.allowed)}
        elif isinstance(exc, TooManyAttempts):
            extra = {"retry_after": round(exc.retry_after)}
        message = _GATEWAY_DOWN if isinstance(exc, TransientGatewayError) else str(exc)
        return _error(status, code, message, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = ".".join(location) or "body"
        return _error(422, "invalid_field", f"{field}: {first.get('msg', 'invalid')}", field=field)

    @app.post("/v1/settings/auto-topup/low-balance")
    def save_low_balance_settings(body: LowBalanceSettingsRequest, user_id: User) -> dict[str, Any]:
        """Change auto top-up settings (the monthly limit included): validated, checked (2FA
        enrolled, a card to enable), then the code (used up once it passes), then saved (store,
        then cache)."""
        settings = body.settings(billing.store.get_user(user_id).settings)
        twofactor.require(user_id)
        billing.check_settings(user_id, settings)
        twofactor.verify(user_id, body.totp_code)
        billing.apply_settings(user_id, settings)
        return overview(user_id)

    @app.get("/v1/settings/billing")
    def billing_overview(user_id: User) -> dict[str, Any]:
        """Balance, settings, auto top-up state, card status and subscription."""
        return overview(user_id)

    @app.post("/v1/subscriptions", status_code=201)
    def create_subscription(body: SubscriptionRequest, user_id: User) -> dict[str, Any]:
        """Start a monthly top-up for a tier with a bonus, paid with the saved card: checked, then
        the code (used up once it passes), then created (the first invoice is charged at once)."""
        twofactor.require(user_id)
        subscriptions.check_create(user_id, body.credits, body.currency)
        twofactor.verify(user_id, body.totp_code)
        subscriptions.create(user_id, body.credits, body.currency)
        return overview(user_id)

    @app.post("/v1/subscriptions/cancel")
    def cancel_subscription(body: CancelSubscriptionRequest, user_id: User) -> dict[str, Any]:
        """Stop the monthly top-up at the end of the paid period: checked, then the code (used up
        once it passes), then cancelled."""
        twofactor.require(user_id)
        subscriptions.check_cancel(user_id)
        twofactor.verify(user_id, body.totp_code)
        subscriptions.cancel(user_id)
        return overview(user_id)

    @app.post("/v1/payments/webhook")
    async def stripe_webhook(
        request: Request, stripe_signature: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Stripe's deliveries (see :mod:`~sim.billing.webhooks`): 400 for a bad signature, 413
        for a body past ``MAX_PAYLOAD_BYTES``, 503 when the event could not be processed now
        (Stripe retries), 200 otherwise: applied, duplicate, ignored or dead-lettered."""
        payload = await _bounded_body(request, MAX_PAYLOAD_BYTES)
        if payload is None:
            return _error(413, "payload_too_large", f"at most {MAX_PAYLOAD_BYTES} bytes")
        try:
            outcome = await run_in_threadpool(webhooks.handle, payload, stripe_signature)
        except WebhookSignatureError:
            raise
        except TRANSIENT as exc:
            log.warning("webhook not processed now (%s); answering 503 so that Stripe retries", exc)
            return _error(503, "unavailable", "the event could not be processed now; retry")
        except Exception:
            log.exception("webhook processing failed; answering 500 so that Stripe retries")
            return _error(500, "processing_failed", "the event could not be processed; retry")
        return JSONResponse({"received": True, "outcome": outcome})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """The billing's Prometheus metrics, from the service's own registry (never the
        process-global one, so two apps in a process do not mix their counts); 404 when the
        service was given metrics that are not Prometheus's. No user data: every label is a
        bounded set of values (see ``docs/operations.md``)."""
        if not isinstance(billing.metrics, PrometheusMetrics):
            raise ApiError(404, "not_found", "this service exports no Prometheus metrics")
        return Response(billing.metrics.exposition(), media_type=CONTENT_TYPE)

    # The checks below run before a code is used, so that a change that is going to be refused
    # does not use it up. Each repeats the refusal of the call it precedes (which checks again:
    # the state may change in between), with the same error.

    def overview(user_id: str) -> dict[str, Any]:
        user = billing.store.get_user(user_id)
        live = subscriptions.live(user_id)
        month = month_of(billing.clock.now())
        used = billing.store.auto_topup_credits_in(user_id, month)
        limit = user.settings.monthly_limit
        return {
            "balance": billing.balance(user_id),
            "auto_topup": {
                "enabled": user.settings.enabled,
                "threshold": user.settings.threshold,
                "amount": user.settings.amount,
                "currency": user.settings.currency,
                "monthly_limit": limit,
                # The month (UTC) as the limit counts it: its credits so far, whether the next
                # top-up would pass the limit (it is then held), and when the count restarts.
                "month": {
                    "key": month.key,
                    "credits": used,
                    "limit_reached": limit is not None and used + user.settings.amount > limit,
                    "resets_at": month.end,
                },
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
