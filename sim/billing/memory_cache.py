"""An in-process :class:`~sim.billing.cache.BalanceCache`: the same semantics as the Redis scripts
in ``cache.py``, for one process that needs no shared cache (the simulation's fastest backend, or
a single-worker deployment).

Every operation holds one lock, which is what a Lua script's atomicity gives on Redis. The shared
test suite in ``tests/billing/test_cache.py`` runs against both implementations, and the simulation
proves that both give identical event logs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .cache import CachedUser, DeductResult, Trigger
from .settings import ACTIVE


@dataclass(slots=True)
class _Entry:
    balance: int
    enabled: bool
    threshold: int
    amount: int
    last: float | None
    seq: int
    state: str
    open: int | None


class MemoryCache:
    """Cached users in a dict, guarded by a lock."""

    def __init__(self) -> None:
        self._users: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def deduct(
        self, user_id: str, credits: int, now: float, cooldown: float, stale_after: float
    ) -> DeductResult:
        """Take ``credits`` (unless refused) and, if due, claim a top-up."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None:
                return DeductResult(True, False, Trigger.NONE, 0, 0, None)
            refused = credits > entry.balance
            balance = entry.balance if refused else entry.balance - credits
            trigger, seq, previous = Trigger.NONE, 0, entry.last
            if entry.enabled and balance <= entry.threshold:
                since = None if entry.last is None else now - entry.last
                if entry.state != ACTIVE:
                    trigger = Trigger.HELD
                elif entry.open is not None and since is not None and since < stale_after:
                    trigger = Trigger.PENDING
                elif since is not None and since < cooldown:
                    trigger = Trigger.COOLING
                else:
                    trigger, seq = Trigger.CLAIMED, entry.seq + 1
                    entry.last, entry.seq, entry.open = now, seq, seq
            entry.balance = balance
            return DeductResult(False, refused, trigger, balance, seq, previous if seq else None)

    def undo_deduct(self, user_id: str, credits: int, result: DeductResult) -> None:
        """Give back ``credits`` and release the claim if it is still the newest."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None:
                return
            entry.balance += credits
            if result.seq > 0 and entry.seq == result.seq:
                entry.last, entry.seq, entry.open = result.previous_last, result.seq - 1, None

    def release(self, user_id: str, seq: int) -> None:
        """Attempt ``seq`` ended: it no longer blocks new claims."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is not None and entry.open == seq:
                entry.open = None

    def fill(self, user_id: str, user: CachedUser) -> bool:
        """Load a user unless already cached."""
        with self._lock:
            if user_id in self._users:
                return False
            self._users[user_id] = _Entry(
                user.balance, user.enabled, user.threshold, user.amount,
                user.last_triggered, user.seq, user.state, user.open_seq,
            )  # fmt: skip
            return True

    def update(self, user_id: str, **fields: str) -> None:
        """Set fields of a cached user (values as the Redis hash holds them)."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None:
                return
            for name, value in fields.items():
                if name == "enabled":
                    entry.enabled = value == "1"
                elif name == "state":
                    entry.state = value
                elif name == "last":
                    entry.last = float(value)
                elif name == "open":
                    entry.open = int(value) if value else None
                elif name in ("balance", "threshold", "amount", "seq"):
                    setattr(entry, name, int(value))
                else:
                    raise ValueError(f"unknown cache field {name!r}")

    def credit(self, user_id: str, credits: int) -> None:
        """Add credits to a cached user's balance."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is not None:
                entry.balance += credits

    def forget(self, user_id: str) -> None:
        """Drop a user."""
        with self._lock:
            self._users.pop(user_id, None)

    def clear(self) -> None:
        """Drop every user (what a Redis restart or ``FLUSHALL`` does)."""
        with self._lock:
            self._users.clear()

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None``."""
        with self._lock:
            entry = self._users.get(user_id)
            return None if entry is None else entry.balance

    def cached(self, user_id: str) -> dict[str, str]:
        """All cached fields, formatted as the Redis hash holds them."""
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None:
                return {}
            fields = {
                "balance": str(entry.balance),
                "enabled": "1" if entry.enabled else "0",
                "threshold": str(entry.threshold),
                "amount": str(entry.amount),
                "seq": str(entry.seq),
                "state": entry.state,
                "open": "" if entry.open is None else str(entry.open),
            }
            if entry.last is not None:
                fields["last"] = repr(entry.last)
            return fields
