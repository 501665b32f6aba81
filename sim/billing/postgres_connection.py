"""The PostgreSQL connections under the store's tables: a pool, and one transaction per call.

Why this isolation level. Every transaction runs at PostgreSQL's default, ``READ COMMITTED``, and
one that decides on a user's rows first takes the user's row lock (:meth:`_lock_user`, ``SELECT
... FOR NO KEY UPDATE``). Every write to a user's rows, the cached fields, attempts, ledger entries,
the outbox, spends kept under a key, two-factor failures, is made by such a transaction or by one
``UPDATE`` of the user's row (which takes the same lock and re-checks its ``WHERE`` on the newest
row), so two of them on one user run one after the other, and each statement after the lock reads
everything the one before committed: what SQLite's ``BEGIN IMMEDIATE`` gives a deduction, for one
user instead of the whole database, so different users' requests run in parallel. ``SERIALIZABLE``
would give the same safety without the lock, but by aborting one of two overlapping transactions,
which then needs a retry loop around every call (and a seal made twice); with the lock the second
simply waits. ``NO KEY UPDATE`` rather than ``UPDATE``: it still excludes the other writers, but
not the key-share lock a foreign key check takes, so inserting a row that names the user never
waits on it. What no user lock covers is unique by a key and written with ``ON CONFLICT`` (ledger
references, notice ids, webhook event ids, subscriptions), which PostgreSQL makes atomic by itself.

A database error (the server gone, a constraint refused, a deadlock, no connection free within
the pool's timeout) rolls the transaction back and becomes
:class:`~sim.billing.errors.StoreUnavailable`; anything else raised inside (a simulated crash
included) rolls it back too, as a killed process's transaction is discarded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .errors import StoreUnavailable
from .postgres_schema import missing
from .sql_connection import Cursor, Session, SQLConnection

#: Seconds to wait for the server when connecting, unless the URL says (``connect_timeout``).
CONNECT_TIMEOUT = 10


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """The tables' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Session:
    """A pooled connection inside its transaction, speaking the tables' ``?`` placeholders."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        return self._conn.execute(_placeholders(sql), args)


def describe(url: str) -> str:
    """Where a URL points, without its password: ``host:port/dbname``."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unreadable URL"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


class SchemaMissing(StoreUnavailable):
    """The database lacks tables or columns of this release: its migration has not run."""


class PostgresConnection(SQLConnection):
    """A pool of connections to the database at ``url`` (a ``postgresql://`` URL or libpq
    conninfo), each in autocommit mode so that a read is one round trip and a write one explicit
    transaction. At most ``max_connections`` per store: one per thread working at once (the API's
    requests and the top-up pool's tasks), and each host's workers times this must stay within the
    server's ``max_connections``.

    Opening it connects once, at once, so that an unreachable server or a database whose
    migration has not run is said when the service starts, not at its first request."""

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        options: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if "connect_timeout" not in url:
            options["connect_timeout"] = CONNECT_TIMEOUT
        where = describe(url)
        try:
            with psycopg.connect(url, **options) as first:
                lacking = missing(first)
        except psycopg.Error as exc:
            problem = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {where}: {problem}") from exc
        if lacking:
            raise SchemaMissing(
                f"the database at {where} lacks {', '.join(lacking)}: run"
                " `python -m sim.billing.migrate --store-url <its URL>` once first"
            )
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=max_connections, kwargs=options, open=False,
            name=f"topup-store {where}",
        )  # fmt: skip
        self._pool.open()

    def close(self) -> None:
        """Close every connection of the pool."""
        self._pool.close()

    @staticmethod
    @contextmanager
    def _unavailable() -> Iterator[None]:
        """A database error, as the store's callers know it."""
        try:
            yield
        except psycopg.Error as exc:
            raise StoreUnavailable(f"store error: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction on a pooled connection (see the module doc)."""
        with self._unavailable(), self._pool.connection() as conn, conn.transaction():
            yield _Session(conn)

    def _read(self, sql: str, args: Sequence[object]) -> list[Any]:
        """The rows of one read-only statement, on a pooled connection."""
        with self._unavailable(), self._pool.connection() as conn:
            return conn.execute(_placeholders(sql), args).fetchall()

    def _lock_user(self, db: Session, user_id: str) -> None:
        """Hold the user's row until the transaction ends (``FOR NO KEY UPDATE``)."""
        db.execute("SELECT 1 FROM users WHERE user_id = ? FOR NO KEY UPDATE", (user_id,))
