"""Benchmark: in-process PaymentIntent create+confirm through the real ``stripe`` library.

Prints the median latency of ``client.v1.payment_intents.create(confirm=True, off_session=True)``
answered by the emulator with 1,000 and with 100,000 intents stored, next to the library's own floor
measured in the same run: the same call answered by a trivial ``stripe.HTTPClient`` returning a
fixed response. Targets: the emulator adds at most 25% to the floor, and 100,000 stored intents are
at most 10% slower than 1,000.

Run: ``.venv/bin/python bench/stripe_emulator.py`` (about a minute).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Mapping
from typing import Any

import stripe
from interpreter import print_interpreter

from sim.stripe_emulator import ManualClock, StripeEmulator

CALLS = 3_000
ROUNDS = 3


class CannedHTTPClient(stripe.HTTPClient):
    """Answers every request with one fixed body: what the library costs on its own."""

    name = "canned"

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        return self._body, 200, {"Request-Id": "req_canned"}

    def close(self) -> None:
        """Nothing to close."""


def median_call(client: stripe.StripeClient, params: dict[str, Any]) -> float:
    """Median seconds of one create+confirm over ``CALLS`` calls."""
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def prefill(emulator: StripeEmulator, body: str, count: int) -> None:
    """Store ``count`` more intents straight through the state machine (no library on the way)."""
    headers = {"Authorization": "Bearer sk_test_bench"}
    for _ in range(count):
        emulator.handle("post", "/v1/payment_intents", headers, body)


def setup(emulator: StripeEmulator) -> tuple[stripe.StripeClient, dict[str, Any], str]:
    """A fresh state with one customer and card: the client, the call's params and its form body."""
    emulator.reset()
    client = emulator.stripe_client()
    customer = client.v1.customers.create(params={})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    params = {
        "amount": 2000,
        "currency": "eur",
        "customer": customer.id,
        "payment_method": pm.id,
        "confirm": True,
        "off_session": True,
        "metadata": {"user_id": "u-1", "credits": "21000"},
    }
    body = (
        f"amount=2000&currency=eur&customer={customer.id}&payment_method={pm.id}"
        "&confirm=true&off_session=true&metadata[user_id]=u-1&metadata[credits]=21000"
    )
    return client, params, body


def main() -> None:
    """Measure and print the table."""
    print_interpreter()
    emulator = StripeEmulator(clock=ManualClock(), seed=0)
    client, params, body = setup(emulator)
    canned = client.v1.payment_intents.create(params=params).last_response.body.encode()
    floor_client = stripe.StripeClient("sk_test_bench", http_client=CannedHTTPClient(canned))
    results: dict[str, list[float]] = {"floor": [], "1,000": [], "100,000": []}
    for _ in range(ROUNDS):  # warm up
        median_call(floor_client, params)
    for _ in range(ROUNDS):
        client, params, body = setup(emulator)
        prefill(emulator, body, 1_000)
        gc.collect()
        results["floor"].append(median_call(floor_client, params))
        results["1,000"].append(median_call(client, params))
    client, params, body = setup(emulator)
    prefill(emulator, body, 100_000)
    gc.collect()
    for _ in range(ROUNDS):
        results["floor"].append(median_call(floor_client, params))
        results["100,000"].append(median_call(client, params))

    floor = min(results["floor"])
    small = min(results["1,000"])
    large = min(results["100,000"])
    print(f"PaymentIntent create+confirm in-process: median of {CALLS} calls, best of {ROUNDS}")
    print(f"{'case':<28}{'median µs':>12}{'vs floor':>10}{'vs 1,000':>10}")
    print(f"{'library floor (canned)':<28}{floor * 1e6:>12.1f}{1.0:>10.2f}{'':>10}")
    print(f"{'emulator, ~1,000 stored':<28}{small * 1e6:>12.1f}{small / floor:>10.2f}{1.0:>10.2f}")
    print(
        f"{'emulator, ~100,000 stored':<28}{large * 1e6:>12.1f}{large / floor:>10.2f}"
        f"{large / small:>10.2f}"
    )
    print(
        f"targets: emulator <= 1.25 x floor ({'met' if small <= 1.25 * floor else 'MISSED'}), "
        f"100,000 <= 1.10 x 1,000 ({'met' if large <= 1.10 * small else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
