"""Which store a process uses, from one URL: ``STORE_URL``.

``sqlite:///path/to/file`` (three slashes, then the path: ``sqlite:////var/lib/billing.sqlite``
is absolute) opens a SQLite file, creating and migrating it as opening one always does;
``postgresql://user:password@host:5432/database`` (or ``postgres://``, or any URL libpq reads)
connects to PostgreSQL, whose schema ``python -m sim.billing.migrate`` creates. SQLite stays the
embedded default: a command without ``STORE_URL`` keeps its ``--db`` file.

Every error is one line naming the setting (``STORE_URL`` unless the caller says which) and never
the URL's password: a scheme this module does not know, a file that cannot be opened, a server
that does not answer, a database not migrated, the PostgreSQL extra not installed.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .errors import StoreUnavailable
from .sqlite_schema import migrate as migrate_sqlite
from .sqlite_store import SQLiteStore

if TYPE_CHECKING:
    from .store import Store

#: The environment variable that chooses the store.
STORE_URL_ENV = "STORE_URL"

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_FORMS = "sqlite:///path/to/file or postgresql://user:password@host:5432/database"


class StoreUrlError(ValueError):
    """A store URL that cannot be used; the message names the setting that held it."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///...`` URL names (``:memory:`` for ``sqlite://``)."""
    rest = url.split("://", 1)[1]
    if rest and not rest.startswith("/"):
        raise ValueError(f"a SQLite URL has three slashes before its path: {_FORMS}")
    return rest[1:] or ":memory:"


def _problem(url: str, setting: str) -> StoreUrlError | None:
    """Why ``url`` is no store URL, or ``None``."""
    if _scheme(url) in (*_POSTGRES_SCHEMES, "sqlite"):
        return None
    shown = f"a {_scheme(url)}:// URL" if _scheme(url) else "not a URL"
    return StoreUrlError(f"{setting} is {shown}: use {_FORMS}")


def open_store(url: str, setting: str = STORE_URL_ENV) -> Store:
    """The store at ``url``; :class:`StoreUrlError` naming ``setting`` when it cannot be used."""
    problem = _problem(url, setting)
    if problem is not None:
        raise problem
    if _scheme(url) == "sqlite":
        try:
            return SQLiteStore(sqlite_path(url))
        except (ValueError, sqlite3.Error) as exc:
            raise StoreUrlError(f"{setting}: cannot open the SQLite file: {exc}") from exc
    store_class = _postgres_store(setting)
    try:
        return store_class(url)
    except StoreUnavailable as exc:
        raise StoreUrlError(f"{setting}: {exc}") from exc


def migrate_store(url: str, setting: str = STORE_URL_ENV) -> list[str]:
    """Create or migrate the schema of the store at ``url`` (idempotent); what it created."""
    problem = _problem(url, setting)
    if problem is not None:
        raise problem
    if _scheme(url) == "sqlite":
        try:
            db = sqlite3.connect(sqlite_path(url), isolation_level=None)
            try:
                return migrate_sqlite(db)
            finally:
                db.close()
        except (ValueError, sqlite3.Error) as exc:
            raise StoreUrlError(f"{setting}: cannot migrate the SQLite file: {exc}") from exc
    _postgres_store(setting)  # the extra is installed
    import psycopg

    from .postgres_connection import describe
    from .postgres_schema import migrate

    try:
        with psycopg.connect(url, autocommit=True) as db:
            return migrate(db)
    except psycopg.Error as exc:
        problem_text = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreUrlError(
            f"{setting}: cannot migrate PostgreSQL at {describe(url)}: {problem_text}"
        ) from exc


def _postgres_store(setting: str) -> type[Store]:
    """:class:`~sim.billing.postgres_store.PostgresStore`, imported only when a URL asks for it
    (``sim.billing`` runs without psycopg)."""
    try:
        from .postgres_store import PostgresStore
    except ImportError as exc:
        raise StoreUrlError(
            f"{setting} names PostgreSQL, but psycopg is not installed:"
            " pip install 'topup-sim[postgres]'"
        ) from exc
    return PostgresStore  # type: ignore[return-value]
