"""Emulated accounts: one per secret key, each with objects no other key can see.

In Stripe every object belongs to the account whose key created it: another account's key gets
``resource_missing`` for it, its lists never show it, and its events go only to that account's
webhook endpoints. The emulator treats each distinct API key as its own test-mode account, so two
services (or two test cases) sharing one emulator cannot read or charge each other's customers by
accident, and a client that mixes up its keys fails here as it would against Stripe.

An account owns its :class:`~._store.Store` (so caller-chosen ids such as ``prod_basic`` may exist
once per account) and its webhook endpoints. Generated ids come from the emulator-wide seeded
stream, so they are unique across accounts and a run stays reproducible.
"""

from __future__ import annotations

from functools import cache

from ._store import OrderedIndex, Store, StripeObject


class Account:
    """The objects, lists and webhook endpoints of one API key."""

    __slots__ = ("_event_indexes", "endpoints", "key", "store")

    def __init__(self, key: str) -> None:
        self.key = key
        self.store = Store()
        #: Enabled or disabled endpoints created through the API, by id (deleted ones leave).
        self.endpoints: dict[str, StripeObject] = {}
        # The list indexes each event type goes to, resolved once per type (events are the most
        # frequent objects: three per confirmed PaymentIntent).
        self._event_indexes: dict[str, tuple[OrderedIndex, ...]] = {}

    def event_indexes(self, type: str) -> tuple[OrderedIndex, ...]:
        """The lists an event of ``type`` is added to in this account."""
        indexes = self._event_indexes.get(type)
        if indexes is None:
            indexes = self._event_indexes[type] = tuple(
                self.store.index(key) for key in _event_lists(type)
            )
        return indexes


@cache
def _event_lists(type: str) -> tuple[tuple[str, ...], ...]:
    """The lists an event of ``type`` belongs to: all, its type, and its ``prefix.*`` group."""
    return ("event",), ("event", type), ("event", type.rsplit(".", 1)[0] + ".*")
