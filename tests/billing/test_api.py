"""The HTTP API with FastAPI's TestClient: status codes, field-naming errors, nothing stored."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.types import Message

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
)
from sim.billing.api import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    ApiError,
    BillingApp,
    _ParsedRequest,
    _replay,
    build_app,
)
from sim.billing.payments import StripeGateway
from sim.billing.twofactor import TwoFactor
from sim.stripe_emulator import Delivery, Faults, StripeEmulator

from .conftest import BillingFactory, FlakyStore

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#: 2026-02-01T00:00:00Z: the first month change after the virtual clock's start.
FEB_1 = 1_769_904_000.0
SETTINGS = {"enabled": True, "threshold": 1000, "amount": 10000, "currency": "eur"}


class Api:
    """A test client logged in as u1, and the services behind it."""

    def __init__(
        self,
        client: TestClient,
        token: str,
        billing: BillingService,
        clock: ManualClock,
        emulator: StripeEmulator,
    ) -> None:
        self.client, self.billing, self.clock, self.emulator = client, billing, clock, emulator
        self.auth = {"Authorization": f"Bearer {token}"}

    def code(self, steps: int = 0) -> str:
        """The TOTP code of the current step (or ``steps`` away)."""
        return pyotp.TOTP(SECRET).at(self.clock.now() + 30 * steps)

    def next_code(self) -> str:
        """Wait for the next 30-second step and return its code (each code is accepted once)."""
        self.clock.advance(30)
        return self.code()

    def wrong_code(self) -> str:
        """A six-digit code that is none of the three valid now."""
        valid = {self.code(steps) for steps in (-1, 0, 1)}
        return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)

    def subscribe(self, credits: int = 10_000, currency: str = "eur", **changes: Any) -> Any:
        """POST a subscription with the current code (unless changed)."""
        body = {"credits": credits, "currency": currency, "totp_code": self.code(), **changes}
        body = {k: v for k, v in body.items() if v is not ...}
        return self.client.post("/v1/subscriptions", json=body, headers=self.auth)

    def cancel(self, **changes: Any) -> Any:
        """POST a cancellation with the current code (unless changed)."""
        body = {"totp_code": self.code(), **changes}
        body = {k: v for k, v in body.items() if v is not ...}
        return self.client.post("/v1/subscriptions/cancel", json=body, headers=self.auth)

    def login(self, user_id: str) -> dict[str, str]:
        """Authorization headers of a new session for ``user_id``."""
        token = self.client.app.state.sessions.issue(user_id)  # type: ignore[attr-defined]
        return {"Authorization": f"Bearer {token}"}

    def save(self, **changes: Any) -> Any:
        """POST the settings (a valid body unless changed) with the current code."""
        body = {**SETTINGS, "totp_code": self.code(), **changes}
        body = {k: v for k, v in body.items() if v is not ...}
        return self.client.post("/v1/settings/auto-topup/low-balance", json=body, headers=self.auth)

    def deliver(self, deliveries: list[Delivery]) -> list[int]:
        """POST deliveries to the webhook endpoint, signed now; return the status codes."""
        now = int(self.clock.now())
        return [
            self.client.post(
                "/v1/payments/webhook", content=d.payload, headers=d.signed_headers(now)
            ).status_code
            for d in deliveries
        ]


def _wired_with_u1(
    make_billing: BillingFactory, stripe_gateway: StripeGateway, emulator: StripeEmulator
) -> tuple[BillingService, BillingApp]:
    """The app wired to the emulator's webhook endpoint; u1 has a Visa card and 1,500 credits."""
    billing = make_billing(payment_gateway=stripe_gateway)
    emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
    wired = build_app(billing, stripe_gateway, emulator.webhook_secret)
    billing.create_user("u1", balance=1_500)
    customer = stripe_gateway.ensure_customer("u1")
    billing.save_payment_method(
        "u1", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    return billing, wired


@pytest.fixture
def api(
    make_billing: BillingFactory,
    stripe_gateway: StripeGateway,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
) -> Iterator[Api]:
    """The app wired to the emulator; u1 has a card, 2FA and 1,500 credits."""
    billing, wired = _wired_with_u1(make_billing, stripe_gateway, emulator)
    wired.twofactor.enable("u1", SECRET)
    with TestClient(wired.app, raise_server_exceptions=False) as client:
        yield Api(client, wired.sessions.issue("u1"), billing, clock, emulator)


def _unchanged(api: Api) -> None:
    user = api.billing.store.get_user("u1")
    assert user.settings == AutoTopupSettings()
    cached = api.billing.cache.get("u1")
    assert cached is None or not cached.enabled


def test_valid_change_is_saved_and_shown(api: Api) -> None:
    """A valid body with the right code saves the settings; the overview shows them."""
    response = api.save(threshold=2000, amount=21000, currency="jpy")
    assert response.status_code == 200, response.text
    shown = response.json()["auto_topup"]
    assert (shown["enabled"], shown["threshold"], shown["amount"], shown["currency"]) == (
        True, 2000, 21000, "jpy",
    )  # fmt: skip
    overview = api.client.get("/v1/settings/billing", headers=api.auth).json()
    assert overview["auto_topup"] == shown and overview["two_factor_enabled"]


def test_enabling_under_the_threshold_tops_up_at_once(api: Api, tasks: QueueRunner) -> None:
    """With 1,500 credits, choosing a 2,000 threshold starts a top-up right away."""
    assert api.save(threshold=2000).status_code == 200
    tasks.run_pending()
    assert api.billing.balance("u1") == 11_500


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"threshold": 1500}, "threshold"),
        ({"threshold": "1000"}, "threshold"),
        ({"threshold": 1000.0}, "threshold"),
        ({"amount": 5000}, "amount"),
        ({"amount": 10**30}, "amount"),
        ({"currency": "gbp"}, "currency"),
        ({"currency": "€"}, "currency"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({"totp_code": "12345"}, "totp_code"),
        ({"totp_code": "12a456"}, "totp_code"),
        ({"totp_code": 123456}, "totp_code"),
        ({"threshold": ...}, "threshold"),
        ({"totp_code": ...}, "totp_code"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_field_is_422_naming_it_and_nothing_is_stored(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    """Each invalid value, wrong type, missing or unknown field: 422 naming the field."""
    response = api.save(**changes)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    _unchanged(api)


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b'"text"', b"null"])
def test_body_that_is_not_an_object_is_422(api: Api, body: bytes) -> None:
    """A body that is JSON but not an object (or missing) is refused as a whole."""
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=body,
        headers={**api.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422
    _unchanged(api)


def test_rejection_names_the_allowed_values(api: Api) -> None:
    """The 422 for a range error lists what the field allows."""
    error = api.save(amount=5000).json()["error"]
    assert error["allowed"] == [1000, 10000, 21000, 54000]
    assert api.save(threshold=1500).json()["error"]["allowed"] == [500, 1000, 2000, 5000]
    assert api.save(currency="gbp").json()["error"]["allowed"] == ["eur", "usd", "jpy"]


def test_wrong_code_is_403(api: Api) -> None:
    """A wrong code is refused and nothing is stored."""
    response = api.save(totp_code="000000" if api.code() != "000000" else "111111")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "invalid_code")
    _unchanged(api)


def test_replayed_code_is_403(api: Api) -> None:
    """The same code a second time is refused, even with other settings."""
    code = api.code()
    assert api.save(totp_code=code).status_code == 200
    response = api.save(totp_code=code, threshold=5000)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "code_replayed")
    assert api.billing.store.get_user("u1").settings.threshold == 1000


def test_sixth_wrong_code_in_fifteen_minutes_is_429(api: Api) -> None:
    """Five wrong codes lock changes: the sixth attempt is 429, even with the right code."""
    wrong = "000000" if api.code() != "000000" else "111111"
    for _ in range(5):
        assert api.save(totp_code=wrong).status_code == 403
        api.clock.advance(60)
    response = api.save()
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    _unchanged(api)


def test_two_factor_not_enabled_is_403(api: Api) -> None:
    """A user without 2FA cannot change settings."""
    api.billing.create_user("u2")
    token = api.client.app.state.sessions.issue("u2")  # type: ignore[attr-defined]
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", json={**SETTINGS, "totp_code": "123456"},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert (response.status_code, response.json()["error"]["code"]) == (403, "two_factor_required")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dTE6cHc=", "Bearer"])
def test_missing_or_unknown_token_is_401(api: Api, header: str | None) -> None:
    """No session, no access."""
    headers = {} if header is None else {"Authorization": header}
    assert api.client.get("/v1/settings/billing", headers=headers).status_code == 401


def test_subscription_create_cancel_and_conflicts(api: Api) -> None:
    """Create is 201, a second is 409, the bonus-less tier 409, an unknown tier or currency 422
    naming the field and what it allows; cancel 200. The refusals all leave the code unused."""
    bad_tier = api.subscribe(5000).json()["error"]
    assert (bad_tier["code"], bad_tier["field"]) == ("invalid_field", "credits")
    assert bad_tier["allowed"] == [1000, 10000, 21000, 54000]
    bad_currency = api.subscribe(21000, "gbp").json()["error"]
    assert (bad_currency["field"], bad_currency["allowed"]) == ("currency", ["eur", "usd", "jpy"])
    no_bonus = api.subscribe(1000)
    assert (no_bonus.status_code, no_bonus.json()["error"]["code"]) == (
        409, "subscription_conflict",
    )  # fmt: skip
    created = api.subscribe(21000)
    assert created.status_code == 201, created.text
    assert created.json()["subscription"]["status"] == "active"
    code = api.next_code()
    again = api.subscribe(10000, totp_code=code)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "subscription_conflict")
    cancelled = api.cancel(totp_code=code)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["subscription"]["cancel_at_period_end"] is True


def test_renewals_through_the_endpoint_credit_once_per_invoice(api: Api) -> None:
    """Two renewals by advancing the emulator's clock, every delivery 3x out of order: 200s and
    exactly credits + bonus per invoice."""
    assert api.subscribe().status_code == 201
    shuffle = random.Random(11)
    for _ in range(3):
        deliveries = api.emulator.due_deliveries() * 3
        shuffle.shuffle(deliveries)
        assert set(api.deliver(deliveries)) == {200}
        period_end = api.client.get("/v1/settings/billing", headers=api.auth).json()
        api.clock.set(period_end["subscription"]["current_period_end"] + 60)
    assert api.billing.balance("u1") == 1_500 + 3 * 10_500


def test_forged_or_stale_signature_is_400_and_changes_nothing(api: Api) -> None:
    """Tampered payload, forged signature, or a signature from 10 minutes ago: 400."""
    assert api.subscribe().status_code == 201
    paid = next(d for d in api.emulator.due_deliveries() if d.event_type == "invoice.paid")
    now = int(api.clock.now())
    post = api.client.post
    tampered = post("/v1/payments/webhook", content=paid.payload.replace(b"1000", b"9000"),
                    headers=paid.signed_headers(now))  # fmt: skip
    stale = post(
        "/v1/payments/webhook", content=paid.payload, headers=paid.signed_headers(now - 600)
    )
    unsigned = post("/v1/payments/webhook", content=paid.payload)
    assert [r.status_code for r in (tampered, stale, unsigned)] == [400, 400, 400]
    assert api.billing.balance("u1") == 1_500


def test_handler_failure_is_5xx_and_the_redelivery_credits_once(
    api: Api, store: FlakyStore
) -> None:
    """A store outage while crediting answers 503; Stripe's retry then credits exactly once."""
    assert api.subscribe().status_code == 201
    paid = [d for d in api.emulator.due_deliveries() if d.event_type == "invoice.paid"]
    store.failing.add("credit")
    assert api.deliver(paid) == [503]
    store.failing.clear()
    assert api.deliver(paid * 2) == [200, 200]
    assert api.billing.balance("u1") == 1_500 + 10_500


# ---------------------------------------------------------------------- 2FA under load


def _at_once(count: int, request: Callable[[], Any]) -> list[Any]:
    """Send ``count`` requests at once, one thread each; their responses."""
    barrier = threading.Barrier(count)
    responses: list[Any] = []

    def send() -> None:
        barrier.wait()
        responses.append(request())

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def _codes(responses: list[Any]) -> Counter[tuple[int, str]]:
    return Counter(
        (r.status_code, "ok" if r.status_code < 300 else r.json()["error"]["code"])
        for r in responses
    )


def test_burst_of_wrong_codes_is_locked_after_five(api: Api) -> None:
    """Twenty wrong codes at once: five are judged (403), the other fifteen are 429."""
    wrong = api.wrong_code()
    responses = _at_once(20, lambda: api.save(totp_code=wrong))
    assert _codes(responses) == Counter({(403, "invalid_code"): 5, (429, "too_many_attempts"): 15})
    _unchanged(api)


def test_double_submitted_code_does_not_lock_the_user(api: Api) -> None:
    """Ten copies of one valid request: one 200, nine code_replayed, and the replays are not
    wrong guesses, so the next step's code still passes."""
    code = api.code()
    responses = _at_once(10, lambda: api.save(totp_code=code))
    assert _codes(responses) == Counter({(200, "ok"): 1, (403, "code_replayed"): 9})
    response = api.save(totp_code=api.next_code(), threshold=5000)
    assert response.status_code == 200, response.text


def test_wrong_codes_count_together_across_endpoints(api: Api) -> None:
    """One lockout per user: wrong codes sent to the subscription endpoints lock the settings."""
    for _ in range(3):
        assert api.subscribe(totp_code=api.wrong_code()).status_code == 403
    for _ in range(2):
        assert api.cancel(totp_code=api.wrong_code()).status_code == 409  # nothing to cancel
        assert api.subscribe(totp_code=api.wrong_code()).status_code == 403
    response = api.save()
    assert (response.status_code, response.json()["error"]["code"]) == (429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 0


# ---------------------------------------------------------------------- a refusal keeps the code


def test_refused_settings_change_keeps_the_code(api: Api, stripe_gateway: StripeGateway) -> None:
    """Enabling without a card is 409 and does not use the code: once the card is saved, the
    same code enables."""
    api.billing.create_user("u2")
    TwoFactor(store=api.billing.store, vault=api.billing.vault, clock=api.clock).enable(
        "u2", SECRET
    )
    headers = api.login("u2")
    body = {**SETTINGS, "totp_code": api.code()}
    post = api.client.post
    refused = post("/v1/settings/auto-topup/low-balance", json=body, headers=headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        409, "payment_method_required",
    )  # fmt: skip
    customer = stripe_gateway.ensure_customer("u2")
    api.billing.save_payment_method(
        "u2", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    saved = post("/v1/settings/auto-topup/low-balance", json=body, headers=headers)
    assert saved.status_code == 200, saved.text
    assert api.billing.store.get_user("u2").settings.enabled


def test_refused_subscription_keeps_the_code(api: Api, stripe_gateway: StripeGateway) -> None:
    """No card (409), then the card: the same code subscribes."""
    api.billing.create_user("u2")
    TwoFactor(store=api.billing.store, vault=api.billing.vault, clock=api.clock).enable(
        "u2", SECRET
    )
    headers = api.login("u2")
    body = {"credits": 10000, "currency": "eur", "totp_code": api.code()}
    refused = api.client.post("/v1/subscriptions", json=body, headers=headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        409, "payment_method_required",
    )  # fmt: skip
    customer = stripe_gateway.ensure_customer("u2")
    api.billing.save_payment_method(
        "u2", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    created = api.client.post("/v1/subscriptions", json=body, headers=headers)
    assert created.status_code == 201, created.text


def test_cancel_with_nothing_to_cancel_keeps_the_code(api: Api) -> None:
    """A 409 cancel does not use the code: the same code then subscribes."""
    code = api.code()
    refused = api.cancel(totp_code=code)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "subscription_conflict")
    assert api.subscribe(totp_code=code).status_code == 201


def test_failure_after_the_code_was_accepted_uses_it(api: Api, store: FlakyStore) -> None:
    """A store outage after the code was accepted is 503 and the code stays used (the change
    is retried with the next code): accepting a code and applying the change are two writes."""
    store.failing.add("save_settings")
    assert api.save().status_code == 503
    store.failing.clear()
    assert api.save().json()["error"]["code"] == "code_replayed"
    assert api.save(totp_code=api.next_code()).status_code == 200


# ---------------------------------------------------------------------- step-up on subscriptions


GATEWAY_DOWN = "the payment provider did not answer; retry"


def test_stripe_down_is_503_on_the_settings_and_subscription_routes(api: Api) -> None:
    """Stripe answers nothing but 500s: enabling auto top-up (the card is checked at Stripe
    first) and subscribing are 503 ``unavailable`` with a message that names no library, never
    a 500. The settings met the outage before their code was used: it works once Stripe is
    back."""
    api.save(enabled=False)  # saved with this step's code; the calls below use later ones
    api.emulator.faults = Faults(server_error_rate=1.0)
    code = api.next_code()
    refused = api.save(totp_code=code)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == {"code": "unavailable", "message": GATEWAY_DOWN}
    assert api.billing.store.get_user("u1").settings.enabled is False
    api.emulator.faults = Faults()
    assert api.save(totp_code=code).status_code == 200
    api.emulator.faults = Faults(server_error_rate=1.0)
    subscribing = api.subscribe(totp_code=api.next_code())
    assert subscribing.status_code == 503, subscribing.text
    assert subscribing.json()["error"] == {"code": "unavailable", "message": GATEWAY_DOWN}


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"totp_code": ...}, 422, "invalid_field"),
        ({"totp_code": "12345"}, 422, "invalid_field"),
        ({"totp_code": "wrong"}, 403, "invalid_code"),
    ],
)
def test_subscribing_needs_a_valid_code(
    api: Api, changes: dict[str, Any], status: int, code: str
) -> None:
    """No code, a malformed one or a wrong one: refused, and nothing is charged or recorded."""
    if changes.get("totp_code") == "wrong":
        changes = {"totp_code": api.wrong_code()}
    response = api.subscribe(54000, **changes)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert api.billing.store.subscriptions("u1") == []
    assert api.billing.balance("u1") == 1_500
    assert not any(d.event_type == "invoice.paid" for d in api.emulator.due_deliveries())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (None, 422, "invalid_field"),
        ({}, 422, "invalid_field"),
        ({"totp_code": "wrong"}, 403, "invalid_code"),
    ],
)
def test_cancelling_needs_a_valid_code(
    api: Api, body: dict[str, str] | None, status: int, code: str
) -> None:
    """No body, no code or a wrong one: refused, and the subscription still renews."""
    assert api.subscribe().status_code == 201
    api.clock.advance(30)
    if body == {"totp_code": "wrong"}:
        body = {"totp_code": api.wrong_code()}
    response = api.client.post("/v1/subscriptions/cancel", json=body, headers=api.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    record = api.billing.store.subscriptions("u1")[0]
    assert not record.cancel_at_period_end


def test_subscribing_without_two_factor_is_403(api: Api) -> None:
    """A user who never enabled 2FA cannot subscribe."""
    api.billing.create_user("u2")
    api.billing.save_payment_method("u2", "cus_u2", "pm_card_visa")
    response = api.client.post(
        "/v1/subscriptions", json={"credits": 10000, "currency": "eur", "totp_code": "123456"},
        headers=api.login("u2"),
    )  # fmt: skip
    assert (response.status_code, response.json()["error"]["code"]) == (403, "two_factor_required")
    assert api.billing.store.subscriptions("u2") == []


def test_replayed_code_cannot_cancel(api: Api) -> None:
    """The code that subscribed cannot also cancel."""
    code = api.code()
    assert api.subscribe(totp_code=code).status_code == 201
    response = api.cancel(totp_code=code)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "code_replayed")


# ---------------------------------------------------------------------- one error envelope


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b'{"threshold": ' + b"9" * 5000 + b"}", JSON, 400, "invalid_body"),
        (b'{"threshold": ' + _deep(MAX_JSON_DEPTH) + b"}", JSON, 400, "invalid_body"),
        (b'{"currency": "\xff"}', JSON, 400, "invalid_body"),
        (_deep(100_000), JSON, 413, "payload_too_large"),
        (b'{"pad": "' + b" " * MAX_BODY_BYTES + b'"}', JSON, 413, "payload_too_large"),
        (
            b'--x\r\nContent-Disposition: form-data; name="threshold"\r\n\r\n1000\r\n--x--\r\n',
            {"Content-Type": "multipart/form-data; boundary=x"},
            415,
            "unsupported_media_type",
        ),
        (b'{"threshold": 1000}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"threshold": 1000}', {}, 415, "unsupported_media_type"),
        (b"not json", JSON, 400, "invalid_body"),
        (b'{"credits": 10000,', JSON, 400, "invalid_body"),
        (b'{"threshold": NaN}', JSON, 400, "invalid_body"),
        (b'{"threshold": 1e400}', JSON, 400, "invalid_body"),
        (b"", JSON, 422, "invalid_field"),
    ],
)
def test_unreadable_body_is_answered_in_the_envelope(
    api: Api, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Bodies that cannot be read as the request's JSON (too long a number, too deep, not UTF-8,
    too large, not JSON at all, not strict JSON, another media type) are refused in the one
    envelope; a missing body is an invalid field."""
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=content, headers={**api.auth, **headers}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    _unchanged(api)


def test_body_nested_to_the_limit_is_read(api: Api) -> None:
    """Nesting up to MAX_JSON_DEPTH is parsed (and then refused by the schema, naming the field)."""
    body = json.dumps({**SETTINGS, "threshold": "here", "totp_code": api.code()}).encode()
    nested = body.replace(b'"here"', _deep(MAX_JSON_DEPTH - 1))
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=nested, headers={**api.auth, **JSON}
    )
    assert (response.status_code, response.json()["error"]["field"]) == (422, "threshold")


def test_streamed_body_past_the_limit_is_413(api: Api) -> None:
    """A body sent in chunks without a Content-Length is cut off at the limit too."""

    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b" " * 1024
        yield b'"}'

    response = api.client.post("/v1/subscriptions", content=chunks(), headers={**api.auth, **JSON})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_route_and_method_are_in_the_envelope(api: Api) -> None:
    """404 and 405 answer the envelope too; 405 still says which methods are allowed."""
    missing = api.client.get("/v1/nothing", headers=api.auth)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = api.client.get("/v1/subscriptions", headers=api.auth)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"


# ---------------------------------------------------------------------- what the envelope says


def test_code_refusals_say_what_to_do(api: Api) -> None:
    """A wrong code is answered as not valid; a replayed one tells the client to wait for the
    next code (sending the same one again cannot help)."""
    wrong = api.save(totp_code=api.wrong_code()).json()["error"]
    assert wrong["code"] == "invalid_code" and "code is not valid" in wrong["message"]
    code = api.code()
    assert api.save(totp_code=code).status_code == 200
    replayed = api.save(totp_code=code).json()["error"]
    assert replayed["code"] == "code_replayed"
    assert "wait for the next one" in replayed["message"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"threshold": NaN}', "NaN is not JSON"),
        (b'{"threshold": -Infinity}', "-Infinity is not JSON"),
        (b'{"threshold": 1e400}', "1e400 is out of range"),
        (b'{"threshold": ' + _deep(MAX_JSON_DEPTH) + b"}", f"deeper than {MAX_JSON_DEPTH} levels"),
        (b'{"credits": 10000,', "not JSON"),
    ],
)
def test_invalid_body_message_says_what_is_wrong(api: Api, content: bytes, says: str) -> None:
    """The 400 for a body that is not strict JSON within the limits says what was refused (the
    value not JSON, the number out of range, the nesting), not only that something was."""
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=content, headers={**api.auth, **JSON}
    )
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (400, "invalid_body")
    assert says in error["message"]


@pytest.mark.parametrize(
    "media",
    [
        "application/json; charset=utf-8",
        "Application/JSON ;charset=UTF-8",
        "application/vnd.api+json",
        "application/merge-patch+json; charset=utf-8",
    ],
)
def test_json_media_types_with_parameters_or_a_json_suffix_are_read(api: Api, media: str) -> None:
    """``application/json`` with parameters, in any case, and any ``application/*+json`` type
    are JSON: the body is read and the change saved."""
    body = json.dumps({**SETTINGS, "threshold": 2000, "totp_code": api.code()}).encode()
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance",
        content=body,
        headers={**api.auth, "Content-Type": media},
    )
    assert response.status_code == 200, response.text
    assert api.billing.store.get_user("u1").settings.threshold == 2000


@pytest.mark.parametrize("media", ["application/xml", "text/plain+json", "application/jsonx"])
def test_other_media_types_are_415_even_with_a_json_body(api: Api, media: str) -> None:
    """Only the JSON media types are read: another ``application/`` type, or a ``+json`` suffix
    outside ``application/``, is 415 although the body is valid JSON, and nothing is stored."""
    body = json.dumps({**SETTINGS, "totp_code": api.code()}).encode()
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance",
        content=body,
        headers={**api.auth, "Content-Type": media},
    )
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    _unchanged(api)


def test_body_read_ahead_is_handed_over_once_then_the_connection_speaks() -> None:
    """The body read under the limits is handed to the route once; every later receive is the
    connection's own, so that a client's disconnect still reaches the app."""
    disconnect: Message = {"type": "http.disconnect"}

    async def connection() -> Message:
        return disconnect

    async def receive_three_times() -> list[Message]:
        receive = _replay(b'{"a": 1}', connection)
        return [await receive(), await receive(), await receive()]

    first, *later = asyncio.run(receive_three_times())
    assert first == {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
    assert later == [disconnect, disconnect]


def test_api_error_reads_as_its_message() -> None:
    """An API error shown outside the envelope (a log, a traceback) reads as its message."""
    error = ApiError(415, "unsupported_media_type", "the body must be JSON")
    assert str(error) == "the body must be JSON"
    assert (error.status, error.code, error.message) == (
        415,
        "unsupported_media_type",
        error.args[0],
    )


def test_locked_answer_says_when_to_come_back(api: Api) -> None:
    """The 429's ``Retry-After`` is the lockout left, rounded up to the next whole second, and
    the body carries the same figure less that second."""
    wrong = api.wrong_code()
    for _ in range(5):
        api.save(totp_code=wrong)
    api.clock.advance(100.5)
    response = api.save()
    left = 15 * 60 - 100.5
    assert response.json()["error"]["retry_after"] == round(left)
    assert response.headers["Retry-After"] == str(round(left) + 1)


def test_only_a_bearer_session_token_authenticates(api: Api) -> None:
    """A session's token under any other scheme is refused with the ``unauthenticated`` code;
    the scheme's case does not matter."""
    token = api.auth["Authorization"].split(" ", 1)[1]
    for header in (f"Basic {token}", f"Token {token}", token):
        response = api.client.get("/v1/settings/billing", headers={"Authorization": header})
        assert (response.status_code, response.json()["error"]["code"]) == (
            401, "unauthenticated",
        )  # fmt: skip
    lower = api.client.get("/v1/settings/billing", headers={"Authorization": f"bearer {token}"})
    assert lower.status_code == 200


def test_session_tokens_are_long_and_fresh(api: Api) -> None:
    """A token carries 32 random bytes (43 URL-safe characters) and is never issued twice."""
    tokens = {api.login("u1")["Authorization"].split(" ", 1)[1] for _ in range(50)}
    assert len(tokens) == 50 and {len(t) for t in tokens} == {43}


# ---------------------------------------------------------------------- what the overview says


def test_overview_shows_the_balance_the_state_and_the_card(api: Api, tasks: QueueRunner) -> None:
    """The overview carries the balance, the auto top-up state, its failure count and when it
    last triggered, whether a card is saved, and no subscription; a top-up shows up in it."""
    before = api.client.get("/v1/settings/billing", headers=api.auth).json()
    assert before["balance"] == 1_500
    assert before["auto_topup"]["state"] == "active"
    assert before["auto_topup"]["consecutive_failures"] == 0
    assert before["auto_topup"]["last_triggered"] is None
    assert before["payment_method"] == {"saved": True}
    assert before["subscription"] is None
    triggered_at = api.clock.now()
    assert api.save(threshold=2000).status_code == 200
    tasks.run_pending()
    after = api.client.get("/v1/settings/billing", headers=api.auth).json()
    assert after["balance"] == 11_500
    assert after["auto_topup"]["last_triggered"] == triggered_at


def test_overview_says_when_no_card_is_saved(api: Api) -> None:
    """A user without a card is shown ``saved: false``."""
    api.billing.create_user("u2")
    overview = api.client.get("/v1/settings/billing", headers=api.login("u2")).json()
    assert overview["payment_method"] == {"saved": False}
    assert overview["balance"] == 0


def test_overview_shows_the_subscription_as_stored(api: Api) -> None:
    """The subscription in the overview is the stored one: its id, tier, currency, status, period
    end and whether it ends with the period."""
    assert api.subscribe(21000, "usd").status_code == 201
    [record] = api.billing.store.subscriptions("u1")
    assert record.subscription_id and record.current_period_end
    shown = api.client.get("/v1/settings/billing", headers=api.auth).json()["subscription"]
    assert shown == {
        "id": record.subscription_id,
        "credits": 21000,
        "currency": "usd",
        "status": "active",
        "current_period_end": record.current_period_end,
        "cancel_at_period_end": False,
    }


def test_openapi_document_names_the_api_and_its_version(api: Api) -> None:
    """The published OpenAPI document names this API and its version (clients generated from it
    carry both)."""
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"] == {"title": "topup-sim billing API", "version": "1"}


def test_build_app_returns_the_webhook_handler_it_wired(
    make_billing: BillingFactory, stripe_gateway: StripeGateway, emulator: StripeEmulator
) -> None:
    """``build_app`` hands back the webhook handler behind the endpoint: a delivery it handles
    directly credits once, and the endpoint then sees that delivery as a duplicate."""
    billing, wired = _wired_with_u1(make_billing, stripe_gateway, emulator)
    wired.subscriptions.create("u1", 10_000, "eur")
    [paid] = [d for d in emulator.due_deliveries() if d.event_type == "invoice.paid"]
    now = int(billing.clock.now())
    signature = paid.signed_headers(now)["Stripe-Signature"]
    assert wired.webhooks.handle(paid.payload, signature) == "credited"
    assert billing.balance("u1") == 1_500 + 10_500
    with TestClient(wired.app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/payments/webhook", content=paid.payload, headers=paid.signed_headers(now)
        )
    assert response.json() == {"received": True, "outcome": "duplicate"}
    assert billing.balance("u1") == 1_500 + 10_500


def test_parsed_request_still_hears_the_connection_after_the_body() -> None:
    """The request handed to a route after its body was read under the limits gives the same
    body and value, and then listens to the connection: a client's disconnect reaches it."""
    messages: list[Message] = [{"type": "http.disconnect"}]

    async def connection() -> Message:
        return messages[0]

    async def read() -> tuple[bytes, Any, bool]:
        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        request = _ParsedRequest(Request(scope, connection), b'{"a": 1}', {"a": 1})
        return await request.body(), await request.json(), await request.is_disconnected()

    assert asyncio.run(read()) == (b'{"a": 1}', {"a": 1}, True)


# ---------------------------------------------------------------------- the body limit's edges


def _padded_settings(api: Api, size: int, threshold: int) -> bytes:
    """A valid settings body (with the current code) padded with spaces to ``size`` bytes."""
    body = json.dumps({**SETTINGS, "threshold": threshold, "totp_code": api.code()}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_body_of_exactly_the_limit_is_read(api: Api) -> None:
    """The limit is inclusive: a body of exactly MAX_BODY_BYTES is read and the change saved,
    whether its length is declared or it is streamed in chunks without one."""
    body = _padded_settings(api, MAX_BODY_BYTES, 2000)
    assert len(body) == MAX_BODY_BYTES
    declared = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=body, headers={**api.auth, **JSON}
    )
    assert declared.status_code == 200, declared.text
    assert api.billing.store.get_user("u1").settings.threshold == 2000

    api.clock.advance(30)  # the next code
    streamed_body = _padded_settings(api, MAX_BODY_BYTES, 5000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(streamed_body), 1000):
            yield streamed_body[start : start + 1000]

    streamed = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=chunks(), headers={**api.auth, **JSON}
    )
    assert streamed.status_code == 200, streamed.text
    assert api.billing.store.get_user("u1").settings.threshold == 5000


def test_declared_length_past_the_limit_is_413_without_reading(api: Api) -> None:
    """A request whose Content-Length is past the limit is refused on that figure alone: even a
    small valid body behind it is not read, and nothing is stored."""
    body = json.dumps({**SETTINGS, "totp_code": api.code()}).encode()
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance",
        content=body,
        headers={**api.auth, **JSON, "Content-Length": str(MAX_BODY_BYTES + 1)},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    _unchanged(api)


# ---------------------------------------------------------------------- the monthly limit


def test_monthly_limit_is_saved_shown_kept_and_removed(api: Api) -> None:
    """A limit given is saved and shown; a later change that leaves the field out keeps it
    (a client unaware of it cannot lift it); ``null`` removes it. Each change takes a code."""
    assert api.save(monthly_limit=30_000).json()["auto_topup"]["monthly_limit"] == 30_000
    kept = api.save(totp_code=api.next_code(), threshold=2000)
    assert kept.status_code == 200, kept.text
    assert (kept.json()["auto_topup"]["threshold"], kept.json()["auto_topup"]["monthly_limit"]) == (
        2000, 30_000,
    )  # fmt: skip
    removed = api.save(totp_code=api.next_code(), monthly_limit=None)
    assert removed.json()["auto_topup"]["monthly_limit"] is None
    assert api.billing.store.get_user("u1").settings.monthly_limit is None


def test_overview_counts_the_months_auto_top_ups_against_the_limit(
    api: Api, tasks: QueueRunner
) -> None:
    """The overview shows the month's auto top-up credits as the limit counts them, and says
    when the next top-up would pass the limit and when the count restarts."""
    saved = api.save(threshold=1000, amount=10_000, monthly_limit=20_000).json()["auto_topup"]
    assert saved["month"] == {
        "key": "2026-01", "credits": 0, "limit_reached": False, "resets_at": FEB_1,
    }  # fmt: skip
    for _ in range(2):
        api.billing.deduct_credits("u1", api.billing.balance("u1") - 900)  # cross the threshold
        tasks.run_pending()
        api.clock.advance(3_600)  # past the cooldown
    month = api.client.get("/v1/settings/billing", headers=api.auth).json()["auto_topup"]["month"]
    assert (month["credits"], month["limit_reached"]) == (20_000, True)
    api.clock.advance(FEB_1 - api.clock.now())
    month = api.client.get("/v1/settings/billing", headers=api.auth).json()["auto_topup"]["month"]
    assert (month["key"], month["credits"], month["limit_reached"]) == ("2026-02", 0, False)


@pytest.mark.parametrize(
    ("limit", "allowed"),
    [
        (5_000, [None, "10000..10000000"]),  # under the amount: it would hold every top-up
        (0, [None, "10000..10000000"]),
        (-10_000, [None, "10000..10000000"]),
        (10_000_001, [None, "10000..10000000"]),
        (10**30, [None, "10000..10000000"]),
        ("20000", None),
        (20_000.0, None),
        (True, None),
        ([20_000], None),
    ],
)
def test_bad_monthly_limit_is_422_naming_it_and_nothing_is_stored(
    api: Api, limit: Any, allowed: list[Any] | None
) -> None:
    """Out of range or of the wrong JSON type: 422 ``invalid_field`` naming ``monthly_limit``
    (with what it allows, for a range error); nothing is stored and the code is not used."""
    code = api.code()
    response = api.save(monthly_limit=limit, totp_code=code)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"], error.get("allowed")) == (
        "invalid_field", "monthly_limit", allowed,
    )  # fmt: skip
    _unchanged(api)
    assert api.save(totp_code=code).status_code == 200  # the code was not used up


def test_amount_past_the_saved_limit_is_422(api: Api) -> None:
    """Raising the amount above the saved limit, leaving the limit out, is refused: the limit
    would hold every top-up."""
    assert api.save(monthly_limit=20_000).status_code == 200
    response = api.save(totp_code=api.next_code(), amount=54_000)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "monthly_limit"
    assert api.billing.store.get_user("u1").settings.amount == 10_000


def test_monthly_limit_needs_two_factor_and_a_valid_code(api: Api) -> None:
    """The limit is a setting like the others: a wrong or replayed code, or no 2FA, is 403
    and the limit stays as it was."""
    code = api.code()
    assert api.save(monthly_limit=20_000, totp_code=code).status_code == 200
    wrong = api.save(monthly_limit=None, totp_code=api.wrong_code())
    replayed = api.save(monthly_limit=None, totp_code=code)
    assert [(r.status_code, r.json()["error"]["code"]) for r in (wrong, replayed)] == [
        (403, "invalid_code"), (403, "code_replayed"),
    ]  # fmt: skip
    assert api.billing.store.get_user("u1").settings.monthly_limit == 20_000
    api.billing.create_user("u2")
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance",
        json={**SETTINGS, "monthly_limit": 20_000, "totp_code": api.code()},
        headers=api.login("u2"),
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "two_factor_required")
    assert api.billing.store.get_user("u2").settings.monthly_limit is None
