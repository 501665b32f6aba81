"""Durable records: users, the append-only credit ledger, top-up attempts and webhook events.

The store is the source of truth; the cache is rebuilt from it at any time. Each method is one
transaction, so a failure leaves nothing half-written: the caller sees
:class:`~sim.billing.errors.StoreUnavailable` and the store is as it was.

:class:`SQLiteStore` uses the standard library's ``sqlite3`` (a file, or ``":memory:"``). Secret
fields arrive already encrypted by the vault; the store never sees their plaintext.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from .errors import DuplicateUser, InsufficientCredits, StoreUnavailable, UnknownUser
from .settings import ACTIVE, AutoTopupSettings


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user row as the billing core needs it. ``encrypted_*`` fields are vault tokens."""

    user_id: str
    wrapped_key: bytes
    balance: int
    settings: AutoTopupSettings
    state: str
    consecutive_failures: int
    topup_seq: int
    encrypted_last_triggered: bytes | None
    stripe_customer_id: str | None
    encrypted_payment_method_id: bytes | None
    encrypted_email: bytes | None
    encrypted_tfa_secret: bytes | None = None
    tfa_last_step: int | None = None
    #: The newest attempt still ``claimed`` (charge not finished), if any.
    open_attempt: int | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change. ``reference`` is unique (a PaymentIntent or invoice id) when set."""

    entry_id: int
    user_id: str
    delta: int
    kind: str
    reference: str | None
    balance_after: int
    created_at: float


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """A top-up claimed by a deduction, recorded in the same transaction as that deduction."""

    seq: int
    idempotency_key: str
    claimed_at: float
    encrypted_last_triggered: bytes


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How a top-up attempt ended, and what it does to the user's auto top-up state."""

    status: str
    credits: int | None = None
    currency: str | None = None
    amount_minor: int | None = None
    payment_intent_id: str | None = None
    decline_code: str | None = None
    retries: int = 0
    state: str = ACTIVE
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A monthly top-up subscription. ``as_of`` is the Stripe time of the newest change applied,
    so an older event arriving late cannot undo a newer one."""

    subscription_id: str
    user_id: str
    credits: int
    currency: str
    status: str
    current_period_end: float | None
    cancel_at_period_end: bool
    as_of: float


#: Attempt statuses whose outcome may still be reported (see ``SQLiteStore.finish_attempt``).
OPEN_ATTEMPT_STATUSES = ("claimed", "error")

#: Subscription statuses that still bill: a user may hold at most one subscription in these.
LIVE_SUBSCRIPTION_STATUSES = ("active", "past_due", "incomplete", "trialing", "unpaid")


@dataclass(frozen=True, slots=True)
class TopupAttempt:
    """A top-up attempt as recorded."""

    user_id: str
    seq: int
    idempotency_key: str
    claimed_at: float
    status: str
    credits: int | None
    currency: str | None
    amount_minor: int | None
    payment_intent_id: str | None
    decline_code: str | None
    retries: int
    finished_at: float | None


class Store(Protocol):
    """What the billing core needs from durable storage; each call is atomic."""

    def create_user(
        self, user_id: str, wrapped_key: bytes, encrypted_email: bytes | None, now: float
    ) -> None:
        """Insert a user with a zero balance; raise ``DuplicateUser`` if the id is taken."""
        ...

    def get_user(self, user_id: str) -> UserRecord:
        """Return the user; raise ``UnknownUser``."""
        ...

    def apply_deduction(
        self, user_id: str, credits: int, now: float, claim: NewAttempt | None
    ) -> None:
        """Record a usage entry (none when ``credits`` is 0) and a claimed attempt, atomically."""
        ...

    def credit(self, user_id: str, credits: int, kind: str, reference: str, now: float) -> bool:
        """Add credits under a unique reference; ``False`` if that reference was credited."""
        ...

    def finish_attempt(self, user_id: str, seq: int, outcome: AttemptOutcome, now: float) -> bool:
        """Record how an open attempt ended and set the user's state; ``False`` if not open."""
        ...

    def save_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Store settings; clears a pause or suspension."""
        ...

    def save_payment_method(
        self, user_id: str, customer_id: str, encrypted_payment_method_id: bytes
    ) -> None:
        """Store the customer and (encrypted) card; clears a pause or suspension."""
        ...

    def mark_event_processed(self, event_id: str, event_type: str, now: float) -> bool:
        """Remember a webhook event id; ``False`` if it was already processed."""
        ...

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event id was processed."""
        ...

    def save_tfa_secret(self, user_id: str, encrypted_secret: bytes) -> None:
        """Store the (encrypted) TOTP secret; forgets the last accepted step."""
        ...

    def attempt(self, user_id: str, seq: int) -> TopupAttempt | None:
        """One top-up attempt, or ``None``."""
        ...

    def save_subscription(self, record: SubscriptionRecord) -> bool:
        """Insert or update a subscription unless the stored one is newer; ``True`` if applied."""
        ...

    def subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        """One subscription, or ``None``."""
        ...

    def subscriptions(self, user_id: str) -> list[SubscriptionRecord]:
        """The user's subscriptions, oldest first."""
        ...

    def accept_tfa_step(self, user_id: str, step: int) -> bool:
        """Record a TOTP step as used; ``False`` if it, or a later one, was used before."""
        ...

    def record_tfa_failure(self, user_id: str, at: float) -> None:
        """Remember a wrong TOTP code."""
        ...

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        ...

    def ledger(self, user_id: str) -> list[LedgerEntry]:
        """The user's ledger in order."""
        ...

    def ledger_sum(self, user_id: str) -> int:
        """The sum of the user's ledger."""
        ...

    def user_ids(self) -> list[str]:
        """Every user id, sorted."""
        ...

    def attempts(self, user_id: str) -> list[TopupAttempt]:
        """The user's top-up attempts in order."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    auto_topup_low_balance_enabled INTEGER NOT NULL DEFAULT 0,
    auto_topup_low_balance_threshold INTEGER NOT NULL DEFAULT 1000,
    auto_topup_low_balance_amount INTEGER NOT NULL DEFAULT 10000,
    auto_topup_low_balance_currency TEXT NOT NULL DEFAULT 'eur',
    auto_topup_state TEXT NOT NULL DEFAULT 'active',
    auto_topup_consecutive_failures INTEGER NOT NULL DEFAULT 0,
    auto_topup_seq INTEGER NOT NULL DEFAULT 0,
    encrypted_auto_topup_last_triggered BLOB,
    stripe_customer_id TEXT,
    encrypted_payment_method_id BLOB,
    encrypted_email BLOB,
    encrypted_tfa_secret BLOB,
    tfa_last_step INTEGER
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
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    processed_at REAL NOT NULL
);
"""

_USER_COLUMNS = """user_id, wrapped_key, balance, auto_topup_low_balance_enabled,
    auto_topup_low_balance_threshold, auto_topup_low_balance_amount,
    auto_topup_low_balance_currency, auto_topup_state, auto_topup_consecutive_failures,
    auto_topup_seq, encrypted_auto_topup_last_triggered, stripe_customer_id,
    encrypted_payment_method_id, encrypted_email, encrypted_tfa_secret, tfa_last_step,
    (SELECT MAX(seq) FROM topup_attempts a WHERE a.user_id = users.user_id
     AND a.status = 'claimed')"""


class SQLiteStore:
    """The :class:`Store` on SQLite; thread-safe: one connection, one lock, one transaction."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any database error rolls it back and becomes StoreUnavailable."""
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

    def create_user(
        self, user_id: str, wrapped_key: bytes, encrypted_email: bytes | None, now: float
    ) -> None:
        """Insert a user with a zero balance."""
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO users (user_id, wrapped_key, encrypted_email) VALUES (?, ?, ?)",
                    (user_id, wrapped_key, encrypted_email),
                )
            except sqlite3.IntegrityError:
                raise DuplicateUser(user_id) from None

    def get_user(self, user_id: str) -> UserRecord:
        """Return the user; raise ``UnknownUser``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        if row is None:
            raise UnknownUser(user_id)
        return UserRecord(
            user_id=row[0],
            wrapped_key=row[1],
            balance=row[2],
            settings=AutoTopupSettings(bool(row[3]), row[4], row[5], row[6]),
            state=row[7],
            consecutive_failures=row[8],
            topup_seq=row[9],
            encrypted_last_triggered=row[10],
            stripe_customer_id=row[11],
            encrypted_payment_method_id=row[12],
            encrypted_email=row[13],
            encrypted_tfa_secret=row[14],
            tfa_last_step=row[15],
            open_attempt=row[16],
        )

    def user_ids(self) -> list[str]:
        """Every user id, sorted."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT user_id FROM users ORDER BY user_id")]

    def apply_deduction(
        self, user_id: str, credits: int, now: float, claim: NewAttempt | None
    ) -> None:
        """Record a usage entry (none when ``credits`` is 0) and a claimed attempt, atomically."""
        with self._tx() as db:
            if credits:
                self._add(db, user_id, -credits, "usage", None, now)
            if claim is not None:
                db.execute(
                    "UPDATE users SET auto_topup_seq = ?, encrypted_auto_topup_last_triggered = ?"
                    " WHERE user_id = ?",
                    (claim.seq, claim.encrypted_last_triggered, user_id),
                )
                db.execute(
                    "INSERT INTO topup_attempts (user_id, seq, idempotency_key, claimed_at, status)"
                    " VALUES (?, ?, ?, ?, 'claimed')",
                    (user_id, claim.seq, claim.idempotency_key, claim.claimed_at),
                )

    def credit(self, user_id: str, credits: int, kind: str, reference: str, now: float) -> bool:
        """Add credits under a unique reference; ``False`` if already credited."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM ledger WHERE reference = ?", (reference,)).fetchone():
                return False
            self._add(db, user_id, credits, kind, reference, now)
            return True

    @staticmethod
    def _add(
        db: sqlite3.Connection, user_id: str, delta: int, kind: str, ref: str | None, now: float
    ) -> int:
        row = db.execute(
            "UPDATE users SET balance = balance + ? WHERE user_id = ? AND balance + ? >= 0"
            " RETURNING balance",
            (delta, user_id, delta),
        ).fetchone()
        if row is None:
            found = db.execute("SELECT balance FROM users WHERE user_id = ?", (user_id,))
            current = found.fetchone()
            if current is None:
                raise UnknownUser(user_id)
            raise InsufficientCredits(user_id, -delta, current[0])
        db.execute(
            "INSERT INTO ledger (user_id, delta, kind, reference, balance_after, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, delta, kind, ref, row[0], now),
        )
        return int(row[0])

    def finish_attempt(self, user_id: str, seq: int, outcome: AttemptOutcome, now: float) -> bool:
        """Record how an open attempt ended and set the user's state; ``False`` if not open.

        An attempt is open while ``claimed``, or after an ``error`` (its payment may still succeed
        or fail later, as the webhook will tell). Only the first report of a final outcome is
        applied, so the confirm response and a webhook can never both count one failure.
        """
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE topup_attempts SET status = ?, credits = ?, currency = ?, amount_minor = ?,"
                " payment_intent_id = ?, decline_code = ?, retries = ?, finished_at = ?"
                " WHERE user_id = ? AND seq = ? AND status IN (?, ?)",
                (
                    outcome.status, outcome.credits, outcome.currency, outcome.amount_minor,
                    outcome.payment_intent_id, outcome.decline_code, outcome.retries, now,
                    user_id, seq, *OPEN_ATTEMPT_STATUSES,
                ),
            )  # fmt: skip
            if cursor.rowcount == 0:
                return False
            db.execute(
                "UPDATE users SET auto_topup_state = ?, auto_topup_consecutive_failures = ?"
                " WHERE user_id = ?",
                (outcome.state, outcome.consecutive_failures, user_id),
            )
            return True

    def save_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Store settings; clears a pause or suspension."""
        with self._tx() as db:
            self._require(
                db.execute(
                    "UPDATE users SET auto_topup_low_balance_enabled = ?,"
                    " auto_topup_low_balance_threshold = ?, auto_topup_low_balance_amount = ?,"
                    " auto_topup_low_balance_currency = ?, auto_topup_state = ?,"
                    " auto_topup_consecutive_failures = 0 WHERE user_id = ?",
                    (
                        int(settings.enabled),
                        settings.threshold,
                        settings.amount,
                        settings.currency,
                        ACTIVE,
                        user_id,
                    ),
                ),
                user_id,
            )

    def save_payment_method(
        self, user_id: str, customer_id: str, encrypted_payment_method_id: bytes
    ) -> None:
        """Store the customer and card; clears a pause or suspension."""
        with self._tx() as db:
            self._require(
                db.execute(
                    "UPDATE users SET stripe_customer_id = ?, encrypted_payment_method_id = ?,"
                    " auto_topup_state = ?, auto_topup_consecutive_failures = 0 WHERE user_id = ?",
                    (customer_id, encrypted_payment_method_id, ACTIVE, user_id),
                ),
                user_id,
            )

    @staticmethod
    def _require(cursor: sqlite3.Cursor, user_id: str) -> None:
        if cursor.rowcount == 0:
            raise UnknownUser(user_id)

    def mark_event_processed(self, event_id: str, event_type: str, now: float) -> bool:
        """Remember a webhook event id; ``False`` if it was already processed."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO webhook_events (event_id, type, processed_at)"
                " VALUES (?, ?, ?)",
                (event_id, event_type, now),
            )
            return cursor.rowcount == 1

    def attempt(self, user_id: str, seq: int) -> TopupAttempt | None:
        """One top-up attempt, or ``None``."""
        rows = self._attempt_rows("WHERE user_id = ? AND seq = ?", (user_id, seq))
        return rows[0] if rows else None

    def save_subscription(self, record: SubscriptionRecord) -> bool:
        """Insert or update a subscription unless the stored one is newer; ``True`` if applied."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO subscriptions (subscription_id, user_id, credits, currency, status,"
                " current_period_end, cancel_at_period_end, as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription_id) DO UPDATE SET status = excluded.status,"
                " current_period_end = excluded.current_period_end,"
                " cancel_at_period_end = excluded.cancel_at_period_end, as_of = excluded.as_of"
                " WHERE excluded.as_of >= subscriptions.as_of",
                (
                    record.subscription_id, record.user_id, record.credits, record.currency,
                    record.status, record.current_period_end, int(record.cancel_at_period_end),
                    record.as_of,
                ),
            )  # fmt: skip
            return cursor.rowcount == 1

    def subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        """One subscription, or ``None``."""
        rows = self._subscription_rows("WHERE subscription_id = ?", (subscription_id,))
        return rows[0] if rows else None

    def subscriptions(self, user_id: str) -> list[SubscriptionRecord]:
        """The user's subscriptions, oldest first."""
        return self._subscription_rows("WHERE user_id = ? ORDER BY rowid", (user_id,))

    def _subscription_rows(self, where: str, args: tuple[object, ...]) -> list[SubscriptionRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT subscription_id, user_id, credits, currency, status, current_period_end,"
                f" cancel_at_period_end, as_of FROM subscriptions {where}",
                args,
            ).fetchall()
        return [SubscriptionRecord(*r[:6], bool(r[6]), r[7]) for r in rows]

    def save_tfa_secret(self, user_id: str, encrypted_secret: bytes) -> None:
        """Store the (encrypted) TOTP secret; forgets the last accepted step."""
        with self._tx() as db:
            self._require(db.execute(
                "UPDATE users SET encrypted_tfa_secret = ?, tfa_last_step = NULL WHERE user_id = ?",
                (encrypted_secret, user_id),
            ), user_id)  # fmt: skip

    def accept_tfa_step(self, user_id: str, step: int) -> bool:
        """Record a TOTP step as used; ``False`` if it, or a later one, was used before.

        One conditional UPDATE, so two concurrent requests with the same code cannot both pass.
        """
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE users SET tfa_last_step = ? WHERE user_id = ?"
                " AND (tfa_last_step IS NULL OR tfa_last_step < ?)",
                (step, user_id, step),
            )
            return cursor.rowcount == 1

    def record_tfa_failure(self, user_id: str, at: float) -> None:
        """Remember a wrong TOTP code."""
        with self._tx() as db:
            db.execute("INSERT INTO tfa_failures (user_id, at) VALUES (?, ?)", (user_id, at))

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at FROM tfa_failures WHERE user_id = ? AND at >= ? ORDER BY at",
                (user_id, since),
            ).fetchall()
        return [row[0] for row in rows]

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event id was processed."""
        with self._lock:
            found = self._db.execute("SELECT 1 FROM webhook_events WHERE event_id = ?", (event_id,))
            return found.fetchone() is not None

    def ledger(self, user_id: str) -> list[LedgerEntry]:
        """The user's ledger in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT entry_id, user_id, delta, kind, reference, balance_after, created_at"
                " FROM ledger WHERE user_id = ? ORDER BY entry_id",
                (user_id,),
            ).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def ledger_sum(self, user_id: str) -> int:
        """The sum of the user's ledger (equals the balance when the books are right)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE user_id = ?", (user_id,)
            ).fetchone()
        return int(row[0])

    def attempts(self, user_id: str) -> list[TopupAttempt]:
        """The user's top-up attempts in order."""
        return self._attempt_rows("WHERE user_id = ? ORDER BY seq", (user_id,))

    def _attempt_rows(self, where: str, args: tuple[object, ...]) -> list[TopupAttempt]:
        with self._lock:
            rows = self._db.execute(
                "SELECT user_id, seq, idempotency_key, claimed_at, status, credits, currency,"
                " amount_minor, payment_intent_id, decline_code, retries, finished_at"
                f" FROM topup_attempts {where}",
                args,
            ).fetchall()
        return [TopupAttempt(*row) for row in rows]
