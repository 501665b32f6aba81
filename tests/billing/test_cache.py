"""The cache's atomic operations: one suite for fakeredis, memory and (with REDIS_URL) Redis."""

from __future__ import annotations

import fakeredis
import pytest

from sim.billing import BalanceCache, CacheUnavailable, RedisCache, Trigger
from sim.billing.cache import CachedUser

from .conftest import CacheBackend

T0 = 1_767_225_600.0
HOUR = 3_600.0
DAY = 86_400.0


def _user(balance: int = 1_500, **overrides: object) -> CachedUser:
    fields: dict[str, object] = {
        "balance": balance, "enabled": True, "threshold": 1_000, "amount": 10_000,
        "last_triggered": None, "seq": 0, "state": "active",
    }  # fmt: skip
    fields.update(overrides)
    return CachedUser(**fields)  # type: ignore[arg-type]


@pytest.fixture
def cache(cache_backend: CacheBackend) -> BalanceCache:
    """Each cache implementation in turn."""
    return cache_backend.cache


def test_uncached_user_is_a_miss_and_nothing_is_written(cache: BalanceCache) -> None:
    """A deduction for an uncached user reports a miss and creates no key."""
    result = cache.deduct("u1", 100, T0, HOUR, DAY)
    assert result.missing
    assert cache.cached("u1") == {}


def test_fill_never_overwrites_a_cached_user(cache: BalanceCache) -> None:
    """A second fill (a racing request with older data) leaves the cached balance alone."""
    assert cache.fill("u1", _user(1_500))
    cache.deduct("u1", 100, T0, HOUR, DAY)
    assert not cache.fill("u1", _user(1_500))
    assert cache.balance("u1") == 1_400


def test_deduction_above_threshold_triggers_nothing(cache: BalanceCache) -> None:
    """Above the threshold the balance drops and no claim is made."""
    cache.fill("u1", _user(1_500))
    result = cache.deduct("u1", 400, T0, HOUR, DAY)
    assert (result.refused, result.trigger, result.balance, result.seq) == (
        False, Trigger.NONE, 1_100, 0,
    )  # fmt: skip


def test_reaching_the_threshold_claims_once_then_waits(cache: BalanceCache) -> None:
    """At the threshold the first deduction claims; the next waits for it to finish, then for
    the cooldown."""
    cache.fill("u1", _user(1_500))
    first = cache.deduct("u1", 500, T0, HOUR, DAY)
    second = cache.deduct("u1", 100, T0 + 60, HOUR, DAY)
    assert (first.trigger, first.balance, first.seq) == (Trigger.CLAIMED, 1_000, 1)
    assert (second.trigger, second.seq) == (Trigger.PENDING, 0)
    assert cache.cached("u1")["last"] == repr(T0)
    cache.release("u1", 1)
    assert cache.deduct("u1", 100, T0 + 120, HOUR, DAY).trigger is Trigger.COOLING


def test_attempt_in_flight_blocks_claims_past_the_cooldown(cache: BalanceCache) -> None:
    """A top-up still running after the cooldown is not joined by a second one; a lost one
    (older than the stale limit) no longer blocks."""
    cache.fill("u1", _user(900))
    assert cache.deduct("u1", 1, T0, HOUR, DAY).seq == 1
    assert cache.deduct("u1", 1, T0 + 2 * HOUR, HOUR, DAY).trigger is Trigger.PENDING
    late = cache.deduct("u1", 1, T0 + DAY, HOUR, DAY)
    assert (late.trigger, late.seq) == (Trigger.CLAIMED, 2)


def test_release_of_an_older_attempt_keeps_the_newer_open(cache: BalanceCache) -> None:
    """Only the attempt in flight can release the block."""
    cache.fill("u1", _user(900, last_triggered=T0 - DAY, seq=4, open_seq=4))
    assert cache.deduct("u1", 1, T0, HOUR, DAY).seq == 5
    cache.release("u1", 4)
    assert cache.cached("u1")["open"] == "5"
    cache.release("u1", 5)
    assert cache.cached("u1")["open"] == ""


def test_claim_again_once_the_cooldown_is_over(cache: BalanceCache) -> None:
    """Exactly one cooldown after the last claim, the next low deduction claims attempt 2."""
    cache.fill("u1", _user(900, last_triggered=T0, seq=1))
    assert cache.deduct("u1", 1, T0 + HOUR - 0.5, HOUR, DAY).trigger is Trigger.COOLING
    result = cache.deduct("u1", 1, T0 + HOUR, HOUR, DAY)
    assert (result.trigger, result.seq, result.previous_last) == (Trigger.CLAIMED, 2, T0)


@pytest.mark.parametrize("state", ["paused", "suspended"])
def test_paused_or_suspended_user_is_held(cache: BalanceCache, state: str) -> None:
    """A paused or suspended user never claims, whatever the cooldown."""
    cache.fill("u1", _user(900, state=state))
    result = cache.deduct("u1", 100, T0, HOUR, DAY)
    assert (result.trigger, result.seq, result.balance) == (Trigger.HELD, 0, 800)


def test_disabled_user_never_claims(cache: BalanceCache) -> None:
    """With auto top-up off a deduction to zero triggers nothing."""
    cache.fill("u1", _user(900, enabled=False))
    assert cache.deduct("u1", 900, T0, HOUR, DAY).trigger is Trigger.NONE


def test_refused_request_changes_no_balance_but_may_claim(cache: BalanceCache) -> None:
    """An unaffordable request leaves the balance; a user under the threshold still gets a claim."""
    cache.fill("u1", _user(300))
    result = cache.deduct("u1", 500, T0, HOUR, DAY)
    assert (result.refused, result.balance, result.trigger, result.seq) == (
        True, 300, Trigger.CLAIMED, 1,
    )  # fmt: skip
    assert cache.balance("u1") == 300


def test_refused_request_above_threshold_changes_nothing(cache: BalanceCache) -> None:
    """A refused request by a user above the threshold writes nothing at all."""
    cache.fill("u1", _user(1_500, threshold=1_000))
    before = cache.cached("u1")
    result = cache.deduct("u1", 2_000, T0, HOUR, DAY)
    assert result.refused and result.trigger is Trigger.NONE
    assert cache.cached("u1") == before


def test_undo_gives_back_credits_and_releases_the_claim(cache: BalanceCache) -> None:
    """Undoing a claiming deduction restores balance, last-triggered time and attempt number."""
    cache.fill("u1", _user(1_200, last_triggered=T0 - 2 * HOUR, seq=4))
    result = cache.deduct("u1", 300, T0, HOUR, DAY)
    assert result.seq == 5
    cache.undo_deduct("u1", 300, result)
    fields = cache.cached("u1")
    assert (fields["balance"], fields["seq"], fields["last"], fields["open"]) == (
        "1200", "4", repr(T0 - 2 * HOUR), "",
    )  # fmt: skip


def test_undo_of_a_first_claim_removes_last_triggered(cache: BalanceCache) -> None:
    """Undoing the very first claim leaves no last-triggered time behind."""
    cache.fill("u1", _user(1_200))
    result = cache.deduct("u1", 300, T0, HOUR, DAY)
    cache.undo_deduct("u1", 300, result)
    assert "last" not in cache.cached("u1")


def test_update_and_credit_touch_only_cached_users(cache: BalanceCache) -> None:
    """Field updates and credits on an uncached user create nothing (the store is the truth)."""
    cache.update("u1", state="paused")
    cache.credit("u1", 100)
    assert cache.cached("u1") == {}
    cache.fill("u1", _user(100))
    cache.update("u1", state="paused")
    cache.credit("u1", 1_000)
    assert (cache.cached("u1")["state"], cache.balance("u1")) == ("paused", 1_100)


def test_redis_keys_are_cluster_hash_tagged() -> None:
    """A user's key carries the user id in braces, so it maps to one cluster slot."""
    assert RedisCache(fakeredis.FakeRedis(), "topup").key("u1") == "topup:{u1}"


def test_clear_drops_every_user(cache: BalanceCache) -> None:
    """Clearing the cache (a Redis restart) drops every cached user."""
    cache.fill("u1", _user(100))
    cache.fill("u2", _user(200))
    cache.clear()
    assert (cache.cached("u1"), cache.balance("u2")) == ({}, None)


def test_redis_clear_touches_only_its_own_prefix() -> None:
    """Clearing one RedisCache leaves other keys in the same database alone."""
    client = fakeredis.FakeRedis()
    client.set("unrelated", "kept")
    ours, theirs = RedisCache(client, "ours"), RedisCache(client, "theirs")
    ours.fill("u1", _user(100))
    theirs.fill("u1", _user(100))
    ours.clear()
    assert ours.balance("u1") is None and theirs.balance("u1") == 100
    assert client.get("unrelated") == b"kept"


def test_unreachable_cache_is_a_typed_error() -> None:
    """A Redis connection error surfaces as CacheUnavailable."""
    server = fakeredis.FakeServer()
    server.connected = False
    cache = RedisCache(fakeredis.FakeRedis(server=server))
    with pytest.raises(CacheUnavailable):
        cache.deduct("u1", 1, T0, HOUR, DAY)
    with pytest.raises(CacheUnavailable):
        cache.balance("u1")
