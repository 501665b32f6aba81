"""Seeded, Stripe-shaped object ids that carry their creation sequence number.

The same seed and the same sequence of calls yield the same ids (``pi_...``, ``cus_...``), so runs
are reproducible and outputs can be diffed. An id is ``prefix_`` + 17 seeded random characters + the
emulator-wide creation number in 7 hex digits; Stripe ids are opaque, and the trailing number
lets list indexes find a cursor by binary search instead of keeping an id -> position hash table
per list (see ``_store``). The random part is base64 done in C by ``binascii`` (much faster
than a base-62 loop or the ``base64`` module's wrappers: a confirmed PaymentIntent mints half a
dozen ids), with the two non-alphanumeric characters mapped to letters.
"""

from __future__ import annotations

import binascii
import random

_ALNUM = bytes.maketrans(b"+/", b"Xq")
_SEQ_WIDTH = 7


class IdGenerator:
    """Mints ids like ``pi_3Qx...00002af`` from a private, seeded random stream and a counter."""

    __slots__ = ("_count", "_rng")

    def __init__(self, seed: int | str) -> None:
        self._rng = random.Random(f"stripe-emulator-ids:{seed}")
        self._count = 0

    def new(self, prefix: str) -> str:
        """A fresh id with Stripe's ``prefix`` (``pi``, ``cus``, ``evt``...)."""
        self._count = count = self._count + 1
        raw = self._rng.getrandbits(108).to_bytes(18, "big")
        random_part = binascii.b2a_base64(raw, newline=False)[7:].translate(_ALNUM).decode()
        return f"{prefix}_{random_part}{count:07x}"

    def next_sequence(self) -> int:
        """Reserve a creation number for an object whose id the caller chose."""
        self._count += 1
        return self._count

    def token(self, length: int = 24) -> str:
        """A random alphanumeric string, for client secrets and request ids (no counter)."""
        raw = self._rng.getrandbits(6 * length).to_bytes((6 * length + 7) // 8, "big")
        return binascii.b2a_base64(raw, newline=False)[:length].translate(_ALNUM).decode()


def sequence_of(object_id: str) -> int:
    """The creation number at the end of a generated id (-1 when it has none)."""
    try:
        return int(object_id[-_SEQ_WIDTH:], 16)
    except ValueError:
        return -1
