"""BillingService: deduct credits, detect a low balance, claim and run the auto top-up, settle it.

Follow one request from deduction to credited top-up here, top to bottom:

1. :meth:`BillingService.deduct_credits` asks the store to take the credits, decide the trigger
   (:func:`~sim.billing.claims.decide`) and, when due, *claim* the top-up with a lease, all in
   one transaction. Claiming before charging is what makes one crossing give one charge; deciding
   where the truth is written is what makes a killed worker unable to leave them apart. The
   user's monthly limit is checked in that decision too; the first top-up it holds in a month
   queues a notice in the same transaction, which is sent after it.
2. The store answers with the user's new snapshot and its version; the service writes it to the
   cache, where the newest version wins (one round trip). A crash before this write leaves the
   cache one version behind until the user's next write.
3. The claimed top-up is handed to the task runner (fire-and-forget); the deduction returns.
4. ``_run_topup`` (``topup_run.py``) checks the card, fixes the charge's terms, marks the attempt
   ``charging`` and charges through the gateway with an idempotency key derived from the claim.
   A transient error is retried later, with back-off and jitter on the injected clock; when every
   answer was lost the attempt is ``unknown``: nobody is told anything until Stripe tells.
5. :meth:`BillingService.settle_payment` credits a succeeded payment exactly once per
   PaymentIntent and closes its attempt, in one store transaction. The Stripe webhook calls the
   same method, so whichever arrives first credits and the other is a no-op.
6. A worker that dies leaves its attempt open under a lease; once the lease runs out, the user's
   next request, a failed-payment webhook or :mod:`~sim.billing.reconcile` takes it over and runs
   it again under the same idempotency key, so Stripe answers what happened instead of charging
   twice.

Write order, everywhere: store first (the source of truth, where every decision is made), then
the cache (a versioned copy for reads).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import redis

from .cache import BalanceCache, RedisCache
from .claims import TRIGGER_NONE, ClaimPolicy, Trigger
from .clock import Clock
from .errors import (
    BillingError,
    CacheUnavailable,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidAmount,
    PaymentMethodMissing,
    PriceMismatch,
    StoreUnavailable,
)
from .gateway import (
    PaymentGateway,
)
from .metrics import Metrics, PrometheusMetrics, log_event
from .notify import Notification, Notifier
from .pricing import Money, credits_for_payment
from .settings import DEFAULT_COOLDOWN_SECONDS, AutoTopupSettings
from .store import (
    AttemptOutcome,
    CachedUser,
    Deducted,
    Store,
    UserRecord,
    outbox_notice,
)
from .tasks import TaskRunner
from .topup_run import TopupRun
from .vault import F_CUSTOMER, F_EMAIL, F_LAST_TRIGGERED, F_PAYMENT_METHOD, Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """Service-wide rules, each defined here once. Every duration is in seconds of the injected
    clock."""

    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    #: Gateway calls per run of an attempt when the answer is a transient error (1 = no retry).
    charge_tries: int = 3
    #: Consecutive failed charges (declines, authentication required) that suspend auto top-up.
    failures_before_suspension: int = 3
    #: How long a worker owns a claimed attempt before anyone may take it over (renewed while it
    #: works and across each back-off): the time a dead worker can hold a user's top-up.
    attempt_lease_seconds: float = 300.0
    #: First retry delay after a transient error; each next one is 4x longer, jittered 0.5-1.5x.
    retry_backoff_seconds: float = 2.0
    #: How long after its claim an attempt's charge may be sent again under its idempotency key.
    #: Stripe keeps keys for at least 24 h; past this, a recovery reads the PaymentIntent back
    #: instead (``find_charge``), since a resent request would be a new charge.
    idempotency_window_seconds: float = 82_800.0

    def __post_init__(self) -> None:
        if self.cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        if self.charge_tries < 1:
            raise ValueError("charge_tries must be >= 1")
        if self.failures_before_suspension < 1:
            raise ValueError("failures_before_suspension must be >= 1")
        if self.attempt_lease_seconds <= 0:
            raise ValueError("attempt_lease_seconds must be > 0")
        if self.retry_backoff_seconds < 0:
            raise ValueError("retry_backoff_seconds must be >= 0")
        if self.idempotency_window_seconds <= 0:
            raise ValueError("idempotency_window_seconds must be > 0")

    @property
    def policy(self) -> ClaimPolicy:
        """What the store's claim decision needs of these rules."""
        return ClaimPolicy(self.cooldown_seconds, self.attempt_lease_seconds)

    def retry_delay(self, key: str, tries: int) -> float:
        """Seconds before try ``tries + 1`` of the attempt keyed ``key``: exponential back-off
        with a jitter derived from the key, so it is spread across users yet reproducible."""
        digest = hashlib.blake2b(f"{key}:{tries}".encode(), digest_size=4).digest()
        jitter = 0.5 + int.from_bytes(digest) / 2**32
        return self.retry_backoff_seconds * 4 ** (tries - 1) * jitter


@dataclass(slots=True)
class Deduction:
    """What a deduction did: the new balance and whether it claimed (or took over) a top-up.
    (Not frozen: one is built per request, and frozen dataclasses are slow to build.)"""

    user_id: str
    credits: int
    balance: int
    trigger: Trigger
    attempt: int | None = None
    #: The first answer under the request key, given again: nothing was taken this time.
    replayed: bool = False


class BillingService(TopupRun):
    """The billing core. Every dependency is a port passed in; nothing is read from globals."""

    def __init__(
        self,
        *,
        clock: Clock,
        cache: redis.Redis | BalanceCache,
        store: Store,
        gateway: PaymentGateway,
        notifier: Notifier,
        tasks: TaskRunner,
        vault: Vault,
        config: BillingConfig | None = None,
        cache_prefix: str = "topup",
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where the service counts what it does (default: Prometheus metrics in a
        registry of this service's own, served by the API on ``/metrics``)."""
        self.clock = clock
        # A redis-py client (Redis, fakeredis) gets the Lua-script cache; any other object is
        # taken to be a BalanceCache already (e.g. MemoryCache).
        self.cache: BalanceCache = (
            RedisCache(cache, cache_prefix) if isinstance(cache, redis.Redis) else cache
        )
        self.store = store
        self.gateway = gateway
        self.notifier = notifier
        self.tasks = tasks
        self.vault = vault
        self.config = config or BillingConfig()
        self._policy = self.config.policy
        self.metrics: Metrics = PrometheusMetrics() if metrics is None else metrics

    # ----------------------------------------------------------------- users and settings

    def create_user(self, user_id: str, *, email: str | None = None, balance: int = 0) -> None:
        """Create a user (with their own data key) and grant a starting balance if given."""
        wrapped = self.vault.new_wrapped_key(user_id)
        token = None if email is None else self.vault.encrypt(user_id, wrapped, F_EMAIL, email)
        self.store.create_user(user_id, wrapped, token)
        if balance:
            self.grant_credits(user_id, balance, reference=f"opening-balance:{user_id}")

    def grant_credits(self, user_id: str, credits: int, *, reference: str) -> bool:
        """Add credits that were not bought (opening balance, support adjustment); once per ref."""
        return self.add_credits(user_id, credits, kind="grant", reference=reference)

    def save_payment_method(self, user_id: str, customer_id: str, payment_method_id: str) -> None:
        """Save the customer and card (both encrypted). A new card lifts a pause or suspension."""
        user = self.store.get_user(user_id)
        seal = partial(self.vault.encrypt, user_id, user.wrapped_key)
        snapshot = self.store.save_payment_method(
            user_id, seal(F_CUSTOMER, customer_id), seal(F_PAYMENT_METHOD, payment_method_id)
        )
        self._publish(user_id, snapshot)

    def update_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Save validated settings (:meth:`check_settings`, then :meth:`apply_settings`).

        Authentication (2FA) belongs to the caller: see the settings endpoint, which checks,
        then takes the code, then applies, so that a refused change never uses up a code.
        """
        self.check_settings(user_id, settings)
        self.apply_settings(user_id, settings)

    def check_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Refuse what :meth:`apply_settings` must not save: enabling without a saved card that
        Stripe says is usable (``PaymentMethodMissing``); ``UnknownUser`` for an unknown user."""
        saved = self.payment_method(user_id)
        if settings.enabled and (saved is None or not self.gateway.payment_method_usable(*saved)):
            raise PaymentMethodMissing(user_id)

    def apply_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Save settings that passed :meth:`check_settings`; re-saving lifts a suspension, and
        enabling under the new threshold tops up at once."""
        self._publish(user_id, self.store.save_settings(user_id, settings))
        if settings.enabled:
            # Already under the new threshold? Top up now, not at the next request.
            self._take(user_id, 0)

    def payment_method(self, user_id: str) -> tuple[str, str] | None:
        """The saved ``(customer_id, payment_method_id)``, decrypted, or ``None``."""
        return self._saved_card(self.store.get_user(user_id))

    def _saved_card(self, user: UserRecord) -> tuple[str, str] | None:
        if user.encrypted_stripe_customer_id is None or user.encrypted_payment_method_id is None:
            return None
        return (
            self._open(user, F_CUSTOMER, user.encrypted_stripe_customer_id),
            self._open(user, F_PAYMENT_METHOD, user.encrypted_payment_method_id),
        )

    def _open(self, user: UserRecord, field: str, token: bytes) -> str:
        return self.vault.decrypt(user.user_id, user.wrapped_key, field, token)

    # ----------------------------------------------------------------- reads (cache first)

    def balance(self, user_id: str) -> int:
        """The balance: from the cache, or from the store (filling the cache) on a miss or when
        the cache is unreachable."""
        try:
            cached = self.cache.balance(user_id)
        except CacheUnavailable:
            cached = None
        if cached is not None:
            return cached
        return self.refill(user_id).balance

    def last_triggered(self, user_id: str) -> float | None:
        """When a top-up was last claimed, decrypted from the store."""
        user = self.store.get_user(user_id)
        if user.encrypted_last_triggered is None:
            return None
        return float(self._open(user, F_LAST_TRIGGERED, user.encrypted_last_triggered))

    def refill(self, user_id: str) -> CachedUser:
        """Load a user's snapshot from the store into the cache (kept only if newest)."""
        snapshot = self.store.snapshot(user_id)
        self._publish(user_id, snapshot)
        return snapshot

    def _publish(self, user_id: str, snapshot: CachedUser) -> None:
        """Write a snapshot the store just returned to the cache. The store already holds the
        change, so an unreachable cache fails nothing: the next write, a refill or the
        reconcile brings it up to date."""
        try:
            self.cache.put(user_id, snapshot)
        except CacheUnavailable:
            log.warning("cache unreachable: %s stays at an older version until its next write",
                        user_id)  # fmt: skip

    # ----------------------------------------------------------------- the deduction

    def deduct_credits(
        self, user_id: str, credits: int, *, request_key: str | None = None
    ) -> Deduction:
        """Take ``credits`` from the balance; claim and start a top-up if one is due.

        Raises ``InsufficientCredits`` (no credits taken) when the balance cannot pay; a refused
        request still claims a due top-up, so a user who ran dry is topped up without first
        having to afford a request. Never waits for the top-up: it goes to the task runner.
        ``StoreUnavailable`` (nothing taken) is counted as a failed deduction before it is
        raised: a store outage is what ``TopupDeductionsFailing`` pages on.

        ``request_key`` (the caller's idempotency key, per user) makes a retry safe in any
        process: the store keeps a taken spend under it in the same transaction, and the same
        key again answers the first deduction (``replayed``) without taking anything; the same
        key with other credits is ``IdempotencyKeyReused``.
        """
        _check_credits(credits)
        try:
            done = self._take(user_id, credits, request_key)
        except StoreUnavailable:
            self.metrics.deduction_failed()  # what TopupDeductionsFailing watches
            raise
        kept = done.replay
        if kept is not None:
            if kept.credits != credits:
                raise IdempotencyKeyReused(
                    f"this key took {kept.credits} credits, not {credits}: use a new key"
                )
            return Deduction(user_id, credits, kept.balance, kept.trigger, None, True)
        self.metrics.deduction(not done.refused)
        if done.refused:
            raise InsufficientCredits(
                user_id, credits, done.balance, attempt=done.attempt, trigger=done.trigger.value
            )
        return Deduction(user_id, credits, done.balance, done.trigger, done.attempt)

    def _take(self, user_id: str, credits: int, request_key: str | None = None) -> Deducted:
        """The single deduction point: one store transaction, one cache write, then the top-up.

        ``credits`` may be 0 to evaluate the trigger alone (after settings change).
        """
        done = self.store.deduct(
            user_id, credits, self.clock.now(), self._policy, self._seal, request_key
        )
        self._publish(user_id, done.snapshot)
        if done.trigger is not TRIGGER_NONE:
            self._observe_trigger(user_id, done.trigger, done.attempt)
        if done.notice is not None:  # the monthly limit held a top-up, first time this month
            self._send([done.notice])
        if done.attempt is not None and done.lease is not None:
            self.tasks.submit(partial(self._run_topup, user_id, done.attempt, done.lease))
        return done

    def _observe_trigger(self, user_id: str, trigger: Trigger, attempt: int | None) -> None:
        """Count and log a decision at or below the threshold (``topup_<kind>``); the ones
        repeated by every request while a top-up is in flight or cooling log at debug level."""
        self.metrics.trigger(trigger)
        quiet = trigger in (Trigger.COOLING, Trigger.PENDING)
        log_event(log, logging.DEBUG if quiet else logging.INFO, f"topup_{trigger.value}",
                  user=user_id, attempt=attempt)  # fmt: skip

    def _seal(self, user_id: str, wrapped_key: bytes, claimed_at: float) -> bytes:
        return self.vault.encrypt(user_id, wrapped_key, F_LAST_TRIGGERED, repr(claimed_at))

    # ----------------------------------------------------------------- settlement

    def settle_payment(
        self,
        user_id: str,
        payment_intent_id: str,
        paid: Money,
        metadata: Mapping[str, str],
        *,
        retries: int = 0,
    ) -> bool:
        """Credit a succeeded PaymentIntent exactly once; ``False`` if it was already credited.

        The credits follow from the money received (checked against the price table and the
        intent's metadata), never from a cached order. Called by the top-up flow on a succeeded
        confirm and by the ``payment_intent.succeeded`` webhook: whichever comes first credits,
        and the credit and the attempt's close are one transaction.
        """
        credits = self.payment_credits(user_id, payment_intent_id, paid, metadata)
        attempt = metadata.get("attempt")
        seq = None if attempt is None else int(attempt)
        outcome = AttemptOutcome(
            "succeeded", credits, paid.currency, paid.amount_minor, payment_intent_id,
            retries=retries,
        )  # fmt: skip
        # The credit is the fact the user is told about: the settlement that credits queues the
        # notice in the same transaction.
        detail = {"status": "succeeded", "payment_intent": payment_intent_id} | (
            {} if attempt is None else {"attempt": attempt}
        )
        notice = outbox_notice(user_id, "topup_succeeded", payment_intent_id, detail)
        settled = self.store.settle_topup(user_id, seq, outcome, self.clock.now(), notice)
        self._publish(user_id, settled.snapshot)
        if settled.credited:
            self._observe_credit(user_id, seq, payment_intent_id, settled.closed)
            self._send([notice])
        return settled.credited

    def _observe_credit(
        self, user_id: str, seq: int | None, payment_intent_id: str, closed: bool
    ) -> None:
        """Count and log a credited top-up (``topup_credited``) with its delay since the claim.

        The claim's time is read back after the credit was written, only to measure: a store
        that fails this read loses the observation, never the credit."""
        delay = None
        if seq is not None:
            try:
                attempt = self.store.attempt(user_id, seq)
            except BillingError:
                attempt = None
            if attempt is not None:
                delay = self.clock.now() - attempt.claimed_at
                self.metrics.credited(delay)
        if closed:
            self.metrics.attempt_finished("succeeded")
        log_event(log, logging.INFO, "topup_credited", user=user_id, attempt=seq,
                  payment_intent=payment_intent_id,
                  delay=None if delay is None else f"{delay:.3f}")  # fmt: skip

    def payment_credits(
        self, user_id: str, payment_intent_id: str, paid: Money, metadata: Mapping[str, str]
    ) -> int:
        """The credits a payment buys, checked before anything is written: the amount must be
        exactly one tier's price in a known currency (``UnknownTier``, ``UnknownCurrency``) and
        agree with the ``credits``, ``user_id`` and ``attempt`` of its metadata
        (``PriceMismatch``)."""
        credits = credits_for_payment(paid.amount_minor, paid.currency)
        attempt = metadata.get("attempt")
        if (
            metadata.get("credits") not in (None, str(credits))
            or metadata.get("user_id") not in (None, user_id)
            or (attempt is not None and not (attempt.isascii() and attempt.isdigit()))
        ):
            raise PriceMismatch(
                f"payment {payment_intent_id} of {paid} buys {credits} credits, but its metadata"
                f" says {dict(metadata)!r}"
            )
        return credits

    def customer_id(self, user_id: str) -> str | None:
        """The user's Stripe customer id, decrypted, or ``None`` before a card was saved."""
        user = self.store.get_user(user_id)
        if user.encrypted_stripe_customer_id is None:
            return None
        return self._open(user, F_CUSTOMER, user.encrypted_stripe_customer_id)

    def payment_failed(self, user_id: str, attempt: int) -> bool:
        """A failed-payment webhook for attempt ``attempt``: ask Stripe again, now.

        The event alone never decides the attempt (it may be stale, or older than a success the
        same PaymentIntent reached later): if the attempt is still open, it is taken over and
        its charge re-sent under the same idempotency key, and Stripe's answer decides. ``False``
        when the attempt is not open (it ended; a late event of a superseded attempt changes
        nothing).
        """
        if self.store.get_user(user_id).open_attempt != attempt:
            return False
        return self.recover(user_id, force=True) is not None

    def add_credits(self, user_id: str, credits: int, *, kind: str, reference: str) -> bool:
        """Add credits once per ``reference``; ``False`` if that reference was already credited.

        Store first (a unique ledger reference), then the cache snapshot.
        """
        _check_credits(credits)
        snapshot = self.store.credit(user_id, credits, kind, reference, self.clock.now())
        if snapshot is None:
            return False
        self._publish(user_id, snapshot)
        return True

    def notify(self, user_id: str, kind: str, **detail: str) -> None:
        """Send the user a notification stamped with the injected clock's time."""
        self.notifier.notify(Notification(user_id, kind, self.clock.now(), detail))


def _check_credits(credits: object) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise InvalidAmount(f"credits must be a positive whole number, got {credits!r}")
