"""Webhook deliveries: signed exactly as Stripe signs them, queued on the emulator's clock.

Stripe signs ``f"{t}.{payload}"`` with HMAC-SHA256 under the endpoint's secret and sends
``Stripe-Signature: t=<t>,v1=<hex>``; ``stripe.Webhook.construct_event`` checks exactly that.

Deliveries are not pushed on their own: each is queued with the time it is due, and whoever owns
time pulls them (``StripeEmulator.due_deliveries(now)``). The simulation hands them to the real
webhook handler at the right virtual moment; the standalone server POSTs them from a background
thread. The owner reports each outcome back, and a non-2xx answer is retried later with back-off,
as Stripe does.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from dataclasses import dataclass, field
from functools import lru_cache

#: Stripe retries a failed delivery with growing back-off for up to three days.
RETRY_DELAYS = (60.0, 300.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 24 * 3600.0)


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed at ``timestamp``."""
    mac = _keyed(secret).copy()
    mac.update(str(timestamp).encode() + b".")
    mac.update(payload)
    return f"t={timestamp},v1={mac.hexdigest()}"


@lru_cache(maxsize=256)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC keyed with an endpoint's secret, made once per secret (an emulator has a few)
    and copied for each signature: keying costs as much as signing a whole event."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver one event to one endpoint.

    ``headers`` are signed at ``due_at`` on the emulator's clock. Under a virtual clock whose time
    is far
    from the wall clock, verify with ``tolerance=None`` or re-sign with :meth:`signed_headers`.
    """

    due_at: float
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    payload: bytes
    secret: str = field(repr=False)
    attempt: int = 1

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers as Stripe sends them, signed at ``due_at``."""
        return self.signed_headers(int(self.due_at))

    def signed_headers(self, timestamp: int) -> dict[str, str]:
        """HTTP headers signed at ``timestamp`` (epoch seconds)."""
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(self.payload, self.secret, timestamp),
        }


class DeliveryQueue:
    """Deliveries ordered by due time (ties by enqueue order, so equal times keep causal order)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Delivery]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, delivery: Delivery) -> None:
        """Queue ``delivery`` for its due time."""
        self._seq += 1
        heapq.heappush(self._heap, (delivery.due_at, self._seq, delivery))

    def next_due(self) -> float | None:
        """When the earliest queued delivery is due, or ``None`` when none is queued."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Delivery]:
        """Remove and return every delivery due at or before ``now``, earliest first."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due
