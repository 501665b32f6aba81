"""Cache and store backends a run can use: memory (the default), fakeredis, or a real Redis.

Every backend must give the same event log for the same scenario and seed (a test proves it), so
the choice only trades fidelity for speed, and the fastest is the default: ``memory`` runs
``MemoryCache`` over ``MemoryStore``, both in process memory (a differential test proves the
stores equal), at a tenth of the cost per deduction; ``fakeredis`` runs the billing module's
real Lua scripts over the real store (SQLite in memory); ``redis`` does the same on the server at
``REDIS_URL``.

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

BACKENDS = ("fakeredis", "redis", "memory")
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
    return OpenBackend(cache, SQLiteStore(":memory:"), cache.clear, client.close)


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

    def close() -> None:
        cache.clear()
        client.close()

    return OpenBackend(cache, SQLiteStore(":memory:"), cache.clear, close)


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
    cache = MemoryCache()
    return OpenBackend(cache, MemoryStore(), cache.clear, lambda: None)


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
