"""The cache: one Redis hash per user, holding a versioned snapshot of the store.

Layout: ``{prefix}:{<user_id>}`` is a hash with the fields

==========  ====================================================================
ver         the store version this snapshot was taken at (grows with every write)
balance     credits (integer)
enabled     ``1`` when low-balance auto top-up is on, else ``0``
threshold   the balance at or below which a top-up is due
amount      credits bought per top-up
state       ``active``, ``paused`` (authentication required) or ``suspended``
seq         number of the last claimed top-up attempt (0 when none)
open        number of the attempt in flight, or empty
==========  ====================================================================

The braces make the user id a Redis Cluster hash tag, so a user's keys never span slots.

Why it converges by construction: the store decides and records every change first, and returns
the user's new snapshot with its version; the cache keeps a snapshot only if it is newer than the
one it holds (one Lua script, so the compare and the write are atomic). Writers may reach the cache
in any order, a refill may race any write, a worker may die before its cache write: the newest
version wins whenever it arrives, and the user's next write brings the newest one. Nothing is
ever decided from the cache, so a stale or lost entry can delay a read, never corrupt a balance.

Why no TTLs: correctness never depends on expiry (fakeredis expires by wall-clock time, which a
virtual clock does not move).
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from .errors import CacheUnavailable
from .store import CachedUser

# Keep the snapshot in ARGV unless the cached one is at least as new. One round trip, two commands.
_PUT_IF_NEWER = """
local held = tonumber(redis.call('HGET', KEYS[1], 'ver'))
if held and held >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_FIELDS = ("ver", "balance", "enabled", "threshold", "amount", "state", "seq", "open")


def to_fields(user: CachedUser) -> list[str]:
    """Flatten a snapshot to ``HSET`` arguments, ``ver`` first."""
    return [
        "ver", str(user.version),
        "balance", str(user.balance),
        "enabled", "1" if user.enabled else "0",
        "threshold", str(user.threshold),
        "amount", str(user.amount),
        "state", user.state,
        "seq", str(user.seq),
        "open", "" if user.open_seq is None else str(user.open_seq),
    ]  # fmt: skip


def from_fields(fields: dict[str, str]) -> CachedUser | None:
    """A snapshot from a hash's fields; ``None`` unless every field is there."""
    if any(name not in fields for name in _FIELDS):
        return None
    return CachedUser(
        version=int(fields["ver"]),
        balance=int(fields["balance"]),
        enabled=fields["enabled"] == "1",
        threshold=int(fields["threshold"]),
        amount=int(fields["amount"]),
        state=fields["state"],
        seq=int(fields["seq"]),
        open_seq=int(fields["open"]) if fields["open"] else None,
    )


class BalanceCache(Protocol):
    """A cache of user snapshots where the newest version wins. Implemented on Redis
    (:class:`RedisCache`) and in process memory (:class:`~sim.billing.memory_cache.MemoryCache`);
    both pass one test suite."""

    def put(self, user_id: str, user: CachedUser) -> bool:
        """Keep ``user`` unless the cached snapshot is as new or newer; ``True`` if kept."""
        ...

    def get(self, user_id: str) -> CachedUser | None:
        """The cached snapshot, or ``None`` when the user is not cached."""
        ...

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None`` when the user is not cached."""
        ...

    def forget(self, user_id: str) -> None:
        """Drop a user so that the next read reloads it from the store."""
        ...

    def clear(self) -> None:
        """Drop every cached user (what a Redis restart does); the store keeps the truth."""
        ...


class RedisCache:
    """:class:`BalanceCache` on a redis-py compatible client (Redis or fakeredis)."""

    def __init__(self, client: redis.Redis, prefix: str = "topup") -> None:
        self._client = client
        self._prefix = prefix
        self._put = client.register_script(_PUT_IF_NEWER)

    def key(self, user_id: str) -> str:
        """The hash key of one user."""
        return f"{self._prefix}:{{{user_id}}}"

    def put(self, user_id: str, user: CachedUser) -> bool:
        """Keep ``user`` unless the cached snapshot is as new or newer: one round trip."""
        return bool(_guard(self._put, keys=[self.key(user_id)], args=to_fields(user)))

    def get(self, user_id: str) -> CachedUser | None:
        """The cached snapshot, or ``None``."""
        return from_fields(self.cached(user_id))

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None`` when the user is not cached."""
        raw = _guard(self._client.hget, self.key(user_id), "balance")
        return None if raw is None else int(raw)

    def forget(self, user_id: str) -> None:
        """Drop a user's hash so that the next read reloads it from the store."""
        _guard(self._client.delete, self.key(user_id))

    def clear(self) -> None:
        """Delete every key under this cache's prefix (and nothing else in the database)."""
        keys = _guard(lambda: list(self._client.scan_iter(match=f"{self._prefix}:*", count=1000)))
        if keys:
            _guard(self._client.delete, *keys)

    def cached(self, user_id: str) -> dict[str, str]:
        """All cached fields of a user (empty when not cached); for diagnostics and tests."""
        raw = _guard(self._client.hgetall, self.key(user_id))
        return {_text(k): _text(v) for k, v in raw.items()}


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the client, turning any Redis failure into :class:`CacheUnavailable`."""
    try:
        return fn(*args, **kwargs)
    except redis.RedisError as exc:
        raise CacheUnavailable(f"cache error: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
