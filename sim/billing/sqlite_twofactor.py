"""The store's two-factor state on SQLite (part of :class:`SQLiteStore`)."""

from __future__ import annotations

from .errors import UnknownUser
from .sqlite_connection import SQLiteConnection


class TwoFactorTables(SQLiteConnection):
    """The TOTP secret, the last accepted step, and wrong codes."""

    # ------------------------------------------------------------------ two-factor

    def save_tfa_secret(self, user_id: str, encrypted_secret: bytes) -> None:
        """Store the (encrypted) TOTP secret; forgets the last accepted step."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE users SET encrypted_tfa_secret = ?, tfa_last_step = NULL WHERE user_id = ?",
                (encrypted_secret, user_id),
            )
            if cursor.rowcount == 0:
                raise UnknownUser(user_id)

    def accept_tfa_step(self, user_id: str, step: int) -> bool:
        """Record a TOTP step as used; ``False`` if it, or a later one, was used before.

        One conditional UPDATE, so two concurrent requests with the same code cannot both pass.
        """
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE users SET tfa_last_step = ? WHERE user_id = ?"
                " AND (tfa_last_step IS NULL OR tfa_last_step < ?)",
                (step, user_id, step),
            )
            return cursor.rowcount == 1

    def record_tfa_failure(self, user_id: str, at: float) -> None:
        """Remember a wrong TOTP code."""
        with self._tx() as db:
            db.execute("INSERT INTO tfa_failures (user_id, at) VALUES (?, ?)", (user_id, at))

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        rows = self._read(
            "SELECT at FROM tfa_failures WHERE user_id = ? AND at >= ? ORDER BY at",
            (user_id, since),
        )
        return [row["at"] for row in rows]
