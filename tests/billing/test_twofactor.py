"""TOTP two-factor authentication: drift window, replay refusal, brute-force lockout."""

from __future__ import annotations

import pyotp
import pytest

from sim.billing import ManualClock, Vault
from sim.billing.errors import CodeReplayed, InvalidCode, TooManyAttempts, TwoFactorRequired
from sim.billing.twofactor import TwoFactor

from .conftest import FlakyStore

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def tfa(store: FlakyStore, vault: Vault, clock: ManualClock) -> TwoFactor:
    """Two-factor for user u1, enrolled with a known secret; u2 exists without 2FA."""
    for user in ("u1", "u2"):
        store.create_user(user, vault.new_wrapped_key(user), None, clock.now())
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
