"""The memory store's webhook events, dead letters and subscriptions (part of
:class:`~sim.billing.memory_store.MemoryStore`); the twin of ``sql_events.py``."""

from __future__ import annotations

from .memory_state import MemoryTables, constraint_failed, real
from .store import DeadLetter, SubscriptionRecord


class MemoryEventTables(MemoryTables):
    """Processed webhook events, dead letters and subscriptions."""

    # ------------------------------------------------------------------ webhook events

    def mark_event_processed(self, event_id: str, event_type: str, now: float) -> bool:
        """Remember a webhook event id; ``False`` if it was already processed."""
        with self._lock:
            if event_id in self._events:
                return False
            self._events.add(event_id)
            return True

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event id was processed (or dead-lettered)."""
        with self._lock:
            return event_id in self._events

    def dead_letter(self, letter: DeadLetter) -> bool:
        """Keep an event that can never be applied, and mark its id processed."""
        with self._lock:
            if letter.event_id in self._events:
                return False
            kept = DeadLetter(
                letter.event_id, letter.type, letter.reason, letter.payload,
                real(letter.received_at),
            )  # fmt: skip
            self._events.add(letter.event_id)
            self._dead_letters.append(kept)
            return True

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead-lettered events, newest first (the last kept first among letters
        received at the same time); a negative ``limit`` lists all, as SQL's ``LIMIT`` does."""
        with self._lock:
            # Newest kept first, then a stable sort by time: ties stay newest kept first.
            newest = sorted(
                reversed(self._dead_letters), key=lambda letter: letter.received_at, reverse=True
            )
        return newest if limit < 0 else newest[:limit]

    # ------------------------------------------------------------------ subscriptions

    def save_subscription(self, record: SubscriptionRecord) -> bool:
        """Insert or update a subscription unless the stored one is newer; ``True`` if applied.

        As SQLite's upsert: an update changes the status, the period end, the cancel flag and
        ``as_of`` only (the user, credits and currency stay as first stored), and a new
        subscription must name a known user (its foreign key).
        """
        with self._lock:
            current = self._subscriptions.get(record.subscription_id)
            as_of = real(record.as_of)
            end = None if record.current_period_end is None else real(record.current_period_end)
            cancel = bool(record.cancel_at_period_end)
            if current is None:
                owner = self._users.get(record.user_id)
                if owner is None:
                    raise constraint_failed("FOREIGN KEY constraint failed")
                self._subscriptions[record.subscription_id] = SubscriptionRecord(
                    record.subscription_id, record.user_id, record.credits, record.currency,
                    record.status, end, cancel, as_of,
                )  # fmt: skip
                owner.subscription_ids.append(record.subscription_id)
                return True
            if not as_of >= current.as_of:
                return False
            self._subscriptions[record.subscription_id] = SubscriptionRecord(
                current.subscription_id, current.user_id, current.credits, current.currency,
                record.status, end, cancel, as_of,
            )  # fmt: skip
            return True

    def subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        """One subscription, or ``None``."""
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def subscriptions(self, user_id: str) -> list[SubscriptionRecord]:
        """The user's subscriptions, oldest first."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return []
            return [self._subscriptions[key] for key in user.subscription_ids]
