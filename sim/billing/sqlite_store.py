"""The :class:`~sim.billing.store.Store` port on SQLite (the standard library's ``sqlite3``).

The tables and every statement are :class:`~sim.billing.sql_store.SQLStore`'s, shared with
PostgreSQL; the connection, its lock and its ``BEGIN IMMEDIATE`` transactions are
:class:`~sim.billing.sqlite_connection.SQLiteConnection`'s. Opening a file creates what it lacks
(``sqlite_schema.migrate``), so a file from any earlier version opens.
"""

from __future__ import annotations

from .sql_store import SQLStore
from .sqlite_connection import SQLiteConnection


class SQLiteStore(SQLStore, SQLiteConnection):
    """The :class:`~sim.billing.store.Store` on SQLite; thread-safe: one connection, one lock.

    ``SQLiteStore(path)`` opens (and creates) the file at ``path``; without one it lives in
    memory, for tests and simulations."""
