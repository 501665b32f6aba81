"""Per-user envelope encryption."""

from __future__ import annotations

import base64

import pytest

from sim.billing import DecryptionError, Vault

KEY = bytes(range(32))


def test_round_trip() -> None:
    """A field encrypted for a user decrypts for that user and field."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "email", "ada@example.com")
    assert b"ada@example.com" not in token
    assert vault.decrypt("u1", wrapped, "email", token) == "ada@example.com"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    """Encrypting the same value twice gives different tokens."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    assert vault.encrypt("u1", wrapped, "f", "x") != vault.encrypt("u1", wrapped, "f", "x")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_flipped_byte_is_rejected(position: int) -> None:
    """Any flipped byte (version, nonce, body or tag) raises DecryptionError."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = bytearray(vault.encrypt("u1", wrapped, "f", "secret"))
    token[position] ^= 0x01
    with pytest.raises(DecryptionError):
        vault.decrypt("u1", wrapped, "f", bytes(token))


def test_wrong_users_key_is_rejected() -> None:
    """A token cannot be decrypted with another user's data key."""
    vault = Vault(KEY)
    wrapped_1, wrapped_2 = vault.new_wrapped_key("u1"), vault.new_wrapped_key("u2")
    token = vault.encrypt("u1", wrapped_1, "f", "secret")
    with pytest.raises(DecryptionError):
        vault.decrypt("u2", wrapped_2, "f", token)
    with pytest.raises(DecryptionError):
        vault.decrypt("u2", wrapped_1, "f", token)


def test_token_moved_to_another_field_is_rejected() -> None:
    """Field names are bound in: a payment method token is no e-mail token."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "payment_method_id", "pm_1")
    with pytest.raises(DecryptionError):
        vault.decrypt("u1", wrapped, "email", token)


def test_other_master_key_cannot_unwrap() -> None:
    """Data keys wrapped by one master key are useless under another."""
    wrapped = Vault(KEY).new_wrapped_key("u1")
    token = Vault(KEY).encrypt("u1", wrapped, "f", "secret")
    with pytest.raises(DecryptionError):
        Vault(bytes(32)).decrypt("u1", wrapped, "f", token)


def test_truncated_token_is_rejected() -> None:
    """A token too short to hold a nonce and tag is malformed, not a crash."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    with pytest.raises(DecryptionError, match="malformed"):
        vault.decrypt("u1", wrapped, "f", b"\x01abc")


def test_master_key_from_environment() -> None:
    """TOPUP_MASTER_KEY must be 32 bytes of base64; anything else is a clear error."""
    good = base64.b64encode(KEY).decode()
    vault = Vault.from_env({"TOPUP_MASTER_KEY": good})
    wrapped = vault.new_wrapped_key("u1")
    assert vault.decrypt("u1", wrapped, "f", vault.encrypt("u1", wrapped, "f", "x")) == "x"
    with pytest.raises(ValueError, match="not set"):
        Vault.from_env({})
    with pytest.raises(ValueError, match="base64"):
        Vault.from_env({"TOPUP_MASTER_KEY": "not base64!"})
    with pytest.raises(ValueError, match="32 bytes"):
        Vault.from_env({"TOPUP_MASTER_KEY": base64.b64encode(b"short").decode()})
