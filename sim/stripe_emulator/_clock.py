"""The emulator's clock port: the only place it reads time from.

The emulator never calls ``time.time()`` in its state machine: whoever embeds it passes anything
with ``now() -> float`` (epoch seconds), so a simulation's virtual clock, a test's hand-moved clock
and a server's wall clock all fit without the emulator depending on where they come from. The
package stands alone: these small clocks are its own, and any other object with the same method
(another package's clocks included) satisfies :class:`Clock` structurally.
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
    """Wall-clock time: the default, and what the standalone server runs on."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to, for tests and scripted runs of the emulator."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        # Default start: 2026-01-01T00:00:00Z, a fixed and readable epoch.
        self._now = float(start)

    def now(self) -> float:
        """Return the stored time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards: renewals already billed stay so)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp`` (either direction, to model a clock that was wrong)."""
        self._now = float(timestamp)
