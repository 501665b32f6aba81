"""The in-process transport: a ``stripe.HTTPClient`` answering from an emulator, with no socket.

Pass it to ``stripe.StripeClient(api_key, http_client=...)`` (or use
``StripeEmulator.stripe_client()``). Injected latency is **reported, never slept**: the owner of
virtual time reads :attr:`last_latency` or receives ``on_latency(seconds)`` after each library call
and advances its clock accordingly. The library's own retry loop is replaced by one with the same
rules (``max_network_retries``, ``Stripe-Should-Retry``, 409/5xx, retryable connection errors)
whose back-off is added to the reported latency instead of ``time.sleep``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from stripe import APIConnectionError, HTTPClient

if TYPE_CHECKING:
    from ._emulator import StripeEmulator

LatencyCallback = Callable[[float], None]


class EmulatorHTTPClient(HTTPClient):
    """A ``stripe.HTTPClient`` bound to one :class:`~sim.stripe_emulator.StripeEmulator`."""

    name = "stripe_emulator"

    def __init__(self, emulator: StripeEmulator, on_latency: LatencyCallback | None = None) -> None:
        super().__init__()
        self.emulator = emulator
        self.on_latency = on_latency
        #: Seconds the last library call took in emulated network time (latency, retries, back-off).
        self.last_latency = 0.0
        #: How many HTTP attempts the last library call made (1 + retries).
        self.last_attempts = 0
        self._jitter = random.Random(f"stripe-emulator-backoff:{emulator.seed}")

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """One attempt; a dropped connection raises ``APIConnectionError`` as a socket error
        would."""
        content, status, rheaders, _ = self._attempt(method, url, headers, post_data)
        return content, status, rheaders

    def request_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """The library's retry rules, with back-off accounted in emulated time instead of slept."""
        total = 0.0
        retries = 0
        while True:
            error: APIConnectionError | None = None
            response: tuple[bytes, int, Mapping[str, str]] | None = None
            try:
                content, status, rheaders, latency = self._attempt(method, url, headers, post_data)
                response = (content, status, rheaders)
            except _Dropped as dropped:
                latency = dropped.latency
                error = dropped.error
            total += latency
            if self._should_retry(response, error, retries, max_network_retries):
                retries += 1
                total += self._sleep_time_seconds(retries)
                continue
            self.last_latency = total
            self.last_attempts = retries + 1
            if self.on_latency is not None:
                self.on_latency(total)
            if response is None:
                raise error  # type: ignore[misc]
            return response

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        """Streaming is not part of the API subset the emulator serves."""
        raise NotImplementedError("the Stripe emulator does not stream responses")

    def close(self) -> None:
        """Nothing to release: there is no connection."""

    def _add_jitter_time(self, sleep_seconds: float) -> float:
        # Seeded, so a run with retries is as reproducible as one without.
        return sleep_seconds * 0.5 * (1 + self._jitter.uniform(0, 1))

    def _attempt(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any
    ) -> tuple[bytes, int, Mapping[str, str], float]:
        response = self.emulator.handle(method, url, headers, post_data)
        if response.dropped:
            raise _Dropped(
                APIConnectionError(
                    "Unexpected error communicating with Stripe: the connection was dropped "
                    "(injected fault).",
                    should_retry=True,
                ),
                response.latency,
            )
        return response.body, response.status, response.headers, response.latency


class _Dropped(APIConnectionError):
    """A dropped connection, carrying the latency spent before it broke."""

    def __init__(self, error: APIConnectionError, latency: float) -> None:
        super().__init__(error.user_message, should_retry=True)
        self.error = error
        self.latency = latency
