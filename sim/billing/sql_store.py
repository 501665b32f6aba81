"""The :class:`~sim.billing.store.Store` port in SQL, once for every database it runs on.

Every method is one transaction of the connection underneath (:class:`SQLConnection`), and every
transaction that decides on a user's rows locks the user first (:meth:`SQLConnection._lock_user`),
so the read-decide-write of a deduction runs one at a time per user, across threads, processes
and hosts, and a worker killed mid-transaction leaves nothing: the database discards an
uncommitted transaction. :class:`~sim.billing.sqlite_store.SQLiteStore` and
:class:`~sim.billing.postgres_store.PostgresStore` are this class over their connection; the SQL
here is what both speak (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``).

This module holds the money (users, deductions, credits, attempts, the outbox, the ledger);
webhook events, subscriptions and two-factor state are in ``sql_events.py`` and
``sql_twofactor.py``. Rows are read by column name, never by position.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from .claims import ClaimPolicy, Month, Trigger, UserTopupState, decide, idempotency_key, month_of
from .errors import DuplicateUser, UnknownUser
from .settings import ACTIVE, AutoTopupSettings
from .sql_connection import Row, Session
from .sql_events import EventTables
from .sql_twofactor import TwoFactorTables
from .store import (
    LIMIT_COUNTED_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    USAGE_KEY_SECONDS,
    AttemptOutcome,
    CachedUser,
    ChargeTerms,
    Deducted,
    LedgerEntry,
    PendingNotice,
    Sealer,
    Settled,
    TopupAttempt,
    UsageRecord,
    UserRecord,
    limit_notice,
)

#: The columns a snapshot (and a deduction's decision) is made of.
_SNAPSHOT = """version, balance, auto_topup_low_balance_enabled AS enabled,
    auto_topup_low_balance_threshold AS threshold, auto_topup_low_balance_amount AS amount,
    auto_topup_state AS state, auto_topup_seq AS seq, auto_topup_open_seq AS open_seq,
    auto_topup_lease AS lease, auto_topup_lease_until AS lease_until,
    auto_topup_monthly_limit AS monthly_limit"""

_ATTEMPT_COLUMNS = """user_id, seq, idempotency_key, claimed_at, status, credits, currency,
    amount_minor, payment_intent_id, decline_code, retries, finished_at,
    encrypted_payment_method_id, claimed_credits"""

#: The credits of a user's attempts in a month that count towards the monthly limit: what each
#: claim reserved (for an attempt claimed before that was kept, what it charged).
_CLAIMED_IN = f"""SELECT COALESCE(SUM(COALESCE(claimed_credits, credits)), 0) AS total
    FROM topup_attempts WHERE user_id = ? AND claimed_at >= ? AND claimed_at < ?
    AND status IN ({", ".join(f"'{status}'" for status in LIMIT_COUNTED_STATUSES)})"""


def _snapshot(row: Row) -> CachedUser:
    # Positional (in CachedUser's field order): keywords cost twice as much on this hot path.
    return CachedUser(
        row["version"], row["balance"], bool(row["enabled"]), row["threshold"], row["amount"],
        row["state"], row["seq"], row["open_seq"],
    )  # fmt: skip


class SQLStore(EventTables, TwoFactorTables):
    """The :class:`~sim.billing.store.Store` in SQL, over the connection a subclass mixes in.

    Webhook events and subscriptions (:class:`EventTables`) and two-factor state
    (:class:`TwoFactorTables`) are in modules of their own; the money is here."""

    # ------------------------------------------------------------------ users

    def create_user(self, user_id: str, wrapped_key: bytes, encrypted_email: bytes | None) -> None:
        """Insert a user with a zero balance."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO users (user_id, wrapped_key, encrypted_email) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO NOTHING",
                (user_id, wrapped_key, encrypted_email),
            )
            if cursor.rowcount == 0:
                raise DuplicateUser(user_id)

    def get_user(self, user_id: str) -> UserRecord:
        """Return the user; raise ``UnknownUser``."""
        rows = self._read("SELECT * FROM users WHERE user_id = ?", (user_id,))
        if not rows:
            raise UnknownUser(user_id)
        row = rows[0]
        return UserRecord(
            user_id=row["user_id"],
            wrapped_key=row["wrapped_key"],
            balance=row["balance"],
            settings=AutoTopupSettings(
                bool(row["auto_topup_low_balance_enabled"]),
                row["auto_topup_low_balance_threshold"],
                row["auto_topup_low_balance_amount"],
                row["auto_topup_low_balance_currency"],
                row["auto_topup_monthly_limit"],
            ),
            state=row["auto_topup_state"],
            consecutive_failures=row["auto_topup_consecutive_failures"],
            topup_seq=row["auto_topup_seq"],
            encrypted_last_triggered=row["encrypted_auto_topup_last_triggered"],
            encrypted_stripe_customer_id=row["encrypted_stripe_customer_id"],
            encrypted_payment_method_id=row["encrypted_payment_method_id"],
            encrypted_email=row["encrypted_email"],
            encrypted_tfa_secret=row["encrypted_tfa_secret"],
            tfa_last_step=row["tfa_last_step"],
            open_attempt=row["auto_topup_open_seq"],
            lease=row["auto_topup_lease"],
            lease_until=row["auto_topup_lease_until"],
            version=row["version"],
        )

    def snapshot(self, user_id: str) -> CachedUser:
        """The cached fields at their current version."""
        rows = self._read(f"SELECT {_SNAPSHOT} FROM users WHERE user_id = ?", (user_id,))
        if not rows:
            raise UnknownUser(user_id)
        return _snapshot(rows[0])

    def user_ids(self) -> list[str]:
        """Every user id, sorted."""
        return [r["user_id"] for r in self._read("SELECT user_id FROM users ORDER BY user_id", ())]

    # ------------------------------------------------------------------ the deduction

    def deduct(
        self,
        user_id: str,
        credits: int,
        now: float,
        policy: ClaimPolicy,
        seal: Sealer,
        request_key: str | None = None,
    ) -> Deducted:
        """Take, decide and claim in one transaction (see :class:`~sim.billing.store.Store`),
        keeping a taken spend under ``request_key``."""
        with self._tx() as db:
            self._lock_user(db, user_id)
            if request_key is not None:
                kept = self._kept_usage(db, user_id, request_key, now)
                if kept is not None:
                    return kept
            done = self._deduct(db, user_id, credits, now, policy, seal)
            if request_key is not None and credits and not done.refused:
                db.execute(
                    "DELETE FROM usage_requests WHERE user_id = ? AND created_at <= ?",
                    (user_id, now - USAGE_KEY_SECONDS),
                )
                db.execute(
                    "INSERT INTO usage_requests (user_id, request_key, credits, balance_after,"
                    " auto_topup, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (user_id, request_key) DO UPDATE SET credits = excluded.credits,"
                    " balance_after = excluded.balance_after, auto_topup = excluded.auto_topup,"
                    " created_at = excluded.created_at",
                    (user_id, request_key, credits, done.balance, done.trigger.value, now),
                )
            return done

    def _kept_usage(
        self, db: Session, user_id: str, request_key: str, now: float
    ) -> Deducted | None:
        """The answer kept under ``request_key`` within its window, as a replay; else None."""
        kept = db.execute(
            "SELECT credits, balance_after, auto_topup, created_at FROM usage_requests"
            " WHERE user_id = ? AND request_key = ? AND created_at > ?",
            (user_id, request_key, now - USAGE_KEY_SECONDS),
        ).fetchone()
        if kept is None:
            return None
        row = db.execute(f"SELECT {_SNAPSHOT} FROM users WHERE user_id = ?", (user_id,)).fetchone()
        record = UsageRecord(
            kept["credits"], kept["balance_after"], Trigger(kept["auto_topup"]), kept["created_at"]
        )
        return Deducted(
            False, record.balance, Trigger.NONE, None, None, _snapshot(row), None, record
        )

    def _deduct(
        self,
        db: Session,
        user_id: str,
        credits: int,
        now: float,
        policy: ClaimPolicy,
        seal: Sealer,
    ) -> Deducted:
        """The deduction's work inside the open transaction ``db``."""
        row = None
        if credits:
            row = db.execute(
                "UPDATE users SET balance = balance - ?, version = version + 1"
                f" WHERE user_id = ? AND balance >= ? RETURNING {_SNAPSHOT}",
                (credits, user_id, credits),
            ).fetchone()
        taken = row is not None
        if row is None:
            row = db.execute(
                f"SELECT {_SNAPSHOT} FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            if row is None:
                raise UnknownUser(user_id)
        else:
            db.execute(
                "INSERT INTO ledger (user_id, delta, kind, reference, balance_after,"
                " created_at) VALUES (?, ?, 'usage', NULL, ?, ?)",
                (user_id, -credits, row["balance"], now),
            )
        state = UserTopupState(
            row["balance"], bool(row["enabled"]), row["threshold"], row["state"],
            row["open_seq"], row["lease_until"], row["amount"], row["monthly_limit"],
        )  # fmt: skip
        trigger = decide(
            state, now, policy, lambda: self._claimed_at(db, user_id, row["seq"]),
            lambda month: self._claimed_in(db, user_id, month),
        )  # fmt: skip
        attempt = lease = None
        notice = None
        if trigger is Trigger.LIMITED:
            held = limit_notice(user_id, month_of(now), row["monthly_limit"])
            if self._queue(db, held, now):
                notice = held
        elif trigger is Trigger.CLAIMED:
            attempt, lease = row["seq"] + 1, row["lease"] + 1
            wrapped = db.execute(
                "SELECT wrapped_key FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()["wrapped_key"]
            db.execute(
                "INSERT INTO topup_attempts (user_id, seq, idempotency_key, claimed_at, status,"
                " claimed_credits) VALUES (?, ?, ?, ?, 'claimed', ?)",
                (user_id, attempt, idempotency_key(user_id, attempt), now, row["amount"]),
            )
            row = db.execute(
                "UPDATE users SET auto_topup_seq = ?, auto_topup_open_seq = ?,"
                " auto_topup_lease = ?, auto_topup_lease_until = ?,"
                " encrypted_auto_topup_last_triggered = ?, version = version + 1"
                f" WHERE user_id = ? RETURNING {_SNAPSHOT}",
                (attempt, attempt, lease, now + policy.lease_seconds,
                 seal(user_id, wrapped, now), user_id),
            ).fetchone()  # fmt: skip
        elif trigger is Trigger.RECOVER:
            attempt, lease = row["open_seq"], row["lease"] + 1
            db.execute(
                "UPDATE users SET auto_topup_lease = ?, auto_topup_lease_until = ?"
                " WHERE user_id = ?",
                (lease, now + policy.lease_seconds, user_id),
            )
        return Deducted(
            refused=bool(credits) and not taken,
            balance=row["balance"],
            trigger=trigger,
            attempt=attempt,
            lease=lease,
            snapshot=_snapshot(row),
            notice=notice,
        )

    @staticmethod
    def _claimed_in(db: Session, user_id: str, month: Month) -> int:
        """What the user's month counts towards the limit; read only when a claim is otherwise
        due (a sum over the user's attempts, inside the deduction's transaction)."""
        found = db.execute(_CLAIMED_IN, (user_id, month.start, month.end)).fetchone()
        return int(found["total"])

    @staticmethod
    def _claimed_at(db: Session, user_id: str, seq: int) -> float | None:
        found = db.execute(
            "SELECT claimed_at FROM topup_attempts WHERE user_id = ? AND seq = ?", (user_id, seq)
        ).fetchone()
        return None if found is None else float(found["claimed_at"])

    # ------------------------------------------------------------------ credits

    def credit(
        self, user_id: str, credits: int, kind: str, reference: str, now: float
    ) -> CachedUser | None:
        """Add credits under a unique reference; ``None`` if already credited."""
        with self._tx() as db:
            self._lock_user(db, user_id)
            return self._credit(db, user_id, credits, kind, reference, now)

    @staticmethod
    def _credit(
        db: Session, user_id: str, credits: int, kind: str, reference: str, now: float
    ) -> CachedUser | None:
        if db.execute("SELECT 1 FROM ledger WHERE reference = ?", (reference,)).fetchone():
            return None
        row = db.execute(
            "UPDATE users SET balance = balance + ?, version = version + 1 WHERE user_id = ?"
            f" RETURNING {_SNAPSHOT}",
            (credits, user_id),
        ).fetchone()
        if row is None:
            raise UnknownUser(user_id)
        db.execute(
            "INSERT INTO ledger (user_id, delta, kind, reference, balance_after, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, credits, kind, reference, row["balance"], now),
        )
        return _snapshot(row)

    def settle_topup(
        self,
        user_id: str,
        seq: int | None,
        outcome: AttemptOutcome,
        now: float,
        notice: PendingNotice | None = None,
    ) -> Settled:
        """Credit a paid top-up and record its attempt as succeeded, in one transaction."""
        assert outcome.payment_intent_id is not None and outcome.credits is not None
        with self._tx() as db:
            self._lock_user(db, user_id)
            credited = self._credit(
                db, user_id, outcome.credits, "topup", outcome.payment_intent_id, now
            )
            if credited is not None and notice is not None:
                self._queue(db, notice, now)
            closed = False
            if seq is not None:
                found = db.execute(
                    "SELECT status FROM topup_attempts WHERE user_id = ? AND seq = ?",
                    (user_id, seq),
                ).fetchone()
                if found is not None and found["status"] != "succeeded":
                    self._record(db, user_id, seq, outcome, now)
                    if found["status"] in OPEN_ATTEMPT_STATUSES:
                        # The open attempt is the user's newest: a paid charge ends the streak.
                        db.execute(
                            "UPDATE users SET auto_topup_open_seq = NULL,"
                            " auto_topup_lease_until = NULL, auto_topup_consecutive_failures = 0,"
                            " version = version + 1 WHERE user_id = ? AND auto_topup_open_seq = ?",
                            (user_id, seq),
                        )
                        closed = True
            row = db.execute(
                f"SELECT {_SNAPSHOT} FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            if row is None:  # an unknown user whose intent was credited (to someone else)
                raise UnknownUser(user_id)
            return Settled(credited is not None, closed, _snapshot(row))

    # ------------------------------------------------------------------ attempts and leases

    def take_over(
        self, user_id: str, seq: int, now: float, until: float, force: bool
    ) -> int | None:
        """A new lease on open attempt ``seq`` when its lease ran out (or ``force``)."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE users SET auto_topup_lease = auto_topup_lease + 1,"
                " auto_topup_lease_until = ? WHERE user_id = ? AND auto_topup_open_seq = ?"
                " AND (? OR auto_topup_lease_until IS NULL OR auto_topup_lease_until <= ?)"
                " RETURNING auto_topup_lease AS lease",
                (until, user_id, seq, force, now),
            ).fetchone()
            return None if row is None else int(row["lease"])

    @staticmethod
    def _holds(db: Session, user_id: str, seq: int, lease: int, until: float) -> bool:
        """Renew the lease if ``lease`` still holds it (the fence of every worker write)."""
        cursor = db.execute(
            "UPDATE users SET auto_topup_lease_until = ? WHERE user_id = ?"
            " AND auto_topup_open_seq = ? AND auto_topup_lease = ?",
            (until, user_id, seq, lease),
        )
        return cursor.rowcount == 1

    def start_charge(
        self, user_id: str, seq: int, lease: int, terms: ChargeTerms, until: float
    ) -> ChargeTerms | None:
        """Mark the attempt charging and fix its terms (the first terms stick)."""
        with self._tx() as db:
            if not self._holds(db, user_id, seq, lease, until):
                return None
            db.execute(
                "UPDATE topup_attempts SET status = 'charging', credits = ?, currency = ?,"
                " amount_minor = ?, encrypted_payment_method_id = ?"
                " WHERE user_id = ? AND seq = ? AND status = 'claimed'",
                (terms.credits, terms.currency, terms.amount_minor,
                 terms.encrypted_payment_method_id, user_id, seq),
            )  # fmt: skip
            row = db.execute(
                "SELECT credits, currency, amount_minor, encrypted_payment_method_id"
                " FROM topup_attempts WHERE user_id = ? AND seq = ?",
                (user_id, seq),
            ).fetchone()
            return ChargeTerms(
                row["credits"], row["currency"], row["amount_minor"],
                row["encrypted_payment_method_id"],
            )  # fmt: skip

    def hold_lease(
        self, user_id: str, seq: int, lease: int, until: float, status: str | None, retries: int
    ) -> bool:
        """Extend the lease, optionally moving the attempt between ``charging`` and ``unknown``."""
        with self._tx() as db:
            if not self._holds(db, user_id, seq, lease, until):
                return False
            if status is not None:
                db.execute(
                    "UPDATE topup_attempts SET status = ?, retries = ?"
                    " WHERE user_id = ? AND seq = ? AND status IN ('charging', 'unknown')",
                    (status, retries, user_id, seq),
                )
            return True

    def finish_attempt(
        self,
        user_id: str,
        seq: int,
        lease: int | None,
        outcome: AttemptOutcome,
        now: float,
        notices: Sequence[PendingNotice] = (),
    ) -> CachedUser | None:
        """Close open attempt ``seq`` and set the user's state; ``None`` if not applied.

        Only the first final outcome applies, and only from the lease holder (``lease``), so two
        workers, or a worker and a recovery, can never both count one failure.
        """
        with self._tx() as db:
            fence = "" if lease is None else " AND auto_topup_lease = ?"
            row = db.execute(
                "UPDATE users SET auto_topup_open_seq = NULL, auto_topup_lease_until = NULL,"
                " auto_topup_state = ?, auto_topup_consecutive_failures = ?,"
                f" version = version + 1 WHERE user_id = ? AND auto_topup_open_seq = ?{fence}"
                f" RETURNING {_SNAPSHOT}",
                (outcome.state, outcome.consecutive_failures, user_id, seq,
                 *(() if lease is None else (lease,))),
            ).fetchone()  # fmt: skip
            if row is None:
                return None
            self._record(db, user_id, seq, outcome, now)
            for notice in notices:
                self._queue(db, notice, now)
            return _snapshot(row)

    # ------------------------------------------------------------------ the notice outbox

    @staticmethod
    def _queue(db: Session, notice: PendingNotice, now: float) -> bool:
        """Queue ``notice`` unless its id was ever queued; whether this call queued it."""
        cursor = db.execute(
            "INSERT INTO notices (notice_id, user_id, kind, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (notice_id) DO NOTHING",
            (notice.notice_id, notice.user_id, notice.kind, json.dumps(notice.detail), now),
        )
        return cursor.rowcount == 1

    def pending_notices(self, user_id: str) -> list[PendingNotice]:
        """The user's notices not yet marked sent, oldest first."""
        rows = self._read(
            "SELECT notice_id, user_id, kind, detail FROM notices"
            " WHERE user_id = ? AND sent_at IS NULL ORDER BY created_at, rowid",
            (user_id,),
        )
        return [PendingNotice(**(dict(r) | {"detail": json.loads(r["detail"])})) for r in rows]

    def mark_notice_sent(self, notice_id: str, now: float) -> None:
        """Mark an outbox notice sent."""
        with self._tx() as db:
            db.execute("UPDATE notices SET sent_at = ? WHERE notice_id = ?", (now, notice_id))

    @staticmethod
    def _record(db: Session, user_id: str, seq: int, outcome: AttemptOutcome, now: float) -> None:
        db.execute(
            "UPDATE topup_attempts SET status = ?, credits = COALESCE(?, credits),"
            " currency = COALESCE(?, currency), amount_minor = COALESCE(?, amount_minor),"
            " payment_intent_id = ?, decline_code = ?,"
            " retries = CASE WHEN retries > ? THEN retries ELSE ? END,"
            " finished_at = ? WHERE user_id = ? AND seq = ?",
            (
                outcome.status, outcome.credits, outcome.currency, outcome.amount_minor,
                outcome.payment_intent_id, outcome.decline_code, outcome.retries,
                outcome.retries, now, user_id, seq,
            ),
        )  # fmt: skip

    def attempt(self, user_id: str, seq: int) -> TopupAttempt | None:
        """One top-up attempt, or ``None``."""
        rows = self._attempt_rows("WHERE user_id = ? AND seq = ?", (user_id, seq))
        return rows[0] if rows else None

    def attempts(self, user_id: str) -> list[TopupAttempt]:
        """The user's top-up attempts in order."""
        return self._attempt_rows("WHERE user_id = ? ORDER BY seq", (user_id,))

    def _attempt_rows(self, where: str, args: tuple[object, ...]) -> list[TopupAttempt]:
        rows = self._read(f"SELECT {_ATTEMPT_COLUMNS} FROM topup_attempts {where}", args)
        return [TopupAttempt(**dict(row)) for row in rows]

    # ------------------------------------------------------------------ settings and cards

    def save_settings(self, user_id: str, settings: AutoTopupSettings) -> CachedUser:
        """Store settings; clears a pause or suspension."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE users SET auto_topup_low_balance_enabled = ?,"
                " auto_topup_low_balance_threshold = ?, auto_topup_low_balance_amount = ?,"
                " auto_topup_low_balance_currency = ?, auto_topup_monthly_limit = ?,"
                " auto_topup_state = ?, auto_topup_consecutive_failures = 0,"
                f" version = version + 1 WHERE user_id = ? RETURNING {_SNAPSHOT}",
                (int(settings.enabled), settings.threshold, settings.amount, settings.currency,
                 settings.monthly_limit, ACTIVE, user_id),
            ).fetchone()  # fmt: skip
            if row is None:
                raise UnknownUser(user_id)
            return _snapshot(row)

    def save_payment_method(
        self, user_id: str, encrypted_customer_id: bytes, encrypted_payment_method_id: bytes
    ) -> CachedUser:
        """Store the (encrypted) customer and card; clears a pause or suspension."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE users SET encrypted_stripe_customer_id = ?,"
                " encrypted_payment_method_id = ?, auto_topup_state = ?,"
                " auto_topup_consecutive_failures = 0, version = version + 1"
                f" WHERE user_id = ? RETURNING {_SNAPSHOT}",
                (encrypted_customer_id, encrypted_payment_method_id, ACTIVE, user_id),
            ).fetchone()
            if row is None:
                raise UnknownUser(user_id)
            return _snapshot(row)

    def save_customer(self, user_id: str, encrypted_customer_id: bytes) -> None:
        """Store the (encrypted) customer of a user who has none yet; a saved one is kept."""
        with self._tx() as db:
            found = db.execute(
                "UPDATE users SET encrypted_stripe_customer_id ="
                " COALESCE(encrypted_stripe_customer_id, ?) WHERE user_id = ?",
                (encrypted_customer_id, user_id),
            ).rowcount
            if not found:
                raise UnknownUser(user_id)

    # ------------------------------------------------------------------ the books

    def ledger(self, user_id: str, kinds: Collection[str] | None = None) -> list[LedgerEntry]:
        """The user's ledger in order; with ``kinds``, only the entries of those kinds."""
        if kinds is not None and not kinds:
            return []  # none chosen, none kept (``IN ()`` is SQLite's only)
        chosen = sorted(set(kinds or ()))
        among = f" AND kind IN ({', '.join('?' * len(chosen))})" if kinds is not None else ""
        rows = self._read(
            "SELECT entry_id, user_id, delta, kind, reference, balance_after, created_at"
            f" FROM ledger WHERE user_id = ?{among} ORDER BY entry_id",
            (user_id, *chosen),
        )
        return [LedgerEntry(**dict(row)) for row in rows]

    def auto_topup_credits_in(self, user_id: str, month: Month) -> int:
        """The month's auto top-up credits that count towards the limit (the claim's sum)."""
        rows = self._read(_CLAIMED_IN, (user_id, month.start, month.end))
        return int(rows[0]["total"])

    def ledger_sum(self, user_id: str) -> int:
        """The sum of the user's ledger (equals the balance when the books are right)."""
        rows = self._read(
            "SELECT COALESCE(SUM(delta), 0) AS total FROM ledger WHERE user_id = ?", (user_id,)
        )
        return int(rows[0]["total"])
