"""Per-user envelope encryption."""

from __future__ import annotations

import base64

import pytest

from sim.billing import DecryptionError, Vault
from sim.billing import vault as vault_module

KEY = bytes(range(32))


def test_round_trip() -> None:
    """A field encrypted for a user decrypts for that user and field."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "email", "ada@example.com")
    assert b"ada@example.com" not in token
    assert vault.decrypt("u1", wrapped, "email", token) == "ada@example.com"


def test_opens_says_whether_the_master_key_unwraps_a_users_data_key() -> None:
    """Only the master key that wrapped a data key opens it, and only for its own user; asking
    changes nothing (a vault that could not open a key still encrypts with its own)."""
    vault, other = Vault(KEY), Vault(bytes(range(1, 33)))
    wrapped = vault.new_wrapped_key("u1")
    assert vault.opens("u1", wrapped)
    assert not other.opens("u1", wrapped)
    assert not vault.opens("u2", wrapped)
    assert not other.opens("u1", wrapped)  # a failure is not remembered as a success
    token = vault.encrypt("u1", wrapped, "f", "x")
    with pytest.raises(DecryptionError):
        other.decrypt("u1", wrapped, "f", token)


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


def test_a_token_opened_once_still_opens_only_for_its_user_key_and_field() -> None:
    """A decrypted field is remembered, but only for the user, data key and field it was
    decrypted for: the same token under any other fails as before."""
    vault = Vault(KEY)
    wrapped, other = vault.new_wrapped_key("u1"), vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "f", "secret")
    assert vault.decrypt("u1", wrapped, "f", token) == "secret"
    assert vault.decrypt("u1", wrapped, "f", token) == "secret"
    for user, key, field in (("u2", wrapped, "f"), ("u1", other, "f"), ("u1", wrapped, "g")):
        with pytest.raises(DecryptionError):
            vault.decrypt(user, key, field, token)


def test_a_failed_decryption_is_not_remembered() -> None:
    """A tampered token fails every time; the genuine one still opens."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "f", "secret")
    forged = token[:-1] + bytes([token[-1] ^ 1])
    for _ in range(2):
        with pytest.raises(DecryptionError):
            vault.decrypt("u1", wrapped, "f", forged)
    assert vault.decrypt("u1", wrapped, "f", token) == "secret"


def test_remembered_fields_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the remembered fields are forgotten, and every token still opens."""
    monkeypatch.setattr(vault_module, "MAX_OPENED", 3)
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    tokens = [vault.encrypt("u1", wrapped, "f", str(n)) for n in range(5)]
    for _ in range(2):
        assert [vault.decrypt("u1", wrapped, "f", token) for token in tokens] == list("01234")
        assert len(vault._opened) <= 3


def test_a_token_that_is_not_bytes_opens_too() -> None:
    """A driver may hand back a bytearray or memoryview: decrypted, not remembered."""
    vault = Vault(KEY)
    wrapped = vault.new_wrapped_key("u1")
    token = vault.encrypt("u1", wrapped, "f", "secret")
    assert vault.decrypt("u1", wrapped, "f", bytearray(token)) == "secret"
    assert vault.decrypt("u1", wrapped, "f", memoryview(token)) == "secret"
    assert vault._opened == {}
