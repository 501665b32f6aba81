"""TOTP two-factor authentication: drift window, replay refusal, brute-force lockout, and the
lockout and single use under concurrent guesses."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pyotp
import pytest

from sim.billing import ManualClock, Vault
from sim.billing.errors import (
    BillingError,
    CodeReplayed,
    InvalidCode,
    TooManyAttempts,
    TwoFactorRequired,
)
from sim.billing.twofactor import (
    FAILURE_WINDOW,
    LOCKOUT,
    MAX_FAILURES,
    STEP_SECONDS,
    TfaPolicy,
    TwoFactor,
)

from .conftest import FlakyStore

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def tfa(store: FlakyStore, vault: Vault, clock: ManualClock) -> TwoFactor:
    """Two-factor for user u1, enrolled with a known secret; u2 exists without 2FA."""
    for user in ("u1", "u2"):
        store.create_user(user, vault.new_wrapped_key(user), None)
    service = TwoFactor(store=store, vault=vault, clock=clock)  # type: ignore[arg-type]
    service.enable("u1", SECRET)
    return service


def _code(clock: ManualClock, steps: int = 0) -> str:
    return pyotp.TOTP(SECRET).at(clock.now() + 30 * steps)


def test_current_code_is_accepted(tfa: TwoFactor, clock: ManualClock) -> None:
    """The code of the current step passes."""
    tfa.verify("u1", _code(clock))


@pytest.mark.parametrize("steps", [-1, 1])
def test_one_step_of_drift_is_accepted(tfa: TwoFactor, clock: ManualClock, steps: int) -> None:
    """A code from the previous or next 30-second step passes (clock drift)."""
    tfa.verify("u1", _code(clock, steps))


@pytest.mark.parametrize("steps", [-2, 2])
def test_two_steps_away_is_refused(tfa: TwoFactor, clock: ManualClock, steps: int) -> None:
    """A code two steps away is wrong."""
    with pytest.raises(InvalidCode):
        tfa.verify("u1", _code(clock, steps))


def test_code_is_accepted_once(tfa: TwoFactor, clock: ManualClock) -> None:
    """Replaying an accepted code is refused, even within its validity window."""
    code = _code(clock)
    tfa.verify("u1", code)
    clock.advance(10)
    with pytest.raises(CodeReplayed):
        tfa.verify("u1", code)


def test_older_code_after_a_newer_one_is_refused(tfa: TwoFactor, clock: ManualClock) -> None:
    """Once a step is used, codes of earlier steps are refused too."""
    tfa.verify("u1", _code(clock, 1))
    with pytest.raises(CodeReplayed):
        tfa.verify("u1", _code(clock))


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456", "", " 123456"])
def test_malformed_code_is_wrong(tfa: TwoFactor, code: str) -> None:
    """Anything but exactly six digits is a wrong code."""
    with pytest.raises(InvalidCode):
        tfa.verify("u1", code)


def test_five_wrong_codes_lock_for_fifteen_minutes(tfa: TwoFactor, clock: ManualClock) -> None:
    """After five wrong codes in 15 minutes even the right code is refused for 15 minutes."""
    for _ in range(5):
        with pytest.raises(InvalidCode):
            tfa.verify("u1", "000000" if _code(clock) != "000000" else "111111")
        clock.advance(60)
    with pytest.raises(TooManyAttempts) as caught:
        tfa.verify("u1", _code(clock))
    assert caught.value.retry_after == pytest.approx(15 * 60 - 60)
    clock.advance(15 * 60 - 60)
    tfa.verify("u1", _code(clock))


def test_wrong_codes_spread_over_more_than_fifteen_minutes_do_not_lock(
    tfa: TwoFactor, clock: ManualClock
) -> None:
    """Five failures spread wider than the window are just five failures."""
    for _ in range(5):
        with pytest.raises(InvalidCode):
            tfa.verify("u1", "000000" if _code(clock) != "000000" else "111111")
        clock.advance(4 * 60)
    tfa.verify("u1", _code(clock))


def test_user_without_two_factor_is_refused(tfa: TwoFactor) -> None:
    """A user who never enabled 2FA cannot pass a check."""
    assert not tfa.is_enabled("u2") and tfa.is_enabled("u1")
    with pytest.raises(TwoFactorRequired):
        tfa.verify("u2", "123456")


def test_secret_is_stored_encrypted(tfa: TwoFactor, store: FlakyStore) -> None:
    """The TOTP secret never sits in the store in plaintext."""
    token = store.get_user("u1").encrypted_tfa_secret
    assert token is not None and SECRET.encode() not in token


# ---------------------------------------------------------------------- the lockout, exactly


def _wrong(clock: ManualClock) -> str:
    """A six-digit code that is none of the three codes valid now."""
    valid = {_code(clock, steps) for steps in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


def _fail(tfa: TwoFactor, clock: ManualClock, times: int, every: float = 0.0) -> None:
    """Send ``times`` wrong codes, ``every`` seconds apart (the last one without a wait after)."""
    for done in range(times):
        with pytest.raises(InvalidCode):
            tfa.verify("u1", _wrong(clock))
        if done < times - 1:
            clock.advance(every)


def test_five_failures_exactly_one_window_apart_lock(tfa: TwoFactor, clock: ManualClock) -> None:
    """The window is closed: five failures whose first and fifth are exactly 15 minutes apart
    lock, and the right code is refused unchecked until the lockout ends (by then the first
    failure is a window and a lockout old, and still counts)."""
    _fail(tfa, clock, 5, every=FAILURE_WINDOW / 4)
    with pytest.raises(TooManyAttempts) as caught:
        tfa.verify("u1", _code(clock))
    assert caught.value.retry_after == LOCKOUT
    clock.advance(LOCKOUT - 1)
    with pytest.raises(TooManyAttempts):
        tfa.verify("u1", _code(clock))
    clock.advance(1)
    tfa.verify("u1", _code(clock))


def test_five_failures_just_over_one_window_apart_do_not_lock(
    tfa: TwoFactor, clock: ManualClock
) -> None:
    """A fifth failure one second outside the first's window does not lock."""
    _fail(tfa, clock, 4, every=FAILURE_WINDOW / 4)
    clock.advance(FAILURE_WINDOW / 4 + 1)
    _fail(tfa, clock, 1)
    tfa.verify("u1", _code(clock))


def test_lockout_ends_exactly_lockout_seconds_after_the_fifth_failure(
    tfa: TwoFactor, clock: ManualClock
) -> None:
    """Locked until ``fifth + LOCKOUT`` (exclusive): a second before it the right code is refused,
    at that instant it is accepted."""
    _fail(tfa, clock, MAX_FAILURES)
    clock.advance(LOCKOUT - 1)
    with pytest.raises(TooManyAttempts) as caught:
        tfa.verify("u1", _code(clock))
    assert caught.value.retry_after == pytest.approx(1)
    clock.advance(1)
    tfa.verify("u1", _code(clock))


def test_attempts_while_locked_are_not_recorded(
    tfa: TwoFactor, clock: ManualClock, store: FlakyStore
) -> None:
    """A guess while locked is refused unchecked and is no failure: it cannot prolong the lock."""
    _fail(tfa, clock, MAX_FAILURES)
    fifth = clock.now()
    for _ in range(3):
        clock.advance(60)
        with pytest.raises(TooManyAttempts):
            tfa.verify("u1", _wrong(clock))
    assert len(store.tfa_failures_since("u1", 0)) == MAX_FAILURES
    clock.set(fifth + LOCKOUT)
    tfa.verify("u1", _code(clock))


@pytest.mark.parametrize("code", [123456, None, b"123456", ["123456"]])
def test_code_that_is_not_a_string_is_wrong(tfa: TwoFactor, code: object) -> None:
    """A code of another type (a JSON number, null) is a wrong code, not a crash."""
    with pytest.raises(InvalidCode):
        tfa.verify("u1", code)  # type: ignore[arg-type]


def test_smallest_policy_locks_after_one_failure(
    store: FlakyStore, vault: Vault, clock: ManualClock, tfa: TwoFactor
) -> None:
    """The smallest rule allowed (one failure, an instant's window, one second's lockout) works:
    one wrong code locks for one second."""
    strict = TfaPolicy(max_failures=1, failure_window=0.0, lockout=1.0)
    service = TwoFactor(store=store, vault=vault, clock=clock, policy=strict)  # type: ignore[arg-type]
    with pytest.raises(InvalidCode):
        service.verify("u1", _wrong(clock))
    with pytest.raises(TooManyAttempts):
        service.verify("u1", _code(clock))
    clock.advance(1)
    service.verify("u1", _code(clock))


def test_require_refuses_only_users_without_two_factor(tfa: TwoFactor) -> None:
    """``require`` passes an enrolled user and refuses one without 2FA, using no code."""
    tfa.require("u1")
    with pytest.raises(TwoFactorRequired):
        tfa.require("u2")


def test_policy_rejects_a_non_positive_rule() -> None:
    """A lockout rule that could never lock (or never end) is refused when it is made."""
    for bad in ({"max_failures": 0}, {"failure_window": -1.0}, {"lockout": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TfaPolicy(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- replays are not guesses


def test_replays_do_not_count_towards_the_lockout(
    tfa: TwoFactor, clock: ManualClock, store: FlakyStore
) -> None:
    """A client that re-sends its accepted code ten times is refused ten times, but is not
    locked out: the next step's code passes."""
    code = _code(clock)
    tfa.verify("u1", code)
    for _ in range(10):
        with pytest.raises(CodeReplayed):
            tfa.verify("u1", code)
    assert store.tfa_failures_since("u1", 0) == []
    clock.advance(STEP_SECONDS)
    tfa.verify("u1", _code(clock))


def test_replay_while_locked_is_refused_as_locked(tfa: TwoFactor, clock: ManualClock) -> None:
    """Once locked, even a replay is answered 'locked': nothing about a code is revealed."""
    code = _code(clock)
    tfa.verify("u1", code)
    _fail(tfa, clock, MAX_FAILURES)
    with pytest.raises(TooManyAttempts):
        tfa.verify("u1", code)


# ---------------------------------------------------------------------- under concurrency


class _SlowStore:
    """A store whose every call takes a millisecond more, as a store across a network does: it
    widens the gap between two separate calls, never the inside of one transaction."""

    def __init__(self, inner: FlakyStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def slow(*args: object, **kwargs: object) -> Any:
            time.sleep(0.001)
            return method(*args, **kwargs)

        return slow


def _burst(tfa: TwoFactor, codes: list[object]) -> Counter[str]:
    """Verify every code at once, one thread each; count the outcomes by name."""
    barrier = threading.Barrier(len(codes))
    outcomes: list[str] = []

    def guess(code: object) -> None:
        barrier.wait()
        try:
            tfa.verify("u1", code)  # type: ignore[arg-type]
            outcomes.append("accepted")
        except BillingError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=guess, args=(code,)) for code in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(outcomes)


@pytest.fixture
def slow_tfa(store: FlakyStore, vault: Vault, clock: ManualClock, tfa: TwoFactor) -> TwoFactor:
    """The enrolled u1 of ``tfa``, verified through a store with latency."""
    return TwoFactor(store=_SlowStore(store), vault=vault, clock=clock)  # type: ignore[arg-type]


def test_forty_wrong_codes_at_once_evaluate_five(
    slow_tfa: TwoFactor, clock: ManualClock, store: FlakyStore
) -> None:
    """However many guesses arrive together, five are evaluated and the rest are locked out."""
    outcomes = _burst(slow_tfa, [_wrong(clock)] * 40)
    assert outcomes == Counter({"InvalidCode": 5, "TooManyAttempts": 35})
    assert len(store.tfa_failures_since("u1", 0)) == MAX_FAILURES


def test_burst_of_wrong_codes_with_the_right_one_evaluates_five_wrong(
    slow_tfa: TwoFactor, clock: ManualClock, store: FlakyStore
) -> None:
    """Sixty wrong codes and the right one at once: five wrong ones are evaluated; the right one
    passes only if it came before the fifth failure."""
    outcomes = _burst(slow_tfa, [_wrong(clock)] * 60 + [_code(clock)])
    assert outcomes["InvalidCode"] == MAX_FAILURES
    assert outcomes["accepted"] + outcomes["TooManyAttempts"] == 61 - MAX_FAILURES
    assert outcomes["accepted"] <= 1
    assert len(store.tfa_failures_since("u1", 0)) == MAX_FAILURES


def test_same_code_from_ten_threads_is_accepted_once_and_locks_nobody(
    slow_tfa: TwoFactor, clock: ManualClock, store: FlakyStore
) -> None:
    """A double-submitting client: one acceptance, nine replays, no failure recorded, and the
    next step's code passes."""
    assert _burst(slow_tfa, [_code(clock)] * 10) == Counter({"accepted": 1, "CodeReplayed": 9})
    assert store.tfa_failures_since("u1", 0) == []
    clock.advance(STEP_SECONDS)
    slow_tfa.verify("u1", _code(clock))


# ---------------------------------------------------------------------- refusals name the user


def test_refusals_name_the_user_they_refuse(tfa: TwoFactor, clock: ManualClock) -> None:
    """Not enrolled (from ``require`` and from ``verify``) and locked out: each refusal carries
    the user it refuses, so that a caller can tell whose change was refused."""
    with pytest.raises(TwoFactorRequired) as required:
        tfa.require("u2")
    assert required.value.user_id == "u2"
    with pytest.raises(TwoFactorRequired) as unenrolled:
        tfa.verify("u2", "123456")
    assert unenrolled.value.user_id == "u2"
    _fail(tfa, clock, MAX_FAILURES)
    with pytest.raises(TooManyAttempts) as locked:
        tfa.verify("u1", _code(clock))
    assert locked.value.user_id == "u1"


def test_enrolment_uri_names_the_user_and_the_issuer(tfa: TwoFactor) -> None:
    """The otpauth:// URI an authenticator app scans names the account and the issuer."""
    uri = tfa.enable("u2", SECRET)
    assert uri == f"otpauth://totp/topup-sim:u2?secret={SECRET}&issuer=topup-sim"
