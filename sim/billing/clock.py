"""The clock port: every timestamp in the billing module comes from an injected ``Clock``.

A server passes :class:`SystemClock`; tests pass :class:`ManualClock`; the simulation passes a clock
that reads the SimPy environment. Nothing in ``sim.billing`` calls ``time.time()`` directly, so
cooldowns and TOTP windows behave identically under virtual time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time in epoch seconds."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock:
    """Wall-clock time, for a real server."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to: for tests and scripted demos."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        # Default start: 2026-01-01T00:00:00Z, a fixed and readable epoch.
        self._now = float(start)

    def now(self) -> float:
        """Return the stored time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp`` (a test may jump in either direction to model clock skew)."""
        self._now = float(timestamp)
