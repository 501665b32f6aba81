"""The cache: one Redis hash per user and the Lua scripts that change it atomically.

Layout: ``{prefix}:{<user_id>}`` is a hash with the fields

==========  ====================================================================
balance     credits (integer)
enabled     ``1`` when low-balance auto top-up is on, else ``0``
threshold   the balance at or below which a top-up is due
amount      credits bought per top-up (informational; the charge reads the store)
last        epoch seconds of the last claimed top-up, or absent
seq         number of the last claimed top-up attempt (0 when none)
open        number of the attempt in flight (claimed, not yet finished), or empty
state       ``active``, ``paused`` (authentication required) or ``suspended``
==========  ====================================================================

The braces make the user id a Redis Cluster hash tag, so a user's keys never span slots.

Why Lua: a deduction, the low-balance check and the cooldown claim must be one atomic step, or two
concurrent requests both see "below threshold, cooldown over" and both charge (the original system's
double-charge race). One ``EVALSHA`` per deduction is also the cheapest possible round trip.

Why no TTLs: correctness never depends on expiry (fakeredis expires by wall-clock time, which a
virtual clock does not move). The cooldown compares stored timestamps with the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import redis

from .errors import CacheUnavailable

# Returns {refused, trigger, balance, seq, previous_last}. A refused request changes no balance but
# may still claim a top-up: a user who ran dry must not wait for a request they can afford.
# A claim also needs no attempt in flight ('open'), unless that one is older than ARGV[4] seconds
# (lost): a top-up that runs late must not be joined by a second one for the same crossing.
# previous_last lets a failed store write undo the claim.
_DEDUCT = """
local f = redis.call('HMGET', KEYS[1], 'balance', 'enabled', 'threshold', 'last', 'seq', 'state',
                     'open')
local balance = tonumber(f[1])
if balance == nil then return {'miss', 'none', 0, 0, ''} end
local refused = tonumber(ARGV[1]) > balance
if not refused then balance = balance - tonumber(ARGV[1]) end
local trigger, seq = 'none', 0
if f[2] == '1' and balance <= tonumber(f[3]) then
  local last = tonumber(f[4])
  local since = last and (tonumber(ARGV[2]) - last)
  if f[6] ~= 'active' then
    trigger = 'held'
  elseif f[7] and f[7] ~= '' and since < tonumber(ARGV[4]) then
    trigger = 'pending'
  elseif last ~= nil and since < tonumber(ARGV[3]) then
    trigger = 'cooling'
  else
    trigger, seq = 'claimed', tonumber(f[5]) + 1
  end
end
if seq > 0 then
  redis.call('HSET', KEYS[1], 'balance', balance, 'last', ARGV[2], 'seq', seq, 'open', seq)
elseif not refused then
  redis.call('HSET', KEYS[1], 'balance', balance)
end
return {refused and 'refused' or 'taken', trigger, balance, seq, f[4] or ''}
"""

# Undo a deduction (and its claim, if it is still the newest) after the store refused to record it.
_UNDO = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1])
local seq = tonumber(ARGV[2])
if seq > 0 and tonumber(redis.call('HGET', KEYS[1], 'seq')) == seq then
  if ARGV[3] == '' then
    redis.call('HDEL', KEYS[1], 'last')
  else
    redis.call('HSET', KEYS[1], 'last', ARGV[3])
  end
  redis.call('HSET', KEYS[1], 'seq', seq - 1, 'open', '')
end
return 1
"""

# An attempt ended: it no longer blocks new claims (unless a newer one is already open).
_RELEASE = """
if redis.call('HGET', KEYS[1], 'open') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'open', '')
end
return 1
"""

_FILL_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Field updates and credits touch only a cached user: an absent hash is filled from the store later.
_SET_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_CREDIT_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1])
"""


class Trigger(Enum):
    """What a deduction did about auto top-up."""

    NONE = "none"  #: above the threshold, or auto top-up off
    CLAIMED = "claimed"  #: at/below threshold, cooldown over: this request claimed the top-up
    COOLING = "cooling"  #: at/below threshold, but a top-up was claimed within the cooldown
    PENDING = "pending"  #: at/below threshold, but a claimed top-up has not finished yet
    HELD = "held"  #: at/below threshold, but auto top-up is paused or suspended


@dataclass(frozen=True, slots=True)
class DeductResult:
    """The script's answer. ``missing`` means the user was not cached and nothing changed."""

    missing: bool
    refused: bool
    trigger: Trigger
    balance: int
    seq: int
    previous_last: float | None


@dataclass(frozen=True, slots=True)
class CachedUser:
    """The fields a user's hash is filled with from the store."""

    balance: int
    enabled: bool
    threshold: int
    amount: int
    last_triggered: float | None
    seq: int
    state: str
    open_seq: int | None = None

    def fields(self) -> list[str]:
        """Flatten to ``HSET`` arguments."""
        out = [
            "balance", str(self.balance),
            "enabled", "1" if self.enabled else "0",
            "threshold", str(self.threshold),
            "amount", str(self.amount),
            "seq", str(self.seq),
            "state", self.state,
            "open", "" if self.open_seq is None else str(self.open_seq),
        ]  # fmt: skip
        if self.last_triggered is not None:
            out += ["last", repr(self.last_triggered)]
        return out


class BalanceCache(Protocol):
    """Atomic per-user cache operations. Implemented on Redis (:class:`RedisCache`) and in
    process memory (:class:`~sim.billing.memory_cache.MemoryCache`); both pass one test suite."""

    def deduct(
        self, user_id: str, credits: int, now: float, cooldown: float, stale_after: float
    ) -> DeductResult:
        """Take ``credits`` (unless refused) and, if due, claim a top-up, atomically.

        Due: at/below the threshold, active, the cooldown over, and no attempt in flight (one
        claimed less than ``stale_after`` seconds ago and not yet released).
        """
        ...

    def undo_deduct(self, user_id: str, credits: int, result: DeductResult) -> None:
        """Give back ``credits`` the store did not record, and release the claim if one was made."""
        ...

    def release(self, user_id: str, seq: int) -> None:
        """Attempt ``seq`` ended: it no longer blocks new claims."""
        ...

    def fill(self, user_id: str, user: CachedUser) -> bool:
        """Load a user from the store unless already cached; ``True`` if this call filled it."""
        ...

    def update(self, user_id: str, **fields: str) -> None:
        """Set fields of a cached user; an uncached user is left to the next fill."""
        ...

    def credit(self, user_id: str, credits: int) -> None:
        """Add credits to a cached user's balance."""
        ...

    def forget(self, user_id: str) -> None:
        """Drop a user so that the next request reloads it from the store."""
        ...

    def clear(self) -> None:
        """Drop every cached user (what a Redis restart does); the store keeps the truth."""
        ...

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None`` when the user is not cached."""
        ...

    def cached(self, user_id: str) -> dict[str, str]:
        """All cached fields of a user (empty when not cached)."""
        ...


class RedisCache:
    """:class:`BalanceCache` on a redis-py compatible client (Redis or fakeredis): one hash per
    user, one Lua script per atomic operation."""

    def __init__(self, client: redis.Redis, prefix: str = "topup") -> None:
        self._client = client
        self._prefix = prefix
        self._deduct = client.register_script(_DEDUCT)
        self._undo = client.register_script(_UNDO)
        self._release = client.register_script(_RELEASE)
        self._fill = client.register_script(_FILL_IF_ABSENT)
        self._set = client.register_script(_SET_IF_PRESENT)
        self._credit = client.register_script(_CREDIT_IF_PRESENT)

    def key(self, user_id: str) -> str:
        """The hash key of one user."""
        return f"{self._prefix}:{{{user_id}}}"

    def deduct(
        self, user_id: str, credits: int, now: float, cooldown: float, stale_after: float
    ) -> DeductResult:
        """Take ``credits`` and, if due, claim a top-up: one round trip."""
        args = [credits, repr(now), repr(cooldown), repr(stale_after)]
        raw = self._run(self._deduct, user_id, args)
        taken, trigger, balance, seq, previous = (
            _text(v) if isinstance(v, bytes) else v for v in raw
        )
        return DeductResult(
            missing=taken == "miss",
            refused=taken == "refused",
            trigger=Trigger(trigger),
            balance=int(balance),
            seq=int(seq),
            previous_last=float(previous) if previous else None,
        )

    def undo_deduct(self, user_id: str, credits: int, result: DeductResult) -> None:
        """Give back ``credits`` the store did not record, and release the claim if one was made."""
        previous = "" if result.previous_last is None else repr(result.previous_last)
        self._run(self._undo, user_id, [credits, result.seq, previous])

    def release(self, user_id: str, seq: int) -> None:
        """Attempt ``seq`` ended: it no longer blocks new claims."""
        self._run(self._release, user_id, [seq])

    def fill(self, user_id: str, user: CachedUser) -> bool:
        """Load a user from the store, unless another request already did (never overwrites)."""
        return bool(self._run(self._fill, user_id, user.fields()))

    def update(self, user_id: str, **fields: str) -> None:
        """Set fields of a cached user; an uncached user is left to the next fill."""
        args: list[Any] = [item for pair in fields.items() for item in pair]
        self._run(self._set, user_id, args)

    def credit(self, user_id: str, credits: int) -> None:
        """Add credits to a cached user's balance (after the store recorded them)."""
        self._run(self._credit, user_id, [credits])

    def forget(self, user_id: str) -> None:
        """Drop a user's hash so that the next request reloads it from the store."""
        _guard(self._client.delete, self.key(user_id))

    def clear(self) -> None:
        """Delete every key under this cache's prefix (and nothing else in the database)."""
        keys = _guard(lambda: list(self._client.scan_iter(match=f"{self._prefix}:*", count=1000)))
        if keys:
            _guard(self._client.delete, *keys)

    def balance(self, user_id: str) -> int | None:
        """The cached balance, or ``None`` when the user is not cached."""
        raw = _guard(self._client.hget, self.key(user_id), "balance")
        return None if raw is None else int(raw)

    def cached(self, user_id: str) -> dict[str, str]:
        """All cached fields of a user (empty when not cached); for diagnostics and tests."""
        raw = _guard(self._client.hgetall, self.key(user_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _run(self, script: Any, user_id: str, args: list[Any]) -> Any:
        return _guard(script, keys=[self.key(user_id)], args=args)


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the client, turning any Redis failure into :class:`CacheUnavailable`."""
    try:
        return fn(*args, **kwargs)
    except redis.RedisError as exc:
        raise CacheUnavailable(f"cache error: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
