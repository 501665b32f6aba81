"""BillingService: deduct credits, detect a low balance, claim and run the auto top-up, settle it.

Follow one request from deduction to credited top-up here, top to bottom:

1. :meth:`BillingService.deduct_credits` runs one cache script that takes the credits, checks the
   threshold and, when due, *claims* the top-up by stamping the cooldown, all atomically
   (``cache._DEDUCT``). Claiming before charging is what makes one crossing give one charge.
2. The same call records the usage and the claimed attempt (with the encrypted last-triggered time)
   in the store, in one transaction. If that write fails, the cache change is undone and the caller
   gets ``StoreUnavailable``: the cache never claims what the store does not hold.
3. The claimed top-up is handed to the task runner (fire-and-forget); the deduction returns.
4. :meth:`BillingService._run_topup` checks the card, prices the tier, and charges it through the
   gateway with an idempotency key derived from the claim, retrying transient errors with that key.
5. :meth:`BillingService.settle_payment` credits a succeeded payment exactly once per PaymentIntent
   (a unique ledger reference). The Stripe webhook calls the same method, so whichever arrives
   first credits and the other is a no-op.

Write order, everywhere: store first (the source of truth), then the cache, which is only ever
updated in place when the user is cached, or refilled from the store on a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import redis

from .cache import BalanceCache, CachedUser, DeductResult, RedisCache, Trigger
from .clock import Clock
from .errors import (
    BillingError,
    CacheUnavailable,
    InsufficientCredits,
    InvalidAmount,
    PaymentMethodMissing,
    PriceMismatch,
    TransientGatewayError,
)
from .gateway import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    PaymentGateway,
)
from .notify import Notification, Notifier
from .pricing import Money, credits_for_payment, price_of
from .settings import ACTIVE, DEFAULT_COOLDOWN_SECONDS, PAUSED, SUSPENDED, AutoTopupSettings
from .store import OPEN_ATTEMPT_STATUSES, AttemptOutcome, NewAttempt, Store, UserRecord
from .tasks import TaskRunner
from .vault import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Metadata ``purpose`` of an auto top-up PaymentIntent; other payments are not ours to credit.
TOPUP_PURPOSE = "auto_topup"

# Vault field names: bound into each ciphertext, so a token cannot be moved to another column.
F_LAST_TRIGGERED = "auto_topup_last_triggered"
F_PAYMENT_METHOD = "payment_method_id"
F_EMAIL = "email"


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """Service-wide rules. Every duration is in seconds of the injected clock."""

    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    #: Charge calls per attempt when the gateway answers with a transient error (1 = no retry).
    charge_tries: int = 3
    #: Consecutive failed charges (declines, authentication required) that suspend auto top-up.
    failures_before_suspension: int = 3
    #: An attempt still unfinished after this long is taken as lost and no longer blocks a claim.
    stale_attempt_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        if self.cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        if self.charge_tries < 1 or self.failures_before_suspension < 1:
            raise ValueError("charge_tries and failures_before_suspension must be >= 1")


@dataclass(frozen=True, slots=True)
class Deduction:
    """What a deduction did: the new balance and whether it claimed a top-up."""

    user_id: str
    credits: int
    balance: int
    trigger: Trigger
    attempt: int | None = None


def idempotency_key(user_id: str, seq: int) -> str:
    """The key of top-up attempt ``seq``: derived from the claim, so no retry charges twice."""
    return f"auto-topup:{user_id}:{seq}"


class BillingService:
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
    ) -> None:
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

    # ----------------------------------------------------------------- users and settings

    def create_user(self, user_id: str, *, email: str | None = None, balance: int = 0) -> None:
        """Create a user (with their own data key) and grant a starting balance if given."""
        wrapped = self.vault.new_wrapped_key(user_id)
        token = None if email is None else self.vault.encrypt(user_id, wrapped, F_EMAIL, email)
        self.store.create_user(user_id, wrapped, token, self.clock.now())
        if balance:
            self.grant_credits(user_id, balance, reference=f"opening-balance:{user_id}")

    def grant_credits(self, user_id: str, credits: int, *, reference: str) -> bool:
        """Add credits that were not bought (opening balance, support adjustment); once per ref."""
        return self.add_credits(user_id, credits, kind="grant", reference=reference)

    def save_payment_method(self, user_id: str, customer_id: str, payment_method_id: str) -> None:
        """Save the customer's card (encrypted). A new card lifts a pause or suspension."""
        user = self.store.get_user(user_id)
        token = self.vault.encrypt(user_id, user.wrapped_key, F_PAYMENT_METHOD, payment_method_id)
        self.store.save_payment_method(user_id, customer_id, token)
        self.cache.update(user_id, state=ACTIVE)

    def update_settings(self, user_id: str, settings: AutoTopupSettings) -> None:
        """Save validated settings. Enabling needs a saved, usable card; re-saving lifts a
        suspension.

        Authentication (2FA) belongs to the caller: see the settings endpoint.
        """
        if settings.enabled:
            saved = self.payment_method(user_id)
            if saved is None or not self.gateway.payment_method_usable(*saved):
                raise PaymentMethodMissing(user_id)
        self.store.save_settings(user_id, settings)
        self.cache.update(
            user_id,
            enabled="1" if settings.enabled else "0",
            threshold=str(settings.threshold),
            amount=str(settings.amount),
            state=ACTIVE,
        )
        if settings.enabled:
            # Already under the new threshold? Top up now, not at the next request.
            self._take(user_id, 0)

    def payment_method(self, user_id: str) -> tuple[str, str] | None:
        """The saved ``(customer_id, payment_method_id)``, decrypted, or ``None``."""
        return self._saved_card(self.store.get_user(user_id))

    def _saved_card(self, user: UserRecord) -> tuple[str, str] | None:
        if user.stripe_customer_id is None or user.encrypted_payment_method_id is None:
            return None
        pm = self.vault.decrypt(
            user.user_id, user.wrapped_key, F_PAYMENT_METHOD, user.encrypted_payment_method_id
        )
        return user.stripe_customer_id, pm

    # ----------------------------------------------------------------- reads (cache first)

    def balance(self, user_id: str) -> int:
        """The balance: from the cache, or from the store (filling the cache) on a miss."""
        cached = self.cache.balance(user_id)
        if cached is not None:
            return cached
        return self._fill(user_id).balance

    def last_triggered(self, user_id: str) -> float | None:
        """When a top-up was last claimed: cache first, else decrypted from the store."""
        fields = self.cache.cached(user_id)
        if fields:
            return float(fields["last"]) if "last" in fields else None
        return self._fill(user_id).last_triggered

    def _fill(self, user_id: str) -> CachedUser:
        """Load a user from the store into the cache (unless a concurrent request just did)."""
        user = self.store.get_user(user_id)
        last = None
        if user.encrypted_last_triggered is not None:
            last = float(
                self.vault.decrypt(
                    user_id, user.wrapped_key, F_LAST_TRIGGERED, user.encrypted_last_triggered
                )
            )
        cached = CachedUser(
            balance=user.balance,
            enabled=user.settings.enabled,
            threshold=user.settings.threshold,
            amount=user.settings.amount,
            last_triggered=last,
            seq=user.topup_seq,
            state=user.state,
            open_seq=user.open_attempt,
        )
        self.cache.fill(user_id, cached)
        return cached

    # ----------------------------------------------------------------- the deduction

    def deduct_credits(self, user_id: str, credits: int) -> Deduction:
        """Take ``credits`` from the balance; claim and start a top-up if one is due.

        Raises ``InsufficientCredits`` (no credits taken) when the balance cannot pay; a refused
        request still claims a due top-up, so a user who ran dry is topped up without first
        having to afford a request. Never waits for the top-up: it goes to the task runner.
        """
        _check_credits(credits)
        result, seq = self._take(user_id, credits)
        if result.refused:
            raise InsufficientCredits(user_id, credits, result.balance, attempt=seq)
        return Deduction(user_id, credits, result.balance, result.trigger, seq)

    def _take(self, user_id: str, credits: int) -> tuple[DeductResult, int | None]:
        """The single deduction point: cache script, store record, then hand off the top-up.

        ``credits`` may be 0 to evaluate the trigger alone (after settings change).
        """
        now = self.clock.now()
        rules = (self.config.cooldown_seconds, self.config.stale_attempt_seconds)
        result = self.cache.deduct(user_id, credits, now, *rules)
        if result.missing:
            self._fill(user_id)
            result = self.cache.deduct(user_id, credits, now, *rules)
            if result.missing:
                raise CacheUnavailable("the cache lost the user twice in one request; retry")
        claim = None
        if result.trigger is Trigger.CLAIMED:
            claim = self._new_attempt(user_id, result, now)
        taken = 0 if result.refused else credits
        if taken or claim:
            try:
                self.store.apply_deduction(user_id, taken, now, claim)
            except BillingError:
                # The store did not record it (an outage, or it disagrees about the balance):
                # undo the cache change and its claim; if even the undo fails, drop the user from
                # the cache so the next request reloads the truth from the store.
                try:
                    self.cache.undo_deduct(user_id, taken, result)
                except BillingError:
                    self._drop_from_cache(user_id)
                raise
        if claim is None:
            return result, None
        self.tasks.submit(partial(self._run_topup, user_id, claim.seq))
        return result, claim.seq

    def _new_attempt(self, user_id: str, result: DeductResult, now: float) -> NewAttempt:
        user = self.store.get_user(user_id)
        token = self.vault.encrypt(user_id, user.wrapped_key, F_LAST_TRIGGERED, repr(now))
        return NewAttempt(result.seq, idempotency_key(user_id, result.seq), now, token)

    # ----------------------------------------------------------------- the top-up

    def _run_topup(self, user_id: str, seq: int) -> None:
        """Charge the claimed top-up ``seq`` and record how it ended. Runs fire-and-forget."""
        try:
            self._charge_and_record(user_id, seq)
        except BillingError:
            # A store or cache outage mid-flight. The claim stands (no second charge within the
            # cooldown) and a succeeded payment is still credited by its webhook; ending the
            # attempt as an error lets the next crossing claim once the cooldown is over.
            log.exception("auto top-up %s for %s could not finish", seq, user_id)
            try:
                user = self.store.get_user(user_id)
                self._finish(user, seq, _unchanged(user, "error"), None)
            except BillingError:
                log.exception("attempt %s for %s stays open until it is stale", seq, user_id)

    def _charge_and_record(self, user_id: str, seq: int) -> None:
        user = self.store.get_user(user_id)
        settings = user.settings
        if (
            seq != user.topup_seq
            or not settings.enabled
            or user.state != ACTIVE
            or self.balance(user_id) > settings.threshold
        ):
            # Things changed since the claim (a newer attempt superseded this one after it was
            # taken as lost, auto top-up was turned off or paused, or credits arrived another
            # way): the top-up is no longer due, so nothing is charged.
            self._finish(user, seq, _unchanged(user, "skipped"), None)
            return
        key = idempotency_key(user_id, seq)
        saved = self._saved_card(user)  # the record read above: no second store read
        usable: bool | None = False
        if saved is not None:
            customer_id, payment_method_id = saved
            usable, _ = self._retrying(
                key, lambda: self.gateway.payment_method_usable(customer_id, payment_method_id)
            )
        if usable is None:  # the provider stayed unreachable: not the card's fault
            self._finish(user, seq, _unchanged(user, "error"), "topup_failed")
            return
        if not usable or saved is None:
            outcome = replace(_unchanged(user, "no_payment_method"), state=PAUSED)
            self._finish(user, seq, outcome, "topup_payment_method_missing")
            return
        price = price_of(user.settings.amount, user.settings.currency)
        metadata = {
            "user_id": user_id,
            "credits": str(user.settings.amount),
            "attempt": str(seq),
            "purpose": TOPUP_PURPOSE,
        }
        request = ChargeRequest(saved[0], saved[1], price, key, metadata)
        result, retries = self._retrying(key, lambda: self.gateway.charge(request))
        self._record_result(user, seq, price, result, retries)

    def _record_result(
        self,
        user: UserRecord,
        seq: int,
        price: Money,
        result: ChargeResult | None,
        retries: int = 0,
    ) -> None:
        """Apply a charge's result to attempt ``seq``: credit, or count and report the failure.

        ``result`` is ``None`` when every try hit a transient error. The top-up flow calls this
        with the confirm response; the webhook handler with a ``payment_intent.payment_failed``
        event whose attempt the confirm path never finished.
        """
        if isinstance(result, ChargeSucceeded):
            self.settle_payment(
                user.user_id, result.payment_intent_id, result.price, result.metadata,
                retries=retries,
            )  # fmt: skip
            return
        failed = replace(
            _unchanged(user, ""),
            credits=user.settings.amount,
            currency=price.currency,
            amount_minor=price.amount_minor,
            retries=retries,
        )
        if result is None:
            # Retries exhausted: not the card's fault, so it does not count towards suspension.
            self._finish(user, seq, replace(failed, status="error"), "topup_failed")
            return
        failures = user.consecutive_failures + 1
        suspended = failures >= self.config.failures_before_suspension
        failed = replace(
            failed,
            payment_intent_id=result.payment_intent_id,
            consecutive_failures=failures,
            state=SUSPENDED if suspended else user.state,
        )
        if isinstance(result, ChargeNeedsAuthentication):
            # The bank wants the customer present: pause until they act, whatever the count.
            state = SUSPENDED if suspended else PAUSED
            outcome = replace(failed, status="requires_action", state=state)
            applied = self._finish(user, seq, outcome, "topup_action_required")
        else:
            code = result.decline_code or result.code
            outcome = replace(failed, status="declined", decline_code=code)
            applied = self._finish(user, seq, outcome, "topup_declined")
        if applied and suspended:
            self.notify(user.user_id, "topup_suspended", failures=str(failures))

    def _retrying(self, key: str, call: Callable[[], T]) -> tuple[T | None, int]:
        """Call the gateway, retrying transient errors (a charge keeps its idempotency key).

        Returns the answer (``None`` when every try failed) and how many retries it took.
        """
        for retry in range(self.config.charge_tries):
            try:
                return call(), retry
            except TransientGatewayError as exc:
                log.warning("transient gateway error on %s: %s", key, exc)
        return None, self.config.charge_tries - 1

    def _finish(
        self, user: UserRecord, seq: int, outcome: AttemptOutcome, kind: str | None
    ) -> bool:
        """Record the attempt's end (store, then cache) and tell the user (``kind``), once.

        ``False`` when the attempt had already ended (a duplicate report): nothing changes.
        """
        if not self.store.finish_attempt(user.user_id, seq, outcome, self.clock.now()):
            return False
        self.cache.release(user.user_id, seq)
        if outcome.state != user.state:
            self.cache.update(user.user_id, state=outcome.state)
        if kind is not None:
            detail = {"attempt": str(seq), "status": outcome.status}
            if outcome.decline_code:
                detail["decline_code"] = outcome.decline_code
            self.notify(user.user_id, kind, **detail)
        return True

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
        confirm and by the ``payment_intent.succeeded`` webhook: whichever comes first credits.
        """
        credits = credits_for_payment(paid.amount_minor, paid.currency)
        if metadata.get("credits") not in (None, str(credits)) or metadata.get("user_id") not in (
            None,
            user_id,
        ):
            raise PriceMismatch(
                f"payment {payment_intent_id} of {paid} buys {credits} credits, but its metadata"
                f" says {dict(metadata)!r}"
            )
        credited = self.add_credits(user_id, credits, kind="topup", reference=payment_intent_id)
        attempt = metadata.get("attempt")
        if credited:
            # The credit is the fact the user is told about, whatever happens to the attempt
            # record next; the first settlement notifies, a later one never does.
            detail = {"status": "succeeded"} | ({} if attempt is None else {"attempt": attempt})
            self.notify(user_id, "topup_succeeded", **detail)
        if attempt is not None:
            record = self.store.attempt(user_id, int(attempt))
            if record is not None and record.status in OPEN_ATTEMPT_STATUSES:
                # Closed here by the first settlement, or by a later one (the webhook) when the
                # store could not record it the first time.
                outcome = AttemptOutcome(
                    "succeeded", credits, paid.currency, paid.amount_minor, payment_intent_id,
                    retries=retries,
                )  # fmt: skip
                self._finish(self.store.get_user(user_id), int(attempt), outcome, None)
        return credited

    def payment_failed(
        self,
        user_id: str,
        attempt: int,
        paid: Money,
        result: ChargeDeclined | ChargeNeedsAuthentication,
    ) -> bool:
        """Apply a failure the provider reported later (webhook) to an attempt still open.

        ``False`` when the attempt already ended (the confirm response got there first).
        """
        record = self.store.attempt(user_id, attempt)
        if record is None or record.status not in OPEN_ATTEMPT_STATUSES:
            return False
        self._record_result(self.store.get_user(user_id), attempt, paid, result)
        return True

    def add_credits(self, user_id: str, credits: int, *, kind: str, reference: str) -> bool:
        """Add credits once per ``reference``; ``False`` if that reference was already credited.

        Store first (a unique ledger reference), then the cached balance if the user is cached.
        """
        _check_credits(credits)
        credited = self.store.credit(user_id, credits, kind, reference, self.clock.now())
        if credited:
            try:
                self.cache.credit(user_id, credits)
            except BillingError:
                self._drop_from_cache(user_id)
        return credited

    def _drop_from_cache(self, user_id: str) -> None:
        """Make the next request reload the user from the store; if even that fails, say so."""
        try:
            self.cache.forget(user_id)
        except BillingError:
            log.exception("cache unreachable; %s may read a stale balance until reloaded", user_id)

    def notify(self, user_id: str, kind: str, **detail: str) -> None:
        """Send the user a notification stamped with the injected clock's time."""
        self.notifier.notify(Notification(user_id, kind, self.clock.now(), detail))


def _unchanged(user: UserRecord, status: str) -> AttemptOutcome:
    """An attempt outcome that leaves the user's state and failure count as they are."""
    return AttemptOutcome(status, state=user.state, consecutive_failures=user.consecutive_failures)


def _check_credits(credits: object) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise InvalidAmount(f"credits must be a positive whole number, got {credits!r}")
