"""The store's two-factor state in SQL (part of :class:`SQLStore`)."""

from __future__ import annotations

from .errors import UnknownUser
from .sql_connection import SQLConnection
from .twofactor import Guess, TfaPolicy, TfaVerdict

_FAILURES_SINCE = "SELECT at FROM tfa_failures WHERE user_id = ? AND at >= ? ORDER BY at"


class TwoFactorTables(SQLConnection):
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

    def tfa_guess(
        self, user_id: str, step: int | None, now: float, policy: TfaPolicy
    ) -> TfaVerdict:
        """Judge one TOTP guess (``step``: the step its code matched, or ``None``) and record it:
        a wrong code as a failure, an accepted one as the last step; locked and replayed guesses
        record nothing.

        One transaction, the user locked, from the read of the failures to the write, so
        concurrent guesses are judged one after another, each seeing the ones before.
        """
        with self._tx() as db:
            self._lock_user(db, user_id)
            user = db.execute(
                "SELECT tfa_last_step FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            if user is None:
                raise UnknownUser(user_id)
            since = policy.relevant_since(now)
            failures = [row["at"] for row in db.execute(_FAILURES_SINCE, (user_id, since))]
            verdict = policy.judge(failures, user["tfa_last_step"], step, now)
            if verdict.guess is Guess.WRONG:
                db.execute("INSERT INTO tfa_failures (user_id, at) VALUES (?, ?)", (user_id, now))
            elif verdict.guess is Guess.ACCEPTED:
                db.execute("UPDATE users SET tfa_last_step = ? WHERE user_id = ?", (step, user_id))
            return verdict

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        return [row["at"] for row in self._read(_FAILURES_SINCE, (user_id, since))]
