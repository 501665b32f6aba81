"""Fixtures: an emulator on a manual clock, and a real ``stripe.StripeClient`` talking to it either
in-process or over HTTP on a free 127.0.0.1 port (every ``client`` test runs both ways)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from sim.stripe_emulator import EmulatorServer, ManualClock, StripeEmulator

START = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time the test moves by hand."""
    return ManualClock(START)


@pytest.fixture
def emulator(clock: ManualClock) -> StripeEmulator:
    """A fresh emulator, seed 0."""
    return StripeEmulator(clock=clock, seed=0)


@pytest.fixture(params=["in_process", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which way in the test drives the emulator."""
    return request.param


@pytest.fixture
def client(emulator: StripeEmulator, transport: str) -> Iterator[stripe.StripeClient]:
    """A ``stripe.StripeClient`` bound to ``emulator`` through ``transport``, retries off."""
    if transport == "in_process":
        yield emulator.stripe_client()
        return
    # The test pulls webhook deliveries itself; the server's own delivery thread would race it.
    with EmulatorServer(emulator, port=0, deliver_webhooks=False) as server:
        http = stripe.RequestsClient()
        try:
            yield stripe.StripeClient(
                "sk_test_emulator", http_client=http, base_addresses={"api": server.url}
            )
        finally:
            http.close()


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    """A customer with a Visa saved as the default card."""
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    return client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
