"""Two-factor authentication with TOTP (RFC 6238), hardened where the original was not.

- The secret is stored encrypted with the user's own data key, never in plaintext.
- A code is checked for the current 30-second step and one step either side (clock drift), each
  with a constant-time comparison, and all three are always computed.
- A code is accepted once: the accepted step is recorded atomically, and a code of that step or an
  earlier one is refused afterwards (:class:`~sim.billing.errors.CodeReplayed`).
- Five wrong codes within 15 minutes lock changes for 15 minutes after the fifth
  (:class:`~sim.billing.errors.TooManyAttempts`); attempts while locked are refused unchecked.

Time comes from the injected clock, so lockouts and drift behave the same under virtual time.
"""

from __future__ import annotations

import hmac
import re

import pyotp

from .clock import Clock
from .errors import CodeReplayed, InvalidCode, TooManyAttempts, TwoFactorRequired
from .store import Store
from .vault import Vault

F_TFA_SECRET = "tfa_secret"
STEP_SECONDS = 30
DRIFT_STEPS = 1
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60.0
LOCKOUT = 15 * 60.0
_CODE = re.compile(r"[0-9]{6}")


class TwoFactor:
    """Enrols users in TOTP and verifies their codes."""

    def __init__(self, *, store: Store, vault: Vault, clock: Clock, issuer: str = "topup-sim"):
        self.store = store
        self.vault = vault
        self.clock = clock
        self.issuer = issuer

    def enable(self, user_id: str, secret: str | None = None) -> str:
        """Give the user a new TOTP secret (or the one supplied) and return the otpauth:// URI."""
        secret = secret or pyotp.random_base32()
        user = self.store.get_user(user_id)
        token = self.vault.encrypt(user_id, user.wrapped_key, F_TFA_SECRET, secret)
        self.store.save_tfa_secret(user_id, token)
        return pyotp.TOTP(secret).provisioning_uri(name=user_id, issuer_name=self.issuer)

    def is_enabled(self, user_id: str) -> bool:
        """Whether the user has a TOTP secret."""
        return self.store.get_user(user_id).encrypted_tfa_secret is not None

    def verify(self, user_id: str, code: str) -> None:
        """Accept ``code`` once, or raise: not enrolled, locked, wrong, or replayed."""
        now = self.clock.now()
        user = self.store.get_user(user_id)
        if user.encrypted_tfa_secret is None:
            raise TwoFactorRequired(user_id)
        locked_until = self._locked_until(user_id, now)
        if locked_until is not None:
            raise TooManyAttempts(user_id, locked_until - now)
        secret = self.vault.decrypt(
            user_id, user.wrapped_key, F_TFA_SECRET, user.encrypted_tfa_secret
        )
        step = self._matching_step(secret, code, now)
        if step is None:
            self.store.record_tfa_failure(user_id, now)
            raise InvalidCode("the code is not valid")
        if not self.store.accept_tfa_step(user_id, step):
            self.store.record_tfa_failure(user_id, now)
            raise CodeReplayed("this code was already used; wait for the next one")

    def _locked_until(self, user_id: str, now: float) -> float | None:
        """End of the lockout in force at ``now``, if any.

        A lockout starts at the fifth of five failures that fall within ``FAILURE_WINDOW`` and
        lasts ``LOCKOUT``; so only failures since ``now - FAILURE_WINDOW - LOCKOUT`` matter.
        """
        failures = self.store.tfa_failures_since(user_id, now - FAILURE_WINDOW - LOCKOUT)
        until = None
        for first, fifth in zip(failures, failures[MAX_FAILURES - 1 :], strict=False):
            if fifth - first <= FAILURE_WINDOW and now < fifth + LOCKOUT:
                until = fifth + LOCKOUT
        return until

    @staticmethod
    def _matching_step(secret: str, code: str, now: float) -> int | None:
        """The latest step within the drift window whose code equals ``code``, else None."""
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return None
        totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
        current = int(now // STEP_SECONDS)
        matched = None
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            candidate = totp.at(step * STEP_SECONDS)
            if hmac.compare_digest(candidate.encode(), code.encode()):
                matched = step
        return matched
