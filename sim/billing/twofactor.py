"""Two-factor authentication with TOTP (RFC 6238), hardened where the original was not.

- The secret is stored encrypted with the user's own data key, never in plaintext.
- A code is checked for the current 30-second step and one step either side (clock drift), each
  with a constant-time comparison, and all three are always computed.
- A code is accepted once: the accepted step is recorded, and a code of that step or an earlier
  one is refused afterwards (:class:`~sim.billing.errors.CodeReplayed`). A replay is not a guess
  (the code was right once), so it never counts towards the lockout: a client that submits twice
  must not lock its own user out.
- Five wrong codes within 15 minutes lock changes for 15 minutes after the fifth
  (:class:`~sim.billing.errors.TooManyAttempts`); attempts while locked are refused unchecked
  and are not recorded, so hammering a locked account does not prolong the lock.

Why the decision is one store call: the lockout only bounds guessing if "is the user locked?"
and "record this failure" cannot interleave with another guess. Checked and recorded in two
steps, forty guesses sent at once all passed the check before any failure was recorded, and
thirteen were evaluated. So :meth:`TwoFactor.verify` first computes, outside any transaction,
which step the code matches, if any (pure: the secret and the clock), and then hands that to
:meth:`~sim.billing.store.Store.tfa_guess`, which in one write transaction reads the failures in
the window, applies :meth:`TfaPolicy.judge` and records the failure or the accepted step. When
the user is locked the match is discarded unseen: the answer is "locked" whatever the code, so
a locked guess reveals nothing about the code and, as far as the attacker can tell, was never
evaluated. However many guesses arrive at once, at most ``max_failures`` wrong codes are ever
judged in a window.

Time comes from the injected clock, so lockouts and drift behave the same under virtual time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, auto

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


class Guess(Enum):
    """What became of one code."""

    ACCEPTED = auto()
    WRONG = auto()
    REPLAYED = auto()
    LOCKED = auto()


@dataclass(frozen=True, slots=True)
class TfaVerdict:
    """The store's answer to a guess; ``locked_until`` is set only when ``LOCKED``."""

    guess: Guess
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class TfaPolicy:
    """The lockout rule: ``max_failures`` wrong codes within ``failure_window`` seconds lock the
    user for ``lockout`` seconds after the last of them. Both ends are exact: failures exactly
    ``failure_window`` apart count together, and the lock is over at ``fifth + lockout``."""

    max_failures: int = MAX_FAILURES
    failure_window: float = FAILURE_WINDOW
    lockout: float = LOCKOUT

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        if self.failure_window < 0:
            raise ValueError("failure_window must be >= 0")
        if self.lockout <= 0:
            raise ValueError("lockout must be > 0")

    def relevant_since(self, now: float) -> float:
        """The oldest failure time that can still matter at ``now``: a lock in force ends after
        ``now``, so its last failure is after ``now - lockout`` and its first after that minus
        the window."""
        return now - self.failure_window - self.lockout

    def locked_until(self, failures: Sequence[float], now: float) -> float | None:
        """End of the lockout in force at ``now``, if any; ``failures`` oldest first, at least
        those since :meth:`relevant_since`."""
        last = self.max_failures - 1
        until = None
        for first, fifth in zip(failures, failures[last:], strict=False):
            if fifth - first <= self.failure_window and now < fifth + self.lockout:
                until = fifth + self.lockout
        return until

    def judge(
        self, failures: Sequence[float], last_step: int | None, step: int | None, now: float
    ) -> TfaVerdict:
        """Decide one guess: locked first (the match is not looked at), then wrong (``step`` is
        ``None``), then replayed (a step at or before the last accepted one), else accepted.

        Pure, so that every store applies the same rule inside its own transaction.
        """
        until = self.locked_until(failures, now)
        if until is not None:
            return TfaVerdict(Guess.LOCKED, until)
        if step is None:
            return TfaVerdict(Guess.WRONG)
        if last_step is not None and step <= last_step:
            return TfaVerdict(Guess.REPLAYED)
        return TfaVerdict(Guess.ACCEPTED)


class TwoFactor:
    """Enrols users in TOTP and verifies their codes."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        clock: Clock,
        issuer: str = "topup-sim",
        policy: TfaPolicy | None = None,
    ):
        self.store = store
        self.vault = vault
        self.clock = clock
        self.issuer = issuer
        self.policy = policy or TfaPolicy()

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

    def require(self, user_id: str) -> None:
        """Raise ``TwoFactorRequired`` unless the user is enrolled, using no code: so that a
        caller can refuse first, before its own checks, a change that could never pass."""
        if not self.is_enabled(user_id):
            raise TwoFactorRequired(user_id)

    def verify(self, user_id: str, code: str) -> None:
        """Accept ``code`` once, or raise: not enrolled, locked, wrong, or replayed.

        An accepted code is used up at once (its step is recorded), whatever the caller does
        next: run every check that does not need the code before calling this.
        """
        now = self.clock.now()
        user = self.store.get_user(user_id)
        if user.encrypted_tfa_secret is None:
            raise TwoFactorRequired(user_id)
        secret = self.vault.decrypt(
            user_id, user.wrapped_key, F_TFA_SECRET, user.encrypted_tfa_secret
        )
        verdict = self.store.tfa_guess(
            user_id, self._matching_step(secret, code, now), now, self.policy
        )
        if verdict.guess is Guess.LOCKED:
            assert verdict.locked_until is not None  # a LOCKED verdict always says until when
            raise TooManyAttempts(user_id, verdict.locked_until - now)
        if verdict.guess is Guess.WRONG:
            raise InvalidCode("the code is not valid")
        if verdict.guess is Guess.REPLAYED:
            raise CodeReplayed("this code was already used; wait for the next one")

    @staticmethod
    def _matching_step(secret: str, code: object, now: float) -> int | None:
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
