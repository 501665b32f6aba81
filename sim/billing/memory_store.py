"""The :class:`~sim.billing.store.Store` port in memory, with exactly the semantics of
:class:`~sim.billing.sqlite_store.SQLiteStore`.

Why: the simulation's sweeps study billing, not SQLite, and the SQLite transaction is most of a
deduction's cost. This store keeps the rows in dicts and lists and gives, call for call, the same
return values, the same errors, the same versions and the same reads as ``SQLiteStore`` (the store
suite runs against both, and a differential test drives both with random call sequences), so a
run on it still drives the real billing module; the decisions stay where they are,
:func:`~sim.billing.claims.decide` and :meth:`~sim.billing.twofactor.TfaPolicy.judge`.

Each call is one transaction: one ``threading.RLock`` serialises the calls, and every write
computes all it will write before it changes anything (``memory_state.py``), so an exception
raised midway, a simulated crash included, leaves nothing behind, as SQLite's rollback does.

Where a caller can meet SQLite's own rules with values of the annotated types, they hold here too:
an int given as a time comes back a float (REAL columns); a credit that would make a balance
negative, and a notice or new subscription naming an unknown user, raise ``StoreUnavailable`` and
change nothing (the ``CHECK`` and the foreign keys); notice details go through JSON. Values outside
the annotated types are not covered. Nothing is durable: this store is for runs that end with the
process.

This module holds the money (users, deductions, credits, attempts, the outbox, the ledger);
webhook events and subscriptions are in ``memory_events.py``, two-factor state in
``memory_twofactor.py``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from operator import itemgetter

from .claims import (
    TRIGGER_NONE,
    ClaimPolicy,
    Month,
    Trigger,
    UserTopupState,
    at_rest,
    decide,
    idempotency_key,
    month_of,
)
from .errors import DuplicateUser, UnknownUser
from .memory_events import MemoryEventTables
from .memory_state import LedgerRow, NoticeRow, UserRow, constraint_failed, real
from .memory_twofactor import MemoryTwoFactorTables
from .settings import ACTIVE, AutoTopupSettings
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

_CREATED_AT = itemgetter(0)
#: The ledger kind of a deduction's entry; every other kind is written by a credit.
_USAGE = "usage"


def _keep_usage(user: UserRow, request_key: str, record: UsageRecord) -> None:
    """Keep ``record`` under ``request_key``, dropping every record of the user past its window
    at ``record``'s time, as SQLite's ``DELETE`` does (a scan of the user's keys: this store
    serves one process, where keyed spends are the API's, not the simulation's hot path)."""
    cutoff = record.at - USAGE_KEY_SECONDS
    kept = user.usage_requests
    for key in [key for key, old in kept.items() if old.at <= cutoff]:
        del kept[key]
    kept[request_key] = record


def _claimed_in(user: UserRow, month: Month) -> int:
    """The credits of the user's attempts claimed in ``month`` that count towards the monthly
    limit (what the claim reserved; for an attempt claimed before that was kept, what it
    charged)."""
    total = 0
    for attempt in user.attempts.values():
        if month.start <= attempt.claimed_at < month.end and (
            attempt.status in LIMIT_COUNTED_STATUSES
        ):
            counted = attempt.claimed_credits
            if counted is None:
                counted = attempt.credits
            total += counted or 0
    return total


def _recorded(attempt: TopupAttempt, outcome: AttemptOutcome, now: float) -> TopupAttempt:
    """The attempt with its final outcome written over it: the terms already fixed stay where
    the outcome has none, and ``retries`` never goes down."""
    return replace(
        attempt,
        status=outcome.status,
        credits=attempt.credits if outcome.credits is None else outcome.credits,
        currency=attempt.currency if outcome.currency is None else outcome.currency,
        amount_minor=attempt.amount_minor if outcome.amount_minor is None else outcome.amount_minor,
        payment_intent_id=outcome.payment_intent_id,
        decline_code=outcome.decline_code,
        retries=max(attempt.retries, outcome.retries),
        finished_at=real(now),
    )


class MemoryStore(MemoryEventTables, MemoryTwoFactorTables):
    """The :class:`~sim.billing.store.Store` in memory; thread-safe: one lock, every call atomic.

    Its state (``memory_state.py``), webhook events and subscriptions (:class:`MemoryEventTables`)
    and two-factor state (:class:`MemoryTwoFactorTables`) are in modules of their own; the money
    is here.
    """

    # ------------------------------------------------------------------ users

    def create_user(self, user_id: str, wrapped_key: bytes, encrypted_email: bytes | None) -> None:
        """Insert a user with a zero balance; raise ``DuplicateUser`` if the id is taken."""
        with self._lock:
            if user_id in self._users:
                raise DuplicateUser(user_id)
            self._users[user_id] = UserRow(user_id, wrapped_key, encrypted_email)

    def get_user(self, user_id: str) -> UserRecord:
        """Return the user; raise ``UnknownUser``."""
        with self._lock:
            user = self._user(user_id)
            return UserRecord(
                user_id=user.user_id,
                wrapped_key=user.wrapped_key,
                balance=user.balance,
                settings=user.settings,
                state=user.state,
                consecutive_failures=user.consecutive_failures,
                topup_seq=user.seq,
                encrypted_last_triggered=user.encrypted_last_triggered,
                encrypted_stripe_customer_id=user.encrypted_stripe_customer_id,
                encrypted_payment_method_id=user.encrypted_payment_method_id,
                encrypted_email=user.encrypted_email,
                encrypted_tfa_secret=user.encrypted_tfa_secret,
                tfa_last_step=user.tfa_last_step,
                open_attempt=user.open_seq,
                lease=user.lease,
                lease_until=user.lease_until,
                version=user.version,
            )

    def snapshot(self, user_id: str) -> CachedUser:
        """The cached fields at their current version; raise ``UnknownUser``."""
        with self._lock:
            return self._user(user_id).snapshot()

    def user_ids(self) -> list[str]:
        """Every user id, sorted (code point order: SQLite's byte order of UTF-8 is the same)."""
        with self._lock:
            return sorted(self._users)

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
        keeping a taken spend under ``request_key``.

        The hot path of a simulation: one dict lookup, the decision, and for most calls one
        tuple appended to the ledger.
        """
        # acquire/release rather than ``with``: on this path the ``with`` statement's method
        # lookups cost about as much again as the lock itself (see docs/performance.md).
        self._lock.acquire()
        try:
            user = self._users.get(user_id)
            if user is None:
                raise UnknownUser(user_id)
            if request_key is None:
                return self._deduct(user, credits, now, policy, seal)
            kept = user.usage_requests.get(request_key)
            if kept is not None and kept.at > now - USAGE_KEY_SECONDS:
                return Deducted(
                    False, kept.balance, Trigger.NONE, None, None, user.snapshot(), None, kept
                )
            done = self._deduct(user, credits, now, policy, seal)
            if credits and not done.refused:
                _keep_usage(user, request_key, UsageRecord(credits, done.balance, done.trigger,
                                                           real(now)))  # fmt: skip
            return done
        finally:
            self._lock.release()

    def _deduct(
        self, user: UserRow, credits: int, now: float, policy: ClaimPolicy, seal: Sealer
    ) -> Deducted:
        """The deduction's work, under the lock."""
        balance = user.balance
        taken = bool(credits) and balance >= credits
        if taken:
            balance -= credits
        refused = bool(credits) and not taken
        settings = user.settings
        if at_rest(balance, settings.enabled, settings.threshold, user.open_seq):
            # Nearly every deduction: nothing to decide, only the spend to write.
            if taken:
                self._spend(user, credits, real(now))
            return Deducted(refused, balance, TRIGGER_NONE, None, None, user.snapshot())
        state = UserTopupState(
            balance, settings.enabled, settings.threshold, user.state, user.open_seq,
            user.lease_until, settings.amount, settings.monthly_limit,
        )  # fmt: skip
        trigger = decide(
            state, now, policy, lambda: self._claimed_at(user),
            lambda month: _claimed_in(user, month),
        )  # fmt: skip
        if trigger is Trigger.CLAIMED:
            return self._claim(user, credits if taken else 0, refused, now, policy, seal)
        created_at = real(now)
        attempt = lease = until = None
        if trigger is Trigger.RECOVER:
            attempt, lease = user.open_seq, user.lease + 1
            until = real(now + policy.lease_seconds)
        held: PendingNotice | None = None
        queued: list[tuple[UserRow, NoticeRow]] = []
        if trigger is Trigger.LIMITED:
            assert settings.monthly_limit is not None  # LIMITED only comes from a limit
            held = limit_notice(user.user_id, month_of(now), settings.monthly_limit)
            queued = self._prepare_notices([held], now)
        # Everything is computed: write.
        if taken:
            self._spend(user, credits, created_at)
        if lease is not None:
            user.lease, user.lease_until = lease, until
        self._queue(queued)
        notice = held if queued else None
        return Deducted(refused, balance, trigger, attempt, lease, user.snapshot(), notice)

    def _claim(
        self,
        user: UserRow,
        taken: int,
        refused: bool,
        now: float,
        policy: ClaimPolicy,
        seal: Sealer,
    ) -> Deducted:
        """Write a deduction of ``taken`` credits (0: none) and the claim it decided: the next
        attempt, a new lease, the sealed claim time; each raises the version."""
        attempt, lease = user.seq + 1, user.lease + 1
        created_at, until = real(now), real(now + policy.lease_seconds)
        sealed = seal(user.user_id, user.wrapped_key, now)
        claimed = TopupAttempt(
            user.user_id, attempt, idempotency_key(user.user_id, attempt), created_at, "claimed",
            None, None, None, None, None, 0, None, None, user.settings.amount,
        )  # fmt: skip
        # Everything is computed: write.
        if taken:
            self._spend(user, taken, created_at)
        user.attempts[attempt] = claimed
        user.seq = user.open_seq = attempt
        user.lease, user.lease_until = lease, until
        user.encrypted_last_triggered = sealed
        user.version += 1
        return Deducted(refused, user.balance, Trigger.CLAIMED, attempt, lease, user.snapshot())

    @staticmethod
    def _claimed_at(user: UserRow) -> float | None:
        """When the user's newest attempt was claimed (the cooldown's start), if there is one."""
        newest = user.attempts.get(user.seq)
        return None if newest is None else newest.claimed_at

    def _spend(self, user: UserRow, credits: int, created_at: float) -> None:
        """Write a deduction of ``credits``: the balance, its ``usage`` ledger entry (the next
        entry id) at the end of the user's spends, the ledger's sum; raise the version. Callers
        have checked that the balance pays for it."""
        balance = user.balance - credits
        self._entry_id = entry_id = self._entry_id + 1
        user.spends += (entry_id, -credits, balance, created_at)
        user.ledger_total -= credits
        user.balance = balance
        user.version += 1

    # ------------------------------------------------------------------ credits

    def credit(
        self, user_id: str, credits: int, kind: str, reference: str, now: float
    ) -> CachedUser | None:
        """Add credits under a unique reference; ``None`` if that reference was credited."""
        with self._lock:
            user = self._creditable(user_id, credits, reference)
            if user is None:
                return None
            self._credit(user, credits, kind, reference, real(now))
            return user.snapshot()

    def _creditable(self, user_id: str, credits: int, reference: str) -> UserRow | None:
        """The user a credit under ``reference`` goes to, or ``None`` if the reference was
        credited (checked first, whoever it credited); raise if the credit cannot be written."""
        if reference in self._references:
            return None
        user = self._user(user_id)
        if user.balance + credits < 0:
            raise constraint_failed("CHECK constraint failed: balance >= 0")
        return user

    def _credit(
        self, user: UserRow, credits: int, kind: str, reference: str, created_at: float
    ) -> None:
        """Write a credit :meth:`_creditable` allowed: the balance, its ledger entry (the next
        entry id) among the user's credits, the ledger's sum; take its reference and raise the
        version."""
        balance = user.balance + credits
        self._entry_id += 1
        user.credits.append((self._entry_id, credits, kind, reference, balance, created_at))
        user.ledger_total += credits
        user.balance = balance
        user.version += 1
        self._references.add(reference)

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
        with self._lock:
            credited = self._creditable(user_id, outcome.credits, outcome.payment_intent_id)
            user = self._user(user_id) if credited is None else credited
            queued: list[tuple[UserRow, NoticeRow]] = []
            if credited is not None and notice is not None:
                queued = self._prepare_notices((notice,), now)
            found = None if seq is None else user.attempts.get(seq)
            recorded, closed = None, False
            if found is not None and found.status != "succeeded":
                recorded = _recorded(found, outcome, now)
                closed = found.status in OPEN_ATTEMPT_STATUSES
            created_at = real(now)
            # Everything is computed: write.
            if credited is not None:
                self._credit(credited, outcome.credits, "topup", outcome.payment_intent_id,
                             created_at)  # fmt: skip
            self._queue(queued)
            if recorded is not None:
                user.attempts[recorded.seq] = recorded
            # The open attempt is the user's newest: a paid charge ends the failure streak.
            if closed and user.is_open(seq):
                user.open_seq = user.lease_until = None
                user.consecutive_failures = 0
                user.version += 1
            return Settled(credited is not None, closed, user.snapshot())

    # ------------------------------------------------------------------ attempts and leases

    def take_over(
        self, user_id: str, seq: int, now: float, until: float, force: bool
    ) -> int | None:
        """A new lease on open attempt ``seq`` when its lease ran out (or ``force``)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None or not user.is_open(seq):
                return None
            if not (force or user.lease_until is None or user.lease_until <= now):
                return None
            user.lease_until = real(until)
            user.lease += 1
            return user.lease

    def _holder(self, user_id: str, seq: int, lease: int) -> UserRow | None:
        """The user if ``lease`` still holds open attempt ``seq`` (the fence of every worker
        write), else ``None``."""
        user = self._users.get(user_id)
        if user is None or not user.is_open(seq) or user.lease != lease:
            return None
        return user

    def start_charge(
        self, user_id: str, seq: int, lease: int, terms: ChargeTerms, until: float
    ) -> ChargeTerms | None:
        """Mark the attempt charging and fix its terms (the first terms stick)."""
        with self._lock:
            user = self._holder(user_id, seq, lease)
            if user is None:
                return None
            lease_until = real(until)
            charged = user.attempts[seq]
            if charged.status == "claimed":
                charged = replace(
                    charged,
                    status="charging",
                    credits=terms.credits,
                    currency=terms.currency,
                    amount_minor=terms.amount_minor,
                    encrypted_payment_method_id=terms.encrypted_payment_method_id,
                )
            user.lease_until = lease_until
            user.attempts[seq] = charged
            # Past ``claimed`` an attempt's terms are set: the first start_charge fixed them.
            return ChargeTerms(
                charged.credits, charged.currency, charged.amount_minor,  # type: ignore[arg-type]
                charged.encrypted_payment_method_id,  # type: ignore[arg-type]
            )  # fmt: skip

    def hold_lease(
        self, user_id: str, seq: int, lease: int, until: float, status: str | None, retries: int
    ) -> bool:
        """Extend the lease, optionally moving the attempt between ``charging`` and ``unknown``."""
        with self._lock:
            user = self._holder(user_id, seq, lease)
            if user is None:
                return False
            lease_until = real(until)
            held = user.attempts[seq]
            if status is not None and held.status in ("charging", "unknown"):
                held = replace(held, status=status, retries=retries)
            user.lease_until = lease_until
            user.attempts[seq] = held
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
        with self._lock:
            user = self._users.get(user_id)
            if user is None or not user.is_open(seq):
                return None
            if lease is not None and user.lease != lease:
                return None
            recorded = _recorded(user.attempts[seq], outcome, now)
            queued = self._prepare_notices(notices, now)
            # Everything is computed: write.
            user.open_seq = user.lease_until = None
            user.state = outcome.state
            user.consecutive_failures = outcome.consecutive_failures
            user.version += 1
            user.attempts[seq] = recorded
            self._queue(queued)
            return user.snapshot()

    def attempt(self, user_id: str, seq: int) -> TopupAttempt | None:
        """One top-up attempt, or ``None``."""
        with self._lock:
            user = self._users.get(user_id)
            return None if user is None else user.attempts.get(seq)

    def attempts(self, user_id: str) -> list[TopupAttempt]:
        """The user's top-up attempts in order."""
        with self._lock:
            user = self._users.get(user_id)
            return [] if user is None else list(user.attempts.values())

    # ------------------------------------------------------------------ the notice outbox

    def pending_notices(self, user_id: str) -> list[PendingNotice]:
        """The user's notices not yet marked sent, oldest first (queue order among equals)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return []
            rows = sorted(user.pending.values(), key=_CREATED_AT)  # stable: queue order kept
        return [
            PendingNotice(notice_id, user_id, kind, json.loads(detail))
            for _, notice_id, kind, detail in rows
        ]

    def mark_notice_sent(self, notice_id: str, now: float) -> None:
        """Mark an outbox notice sent (an unknown id changes nothing)."""
        with self._lock:
            owner = self._notices.get(notice_id)
            if owner is not None:
                owner.pending.pop(notice_id, None)

    # ------------------------------------------------------------------ settings and cards

    def save_settings(self, user_id: str, settings: AutoTopupSettings) -> CachedUser:
        """Store settings; clears a pause or suspension."""
        with self._lock:
            user = self._user(user_id)
            user.settings = settings
            user.state = ACTIVE
            user.consecutive_failures = 0
            user.version += 1
            return user.snapshot()

    def save_payment_method(
        self, user_id: str, encrypted_customer_id: bytes, encrypted_payment_method_id: bytes
    ) -> CachedUser:
        """Store the (encrypted) customer and card; clears a pause or suspension."""
        with self._lock:
            user = self._user(user_id)
            user.encrypted_stripe_customer_id = encrypted_customer_id
            user.encrypted_payment_method_id = encrypted_payment_method_id
            user.state = ACTIVE
            user.consecutive_failures = 0
            user.version += 1
            return user.snapshot()

    def save_customer(self, user_id: str, encrypted_customer_id: bytes) -> None:
        """Store the (encrypted) customer of a user who has none yet; a saved one is kept."""
        with self._lock:
            user = self._user(user_id)
            if user.encrypted_stripe_customer_id is None:
                user.encrypted_stripe_customer_id = encrypted_customer_id

    # ------------------------------------------------------------------ the books

    def ledger(self, user_id: str, kinds: Collection[str] | None = None) -> list[LedgerEntry]:
        """The user's ledger in order; with ``kinds``, only the entries of those kinds. Without
        ``usage`` among them only the rows credits wrote are read (``UserRow.credits``): a
        deduction writes nothing but ``usage`` rows, a month of them per user, kept apart
        (``UserRow.spends``) and merged in entry order only when asked for."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                rows: list[LedgerRow] = []
            elif kinds is not None and _USAGE not in kinds:
                rows = list(user.credits)
            else:
                spends = iter(user.spends)
                rows = list(heapq.merge(
                    user.credits,
                    ((entry_id, delta, _USAGE, None, balance_after, created_at)
                     for entry_id, delta, balance_after, created_at
                     in zip(spends, spends, spends, spends, strict=True)),
                ))  # fmt: skip
        if kinds is not None:
            rows = [row for row in rows if row[2] in kinds]
        return [
            LedgerEntry(entry_id, user_id, delta, kind, reference, balance_after, created_at)
            for entry_id, delta, kind, reference, balance_after, created_at in rows
        ]

    def auto_topup_credits_in(self, user_id: str, month: Month) -> int:
        """The month's auto top-up credits that count towards the limit (the claim's sum)."""
        with self._lock:
            user = self._users.get(user_id)
            return 0 if user is None else _claimed_in(user, month)

    def ledger_sum(self, user_id: str) -> int:
        """The sum of the user's ledger (equals the balance when the books are right)."""
        with self._lock:
            user = self._users.get(user_id)
            return 0 if user is None else int(user.ledger_total)
