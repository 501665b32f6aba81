"""Fault injection: what can go wrong between a Stripe client and Stripe, each by rate or schedule.

Every random draw comes from the emulator's own seeded stream, so a run with faults is as
reproducible as one without. Request faults are decided per request, before the state machine sees
it:

* ``server_error`` -- a 500 ``api_error``; nothing was applied (the client may retry).
* ``rate_limit`` -- a 429 ``rate_limit_error``; nothing was applied.
* ``drop_request`` -- the connection drops before the request arrives (``APIConnectionError``).
* ``drop_response`` -- the request **was applied** and the connection drops before the answer: the
  hard
  case, which only an idempotency key makes safe to retry.

Latency is reported, not slept, by the in-process transport (the owner of virtual time accounts for
it); the HTTP server really sleeps it. Webhook faults shift or copy queued deliveries.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Fault(StrEnum):
    """A request-level fault."""

    SERVER_ERROR = "server_error"
    RATE_LIMIT = "rate_limit"
    DROP_REQUEST = "drop_request"
    DROP_RESPONSE = "drop_response"


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults to inject and how often. All rates are probabilities per request or per
    delivery.

    ``schedule`` maps a 1-based request number to the fault that request gets, whatever the rates
    say.
    """

    latency: float = 0.0
    latency_jitter: float = 0.0
    server_error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    drop_request_rate: float = 0.0
    drop_response_rate: float = 0.0
    schedule: Mapping[int, Fault] = field(default_factory=dict)
    webhook_delay: float = 0.0
    webhook_jitter: float = 0.0
    webhook_duplicate_rate: float = 0.0
    webhook_reorder_rate: float = 0.0
    webhook_reorder_window: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "server_error_rate",
            "rate_limit_rate",
            "drop_request_rate",
            "drop_response_rate",
            "webhook_duplicate_rate",
            "webhook_reorder_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        for name in ("latency", "latency_jitter", "webhook_delay", "webhook_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        object.__setattr__(
            self, "schedule", {int(n): Fault(kind) for n, kind in self.schedule.items()}
        )


class FaultInjector:
    """Draws the faults of each request and delivery from a seeded stream."""

    __slots__ = ("_faults", "_quiet", "_rng", "requests")

    def __init__(self, faults: Faults, seed: int | str) -> None:
        self._rng = random.Random(f"stripe-emulator-faults:{seed}")
        self.requests = 0
        self.faults = faults

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        # The common case, no request fault at all, skips every draw (it runs on each request).
        self._quiet = not (
            faults.latency_jitter
            or faults.server_error_rate
            or faults.rate_limit_rate
            or faults.drop_request_rate
            or faults.drop_response_rate
            or faults.schedule
        )

    def next_request(self) -> tuple[Fault | None, float]:
        """Count a request and decide its fault (if any) and added latency in seconds."""
        self.requests += 1
        f = self._faults
        if self._quiet:
            return None, f.latency
        latency = f.latency + (self._rng.random() * f.latency_jitter if f.latency_jitter else 0.0)
        scheduled = f.schedule.get(self.requests)
        if scheduled is not None:
            return scheduled, latency
        for rate, fault in (
            (f.drop_request_rate, Fault.DROP_REQUEST),
            (f.server_error_rate, Fault.SERVER_ERROR),
            (f.rate_limit_rate, Fault.RATE_LIMIT),
            (f.drop_response_rate, Fault.DROP_RESPONSE),
        ):
            if rate and self._rng.random() < rate:
                return fault, latency
        return None, latency

    def delivery_delays(self) -> list[float]:
        """Delays (seconds after the event) of each copy of one webhook delivery."""
        f = self._faults
        delay = f.webhook_delay + (
            self._rng.random() * f.webhook_jitter if f.webhook_jitter else 0.0
        )
        if f.webhook_reorder_rate and self._rng.random() < f.webhook_reorder_rate:
            delay += f.webhook_reorder_window
        delays = [delay]
        if f.webhook_duplicate_rate and self._rng.random() < f.webhook_duplicate_rate:
            extra = self._rng.random() * f.webhook_jitter if f.webhook_jitter else 0.0
            delays.append(delay + 1.0 + extra)
        return delays
