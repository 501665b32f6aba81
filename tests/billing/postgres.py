"""PostgreSQL for the store tests: the server at ``POSTGRES_URL``, a fresh schema per test.

Without ``POSTGRES_URL`` a PostgreSQL test is skipped, unless ``REQUIRE_POSTGRES=1`` (CI) makes
that a failure. Each store under test lives in a schema of its own (``topup_test_<pid>_<n>``),
created and migrated for it and dropped with everything in it afterwards, so tests never see each
other's rows and a test run leaves nothing in the database.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_schemas = itertools.count()


def postgres_url() -> str:
    """The server's URL; skip without one, or fail when ``REQUIRE_POSTGRES=1`` says it must be
    there."""
    url = os.environ.get("POSTGRES_URL")
    if url:
        return url
    reason = "no PostgreSQL to test the store on: POSTGRES_URL is not set"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_POSTGRES=1 (.ci/run starts a cluster and sets it)")
    pytest.skip(f"{reason} (.ci/run or README's 'Testing on PostgreSQL' starts one)")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A new, migrated schema at ``POSTGRES_URL``; its URL (``POSTGRES_URL`` with that schema as
    the search path) while the block runs; dropped, with its tables, afterwards."""
    import psycopg

    from sim.billing.postgres_schema import migrate

    url = postgres_url()
    schema = f"topup_test_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            joint = "&" if "?" in url else "?"
            conninfo = f"{url}{joint}options=-c%20search_path%3D{schema}"
            with psycopg.connect(conninfo, autocommit=True) as db:
                migrate(db)
            yield conninfo
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def postgres_store() -> Iterator[object]:
    """A :class:`~sim.billing.postgres_store.PostgresStore` in a schema of its own, closed and
    dropped afterwards."""
    from sim.billing.postgres_store import PostgresStore

    with postgres_schema() as conninfo:
        store = PostgresStore(conninfo)
        try:
            yield store
        finally:
            store.close()
