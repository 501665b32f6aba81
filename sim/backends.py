"""Cache and store backends a run can use: fakeredis (the default), a real Redis, or memory.

Every backend must give the same event log for the same scenario and seed (a test proves it), so
the choice only trades fidelity for speed: fakeredis runs the billing module's real Lua scripts,
``redis`` runs them on the server at ``REDIS_URL``, ``memory`` uses ``MemoryCache``. The store is
SQLite in memory for all of them (about 10 µs per write, well below any cache's cost).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

import fakeredis
import redis

from sim.billing import BalanceCache, MemoryCache, RedisCache, SQLiteStore, Store

BACKENDS = ("fakeredis", "redis", "memory")
_run_ids = itertools.count(1)


@dataclass
class OpenBackend:
    """A backend opened for one run: its cache, its store, and how to flush and close them."""

    cache: BalanceCache
    store: Store
    #: Drop every cached user (what a Redis restart does); the store keeps the truth.
    flush: Callable[[], None]
    close: Callable[[], None]


@dataclass(frozen=True)
class Backend:
    """A named recipe for a fresh cache and store; ``open`` is called once per run."""

    name: str
    open: Callable[[], OpenBackend]


def _fakeredis() -> OpenBackend:
    # A server of its own per run, so parallel runs in one process never share keys.
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    cache = RedisCache(client)
    return OpenBackend(cache, SQLiteStore(":memory:"), cache.clear, client.close)


def _redis() -> OpenBackend:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise ValueError("the redis backend needs REDIS_URL (redis://host:port/db)")
    client = redis.Redis.from_url(url)
    # Our own key prefix: flushing or closing deletes our keys only, never the rest of the db.
    cache = RedisCache(client, f"topup-sim:{os.getpid()}:{next(_run_ids)}")

    def close() -> None:
        cache.clear()
        client.close()

    return OpenBackend(cache, SQLiteStore(":memory:"), cache.clear, close)


def _memory() -> OpenBackend:
    cache = MemoryCache()
    return OpenBackend(cache, SQLiteStore(":memory:"), cache.clear, lambda: None)


_RECIPES: dict[str, Callable[[], OpenBackend]] = {
    "fakeredis": _fakeredis,
    "redis": _redis,
    "memory": _memory,
}


def get_backend(backend: str | Backend) -> Backend:
    """Resolve a backend name (``fakeredis``, ``redis``, ``memory``); a Backend passes through."""
    if isinstance(backend, Backend):
        return backend
    if backend not in _RECIPES:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    return Backend(backend, _RECIPES[backend])
