"""The HTTP API with FastAPI's TestClient: status codes, field-naming errors, nothing stored."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
)
from sim.billing.api import build_app
from sim.billing.payments import StripeGateway
from sim.stripe_emulator import Delivery, StripeEmulator

from .conftest import BillingFactory, FlakyStore

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
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


@pytest.fixture
def api(
    make_billing: BillingFactory,
    stripe_gateway: StripeGateway,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
) -> Iterator[Api]:
    """The app wired to the emulator; u1 has a card, 2FA and 1,500 credits."""
    billing = make_billing(payment_gateway=stripe_gateway)
    emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
    wired = build_app(billing, stripe_gateway, emulator.webhook_secret)
    billing.create_user("u1", balance=1_500)
    customer = stripe_gateway.ensure_customer("u1")
    billing.save_payment_method(
        "u1", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
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


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"null"])
def test_body_that_is_not_an_object_is_422(api: Api, body: bytes) -> None:
    """A body that is not a JSON object is refused as a whole."""
    response = api.client.post(
        "/v1/settings/auto-topup/low-balance", content=body,
        headers={**api.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422
    _unchanged(api)


def test_rejection_names_the_allowed_values(api: Api) -> None:
    """The 422 for a range error lists what the field allows."""
    error = api.save(amount=5000).json()["error"]
    assert error["allowed"] == "1000, 10000, 21000, 54000"


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
    """Create is 201, a second is 409, the bonus-less tier 409, an unknown tier 422; cancel 200."""
    post = api.client.post
    bad_tier = post(
        "/v1/subscriptions", json={"credits": 5000, "currency": "eur"}, headers=api.auth
    )
    assert (bad_tier.status_code, bad_tier.json()["error"]["field"]) == (422, "credits")
    no_bonus = post(
        "/v1/subscriptions", json={"credits": 1000, "currency": "eur"}, headers=api.auth
    )
    assert no_bonus.status_code == 409
    created = post(
        "/v1/subscriptions", json={"credits": 21000, "currency": "eur"}, headers=api.auth
    )
    assert created.status_code == 201
    assert created.json()["subscription"]["status"] == "active"
    again = post("/v1/subscriptions", json={"credits": 10000, "currency": "eur"}, headers=api.auth)
    assert again.status_code == 409
    cancelled = post("/v1/subscriptions/cancel", headers=api.auth)
    assert cancelled.json()["subscription"]["cancel_at_period_end"] is True


def test_renewals_through_the_endpoint_credit_once_per_invoice(api: Api) -> None:
    """Two renewals by advancing the emulator's clock, every delivery 3x out of order: 200s and
    exactly credits + bonus per invoice."""
    api.client.post(
        "/v1/subscriptions", json={"credits": 10000, "currency": "eur"}, headers=api.auth
    )
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
    api.client.post(
        "/v1/subscriptions", json={"credits": 10000, "currency": "eur"}, headers=api.auth
    )
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
    """A failure while crediting answers 500; Stripe's retry then credits exactly once."""
    api.client.post(
        "/v1/subscriptions", json={"credits": 10000, "currency": "eur"}, headers=api.auth
    )
    paid = [d for d in api.emulator.due_deliveries() if d.event_type == "invoice.paid"]
    store.failing.add("credit")
    assert api.deliver(paid) == [500]
    store.failing.clear()
    assert api.deliver(paid * 2) == [200, 200]
    assert api.billing.balance("u1") == 1_500 + 10_500
