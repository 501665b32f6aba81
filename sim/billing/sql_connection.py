"""What the SQL stores' tables need from a database: one transaction per call, a read, a row lock.

The tables (``sql_store.py``, ``sql_events.py``, ``sql_twofactor.py``) are written once, in the
SQL that SQLite and PostgreSQL both speak (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``),
against this base; :class:`~sim.billing.sqlite_connection.SQLiteConnection` and
:class:`~sim.billing.postgres_connection.PostgresConnection` implement it. So the store's logic,
which rows a deduction reads and writes and in what order, exists once, and each database only
says how it makes that one transaction atomic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

#: A row read by column name (``sqlite3.Row`` or psycopg's ``dict_row``); never by position.
Row = Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the tables use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    """An open transaction: statements with ``?`` placeholders, rows by column name."""

    def execute(self, sql: str, args: Sequence[object] = ...) -> Cursor: ...


class SQLConnection(ABC):
    """The database under the SQL tables: each store method is one :meth:`_tx` (or one
    :meth:`_read`), and a transaction that decides on a user's rows first calls
    :meth:`_lock_user`, so that two such transactions on one user run one after the other.
    Abstract: a store whose connection lacks one of the three cannot be built."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Session]:
        """One write transaction: committed when the block ends, rolled back when anything is
        raised in it (a simulated crash included), a database error raised as
        :class:`~sim.billing.errors.StoreUnavailable`."""

    @abstractmethod
    def _read(self, sql: str, args: Sequence[object]) -> list[Any]:
        """The rows of one read-only statement."""

    @abstractmethod
    def _lock_user(self, db: Session, user_id: str) -> None:
        """Hold the user's row until the transaction ends, before anything is read to decide;
        an unknown user locks nothing (the statements after it find no row and say so)."""
