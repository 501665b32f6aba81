"""An in-process :class:`~sim.billing.cache.BalanceCache`: the same newest-version-wins rule as
the Redis script in ``cache.py``, for one process that needs no shared cache (the simulation's
fastest backend, or a single-worker deployment).

The shared test suite in ``tests/billing/test_cache.py`` runs against both implementations, and
the simulation proves that both give identical event logs.
"""

from __future__ import annotations

import threading

from .store import CachedUser


class MemoryCache:
    """Cached snapshots in a dict, guarded by a lock (what a Lua script's atomicity gives)."""

    def __init__(self) -> None:
        self._users: dict[str, CachedUser] = {}
        self._lock = threading.Lock()

    def put(self, user_id: str, user: CachedUser) -> bool:
        """Keep ``user`` unless the cached snapshot is as new or newer."""
        # acquire/release rather than ``with``: this runs on every deduction, and the ``with``
        # statement's method lookups cost about as much again as the lock itself.
        self._lock.acquire()
        try:
            held = self._users.get(user_id)
            if held is not None and held.version >= user.version:
                return False
            self._users[user_id] = user
            return True
        finally:
            self._lock.release()

    def get(self, user_id: str) -> CachedUser | None:
        """The cached snapshot, or ``None``."""
        return self._users.get(user_id)

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None``."""
        held = self._users.get(user_id)
        return None if held is None else held.balance

    def forget(self, user_id: str) -> None:
        """Drop a user."""
        with self._lock:
            self._users.pop(user_id, None)

    def clear(self) -> None:
        """Drop every user (what a Redis restart or ``FLUSHALL`` does)."""
        with self._lock:
            self._users.clear()
