"""The notifier port: every top-up success and failure tells the user.

A server sends e-mail or a WebSocket message; the simulation and tests record what was sent.
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
