"""The notifier port: every top-up success and failure tells the user, and so does the first
top-up a monthly limit holds in a month (``topup_limit_reached``).

A server sends e-mail or a WebSocket message; the simulation and tests record what was sent.

An attempt's final notice (or a limit's hold) is written to the store's outbox in the same
transaction as the outcome it tells, then sent, then marked sent; a worker that dies in between
leaves it pending, and the reconcile sends it. So a notice may be *sent* twice (a death after
sending, before the mark), never lost: each carries a stable ``notice_id`` by which a receiver
drops a copy, as a webhook receiver drops a Stripe event it has seen.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one user."""

    user_id: str
    kind: str
    at: float
    detail: Mapping[str, str] = field(default_factory=dict)
    #: Stable across re-sends of the same notice (``None`` for notices outside the outbox).
    notice_id: str | None = None


class Notifier(Protocol):
    """Delivers notifications."""

    def notify(self, notification: Notification) -> None:
        """Send ``notification`` (must not raise for delivery problems it can retry itself)."""
        ...


class RecordingNotifier:
    """Keeps every notification in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        """Append ``notification``."""
        with self._lock:
            self.sent.append(notification)

    def kinds(self, user_id: str | None = None) -> list[str]:
        """The kinds sent (to one user, or to all), in order."""
        return [n.kind for n in self.sent if user_id is None or n.user_id == user_id]
