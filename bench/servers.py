"""The servers the multi-process benches share their state on, each of the run's own.

A real Redis, as a URL that worker processes connect to (``bench/billing.py``'s server: the one at
``REDIS_URL``, or a ``redis-server`` started on a free loopback port); and a PostgreSQL schema,
created and migrated for one run and dropped with its tables afterwards, so that a bench needs
only a server URL (``POSTGRES_URL``), never meets another run's rows, and leaves nothing behind.

Imported by ``bench/crash_multiprocess.py`` and ``bench/stores.py`` (``bench`` is not a package:
run from the repository root, a script's own folder is on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit


def _bench_billing() -> Any:
    """``bench/billing.py``, imported by path (``bench`` is not a package)."""
    path = Path(__file__).with_name("billing.py")
    spec = importlib.util.spec_from_file_location("bench_billing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    """The URL of a real Redis (REDIS_URL's, or one started here); ``None`` when there is none."""
    with _bench_billing().redis_server() as client:
        if client is None:
            yield None
        elif os.environ.get("REDIS_URL"):
            yield os.environ["REDIS_URL"]
        else:
            kwargs = client.connection_pool.connection_kwargs
            host = "127.0.0.1" if kwargs["host"] == "localhost" else kwargs["host"]
            yield f"redis://{host}:{kwargs['port']}/{kwargs.get('db', 0)}"


def is_postgres(url: str) -> bool:
    """Whether a store URL names PostgreSQL (``postgresql://`` or ``postgres://``)."""
    return url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its connections' search path (any ``options`` it had replaced):
    still a URL, so that ``open_store`` and every worker process read it as they read
    ``STORE_URL``."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "options"]
    query.append(("options", f"-c search_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextlib.contextmanager
def postgres_schema(url: str, prefix: str) -> Iterator[str]:
    """A new schema on the PostgreSQL server at ``url``, migrated; while the block runs, its URL
    (``url`` with that schema as the search path); afterwards dropped with everything in it."""
    import psycopg
    from psycopg import sql

    from sim.billing.store_url import migrate_store

    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            scoped = with_search_path(url, schema)
            migrate_store(scoped, setting="the bench's PostgreSQL URL")
            yield scoped
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
