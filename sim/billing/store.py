"""Durable records and the ``Store`` port: users, the append-only credit ledger, top-up attempts,
webhook events, subscriptions.

The store is the source of truth and the one place where billing decisions are made: each method
is one transaction, so a failure (or a worker killed mid-call) leaves nothing half-written, and
every write that changes what the cache holds returns the user's new :class:`CachedUser` with its
``version``, which the service then writes to the cache (newer versions win there).

:class:`~sim.billing.sqlite_store.SQLiteStore` implements the port on SQLite. Secret fields arrive
already encrypted by the vault; the store never sees their plaintext.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from .claims import ClaimPolicy, Month, Trigger
from .settings import ACTIVE, AutoTopupSettings

if TYPE_CHECKING:  # twofactor imports this module; the port only names its types
    from .twofactor import TfaPolicy, TfaVerdict

#: ``seal(user_id, wrapped_key, claimed_at)``: the encrypted last-triggered time, made inside
#: the claim's transaction (the store never sees the plaintext it seals).
Sealer = Callable[[str, bytes, float], bytes]


@dataclass(slots=True)
class CachedUser:
    """What the cache holds of a user: a snapshot of the store at ``version``.

    ``version`` grows with every write to these fields, so of two snapshots the newer one wins,
    whatever order they reach the cache in. Treat it as immutable; it is not frozen only because
    one is built on every deduction and a frozen dataclass costs five times as much to build.
    """

    version: int
    balance: int
    enabled: bool
    threshold: int
    amount: int
    state: str
    seq: int
    open_seq: int | None


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
    encrypted_stripe_customer_id: bytes | None
    encrypted_payment_method_id: bytes | None
    encrypted_email: bytes | None
    encrypted_tfa_secret: bytes | None = None
    tfa_last_step: int | None = None
    #: The attempt in flight (claimed, charging or unknown), if any: at most one per user.
    open_attempt: int | None = None
    #: The fencing token of the open attempt's lease, and when that lease runs out.
    lease: int = 0
    lease_until: float | None = None
    version: int = 0


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


#: How long a spend is kept under its request key: a day, like Stripe's idempotency keys. A
#: retry within it gets the first answer back; after it the key names a new request.
USAGE_KEY_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """A spend kept under its request key, in the deduction's own transaction: what the first
    answer said (the credits taken, the balance after them, what auto top-up decided)."""

    credits: int
    balance: int
    trigger: Trigger
    at: float


@dataclass(slots=True)
class Deducted:
    """What a deduction did in the store: the new balance, the trigger, and the attempt it
    claimed or took over (with the lease token its worker must present)."""

    refused: bool
    balance: int
    trigger: Trigger
    attempt: int | None
    lease: int | None
    snapshot: CachedUser
    #: The notice this deduction queued in the outbox (the monthly limit held a top-up for the
    #: first time this month), for the caller to send; ``None`` for nearly every deduction.
    notice: PendingNotice | None = None
    #: For a deduction sent with a request key that was already used (within
    #: :data:`USAGE_KEY_SECONDS`): the first one's record. Nothing was taken or decided again.
    replay: UsageRecord | None = None
    # Not frozen, like CachedUser: built on every deduction.


@dataclass(frozen=True, slots=True)
class ChargeTerms:
    """What an attempt charges, fixed when its charge first leaves, so that a retry or a recovery
    resends exactly the same request under the same idempotency key."""

    credits: int
    currency: str
    amount_minor: int
    encrypted_payment_method_id: bytes


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
class Settled:
    """What settling a paid top-up did: whether it credited, and whether it closed the attempt."""

    credited: bool
    closed: bool
    snapshot: CachedUser


@dataclass(frozen=True, slots=True)
class PendingNotice:
    """A notice in the outbox: written with the outcome it tells, sent after the commit."""

    notice_id: str
    user_id: str
    kind: str
    detail: dict[str, str]


def outbox_notice(user_id: str, kind: str, about: str, detail: dict[str, str]) -> PendingNotice:
    """An outbox notice; its id names what it is about, so the same notice is never queued
    twice and a receiver can drop a re-sent copy."""
    return PendingNotice(f"{kind}:{user_id}:{about}", user_id, kind, detail)


def limit_notice(user_id: str, month: Month, monthly_limit: int) -> PendingNotice:
    """The notice that the monthly limit held a top-up: one per user and month, by its id (a
    store queues it with ``INSERT OR IGNORE`` semantics, so only the first hold queues it)."""
    detail = {"month": month.key, "monthly_limit": str(monthly_limit)}
    return outbox_notice(user_id, LIMIT_NOTICE, month.key, detail)


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


#: Attempt statuses of an attempt in flight: it blocks new claims until it settles.
#: ``claimed``: nothing sent yet; ``charging``: the charge may have left; ``unknown``: every
#: answer was lost, so only Stripe knows (the webhook or a recovery will tell).
OPEN_ATTEMPT_STATUSES = ("claimed", "charging", "unknown")

#: Attempt statuses whose credits count towards the month's auto top-up limit: money moved, or
#: may still move. An attempt that ended any other way (declined, failed, skipped, ...) charged
#: nothing, so it does not use the limit up.
LIMIT_COUNTED_STATUSES = ("succeeded", *OPEN_ATTEMPT_STATUSES)

#: The notice a user gets the first time in a month that the monthly limit holds a top-up.
LIMIT_NOTICE = "topup_limit_reached"

#: Final statuses and the one notice each sends its user (``skipped`` sends none).
FINAL_NOTICES: dict[str, str | None] = {
    "succeeded": "topup_succeeded",
    "declined": "topup_declined",
    "requires_action": "topup_action_required",
    "failed": "topup_failed",
    "no_payment_method": "topup_payment_method_missing",
    "skipped": None,
}

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
    encrypted_payment_method_id: bytes | None = None
    #: The credits the claim reserved (the settings' amount at the claim), which the charge
    #: then uses and the monthly limit counts; ``None`` for attempts claimed before it was kept.
    claimed_credits: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A signed webhook event that can never be applied, kept with why (``reason``) and as it
    came (``payload``), for a person to look at; Stripe was answered 2xx and stops retrying."""

    event_id: str
    type: str
    reason: str
    payload: bytes
    received_at: float


class Store(Protocol):
    """What the billing core needs from durable storage; each call is atomic."""

    def create_user(self, user_id: str, wrapped_key: bytes, encrypted_email: bytes | None) -> None:
        """Insert a user with a zero balance; raise ``DuplicateUser`` if the id is taken."""
        ...

    def get_user(self, user_id: str) -> UserRecord:
        """Return the user; raise ``UnknownUser``."""
        ...

    def snapshot(self, user_id: str) -> CachedUser:
        """The cached fields of a user at their current version; raise ``UnknownUser``."""
        ...

    def deduct(
        self,
        user_id: str,
        credits: int,
        now: float,
        policy: ClaimPolicy,
        seal: Sealer,
        request_key: str | None = None,
    ) -> Deducted:
        """Take ``credits`` if the balance holds them (a usage entry; none for 0), then decide
        the trigger (:func:`~sim.billing.claims.decide`) and claim or take over the attempt it
        names, all in one transaction. A refused request takes nothing but still decides. When
        the monthly limit holds a top-up, :func:`limit_notice` goes to the outbox in the same
        transaction (once a month: returned in ``notice`` only by the call that queued it).

        With ``request_key`` (the caller's idempotency key, per user), a spend that was taken is
        kept under it in the same transaction (:class:`UsageRecord`, for
        :data:`USAGE_KEY_SECONDS`), and a later call with the key answers that record in
        ``replay`` and changes nothing: however many processes the retries reach, one key takes
        credits once. A refused spend is not kept (its retry is evaluated again)."""
        ...

    def credit(
        self, user_id: str, credits: int, kind: str, reference: str, now: float
    ) -> CachedUser | None:
        """Add credits under a unique reference; ``None`` if that reference was credited."""
        ...

    def settle_topup(
        self,
        user_id: str,
        seq: int | None,
        outcome: AttemptOutcome,
        now: float,
        notice: PendingNotice | None = None,
    ) -> Settled:
        """Credit a paid top-up once per PaymentIntent and record its attempt as succeeded, in one
        transaction. An open attempt closes (the user's failure count resets); a closed one is
        corrected to ``succeeded`` (money moved) without touching the user's present state.
        ``notice`` goes to the outbox if (and only if) this call credited."""
        ...

    def take_over(
        self, user_id: str, seq: int, now: float, until: float, force: bool
    ) -> int | None:
        """A new lease on open attempt ``seq`` when its lease ran out (or ``force``); the new
        fencing token, or ``None`` when the attempt is not open or its lease still holds."""
        ...

    def start_charge(
        self, user_id: str, seq: int, lease: int, terms: ChargeTerms, until: float
    ) -> ChargeTerms | None:
        """Mark attempt ``seq`` charging under ``lease`` and fix its terms (the first terms
        stick); the terms to send, or ``None`` when the lease was lost."""
        ...

    def hold_lease(
        self, user_id: str, seq: int, lease: int, until: float, status: str | None, retries: int
    ) -> bool:
        """Extend the lease (to cover a back-off), optionally moving ``charging`` <-> ``unknown``;
        ``False`` when the lease was lost."""
        ...

    def finish_attempt(
        self,
        user_id: str,
        seq: int,
        lease: int | None,
        outcome: AttemptOutcome,
        now: float,
        notices: Sequence[PendingNotice] = (),
    ) -> CachedUser | None:
        """Close open attempt ``seq`` (under ``lease`` unless ``None``) and set the user's state,
        with ``notices`` to the outbox; the new snapshot, or ``None`` when the attempt was not
        open or the lease was lost (then nothing is written)."""
        ...

    def pending_notices(self, user_id: str) -> list[PendingNotice]:
        """The user's notices not yet marked sent, oldest first."""
        ...

    def mark_notice_sent(self, notice_id: str, now: float) -> None:
        """Mark an outbox notice sent."""
        ...

    def save_settings(self, user_id: str, settings: AutoTopupSettings) -> CachedUser:
        """Store settings; clears a pause or suspension."""
        ...

    def save_payment_method(
        self, user_id: str, encrypted_customer_id: bytes, encrypted_payment_method_id: bytes
    ) -> CachedUser:
        """Store the (encrypted) customer and card; clears a pause or suspension."""
        ...

    def save_customer(self, user_id: str, encrypted_customer_id: bytes) -> None:
        """Store the (encrypted) customer of a user who has none yet (a first purchase, before
        any card is saved); a saved customer is kept. The cached snapshot holds no customer, so
        its version does not change."""
        ...

    def mark_event_processed(self, event_id: str, event_type: str, now: float) -> bool:
        """Remember a webhook event id; ``False`` if it was already processed."""
        ...

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event id was processed (or dead-lettered)."""
        ...

    def dead_letter(self, letter: DeadLetter) -> bool:
        """Keep an event that can never be applied and mark its id processed (one transaction);
        ``False`` if the id was already processed."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead-lettered events, newest first."""
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

    def tfa_guess(
        self, user_id: str, step: int | None, now: float, policy: TfaPolicy
    ) -> TfaVerdict:
        """Judge a TOTP guess by :meth:`TfaPolicy.judge <sim.billing.twofactor.TfaPolicy.judge>`
        and record it (a wrong code as a failure, an accepted step as the last one), all in one
        transaction: concurrent guesses are judged one after another. ``step`` is the step the
        code matched, ``None`` for a wrong code; raise ``UnknownUser``."""
        ...

    def tfa_failures_since(self, user_id: str, since: float) -> list[float]:
        """Times of wrong TOTP codes at or after ``since``, oldest first."""
        ...

    def ledger(self, user_id: str, kinds: Collection[str] | None = None) -> list[LedgerEntry]:
        """The user's ledger in order; with ``kinds``, only the entries of those kinds (the
        reconcile and the books check read the credits, not a month of ``usage`` rows)."""
        ...

    def ledger_sum(self, user_id: str) -> int:
        """The sum of the user's ledger."""
        ...

    def auto_topup_credits_in(self, user_id: str, month: Month) -> int:
        """The credits of the user's auto top-ups claimed in ``month`` that count towards the
        monthly limit, as the claim counts them (0 for an unknown user): what the billing page
        shows against the limit."""
        ...

    def user_ids(self) -> list[str]:
        """Every user id, sorted."""
        ...

    def attempts(self, user_id: str) -> list[TopupAttempt]:
        """The user's top-up attempts in order."""
        ...
