"""The cache keeps the newest snapshot: one suite for fakeredis, memory and real Redis."""

from __future__ import annotations

import fakeredis
import pytest

from sim.billing import BalanceCache, CachedUser, CacheUnavailable, RedisCache
from sim.billing.cache import from_fields, to_fields

from .conftest import CacheBackend


def _user(version: int = 1, balance: int = 1_500, **overrides: object) -> CachedUser:
    fields: dict[str, object] = {
        "version": version, "balance": balance, "enabled": True, "threshold": 1_000,
        "amount": 10_000, "state": "active", "seq": 0, "open_seq": None,
    }  # fmt: skip
    fields.update(overrides)
    return CachedUser(**fields)  # type: ignore[arg-type]


@pytest.fixture
def cache(cache_backend: CacheBackend) -> BalanceCache:
    """Each cache implementation in turn."""
    return cache_backend.cache


def test_uncached_user_reads_as_missing(cache: BalanceCache) -> None:
    """A user never put reads as ``None``, balance and snapshot alike."""
    assert cache.get("u1") is None and cache.balance("u1") is None


def test_put_keeps_the_snapshot_whole(cache: BalanceCache) -> None:
    """What is put is what is read back, every field (the open attempt included)."""
    user = _user(7, 900, enabled=False, threshold=500, amount=21_000, state="paused", seq=3,
                 open_seq=3)  # fmt: skip
    assert cache.put("u1", user)
    assert cache.get("u1") == user and cache.balance("u1") == 900


def test_newer_version_replaces_and_older_is_ignored(cache: BalanceCache) -> None:
    """Writers may arrive in any order: the newest version wins, an older one changes nothing."""
    assert cache.put("u1", _user(5, 500))
    assert cache.put("u1", _user(6, 600))
    assert not cache.put("u1", _user(4, 400))
    assert cache.get("u1") == _user(6, 600)


def test_same_version_is_not_rewritten(cache: BalanceCache) -> None:
    """A second put at the held version (a refill racing the write it read) is a no-op."""
    assert cache.put("u1", _user(3, 300))
    assert not cache.put("u1", _user(3, 999))
    assert cache.balance("u1") == 300


def test_refill_racing_a_credit_converges(cache: BalanceCache) -> None:
    """A refill that read the store before a credit, and writes after it, cannot win."""
    before_credit, after_credit = _user(8, 5_000), _user(9, 15_000)
    cache.put("u1", after_credit)  # the credit's write lands first ...
    cache.put("u1", before_credit)  # ... then the refill's older read
    assert cache.balance("u1") == 15_000


def test_forget_drops_one_user(cache: BalanceCache) -> None:
    """Forgetting a user drops it and no other."""
    cache.put("u1", _user(1, 100))
    cache.put("u2", _user(1, 200))
    cache.forget("u1")
    assert cache.get("u1") is None and cache.balance("u2") == 200


def test_forget_lets_an_older_snapshot_in(cache: BalanceCache) -> None:
    """After a forget (or a flush) any snapshot is taken: the reconcile's repair relies on it."""
    cache.put("u1", _user(9, 100))
    cache.forget("u1")
    assert cache.put("u1", _user(2, 50))
    assert cache.balance("u1") == 50


def test_clear_drops_every_user(cache: BalanceCache) -> None:
    """Clearing the cache (a Redis restart) drops every cached user."""
    cache.put("u1", _user(1, 100))
    cache.put("u2", _user(1, 200))
    cache.clear()
    assert (cache.get("u1"), cache.balance("u2")) == (None, None)


def test_fields_round_trip_and_partial_hash_is_no_snapshot() -> None:
    """A hash missing any field (a half-written or foreign key) is not taken as a snapshot."""
    user = _user(2, 10, open_seq=4, seq=4)
    flat = to_fields(user)
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    assert from_fields(fields) == user
    for name in fields:
        assert from_fields({k: v for k, v in fields.items() if k != name}) is None


def test_redis_keys_are_cluster_hash_tagged() -> None:
    """A user's key carries the user id in braces, so it maps to one cluster slot."""
    assert RedisCache(fakeredis.FakeRedis(), "topup").key("u1") == "topup:{u1}"


def test_redis_clear_touches_only_its_own_prefix() -> None:
    """Clearing one RedisCache leaves other keys in the same database alone."""
    client = fakeredis.FakeRedis()
    client.set("unrelated", "kept")
    ours, theirs = RedisCache(client, "ours"), RedisCache(client, "theirs")
    ours.put("u1", _user(1, 100))
    theirs.put("u1", _user(1, 100))
    ours.clear()
    assert ours.balance("u1") is None and theirs.balance("u1") == 100
    assert client.get("unrelated") == b"kept"


def test_unreachable_cache_is_a_typed_error() -> None:
    """A Redis connection error surfaces as CacheUnavailable, for writes and reads."""
    server = fakeredis.FakeServer()
    server.connected = False
    cache = RedisCache(fakeredis.FakeRedis(server=server))
    with pytest.raises(CacheUnavailable):
        cache.put("u1", _user())
    with pytest.raises(CacheUnavailable):
        cache.balance("u1")
    with pytest.raises(CacheUnavailable):
        cache.forget("u1")


def test_redis_clear_scans_in_large_pages() -> None:
    """Clearing pages through the keyspace a thousand keys at a time, not Redis's default ten."""
    client = fakeredis.FakeRedis()
    cache = RedisCache(client)
    for n in range(300):
        cache.put(f"u{n}", _user(1, n))
    scan, pages = client.scan, []

    def counting_scan(*args: object, **kwargs: object) -> object:
        pages.append(kwargs.get("count"))
        return scan(*args, **kwargs)  # type: ignore[arg-type]

    client.scan = counting_scan  # type: ignore[method-assign]
    cache.clear()
    assert cache.balance("u0") is None and client.dbsize() == 0
    assert len(pages) == 1  # Redis's default COUNT (10) would take 30 round trips


def test_redis_cache_works_on_a_decoding_client() -> None:
    """A client made with decode_responses=True (str replies, not bytes) reads back the same."""
    cache = RedisCache(fakeredis.FakeRedis(decode_responses=True))
    user = _user(4, 700, open_seq=2, seq=2)
    cache.put("u1", user)
    assert cache.get("u1") == user and cache.balance("u1") == 700


def test_forgetting_an_uncached_user_is_a_no_op(cache: BalanceCache) -> None:
    """Forgetting a user the cache does not hold neither fails nor drops anyone else."""
    cache.put("u1", _user(1, 100))
    cache.forget("nobody")
    assert cache.balance("u1") == 100 and cache.get("nobody") is None


def test_redis_hash_holds_the_documented_fields() -> None:
    """The hash is the documented layout: text fields, ``enabled`` 1/0, ``open`` empty when no
    attempt is in flight (another process, or an operator, reads the same hash)."""
    cache = RedisCache(fakeredis.FakeRedis())
    cache.put("u1", _user(3, 250, enabled=False, state="paused", seq=2))
    assert cache.cached("u1") == {
        "ver": "3", "balance": "250", "enabled": "0", "threshold": "1000", "amount": "10000",
        "state": "paused", "seq": "2", "open": "",
    }  # fmt: skip


def test_redis_cache_prefix_defaults_to_topup() -> None:
    """Without a prefix, keys live under ``topup:``, the prefix BillingService uses by default."""
    assert RedisCache(fakeredis.FakeRedis()).key("u1") == "topup:{u1}"
