"""Backends: resolved by name, each opened fresh per run, flushable."""

from __future__ import annotations

import pytest

from sim import BACKENDS, Backend, get_backend
from sim.billing import (
    BillingService,
    InlineRunner,
    ManualClock,
    MemoryCache,
    MemoryStore,
    RecordingNotifier,
    RedisCache,
    SQLiteStore,
    Vault,
)
from sim.billing.testing import ScriptedGateway


def test_names_resolve_and_backends_pass_through() -> None:
    """Each shipped name resolves; a Backend object is used as given."""
    assert [get_backend(name).name for name in BACKENDS] == list(BACKENDS)
    custom = get_backend("memory")
    assert get_backend(custom) is custom and isinstance(custom, Backend)


def test_unknown_backend_lists_the_allowed_ones() -> None:
    """A wrong name is refused with the allowed names."""
    with pytest.raises(ValueError, match="allowed: memory, sqlite, fakeredis, redis"):
        get_backend("memcached")


def test_redis_backend_needs_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real-Redis backend says what it needs when REDIS_URL is unset."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="REDIS_URL"):
        get_backend("redis").open()


@pytest.mark.parametrize(
    ("name", "cache", "store"),
    [
        ("memory", MemoryCache, MemoryStore),
        ("sqlite", MemoryCache, SQLiteStore),
        ("fakeredis", RedisCache, MemoryStore),
    ],
)
def test_each_backend_puts_its_component_in_the_loop(name: str, cache: type, store: type) -> None:
    """``sqlite`` runs the SQL store, ``fakeredis`` the cache's Lua script, ``memory`` neither:
    each real component is in the loop of one backend, and the equality test covers them all."""
    opened = get_backend(name).open()
    try:
        assert type(opened.cache) is cache and type(opened.store) is store
    finally:
        opened.close()


@pytest.mark.parametrize("name", ["memory", "sqlite", "fakeredis"])
def test_flush_drops_cached_users_only(name: str) -> None:
    """A flush empties the cache; the store keeps every balance."""
    opened = get_backend(name).open()
    billing = BillingService(
        clock=ManualClock(),
        cache=opened.cache,
        store=opened.store,
        gateway=ScriptedGateway(),
        notifier=RecordingNotifier(),
        tasks=InlineRunner(),
        vault=Vault(bytes(32)),
    )
    billing.create_user("u1", balance=50)
    assert billing.balance("u1") == 50
    opened.flush()
    assert billing.cache.balance("u1") is None
    assert billing.balance("u1") == 50
    opened.close()


@pytest.mark.parametrize("name", ["memory", "fakeredis"])
def test_close_lets_go_of_every_row_of_a_store_in_memory(name: str) -> None:
    """Closing a run's backend empties its store in memory, as closing SQLite's ``:memory:``
    database does: the rows go even while a finished world still refers to the store."""
    opened = get_backend(name).open()
    opened.store.create_user("u1", b"wrapped", None)
    opened.store.credit("u1", 500, "grant", "opening", 0.0)
    opened.close()
    assert opened.store.user_ids() == []
