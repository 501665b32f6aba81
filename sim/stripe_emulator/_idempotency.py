"""Idempotency keys as Stripe keeps them.

The first request with a key stores its outcome (success, or a failure that happened while
executing, such as a declined card); the same key with the same method, path and parameters replays
that answer with ``Idempotent-Replayed: true``; with anything else it is a 400
``idempotency_error``. Keys expire 24 hours (of emulator time) after first use. Expiry walks a
queue ordered by first use, so it costs O(1) per request however many keys are live.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

#: How long Stripe keeps an idempotency key.
TTL = 24 * 3600.0


class Saved(NamedTuple):
    """A stored outcome and what it answered (a tuple: one is built per POST)."""

    fingerprint: tuple[str, str, dict[str, Any]]
    status: int
    body: bytes


class IdempotencyCache:
    """Outcomes by (API key, idempotency key), expiring ``TTL`` seconds after first use."""

    __slots__ = ("_expiry", "_saved")

    def __init__(self) -> None:
        self._saved: dict[tuple[str, str], Saved] = {}
        self._expiry: deque[tuple[float, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._saved)

    def lookup(self, key: tuple[str, str], now: float) -> Saved | None:
        """The outcome saved under ``key``, after forgetting every key older than ``TTL``."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            self._saved.pop(expiry.popleft()[1], None)
        return self._saved.get(key)

    def save(self, key: tuple[str, str], saved: Saved, now: float) -> None:
        """Remember ``saved`` under ``key`` for ``TTL`` seconds."""
        self._saved[key] = saved
        self._expiry.append((now + TTL, key))
