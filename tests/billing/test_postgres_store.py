"""What only the PostgreSQL store has: its migration, its refusal to open a database without it,
its error for a server that does not answer, and two stores (two hosts' pools) on one database
taking turns on a user. The store suite (``test_store.py``) runs on it too.

Every test here needs the server at ``POSTGRES_URL`` (``postgres.py``).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from sim.billing import StoreUnavailable, Trigger
from sim.billing.claims import ClaimPolicy
from sim.billing.settings import AutoTopupSettings
from sim.billing.twofactor import Guess, TfaPolicy

from .postgres import postgres_schema

psycopg = pytest.importorskip("psycopg")

from sim.billing.postgres_schema import migrate, missing  # noqa: E402
from sim.billing.postgres_store import PostgresStore  # noqa: E402

T0 = 1_767_225_600.0


def _seal(user_id: str, wrapped: bytes, at: float) -> bytes:
    return b"sealed"


def _connect(conninfo: str) -> Any:
    return psycopg.connect(conninfo, autocommit=True)


def test_migration_creates_then_changes_nothing() -> None:
    """Run on a migrated schema, the migration finds nothing to do; on an emptied one it creates
    every table again, and an added column dropped from an older database comes back (its rows
    read ``None``: not set)."""
    with postgres_schema() as conninfo, _connect(conninfo) as db:
        assert migrate(db) == [] and missing(db) == []
        store = PostgresStore(conninfo)
        store.create_user("u1", b"wrapped", None)
        store.close()
        db.execute("ALTER TABLE users DROP COLUMN auto_topup_monthly_limit")
        assert missing(db) == ["column users.auto_topup_monthly_limit"]
        assert migrate(db) == ["column users.auto_topup_monthly_limit"]
        store = PostgresStore(conninfo)
        assert store.get_user("u1").settings.monthly_limit is None
        store.close()
        db.execute("DROP TABLE dead_letters, webhook_events")
        assert migrate(db) == ["table webhook_events", "table dead_letters"]
        assert migrate(db) == []


def test_store_refuses_a_database_that_was_not_migrated() -> None:
    """Opening the store on a database without this release's tables fails at once, naming
    what is missing and the command that adds it."""
    with postgres_schema() as conninfo, _connect(conninfo) as db:
        db.execute("ALTER TABLE topup_attempts DROP COLUMN claimed_credits")
        with pytest.raises(StoreUnavailable) as refused:
            PostgresStore(conninfo)
    assert "lacks column topup_attempts.claimed_credits" in str(refused.value)
    assert "python -m sim.billing.migrate" in str(refused.value)


def test_store_says_where_it_could_not_connect() -> None:
    """A server that does not answer fails the store at once, in one line naming host, port
    and database, and never the password."""
    with pytest.raises(StoreUnavailable) as refused:
        PostgresStore("postgresql://someone:s3cret@127.0.0.1:1/billing?connect_timeout=2")
    message = str(refused.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:1/billing: ")
    assert "s3cret" not in message and "\n" not in message


def test_two_pools_on_one_user_take_turns() -> None:
    """Two stores on one database (two hosts), 16 threads at once on a user under the threshold:
    the trigger is decided once (one claim, the rest see it pending), the spends are each counted
    once, and of 16 wrong codes at once exactly ``max_failures`` are judged wrong."""
    with postgres_schema() as conninfo:
        stores = [PostgresStore(conninfo), PostgresStore(conninfo)]
        try:
            first = stores[0]
            first.create_user("u1", b"wrapped", None)
            first.credit("u1", 900, "grant", "opening", T0)
            first.save_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
            policy = ClaimPolicy(cooldown_seconds=3_600.0, lease_seconds=300.0)
            tfa = TfaPolicy(max_failures=2, failure_window=60.0, lockout=120.0)
            barrier = threading.Barrier(16, timeout=30)
            triggers: list[Trigger] = []
            guesses: list[Guess] = []
            errors: list[BaseException] = []

            def work(n: int) -> None:
                store = stores[n % 2]
                try:
                    barrier.wait()
                    triggers.append(store.deduct("u1", 0, T0, policy, _seal).trigger)
                    barrier.wait()
                    guesses.append(store.tfa_guess("u1", None, T0, tfa).guess)
                    barrier.wait()
                    for _ in range(5):
                        store.deduct("u1", 10, T0, policy, _seal)
                except BaseException as exc:  # a thread's error would otherwise vanish
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert Counter(triggers) == Counter({Trigger.CLAIMED: 1, Trigger.PENDING: 15})
            assert len(first.attempts("u1")) == 1
            assert Counter(guesses) == Counter({Guess.LOCKED: 14, Guess.WRONG: 2})
            user = first.get_user("u1")
            assert user.balance == first.ledger_sum("u1") == 900 - 16 * 5 * 10
        finally:
            for store in stores:
                store.close()
