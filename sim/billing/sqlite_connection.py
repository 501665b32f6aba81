"""The SQLite connection under the store's tables: one connection, one lock, one transaction rule.

Every write is one ``BEGIN IMMEDIATE`` transaction: SQLite takes the write lock at ``BEGIN``, so a
read-decide-write is serialised across threads and across processes sharing the file (WAL mode);
that lock is the whole file's, so locking one user's row (:meth:`_lock_user`) has nothing to add.
Any database error rolls the transaction back and becomes
:class:`~sim.billing.errors.StoreUnavailable`; anything else raised inside (a simulated crash
included) rolls it back too, as a killed process's transaction is discarded.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .errors import StoreUnavailable
from .sql_connection import Session, SQLConnection
from .sqlite_schema import migrate


class SQLiteConnection(SQLConnection):
    """One connection to the store's file (``:memory:`` for tests), its lock, and ``_tx``."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # A file is shared in WAL mode and waits up to 10 s for another process's write lock. A
        # memory database keeps its own journal (SQLite answers "memory" to WAL) and has no other
        # process to wait for, so the two settings are harmless there and need no branch.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA foreign_keys=ON")
        migrate(self._db)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any database error rolls it back and becomes StoreUnavailable.

        Anything else raised inside (including a simulated crash) rolls it back too, as a killed
        process's transaction is discarded.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store error: {exc}") from exc
            try:
                yield self._db
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"store error: {exc}") from exc
                raise
            else:
                self._db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[object]) -> list[sqlite3.Row]:
        """The rows of one read-only statement."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _lock_user(self, db: Session, user_id: str) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already holds the write lock of the whole file."""
