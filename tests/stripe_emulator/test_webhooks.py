"""Events, webhook endpoints, signed deliveries pulled on the emulator clock."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from sim.stripe_emulator import EmulatorServer, Faults, StripeEmulator

SECRET = "whsec_test_emulator"


def _pay(client: stripe.StripeClient, card: str = "pm_card_visa") -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={"amount": 2000, "currency": "eur", "payment_method": card, "confirm": True}
    )


def test_endpoint_created_through_the_api_gets_signed_deliveries(
    client: stripe.StripeClient, emulator: StripeEmulator, clock
) -> None:
    """An endpoint made via the API gets its own secret, and its deliveries verify with it."""
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "https://example.test/hook", "enabled_events": ["payment_intent.succeeded"]}
    )
    assert endpoint.secret.startswith("whsec_") and endpoint.secret != SECRET
    pi = _pay(client)
    [delivery] = emulator.due_deliveries()
    event = stripe.Webhook.construct_event(
        delivery.payload, delivery.headers["Stripe-Signature"], endpoint.secret, tolerance=None
    )
    assert (event.type, event.data.object.id, delivery.url) == (
        "payment_intent.succeeded",
        pi.id,
        "https://example.test/hook",
    )


def test_tampered_payload_is_rejected(emulator: StripeEmulator, client) -> None:
    """A delivery whose payload was altered fails signature verification."""
    emulator.add_webhook_endpoint("sim://hook")
    _pay(client)
    delivery = emulator.due_deliveries()[-1]
    tampered = delivery.payload.replace(b'"amount": 2000', b'"amount": 9000')
    assert tampered != delivery.payload
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered, delivery.headers["Stripe-Signature"], SECRET, tolerance=None
        )


def test_signature_at_wall_clock_passes_default_tolerance(emulator: StripeEmulator, client) -> None:
    """Re-signed at the current wall time, a delivery passes construct_event's tolerance."""
    import time

    emulator.add_webhook_endpoint("sim://hook")
    _pay(client)
    delivery = emulator.due_deliveries()[0]
    headers = delivery.signed_headers(int(time.time()))
    event = stripe.Webhook.construct_event(delivery.payload, headers["Stripe-Signature"], SECRET)
    assert event.id == delivery.event_id


def test_events_list_and_retrieve(client: stripe.StripeClient) -> None:
    """A failed charge records payment_intent.payment_failed; events list newest first by type."""
    with pytest.raises(stripe.CardError):
        _pay(client, "pm_card_chargeDeclined")
    failed = client.v1.events.list(params={"type": "payment_intent.payment_failed"}).data
    assert len(failed) == 1
    again = client.v1.events.retrieve(failed[0].id)
    assert again.data.object.last_payment_error.decline_code == "generic_decline"
    groups = client.v1.events.list(params={"type": "payment_intent.*"}).data
    assert [e.type for e in groups] == ["payment_intent.payment_failed", "payment_intent.created"]


def test_deliveries_wait_for_their_due_time(emulator: StripeEmulator, client, clock) -> None:
    """With a webhook delay, nothing is due until the clock reaches it."""
    emulator.faults = Faults(webhook_delay=30.0)
    emulator.add_webhook_endpoint("sim://hook", ("payment_intent.succeeded",))
    _pay(client)
    assert emulator.due_deliveries() == []
    assert emulator.next_due() == clock.now() + 30.0
    clock.advance(30)
    assert [d.event_type for d in emulator.due_deliveries()] == ["payment_intent.succeeded"]


def test_duplicated_deliveries(emulator: StripeEmulator, client, clock) -> None:
    """A duplicate rate of 1 delivers every event twice, same event id."""
    emulator.faults = Faults(webhook_duplicate_rate=1.0)
    emulator.add_webhook_endpoint("sim://hook", ("payment_intent.succeeded",))
    _pay(client)
    clock.advance(5)
    deliveries = emulator.due_deliveries()
    assert len(deliveries) == 2
    assert deliveries[0].event_id == deliveries[1].event_id


def test_reordered_deliveries(emulator: StripeEmulator, client, clock) -> None:
    """Held-back deliveries arrive after later events (reorder rate 1 for the first only)."""
    emulator.add_webhook_endpoint("sim://hook", ("payment_intent.succeeded",))
    emulator.faults = Faults(webhook_reorder_rate=1.0, webhook_reorder_window=60.0)
    first = _pay(client)
    emulator.faults = Faults()
    second = _pay(client)
    clock.advance(61)
    order = [json.loads(d.payload)["data"]["object"]["id"] for d in emulator.due_deliveries()]
    assert order == [second.id, first.id]


def test_failed_delivery_is_retried_later(emulator: StripeEmulator, client, clock) -> None:
    """Reporting a non-2xx answer queues the same event again with back-off."""
    emulator.add_webhook_endpoint("sim://hook", ("payment_intent.succeeded",))
    _pay(client)
    [delivery] = emulator.due_deliveries()
    retry = emulator.report_delivery(delivery, 500)
    assert retry is not None and retry.attempt == 2 and retry.due_at > clock.now()
    assert emulator.report_delivery(delivery, 200) is None
    clock.advance(retry.due_at - clock.now())
    assert [d.event_id for d in emulator.due_deliveries()] == [delivery.event_id]


def test_server_posts_signed_deliveries_to_the_webhook_url(emulator: StripeEmulator) -> None:
    """The HTTP server POSTs each due event to --webhook-url, signed so the library verifies it."""
    received: list[tuple[bytes, str]] = []
    done = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()
            done.set()

        def log_message(self, *args: object) -> None:
            """Quiet."""

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    try:
        with EmulatorServer(emulator, port=0, webhook_url=url, poll_interval=0.01) as server:
            client = stripe.StripeClient(
                "sk_test_emulator", http_client=stripe.RequestsClient(),
                base_addresses={"api": server.url},
            )  # fmt: skip
            client.v1.customers.create(params={"email": "ada@example.com"})
            assert done.wait(5)
    finally:
        receiver.shutdown()
        receiver.server_close()
    body, signature = received[0]
    event = stripe.Webhook.construct_event(body, signature, emulator.webhook_secret)
    assert event.type == "customer.created"


class _Listener:
    """A tiny HTTP server on 127.0.0.1 recording the webhook POSTs it receives, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes, str]] = []
        self.arrived = threading.Event()
        listener = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                listener.received.append((self.path, body, self.headers["Stripe-Signature"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                listener.arrived.set()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self._server = HTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_endpoint_created_over_http_signs_with_its_own_secret(emulator: StripeEmulator) -> None:
    """POST /v1/webhook_endpoints over HTTP returns a fresh secret; the server's delivery to that
    endpoint verifies with it, and not with another endpoint's secret or the emulator's."""
    listener = _Listener()
    try:
        with EmulatorServer(emulator, port=0, poll_interval=0.01) as server:
            http = stripe.RequestsClient()
            client = stripe.StripeClient(
                "sk_test_billing", http_client=http, base_addresses={"api": server.url}
            )
            mine = client.v1.webhook_endpoints.create(
                params={"url": listener.url + "/mine", "enabled_events": ["customer.created"]}
            )
            other = client.v1.webhook_endpoints.create(
                params={"url": listener.url + "/other", "enabled_events": ["invoice.paid"]}
            )
            customer = client.v1.customers.create(params={"email": "ada@example.com"})
            assert listener.arrived.wait(5)
            http.close()
    finally:
        listener.close()
    assert mine.secret.startswith("whsec_") and other.secret.startswith("whsec_")
    assert len({mine.secret, other.secret, emulator.webhook_secret}) == 3
    [(path, body, signature)] = listener.received
    assert path == "/mine"
    event = stripe.Webhook.construct_event(body, signature, mine.secret)
    assert (event.type, event.data.object.id) == ("customer.created", customer.id)
    for wrong in (other.secret, emulator.webhook_secret):
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, signature, wrong)


def test_endpoint_secret_is_shown_only_on_create(client: stripe.StripeClient) -> None:
    """Retrieve and list omit the secret, as Stripe does after creation."""
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "https://example.test/hook", "enabled_events": ["*"]}
    )
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert all("secret" not in e for e in client.v1.webhook_endpoints.list().data)


def test_endpoint_secrets_are_seeded(clock) -> None:
    """In process, an endpoint's secret comes from the seeded stream: same seed, same secret."""

    def secrets(seed: int) -> list[str]:
        client = StripeEmulator(clock=clock, seed=seed).stripe_client()
        params = {"url": "https://example.test/hook", "enabled_events": ["*"]}
        return [client.v1.webhook_endpoints.create(params=params).secret for _ in range(2)]

    assert secrets(5) == secrets(5)
    assert secrets(5) != secrets(6)
    assert len(set(secrets(5))) == 2


def test_endpoint_url_must_be_http(client: stripe.StripeClient) -> None:
    """An endpoint created through the API needs a URL Stripe could POST to."""
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create(params={"url": "not a url", "enabled_events": ["*"]})
    assert caught.value.param == "url"


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m sim.stripe_emulator`` on a free port; the process and its first line."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.stripe_emulator", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline()  # type: ignore[union-attr]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()  # type: ignore[union-attr]


def test_cli_generates_a_random_webhook_secret_per_run() -> None:
    """With --webhook-url and no --webhook-secret, each run signs with a fresh secret it prints,
    never the published default; deliveries verify with the printed one."""
    listener = _Listener()
    runs = []
    try:
        for _ in range(2):
            process, line = _start_cli("--webhook-url", listener.url + "/hook")
            try:
                secret = re.search(r"secret (whsec_\S+)\)", line)
                assert secret is not None, line
                runs.append(secret.group(1))
                url = re.search(r"listening on (http://\S+)", line).group(1)  # type: ignore[union-attr]
                http = stripe.RequestsClient()
                client = stripe.StripeClient(
                    "sk_test_cli", http_client=http, base_addresses={"api": url}
                )
                client.v1.customers.create(params={})
                http.close()
                assert listener.arrived.wait(10)
                listener.arrived.clear()
            finally:
                _stop(process)
    finally:
        listener.close()
    assert runs[0] != runs[1] and SECRET not in runs
    for (_, body, signature), secret in zip(listener.received, runs, strict=True):
        assert stripe.Webhook.construct_event(body, signature, secret).type == "customer.created"


def test_cli_uses_the_given_webhook_secret() -> None:
    """--webhook-secret still sets the secret of the --webhook-url deliveries."""
    process, line = _start_cli(
        "--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret", "whsec_mine"
    )
    _stop(process)
    assert "secret whsec_mine)" in line


def test_each_signature_is_its_own_with_its_own_secret() -> None:
    """Signatures made one after another under one secret (its keyed HMAC reused) each verify
    for their own body and time, and another secret signs differently."""
    from sim.stripe_emulator import signature_header

    first = signature_header(b'{"n": 1}', SECRET, 1_000)
    second = signature_header(b'{"n": 2}', SECRET, 1_001)
    for body, header in ((b'{"n": 1}', first), (b'{"n": 2}', second)):
        stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=None)
    assert signature_header(b'{"n": 1}', SECRET, 1_000) == first
    assert signature_header(b'{"n": 1}', "whsec_other", 1_000) != first
