"""The rows of :class:`~sim.billing.memory_store.MemoryStore` and the one lock they share.

The layout follows the SQLite schema (``sqlite_schema.py``) table for table, so that each method of
the memory store reads like its SQLite twin; rows that belong to one user (ledger entries,
attempts, pending notices, two-factor failures, subscription ids) hang off that user's
:class:`UserRow`, so the hot path finds them without a second lookup.

Every write follows one rule, which is what stands in for SQLite's rollback: first compute
everything the call will write (any error, or an exception raised by a callback such as ``seal``,
is raised here, before anything changed), then apply it with plain assignments that cannot fail.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import StoreUnavailable, UnknownUser
from .settings import ACTIVE, AutoTopupSettings
from .store import (
    CachedUser,
    DeadLetter,
    PendingNotice,
    SubscriptionRecord,
    TopupAttempt,
    UsageRecord,
)

#: The schema's defaults for a new user's auto top-up columns (off, 1,000, 10,000, eur).
_DEFAULT_SETTINGS = AutoTopupSettings()

#: A credit's ledger row: ``(entry_id, delta, kind, reference, balance_after, created_at)``. A
#: tuple, not a ``LedgerEntry``, because a frozen dataclass costs several times as much to build;
#: ``ledger()`` builds the records when they are read (deductions keep theirs in
#: ``UserRow.spends``).
LedgerRow = tuple[int, int, str, str | None, int, float]

#: An outbox row: ``(created_at, notice_id, kind, detail as JSON)``. The detail is kept as the JSON
#: text SQLite keeps, so that it reads back exactly as it does there (a tuple comes back a list).
NoticeRow = tuple[float, str, str, str]


def constraint_failed(what: str) -> StoreUnavailable:
    """The error a failed SQLite constraint (``CHECK``, foreign key) becomes in its store, with
    SQLite's message: the write is refused and nothing changed."""
    return StoreUnavailable(f"store error: {what}")


#: A value for a REAL column: SQLite stores an int given there as a float, and so do we. The
#: builtin itself rather than a function that calls it: every deduction converts its time.
real = float


@dataclass(slots=True, eq=False)
class UserRow:
    """One row of ``users``, plus the rows of other tables that belong to the user."""

    user_id: str
    wrapped_key: bytes
    encrypted_email: bytes | None
    balance: int = 0
    settings: AutoTopupSettings = _DEFAULT_SETTINGS
    state: str = ACTIVE
    consecutive_failures: int = 0
    seq: int = 0
    open_seq: int | None = None
    lease: int = 0
    lease_until: float | None = None
    encrypted_last_triggered: bytes | None = None
    encrypted_stripe_customer_id: bytes | None = None
    encrypted_payment_method_id: bytes | None = None
    encrypted_tfa_secret: bytes | None = None
    tfa_last_step: int | None = None
    version: int = 0
    #: The ledger's ``usage`` entries (a deduction's), in entry order, end to end: entry id,
    #: delta, balance after, created at, then the next entry's. No object per entry: a month of
    #: them as tuples was a tenth of a sweep worker's memory at decision scale, each one more
    #: object for the cyclic garbage collector to walk (docs/performance.md).
    spends: list[int | float] = field(default_factory=list)
    #: The ledger rows written by a credit (every kind but the deductions' ``usage``), in entry
    #: order: the reconcile and the books check read these, and finding them in a month of
    #: usage rows took longer than the month's other reads together.
    credits: list[LedgerRow] = field(default_factory=list)
    #: The sum of the ledger's deltas, added to as each row is written: walking a month of rows
    #: costs about half a microsecond a row (each tuple is a cache miss).
    ledger_total: int = 0
    #: The user's attempts by seq; seqs are claimed in increasing order, so this is seq order.
    #: Records are frozen, so a change replaces one and a read may hand it out as it is.
    attempts: dict[int, TopupAttempt] = field(default_factory=dict)
    #: Notices not yet sent, in the order they were queued (SQLite's rowid order).
    pending: dict[str, NoticeRow] = field(default_factory=dict)
    #: Times of wrong TOTP codes, kept sorted (guesses need not arrive in time order).
    tfa_failures: list[float] = field(default_factory=list)
    #: The user's subscription ids, in the order they were first stored.
    subscription_ids: list[str] = field(default_factory=list)
    #: Spends kept under their request keys (``usage_requests``), by key.
    usage_requests: dict[str, UsageRecord] = field(default_factory=dict)

    def snapshot(self) -> CachedUser:
        """The cached fields at the current version (positional: this is on the hot path)."""
        settings = self.settings
        return CachedUser(
            self.version, self.balance, settings.enabled, settings.threshold, settings.amount,
            self.state, self.seq, self.open_seq,
        )  # fmt: skip

    def is_open(self, seq: int | None) -> bool:
        """Whether ``seq`` is the open attempt (SQL ``open_seq = ?``: never true on NULL)."""
        return self.open_seq is not None and self.open_seq == seq


class MemoryTables:
    """Every table of the memory store and the lock that makes each call one transaction."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[str, UserRow] = {}
        #: Every ledger reference credited (the ``UNIQUE`` column), whoever it credited.
        self._references: set[str] = set()
        #: The last ledger ``entry_id`` given out (AUTOINCREMENT across users).
        self._entry_id = 0
        #: Every notice id ever queued, with the user who holds it (its primary key).
        self._notices: dict[str, UserRow] = {}
        #: Processed webhook event ids (dead-lettered ones included).
        self._events: set[str] = set()
        #: Dead letters in the order they were kept (SQLite's rowid order).
        self._dead_letters: list[DeadLetter] = []
        self._subscriptions: dict[str, SubscriptionRecord] = {}

    def close(self) -> None:
        """Drop every row, as closing an in-memory SQLite database does; the store is empty
        afterwards. The memory returns at once, even while something only the cyclic garbage
        collector can free still refers to the store (a finished simulation: ``World.close``)."""
        with self._lock:
            for table in (
                self._users, self._references, self._notices, self._events, self._dead_letters,
                self._subscriptions,
            ):  # fmt: skip
                table.clear()
            self._entry_id = 0

    def _user(self, user_id: str) -> UserRow:
        user = self._users.get(user_id)
        if user is None:
            raise UnknownUser(user_id)
        return user

    def _prepare_notices(
        self, notices: Sequence[PendingNotice], now: float
    ) -> list[tuple[UserRow, NoticeRow]]:
        """What queueing ``notices`` would write, checked as SQLite's ``INSERT OR IGNORE`` checks
        them, one after another: the detail must encode as JSON, an id already queued (before or
        earlier in this batch) is skipped, and a new notice must name a known user."""
        created_at = real(now)
        seen: set[str] = set()
        prepared: list[tuple[UserRow, NoticeRow]] = []
        for notice in notices:
            detail = json.dumps(notice.detail)
            notice_id = notice.notice_id
            if notice_id in self._notices or notice_id in seen:
                continue
            owner = self._users.get(notice.user_id)
            if owner is None:
                raise constraint_failed("FOREIGN KEY constraint failed")
            seen.add(notice_id)
            prepared.append((owner, (created_at, notice_id, notice.kind, detail)))
        return prepared

    def _queue(self, prepared: list[tuple[UserRow, NoticeRow]]) -> None:
        """Apply what :meth:`_prepare_notices` computed."""
        for owner, row in prepared:
            self._notices[row[1]] = owner
            owner.pending[row[1]] = row
