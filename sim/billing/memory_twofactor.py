"""The memory store's two-factor state (part of
:class:`~sim.billing.memory_store.MemoryStore`); the twin of ``sql_twofactor.py``."""

from __future__ import annotations

from bisect import bisect_left, insort

from .memory_state import MemoryTables, real
from .twofactor import Guess, TfaPolicy, TfaVerdict


class MemoryTwoFactorTables(MemoryTables):
    """The TOTP secret, the last accepted step, and wrong codes."""

    def save_tfa_secret(self, user_id: str, encrypted_secret: bytes) -> None:
        """Store the (encrypted) TOTP secret; forgets the last accepted step."""
        with self._lock:
            user = self._user(user_id)
            user.encrypted_tfa_secret = encrypted_secret
            user.tfa_last_step = None

    def tfa_guess(
        self, user_id: str, step: int | None, now: float, policy: TfaPolicy
    ) -> TfaVerdict:
        """Judge one TOTP guess by :meth:`TfaPolicy.judge` and record it: a wrong code as a
        failure, an accepted one as the last step; locked and replayed guesses record nothing.

        Under the store's lock from the read of the failures to the write, so concurrent guesses
        are judged one after another, each seeing the ones before.
        """
        with self._lock:
            user = self._user(user_id)
            failures = user.tfa_failures
            recent = failures[bisect_left(failures, policy.relevant_since(now)) :]
            verdict = policy.judge(recent, user.tfa_last_step, step, now)
            if verdict.guess is Guess.WRONG:
                insort(failures, real(now))
            elif verdict.guess is Guess.ACCEPTED:
                user.tfa_last_step = step
            return verdict

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return []
            return user.tfa_failures[bisect_left(user.tfa_failures, since) :]
