"""Bad input, fuzzed: the settings and webhook endpoints answer 4xx, never 500, write nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    Vault,
)
from sim.billing.api import BillingApp, build_app
from sim.billing.payments import StripeGateway
from sim.stripe_emulator import StripeEmulator, signature_header

from .conftest import MASTER_KEY

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
FIELDS = ("enabled", "threshold", "amount", "currency", "totp_code")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
plausible = {
    "enabled": st.booleans() | json_values,
    "threshold": st.sampled_from([500, 1000, 1500, -1, 10**30]) | json_values,
    "amount": st.sampled_from([1000, 10000, 5000, 0]) | json_values,
    "currency": st.sampled_from(["eur", "usd", "jpy", "EUR", "€", ""]) | json_values,
    "totp_code": st.text(alphabet="0123456789a ", min_size=0, max_size=8) | json_values,
}
settings_bodies = (
    st.fixed_dictionaries({}, optional={name: strategy for name, strategy in plausible.items()})
    | json_values
)


class Wired:
    """One app for the whole fuzz run (building one per example would dominate the time)."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.emulator = StripeEmulator(clock=self.clock, seed=3)
        gateway = StripeGateway("sk_test_fuzz", http_client=self.emulator.http_client())
        self.store = SQLiteStore(":memory:")
        self.billing = BillingService(
            clock=self.clock, cache=fakeredis.FakeRedis(), store=self.store, gateway=gateway,
            notifier=RecordingNotifier(), tasks=QueueRunner(), vault=Vault(MASTER_KEY),
        )  # fmt: skip
        self.wired: BillingApp = build_app(self.billing, gateway, self.emulator.webhook_secret)
        self.billing.create_user("u1", balance=1_500)
        customer = gateway.ensure_customer("u1")
        card = gateway.attach_card(customer, "pm_card_visa")
        self.billing.save_payment_method("u1", customer, card)
        self.wired.twofactor.enable("u1", SECRET)
        self.client = TestClient(self.wired.app, raise_server_exceptions=False)
        self.auth = {"Authorization": f"Bearer {self.wired.sessions.issue('u1')}"}

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a request must not change: settings, balance, ledger, events."""
        user = self.store.get_user("u1")
        return (user.settings, user.balance, len(self.store.ledger("u1")), user.state)


@pytest.fixture(scope="module")
def wired() -> Iterator[Wired]:
    """The shared app."""
    app = Wired()
    with app.client:
        yield app


@given(body=settings_bodies)
def test_fuzzed_settings_body_is_4xx_and_changes_nothing(wired: Wired, body: Any) -> None:
    """Random JSON, wrong types, huge numbers, unicode, missing fields: 4xx, nothing stored."""
    wired.clock.advance(120)  # stay clear of the lockout: wrong codes are expected here
    before = wired.snapshot()
    response = wired.client.post(
        "/v1/settings/auto-topup/low-balance", content=json.dumps(body),
        headers={**wired.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()
    assert wired.snapshot() == before
    assert wired.store.get_user("u1").settings == AutoTopupSettings()


@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_settings_bytes_are_4xx(wired: Wired, raw: bytes) -> None:
    """Bytes that are not JSON at all are refused as a whole."""
    response = wired.client.post(
        "/v1/settings/auto-topup/low-balance", content=raw,
        headers={**wired.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500


@given(payload=st.binary(max_size=300), header=st.none() | st.text(max_size=80))
def test_fuzzed_unsigned_webhook_is_400(wired: Wired, payload: bytes, header: str | None) -> None:
    """Anything without a valid signature is 400 and changes nothing."""
    before = wired.snapshot()
    headers = {} if header is None else {"Stripe-Signature": header}
    try:
        response = wired.client.post("/v1/payments/webhook", content=payload, headers=headers)
    except UnicodeEncodeError:
        return  # the HTTP client cannot send such a header at all
    assert response.status_code == 400
    assert wired.snapshot() == before


@given(event=json_values | st.fixed_dictionaries({
    "id": st.text(max_size=10) | json_values,
    "type": st.sampled_from(["payment_intent.succeeded", "invoice.paid",
                             "customer.subscription.updated", "invoice.payment_failed",
                             "payment_intent.payment_failed"]) | json_values,
    "created": st.integers(0, 2**40) | json_values,
    "data": st.fixed_dictionaries({"object": json_values}) | json_values,
}))  # fmt: skip
def test_fuzzed_signed_events_never_500(wired: Wired, event: Any) -> None:
    """Correctly signed but malformed events are 4xx (retrying cannot help), never 500."""
    payload = json.dumps(event).encode()
    header = signature_header(payload, wired.emulator.webhook_secret, int(wired.clock.now()))
    before = wired.snapshot()
    response = wired.client.post(
        "/v1/payments/webhook", content=payload, headers={"Stripe-Signature": header}
    )
    assert response.status_code < 500, response.text
    assert wired.snapshot() == before
