"""The PostgreSQL schema of :class:`~sim.billing.postgres_store.PostgresStore`, and its migration.

The schema is SQLite's (``sqlite_schema.SCHEMA``), translated type by type, so that the two stores
have one list of tables, columns, defaults, checks and keys, and a column added to one is added
to both: ``INTEGER`` is ``BIGINT`` (SQLite's integers are 64-bit), ``REAL`` is ``DOUBLE
PRECISION``, ``BLOB`` is ``BYTEA``, every ``TEXT`` compares byte by byte (``COLLATE "C"``,
SQLite's ``BINARY``: user ids sort the same in both), the ledger's ``AUTOINCREMENT`` key is an
identity column, and every other table gets the ``rowid`` that SQLite gives each table implicitly
(the outbox, dead letters and subscriptions are listed in insertion order by it).

:func:`migrate` is what a deployment runs once per release (``python -m sim.billing.migrate``):
it creates what is missing and adds each of ``ADDED_COLUMNS`` that an older database lacks, in
one transaction under an advisory lock, so two hosts running it at once take turns and a second
run changes nothing. A :class:`PostgresStore` does not migrate when it opens (API workers need
no right to change the schema, and N of them starting at once should not race to); it checks
that nothing is missing (:func:`missing`) and refuses to start otherwise, naming the command.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import Connection
from psycopg.rows import tuple_row

from .sqlite_schema import ADDED_COLUMNS, TABLES
from .sqlite_schema import SCHEMA as SQLITE_SCHEMA

#: SQLite's declarations and what they are in PostgreSQL, applied in this order.
#: A table whose first column is an ``INTEGER PRIMARY KEY`` has it as its rowid already.
_TRANSLATIONS: tuple[tuple[str, str], ...] = (
    (
        r"(CREATE TABLE IF NOT EXISTS \w+ \(\n)(?!\s+\w+ INTEGER PRIMARY KEY)",
        r"\1    rowid BIGINT GENERATED ALWAYS AS IDENTITY,\n",
    ),
    (r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    (r"\bINTEGER\b", "BIGINT"),
    (r"\bREAL\b", "DOUBLE PRECISION"),
    (r"\bBLOB\b", "BYTEA"),
    (r"\bTEXT\b", 'TEXT COLLATE "C"'),
)

#: Any number: the one lock every migration takes, so that concurrent runs take turns.
_MIGRATION_LOCK = 7_004_116


def translate(sqlite_ddl: str) -> str:
    """SQLite's table definitions (or one column's declaration) in PostgreSQL's types."""
    for pattern, replacement in _TRANSLATIONS:
        sqlite_ddl = re.sub(pattern, replacement, sqlite_ddl)
    return sqlite_ddl


#: The tables and indexes, as :data:`~sim.billing.sqlite_schema.SCHEMA` declares them.
SCHEMA = translate(SQLITE_SCHEMA)


def missing(db: Connection[Any]) -> list[str]:
    """What :func:`migrate` would create in the connection's current schema: ``table users``,
    ``column users.auto_topup_monthly_limit``, ...; nothing when the database is up to date."""
    found: dict[str, set[str]] = {}
    for table, column in db.cursor(row_factory=tuple_row).execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    ):
        found.setdefault(table, set()).add(column)
    lacking = [f"table {table}" for table in TABLES if table not in found]
    return lacking + [
        f"column {table}.{column}"
        for table, column, _ in ADDED_COLUMNS
        if table in found and column not in found[table]
    ]


def migrate(db: Connection[Any]) -> list[str]:
    """Create what is missing, in one transaction of the connection ``db`` (psycopg, in
    autocommit mode) under an advisory lock; what it created (see :func:`missing`)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        changes = missing(db)
        db.execute(SCHEMA)
        for table, column, declaration in ADDED_COLUMNS:
            db.execute(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {translate(declaration)}"
            )
    return changes
