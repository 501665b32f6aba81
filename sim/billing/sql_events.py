"""The store's webhook-event and subscription tables in SQL (part of :class:`SQLStore`)."""

from __future__ import annotations

from .sql_connection import SQLConnection
from .store import DeadLetter, SubscriptionRecord


class EventTables(SQLConnection):
    """Processed webhook events and subscriptions."""

    # ------------------------------------------------------------------ webhook events

    def mark_event_processed(self, event_id: str, event_type: str, now: float) -> bool:
        """Remember a webhook event id; ``False`` if it was already processed."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO webhook_events (event_id, type, processed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, event_type, now),
            )
            return cursor.rowcount == 1

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event id was processed."""
        return bool(self._read("SELECT 1 FROM webhook_events WHERE event_id = ?", (event_id,)))

    def dead_letter(self, letter: DeadLetter) -> bool:
        """Keep an event that can never be applied, and mark its id processed."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO webhook_events (event_id, type, processed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (letter.event_id, letter.type, letter.received_at),
            )
            if cursor.rowcount == 0:
                return False
            db.execute(
                "INSERT INTO dead_letters (event_id, type, reason, payload, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (letter.event_id, letter.type, letter.reason, letter.payload, letter.received_at),
            )
            return True

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead-lettered events, newest first (all of them for a negative limit)."""
        rows = self._read(
            "SELECT event_id, type, reason, payload, received_at FROM dead_letters"
            " ORDER BY received_at DESC, rowid DESC" + (" LIMIT ?" if limit >= 0 else ""),
            (limit,) if limit >= 0 else (),
        )
        return [DeadLetter(**dict(row)) for row in rows]

    # ------------------------------------------------------------------ subscriptions

    def save_subscription(self, record: SubscriptionRecord) -> bool:
        """Insert or update a subscription unless the stored one is newer; ``True`` if applied."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO subscriptions (subscription_id, user_id, credits, currency, status,"
                " current_period_end, cancel_at_period_end, as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription_id) DO UPDATE SET status = excluded.status,"
                " current_period_end = excluded.current_period_end,"
                " cancel_at_period_end = excluded.cancel_at_period_end, as_of = excluded.as_of"
                " WHERE excluded.as_of >= subscriptions.as_of",
                (
                    record.subscription_id, record.user_id, record.credits, record.currency,
                    record.status, record.current_period_end, int(record.cancel_at_period_end),
                    record.as_of,
                ),
            )  # fmt: skip
            return cursor.rowcount == 1

    def subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        """One subscription, or ``None``."""
        rows = self._subscription_rows("WHERE subscription_id = ?", (subscription_id,))
        return rows[0] if rows else None

    def subscriptions(self, user_id: str) -> list[SubscriptionRecord]:
        """The user's subscriptions, oldest first."""
        return self._subscription_rows("WHERE user_id = ? ORDER BY rowid", (user_id,))

    def _subscription_rows(self, where: str, args: tuple[object, ...]) -> list[SubscriptionRecord]:
        rows = self._read(
            "SELECT subscription_id, user_id, credits, currency, status, current_period_end,"
            f" cancel_at_period_end, as_of FROM subscriptions {where}",
            args,
        )
        return [
            SubscriptionRecord(
                **(dict(r) | {"cancel_at_period_end": bool(r["cancel_at_period_end"])})
            )
            for r in rows
        ]
