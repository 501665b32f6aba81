"""Spending credits over HTTP (``POST /v1/usage``): the guard of a service-to-service call.

Who spends: the product's own backend, once per billable request of a user, not the user's
browser. So the endpoint is authenticated by a **service token** (``X-Service-Token``), a secret
shared with that backend and separate from user sessions: a user's bearer token cannot spend, and
a leaked user session cannot drain anyone's balance. The token is compared in constant time.

What a deployment would want, and what is done here:

- **A cap per request** (:data:`MAX_CREDITS_PER_REQUEST`): one call cannot take a whole balance by
  a typo or a bug upstream. Larger costs are split by the caller.
- **Idempotency** (``Idempotency-Key``, required): a caller that lost the answer sends the same
  request again with the same key and gets the first answer back, never a second deduction.
  :class:`SpendReplays` keeps answers per key for :data:`REPLAY_SECONDS` on the injected clock.
  The same key with another body is refused (``IdempotencyKeyReused``), and one still being
  processed answers ``RequestInProgress``. A refused deduction (not enough credits) is not kept:
  the retry is evaluated again, since a top-up may have arrived.

What is **not** done: the replay table lives in the process's memory, so it protects retries that
reach the same process within its lifetime. A deployment with several API processes (or restarts
between a request and its retry) needs the table in shared storage (a Redis ``SET NX`` per key, or
a store table written in the deduction's own transaction); the interface here is the one such a
table would implement. Rate limiting per caller is left to the gateway in front of the API.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .errors import IdempotencyKeyReused, RequestInProgress

#: The most credits one request may spend (the largest tier is 54,000 credits).
MAX_CREDITS_PER_REQUEST = 10_000
#: How long an answer is replayed for its key: a day, like Stripe's idempotency keys.
REPLAY_SECONDS = 86_400.0
#: The most answers kept; the oldest go first past it (bounded memory under any load).
MAX_REPLAYS = 100_000


@dataclass(slots=True)
class _Entry:
    fingerprint: tuple[str, int]
    at: float
    answer: Mapping[str, Any] | None  # None while in progress


class SpendReplays:
    """Answers of the usage endpoint by ``Idempotency-Key``, replayed for retries (in memory)."""

    def __init__(
        self, clock: Clock, *, ttl: float = REPLAY_SECONDS, capacity: int = MAX_REPLAYS
    ) -> None:
        self.clock, self.ttl, self.capacity = clock, ttl, capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, key: str, fingerprint: tuple[str, int]) -> Mapping[str, Any] | None:
        """Start the request keyed ``key``: its earlier answer to replay, or ``None`` to go on
        (then call :meth:`finish` or :meth:`abandon`). Raises ``IdempotencyKeyReused`` for
        another body under the key, ``RequestInProgress`` while the first is running."""
        now = self.clock.now()
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for another request; use a new key"
                    )
                if entry.answer is None:
                    raise RequestInProgress("a request with this Idempotency-Key is in progress")
                return entry.answer
            self._entries[key] = _Entry(fingerprint, now, None)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return None

    def finish(self, key: str, answer: Mapping[str, Any]) -> None:
        """Keep ``answer`` for retries under ``key``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.answer = answer

    def abandon(self, key: str) -> None:
        """Forget ``key``: the request changed nothing, so a retry is evaluated afresh."""
        with self._lock:
            self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.at < self.ttl:
                return
            self._entries.popitem(last=False)
