"""The emulator as a whole: public API, faults, determinism, snapshots, the server."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import pytest
import stripe

import sim.stripe_emulator as api
from sim.stripe_emulator import Fault, Faults, ManualClock, StripeEmulator
from sim.stripe_emulator.__main__ import main as cli_main
from sim.stripe_emulator.__main__ import port_option

from .conftest import START


def _pay(client: stripe.StripeClient, **options: object) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
        },
        options=options,  # type: ignore[arg-type]
    )


def test_public_api() -> None:
    """The package exports exactly its documented names."""
    assert sorted(api.__all__) == sorted(
        [
            "DECLINE_CODES",
            "TEST_CARD_ALIASES",
            "Clock",
            "Delivery",
            "EmulatorHTTPClient",
            "EmulatorResponse",
            "EmulatorServer",
            "Fault",
            "Faults",
            "form_encode",
            "form_values",
            "LatencyCallback",
            "ManualClock",
            "ParsedResponse",
            "Snapshot",
            "StripeEmulator",
            "SystemClock",
            "serve",
            "signature_header",
        ]
    )
    assert all(hasattr(api, name) for name in api.__all__)


def test_server_error_fault(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    """A scheduled 500 reaches the library as an APIError and applies nothing."""
    emulator.faults = Faults(schedule={emulator.request_count + 1: Fault.SERVER_ERROR})
    with pytest.raises(stripe.APIError) as caught:
        _pay(client)
    assert caught.value.http_status == 500
    assert client.v1.payment_intents.list().data == []


def test_rate_limit_fault(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    """A scheduled 429 reaches the library as a RateLimitError."""
    emulator.faults = Faults(schedule={emulator.request_count + 1: Fault.RATE_LIMIT})
    with pytest.raises(stripe.RateLimitError):
        _pay(client)


def test_dropped_request(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    """A dropped connection is an APIConnectionError and nothing was applied."""
    emulator.faults = Faults(schedule={emulator.request_count + 1: Fault.DROP_REQUEST})
    with pytest.raises(stripe.APIConnectionError):
        _pay(client)
    assert client.v1.payment_intents.list().data == []


def test_dropped_response_then_safe_retry(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """A response lost after the charge is replayed by a retry with the same key: one charge."""
    emulator.faults = Faults(schedule={emulator.request_count + 1: Fault.DROP_RESPONSE})
    with pytest.raises(stripe.APIConnectionError):
        _pay(client, idempotency_key="attempt-1")
    pi = _pay(client, idempotency_key="attempt-1")
    assert pi.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p.id for p in client.v1.payment_intents.list().data] == [pi.id]


def test_library_retries_without_sleeping_in_process(emulator: StripeEmulator) -> None:
    """In-process, the library's retry back-off is reported as latency, not slept."""
    reported: list[float] = []
    client = emulator.stripe_client(on_latency=reported.append, max_network_retries=2)
    emulator.faults = Faults(latency=0.2, schedule={emulator.request_count + 1: Fault.SERVER_ERROR})
    started = time.perf_counter()
    pi = _pay(client)
    assert pi.status == "succeeded"
    assert time.perf_counter() - started < 0.2
    assert reported[-1] >= 0.2 + 0.2 + 0.5 - 1e-9


def test_latency_is_reported_in_process(emulator: StripeEmulator) -> None:
    """Injected latency is handed to the callback and last_latency, with no real sleep."""
    reported: list[float] = []
    http = emulator.http_client(on_latency=reported.append)
    client = stripe.StripeClient("sk_test_x", http_client=http)
    emulator.faults = Faults(latency=3.0, latency_jitter=1.0)
    started = time.perf_counter()
    _pay(client)
    assert time.perf_counter() - started < 1.0
    assert 3.0 <= reported[-1] < 4.0 and http.last_latency == reported[-1]


def test_latency_is_slept_over_http(emulator: StripeEmulator) -> None:
    """The HTTP server really waits the injected latency."""
    emulator.faults = Faults(latency=0.2)
    with api.EmulatorServer(emulator, port=0) as server:
        http = stripe.RequestsClient()
        client = stripe.StripeClient(
            "sk_test_x", http_client=http, base_addresses={"api": server.url}
        )
        started = time.perf_counter()
        client.v1.customers.list()
        http.close()
    assert time.perf_counter() - started >= 0.2


def test_rates_are_seeded() -> None:
    """Random faults fall on the same requests for the same seed."""

    def outcomes(seed: int) -> list[str]:
        emulator = StripeEmulator(clock=ManualClock(START), seed=seed)
        emulator.faults = Faults(server_error_rate=0.3, rate_limit_rate=0.2)
        client = emulator.stripe_client()
        seen = []
        for _ in range(30):
            try:
                client.v1.customers.list()
                seen.append("ok")
            except stripe.StripeError as error:
                seen.append(type(error).__name__)
        return seen

    assert outcomes(1) == outcomes(1)
    assert outcomes(1) != outcomes(2)
    assert {"ok", "APIError", "RateLimitError"} <= set(outcomes(1))


def test_same_seed_same_ids(transport: str) -> None:
    """Two emulators with the same seed and the same calls answer byte for byte the same."""

    def run(seed: int) -> list[bytes]:
        emulator = StripeEmulator(clock=ManualClock(START), seed=seed)
        headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k"}
        bodies = []
        for path, body in [
            ("/v1/customers", "email=a%40b.c"),
            (
                "/v1/payment_intents",
                "amount=500&currency=usd&payment_method=pm_card_visa&confirm=true",
            ),
        ]:
            headers["Idempotency-Key"] = path
            bodies.append(emulator.handle("post", path, headers, body).body)
        return bodies

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_snapshot_restore_and_reset(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    """A snapshot brings back objects and the id stream; reset forgets everything."""
    client.v1.customers.create(params={"email": "a@example.com"})
    snap = emulator.snapshot()
    later = client.v1.customers.create(params={"email": "b@example.com"})
    emulator.restore(snap)
    assert client.v1.customers.create(params={"email": "b@example.com"}).id == later.id
    assert len(client.v1.customers.list().data) == 2
    emulator.reset()
    assert client.v1.customers.list().data == []


def test_live_keys_are_refused(emulator: StripeEmulator) -> None:
    """A live secret key is refused with a 401."""
    client = emulator.stripe_client(api_key="sk_live_nope")
    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()


def test_form_encoding_with_brackets(emulator: StripeEmulator) -> None:
    """Raw bracket forms (a[b][0][c], a[]) decode like Stripe's, whatever the client."""
    headers = {"Authorization": "Bearer sk_test_x"}
    body = "email=x%40y.z&metadata[a]=1&preferred_locales[]=en&preferred_locales[]=fr"
    response = emulator.handle("post", "/v1/customers", headers, body)
    assert response.status == 200
    assert b'"preferred_locales": ["en", "fr"]' in response.body
    assert b'"metadata": {"a": "1"}' in response.body


def test_server_binds_loopback_only(emulator: StripeEmulator) -> None:
    """The HTTP server listens on 127.0.0.1 and nowhere else."""
    with api.EmulatorServer(emulator, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server._httpd.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("port", "said"),
    [("65536", "65536 is no TCP port: give 0 (any free one) to 65535"), ("-1", "-1 is no TCP"),
     ("x", "'x' is not a whole number")],
)  # fmt: skip
def test_cli_refuses_a_port_that_is_none(
    port: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--port outside 0 to 65535 is a bad option, not the socket's OverflowError traceback."""
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--port", port])
    assert exit_.value.code == 2
    assert f"error: argument --port: {said}" in capsys.readouterr().err


def test_cli_port_range_is_tcps_own_with_0_for_any() -> None:
    """Both ends of the range are taken (0: any free port, and 65535); one past is not."""
    assert (port_option("0"), port_option("65535")) == (0, 65535)
    for outside in ("-1", "65536"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{outside} is no TCP port"):
            port_option(outside)


def test_cli_serves(tmp_path) -> None:
    """python -m sim.stripe_emulator serves the API on the given port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.stripe_emulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening on http://127.0.0.1:" in process.stdout.readline()  # type: ignore[union-attr]
        http = stripe.RequestsClient()
        client = stripe.StripeClient(
            "sk_test_x", http_client=http, base_addresses={"api": f"http://127.0.0.1:{port}"}
        )
        assert client.v1.customers.create(params={}).id.startswith("cus_")
        http.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]
