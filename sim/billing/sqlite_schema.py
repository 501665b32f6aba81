"""The SQLite schema of :class:`~sim.billing.sqlite_store.SQLiteStore`: one table per record.

``users`` carries the seed's auto top-up fields (``auto_topup_low_balance_*``) plus what the
crash-consistency protocol needs: ``version`` (raised by every write to a cached field: the cache
keeps the newest), and the open attempt with its lease (``auto_topup_open_seq``,
``auto_topup_lease`` as the fencing token, ``auto_topup_lease_until``). ``notices`` is the outbox
of final notices. Secret columns (``encrypted_*``) hold vault tokens only.

Every statement is ``IF NOT EXISTS``, so opening a store creates what is missing and nothing else;
a column added to a table after its first release is listed in :data:`ADDED_COLUMNS` too, and
:func:`migrate` adds it to a file created before it (``NULL`` in the rows already there: every
added column means "not set" by ``NULL``).
"""

from __future__ import annotations

import re
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    auto_topup_low_balance_enabled INTEGER NOT NULL DEFAULT 0,
    auto_topup_low_balance_threshold INTEGER NOT NULL DEFAULT 1000,
    auto_topup_low_balance_amount INTEGER NOT NULL DEFAULT 10000,
    auto_topup_low_balance_currency TEXT NOT NULL DEFAULT 'eur',
    auto_topup_monthly_limit INTEGER,
    auto_topup_state TEXT NOT NULL DEFAULT 'active',
    auto_topup_consecutive_failures INTEGER NOT NULL DEFAULT 0,
    auto_topup_seq INTEGER NOT NULL DEFAULT 0,
    auto_topup_open_seq INTEGER,
    auto_topup_lease INTEGER NOT NULL DEFAULT 0,
    auto_topup_lease_until REAL,
    encrypted_auto_topup_last_triggered BLOB,
    encrypted_stripe_customer_id BLOB,
    encrypted_payment_method_id BLOB,
    encrypted_email BLOB,
    encrypted_tfa_secret BLOB,
    tfa_last_step INTEGER,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ledger (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    delta INTEGER NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT UNIQUE,
    balance_after INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_user ON ledger(user_id, entry_id);
CREATE TABLE IF NOT EXISTS topup_attempts (
    user_id TEXT NOT NULL REFERENCES users(user_id),
    seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    claimed_at REAL NOT NULL,
    status TEXT NOT NULL,
    credits INTEGER,
    currency TEXT,
    amount_minor INTEGER,
    payment_intent_id TEXT,
    decline_code TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    finished_at REAL,
    encrypted_payment_method_id BLOB,
    claimed_credits INTEGER,
    PRIMARY KEY (user_id, seq)
);
CREATE TABLE IF NOT EXISTS tfa_failures (
    user_id TEXT NOT NULL REFERENCES users(user_id),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tfa_failures_user ON tfa_failures(user_id, at);
CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    credits INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    current_period_end REAL,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    as_of REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_user ON subscriptions(user_id);
CREATE TABLE IF NOT EXISTS notices (
    notice_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS notices_pending ON notices(user_id) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS usage_requests (
    user_id TEXT NOT NULL REFERENCES users(user_id),
    request_key TEXT NOT NULL,
    credits INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    auto_topup TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, request_key)
);
CREATE INDEX IF NOT EXISTS usage_requests_age ON usage_requests(user_id, created_at);
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    processed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    event_id TEXT PRIMARY KEY REFERENCES webhook_events(event_id),
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL
);
"""

#: The tables of :data:`SCHEMA`, in the order it creates them.
TABLES: tuple[str, ...] = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))

#: Columns added after their table was first released: ``(table, column, declaration)``. A
#: store file created before one of them gets it from :func:`migrate` when it is opened. The
#: declarations are SQLite's; PostgreSQL's schema translates them as it translates :data:`SCHEMA`.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("users", "auto_topup_monthly_limit", "INTEGER"),
    ("topup_attempts", "claimed_credits", "INTEGER"),
)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Create what is missing: the tables and indexes of :data:`SCHEMA`, then each of
    :data:`ADDED_COLUMNS` that a file created before it lacks (one transaction). What it created
    (``table users``, ``column users.auto_topup_monthly_limit``), for the migrate command to
    report; nothing when the file was up to date."""
    existing = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.executescript(SCHEMA)
    changes = [f"table {table}" for table in TABLES if table not in existing]
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, column, declaration in ADDED_COLUMNS:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                changes.append(f"column {table}.{column}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return changes
