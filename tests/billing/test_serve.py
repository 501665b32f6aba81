"""``python -m sim.billing.serve``: no public default secret; against the emulator, an endpoint of
its own with a secret only the two of them know."""

from __future__ import annotations

import logging

import pytest

from sim.billing import ChargeRequest, ManualClock, Money
from sim.billing.payments import StripeGateway, WebhookVerifier
from sim.billing.serve import WEBHOOK_SECRET_ENV, main, register_webhook_endpoint
from sim.billing.webhooks import HANDLED_EVENTS
from sim.stripe_emulator import StripeEmulator


def test_real_stripe_without_a_webhook_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--stripe-url ''`` (real Stripe) and no secret: exit 2 with one line naming the setting,
    before anything is wired or served."""
    monkeypatch.delenv(WEBHOOK_SECRET_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--stripe-url", ""])
    assert exit_.value.code == 2
    assert f"{WEBHOOK_SECRET_ENV} (or --webhook-secret) is required" in capsys.readouterr().err


def test_registered_endpoint_gets_a_secret_of_its_own(
    emulator: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Against the emulator the server registers its URL and verifies with the secret returned:
    a fresh one per endpoint, never a well-known one, and the one its deliveries are signed
    with. The log says which endpoint, where, for which URL."""
    gateway = StripeGateway("sk_test_serve", http_client=emulator.http_client())
    with caplog.at_level(logging.INFO, logger="sim.billing.serve"):
        first = register_webhook_endpoint(gateway, 8000, "http://emulator")
    (endpoint_id,) = [e["id"] for e in emulator.objects_of("webhook_endpoint")]
    assert caplog.messages == [
        f"webhook endpoint {endpoint_id} registered at http://emulator"
        " for http://127.0.0.1:8000/v1/payments/webhook"
    ]
    second = register_webhook_endpoint(gateway, 8001, "http://emulator")
    assert first.startswith("whsec_") and len(first) > 30
    assert first != second and "whsec_test_emulator" not in (first, second)
    customer = gateway.ensure_customer("u1")
    card = gateway.attach_card(customer, "pm_card_visa")
    gateway.charge(ChargeRequest(customer, card, Money(1000, "eur"), "topup:u1:1"))
    deliveries = [
        d for d in emulator.due_deliveries() if d.url.endswith(":8000/v1/payments/webhook")
    ]
    # The endpoint asked for the events the handler acts on, and gets those alone: not the
    # customer, card and charge events of the same calls.
    (endpoint, _) = emulator.objects_of("webhook_endpoint")
    assert endpoint["enabled_events"] == list(HANDLED_EVENTS)
    assert [d.event_type for d in deliveries] == ["payment_intent.succeeded"]
    verifier = WebhookVerifier(first, ManualClock(emulator.clock.now()))
    for delivery in deliveries:
        verifier.verify(
            delivery.payload, delivery.signed_headers(int(emulator.clock.now()))["Stripe-Signature"]
        )


def test_unreachable_emulator_is_one_clear_line() -> None:
    """No Stripe at the URL: the server stops with the URL and what to do, not a traceback."""
    gateway = StripeGateway("sk_test_serve", base_addresses={"api": "http://127.0.0.1:9"})
    with pytest.raises(SystemExit) as exit_:
        register_webhook_endpoint(gateway, 8000, "http://127.0.0.1:9")
    message = str(exit_.value.code)
    assert "http://127.0.0.1:9" in message and WEBHOOK_SECRET_ENV in message
    assert "nothing answers there" in message
