"""Per-user envelope encryption (the role Vault's transit engine plays in production).

Each user gets a random 256-bit data key, stored only wrapped (AES-256-GCM) by the master key. A
field is encrypted with the user's data key and bound by associated data to the user id and the
field name, so a ciphertext copied to another user or another column fails to decrypt, and a flipped
byte fails the GCM tag. Both raise :class:`~sim.billing.errors.DecryptionError`.

Token layout: ``b"\\x01" + nonce(12) + ciphertext||tag``. The version byte leaves room for key
rotation without guessing.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError

_VERSION = b"\x01"
_NONCE = 12
_KEY_BYTES = 32
MASTER_KEY_ENV = "TOPUP_MASTER_KEY"

#: The billing's field names, bound into each ciphertext: a token cannot move to another column.
F_LAST_TRIGGERED = "auto_topup_last_triggered"
F_PAYMENT_METHOD = "payment_method_id"
F_CUSTOMER = "stripe_customer_id"
F_EMAIL = "email"
#: How many decrypted fields a vault remembers before it forgets them all (see ``decrypt``).
MAX_OPENED = 65_536


class Vault:
    """Wraps per-user data keys with a master key and encrypts fields with them."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != _KEY_BYTES:
            raise ValueError("the master key must be 32 bytes (AES-256)")
        self._master = AESGCM(master_key)
        # Unwrapping costs an AES operation; keep the unwrapped keys of users we have seen.
        self._data_keys: dict[tuple[str, bytes], AESGCM] = {}
        self._opened: dict[tuple[str, bytes, str, bytes], str] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Vault:
        """Build a vault from ``TOPUP_MASTER_KEY`` (32 bytes, base64)."""
        encoded = environ.get(MASTER_KEY_ENV)
        if not encoded:
            raise ValueError(f"{MASTER_KEY_ENV} is not set (32 random bytes, base64)")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{MASTER_KEY_ENV} is not valid base64") from exc
        return cls(key)

    @staticmethod
    def generate_master_key() -> bytes:
        """Return 32 fresh random bytes for a new master key."""
        return AESGCM.generate_key(bit_length=256)

    def new_wrapped_key(self, user_id: str) -> bytes:
        """Create a data key for ``user_id`` and return it wrapped by the master key."""
        data_key = AESGCM.generate_key(bit_length=256)
        return _seal(self._master, data_key, _wrap_aad(user_id))

    def opens(self, user_id: str, wrapped_key: bytes) -> bool:
        """Whether this vault's master key unwraps ``user_id``'s data key: a server started
        with another key than the one its store was written with can decrypt nothing."""
        try:
            self._data_key(user_id, wrapped_key)
        except DecryptionError:
            return False
        return True

    def encrypt(self, user_id: str, wrapped_key: bytes, field: str, plaintext: str) -> bytes:
        """Encrypt ``plaintext`` for one user's field."""
        key = self._data_key(user_id, wrapped_key)
        return _seal(key, plaintext.encode(), _field_aad(user_id, field))

    def decrypt(self, user_id: str, wrapped_key: bytes, field: str, token: bytes) -> str:
        """Decrypt a token made by :meth:`encrypt` for the same user and field.

        A token that decrypted once is remembered with everything its decryption depends on
        (user, wrapped key, field): the same four again give the same text, so it is answered
        without the AES operation. An auto top-up opens the same saved card's fields five times
        (the card check, the charge, the webhook's customer check). Only a success is kept, so a
        token never opens under another user, key or field. The memory holds no more than the
        unwrapped data keys beside it already give, and is bounded: emptied when full.
        """
        if type(token) is not bytes:  # a bytearray or memoryview from a driver: not hashable
            return self._decrypt(user_id, wrapped_key, field, token)
        remembered = (user_id, wrapped_key, field, token)
        text = self._opened.get(remembered)
        if text is None:
            text = self._decrypt(user_id, wrapped_key, field, token)
            if len(self._opened) >= MAX_OPENED:
                self._opened.clear()
            self._opened[remembered] = text
        return text

    def _decrypt(self, user_id: str, wrapped_key: bytes, field: str, token: bytes) -> str:
        key = self._data_key(user_id, wrapped_key)
        return _open(key, token, _field_aad(user_id, field)).decode()

    def _data_key(self, user_id: str, wrapped_key: bytes) -> AESGCM:
        cache_key = (user_id, wrapped_key)
        key = self._data_keys.get(cache_key)
        if key is None:
            key = AESGCM(_open(self._master, wrapped_key, _wrap_aad(user_id)))
            self._data_keys[cache_key] = key
        return key


def _wrap_aad(user_id: str) -> bytes:
    return b"data-key:" + user_id.encode()


def _field_aad(user_id: str, field: str) -> bytes:
    return b"field:" + user_id.encode() + b":" + field.encode()


def _seal(key: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + key.encrypt(nonce, plaintext, aad)


def _open(key: AESGCM, token: bytes, aad: bytes) -> bytes:
    if len(token) < 1 + _NONCE + 16 or token[:1] != _VERSION:
        raise DecryptionError("ciphertext is malformed or of an unknown version")
    nonce, body = token[1 : 1 + _NONCE], token[1 + _NONCE :]
    try:
        return key.decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext failed authentication (tampered or wrong key)") from exc
