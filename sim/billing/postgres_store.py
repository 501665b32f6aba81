"""The :class:`~sim.billing.store.Store` port on PostgreSQL (psycopg 3 and its pool), for a
deployment whose API workers run on several hosts.

The tables and every statement are :class:`~sim.billing.sql_store.SQLStore`'s, shared with
SQLite, so the two stores cannot drift apart; the pool, the transactions and the per-user row
lock that makes each one as atomic as SQLite's ``BEGIN IMMEDIATE`` are
:class:`~sim.billing.postgres_connection.PostgresConnection`'s (its module doc says why that
isolation level). The schema is created and migrated by ``python -m sim.billing.migrate``, once
per release, not by opening the store (``postgres_schema.py``).

Needs the ``postgres`` extra (``pip install 'topup-sim[postgres]'``); ``sim.billing`` itself
imports none of it.
"""

from __future__ import annotations

from .postgres_connection import PostgresConnection
from .sql_store import SQLStore


class PostgresStore(SQLStore, PostgresConnection):
    """The :class:`~sim.billing.store.Store` on PostgreSQL; thread-safe: a pool of connections.

    ``PostgresStore("postgresql://user:password@host:5432/db")`` connects, checks that the
    schema is this release's, and fails at once (``StoreUnavailable``) when it cannot."""
