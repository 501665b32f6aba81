"""Cache and store backends a run can use: memory (the default), sqlite, fakeredis, or a real Redis.

Every backend must give the same event log for the same scenario and seed (a test runs every
shipped scenario on each), so the choice only decides which real component is in the loop, and
the fastest is the default:

=============  =====================================  ==========================================
backend        cache, store                           what it puts in the loop
=============  =====================================  ==========================================
``memory``     ``MemoryCache``, ``MemoryStore``       nothing slow: the sweeps' and runs' default
``sqlite``     ``MemoryCache``, ``SQLiteStore``       the SQL store's transactions (in memory)
``fakeredis``  ``RedisCache`` on fakeredis,           the cache's real Lua script, on every write
               ``MemoryStore``
``redis``      ``RedisCache`` on ``REDIS_URL``,       both, as a deployment runs them
               ``SQLiteStore``
=============  =====================================  ==========================================

Opening ``redis`` pings the server first: a missing ``REDIS_URL`` or a server that does not answer
is a :class:`BackendUnavailable` before the run starts, rather than a cache error from deep inside
its first request.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

import fakeredis
import redis

from sim.billing import BalanceCache, MemoryCache, MemoryStore, RedisCache, SQLiteStore, Store

BACKENDS = ("memory", "sqlite", "fakeredis", "redis")
_run_ids = itertools.count(1)
#: Seconds the up-front ping may wait: a firewalled host would otherwise hang for the OS's TCP
#: timeout (minutes) before saying anything.
_PING_TIMEOUT = 5.0


class BackendUnavailable(ValueError):
    """A backend cannot be opened here: its setting is missing or its server does not answer.

    Raised when the backend opens, before anything runs, with one line saying what to set or
    start; a ``ValueError`` because a missing ``REDIS_URL`` always raised one.
    """


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
    store = MemoryStore()

    def close() -> None:
        client.close()
        store.close()

    return OpenBackend(cache, store, cache.clear, close)


def _redis() -> OpenBackend:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise BackendUnavailable(
            "the redis backend needs REDIS_URL (redis://host:port/db): set it, or use the"
            " fakeredis backend"
        )
    _ping(url)
    client = redis.Redis.from_url(url)
    # Our own key prefix: flushing or closing deletes our keys only, never the rest of the db.
    cache = RedisCache(client, f"topup-sim:{os.getpid()}:{next(_run_ids)}")

    store = SQLiteStore(":memory:")

    def close() -> None:
        cache.clear()
        client.close()
        store.close()

    return OpenBackend(cache, store, cache.clear, close)


def _ping(url: str) -> None:
    """Ping the Redis at ``url`` on a short-lived client of its own (the run's client keeps the
    URL's own timeouts); raise :class:`BackendUnavailable` naming its address, never the URL,
    which may hold a password."""
    try:
        probe = redis.Redis.from_url(
            url, socket_connect_timeout=_PING_TIMEOUT, socket_timeout=_PING_TIMEOUT
        )
    except ValueError as exc:
        raise BackendUnavailable(f"REDIS_URL is not a Redis URL: {exc}") from None
    settings = probe.connection_pool.connection_kwargs
    where = settings.get("path") or f"{settings.get('host')}:{settings.get('port')}"
    try:
        probe.ping()
    except redis.RedisError as exc:
        raise BackendUnavailable(
            f"the Redis at {where} (REDIS_URL) did not answer a ping:"
            f" {str(exc).rstrip('.')}; start it, or use the fakeredis backend"
        ) from exc
    finally:
        probe.close()


def _memory() -> OpenBackend:
    cache, store = MemoryCache(), MemoryStore()
    return OpenBackend(cache, store, cache.clear, store.close)


def _sqlite() -> OpenBackend:
    cache, store = MemoryCache(), SQLiteStore(":memory:")
    return OpenBackend(cache, store, cache.clear, store.close)


_RECIPES: dict[str, Callable[[], OpenBackend]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "fakeredis": _fakeredis,
    "redis": _redis,
}


def get_backend(backend: str | Backend) -> Backend:
    """Resolve a backend name (:data:`BACKENDS`); a Backend passes through."""
    if isinstance(backend, Backend):
        return backend
    if backend not in _RECIPES:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    return Backend(backend, _RECIPES[backend])
