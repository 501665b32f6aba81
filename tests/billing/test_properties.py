"""A Hypothesis state machine over the whole billing module.

Random interleavings of deductions (some under idempotency keys, retried), top-ups, purchases
with the user present (paid, declined, 3-D Secure confirmed by the client or only at Stripe),
settlements by confirm and by webhook (duplicated and reordered), cache flushes (one of them in
the middle of a refill), store write failures, Stripe faults, card changes, clock jumps, late
events of ended attempts, and workers killed at any write boundary of a deduction or a top-up,
with the billing invariants checked after every step:

- each balance equals its ledger's sum; a cached snapshot is never newer than the store's, and
  equal to it at the same version;
- every top-up credit is a succeeded PaymentIntent of the right amount, credited once; every
  purchase credit is a succeeded purchase of the user, of its tier's price, credited once;
- a spend retried under its key takes credits once and answers as the first time;
- each PaymentIntent belongs to its own attempt, and the attempts that charged were claimed at
  least one cooldown apart (one charge per crossing per cooldown), whatever the faults;
- under a monthly limit (drawn per run, or none), the auto top-up credits claimed in a calendar
  month by attempts that succeeded or are in flight never exceed it, and every intent's credits
  are its claim's;
- once the faults stop, leases run out, the reconcile runs and every webhook is delivered: every
  succeeded intent (top-up or purchase) has been credited, every cache equals its store, no
  attempt is open, and each attempt sent the one notice its outcome calls for.

Every step is counted; ``make proptest`` prints the total (``STEPS``).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import fakeredis
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sim.billing import (
    AutoTopupSettings,
    BillingError,
    BillingService,
    InsufficientCredits,
    ManualClock,
    MemoryCache,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    StoreUnavailable,
    Subscriptions,
    Vault,
    WebhookHandler,
)
from sim.billing.claims import TOPUP_PURPOSE, month_of
from sim.billing.errors import IdempotencyKeyReused
from sim.billing.payments import StripeGateway, WebhookVerifier
from sim.billing.pricing import price_of
from sim.billing.purchases import PURCHASE_KIND, PURCHASE_PURPOSE, Checkout
from sim.billing.reconcile import reconcile_all
from sim.billing.store import FINAL_NOTICES, LIMIT_COUNTED_STATUSES
from sim.crashes import Boundaries, Crash, CrashPlan, all_boundaries
from sim.stripe_emulator import Faults, StripeEmulator

from .conftest import MASTER_KEY, STEPS, FlakyStore

USERS = ("ada", "bob")
COOLDOWN = 3_600.0
CARDS = (
    "pm_card_visa",
    "pm_card_visa",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_authenticationRequired",
    "pm_card_chargeCustomerFail",
)
STORE_WRITES = (
    "deduct", "credit", "settle_topup", "finish_attempt", "start_charge", "hold_lease",
    "save_settings",
)  # fmt: skip
#: Where a worker may die: either side of each store and cache write (listed by ``sim.crashes``).
BOUNDARIES = tuple(b for b in all_boundaries() if b.startswith(("store.", "cache.put")))
LEASE = 300.0


_FINAL_KINDS = frozenset(kind for kind in FINAL_NOTICES.values() if kind is not None)


class BillingMachine(RuleBasedStateMachine):
    """The billing module, the emulator and the webhook handler under random operations."""

    @initialize(
        backend=st.sampled_from(["memory", "fakeredis"]),
        limit=st.sampled_from([None, 1_000, 3_000]),
    )
    def start(self, backend: str, limit: int | None) -> None:
        """Two users with cards and auto top-up on (with a monthly limit of one or three top-ups,
        or none), on a fresh emulator and cache."""
        self.limit = limit
        self.clock = ManualClock()
        self.emulator = StripeEmulator(clock=self.clock, seed=1)
        self.emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
        self.gateway = StripeGateway("sk_test_props", http_client=self.emulator.http_client())
        self.store = FlakyStore(SQLiteStore(":memory:"))
        self.tasks = QueueRunner()
        self.cache: Any = MemoryCache() if backend == "memory" else fakeredis.FakeRedis()
        self.notifier = RecordingNotifier()
        self.billing = BillingService(
            clock=self.clock, cache=self.cache, store=self.store,  # type: ignore[arg-type]
            gateway=self.gateway, notifier=self.notifier, tasks=self.tasks,
            vault=Vault(MASTER_KEY),
        )  # fmt: skip
        self.port_store, self.port_cache = self.billing.store, self.billing.cache
        self.grants = itertools.count(1)
        verifier = WebhookVerifier(self.emulator.webhook_secret, self.clock)
        subscriptions = Subscriptions(billing=self.billing, gateway=self.gateway)
        self.webhooks = WebhookHandler(
            billing=self.billing, subscriptions=subscriptions, verifier=verifier
        )
        self.checkout = Checkout(billing=self.billing, gateway=self.gateway)
        #: Purchases waiting for 3-D Secure, and the first answer of each keyed spend.
        self.waiting: list[tuple[str, str]] = []
        self.spends: dict[tuple[str, str], tuple[int, int, str]] = {}
        self.customers: dict[str, str] = {}
        for user in USERS:
            self.billing.create_user(user, balance=2_000)
            self.customers[user] = self.gateway.ensure_customer(user)
            self._save_card(user, "pm_card_visa")
            self.billing.update_settings(
                user, AutoTopupSettings(True, 1_000, 1_000, "eur", monthly_limit=limit)
            )

    def _save_card(self, user: str, card: str) -> None:
        card_id = self.gateway.attach_card(self.customers[user], card)
        self.billing.save_payment_method(user, self.customers[user], card_id)

    # ------------------------------------------------------------------ operations

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 1_500))
    def deduct(self, user: str, credits: int) -> None:
        """A request: taken, refused, or failed on the store (then nothing changed)."""
        with contextlib.suppress(InsufficientCredits, StoreUnavailable):
            self.billing.deduct_credits(user, credits)

    @rule(user=st.sampled_from(USERS))
    def cross_after_cooldown(self, user: str) -> None:
        """A cooldown passes, queued top-ups run, and the user spends down to the threshold:
        the next crossing, which a monthly limit counts and then holds, in many runs."""
        self.clock.set(self.clock.now() + COOLDOWN)
        self.tasks.run_pending()
        spend = max(self.store.inner.get_user(user).balance - 1_000, 1)
        with contextlib.suppress(InsufficientCredits, StoreUnavailable):
            self.billing.deduct_credits(user, spend)

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 1_500),
          key=st.sampled_from(("k1", "k2", "k3")))  # fmt: skip
    def spend_with_key(self, user: str, credits: int, key: str) -> None:
        """A spend under an idempotency key from a small set, so that keys come back: the first
        taken answer is kept; a retry with the same credits within the day answers it again,
        other credits are refused, and nothing is taken twice."""
        before = self.store.inner.get_user(user).balance
        try:
            done = self.billing.deduct_credits(user, credits, request_key=key)
        except (InsufficientCredits, StoreUnavailable):
            return
        except IdempotencyKeyReused:
            first = self.spends[(user, key)]
            assert first[0] != credits and self.store.inner.get_user(user).balance == before
            return
        answer = (done.credits, done.balance, done.trigger.value)
        if done.replayed:
            assert self.spends[(user, key)] == answer
            assert self.store.inner.get_user(user).balance == before
        else:
            self.spends[(user, key)] = answer

    @rule(user=st.sampled_from(USERS), credits=st.sampled_from((1_000, 10_000)),
          card=st.sampled_from(CARDS), save_card=st.booleans())  # fmt: skip
    def buy(self, user: str, credits: int, card: str, save_card: bool) -> None:
        """The user buys a tier with the user present: paid and credited now, declined, waiting
        for 3-D Secure, or cut short by a fault (the webhook or the reconcile then credits what
        Stripe took)."""
        with contextlib.suppress(BillingError):
            done = self.checkout.buy(user, credits, "eur", card, save_card=save_card)
            if done.intent.status == "requires_action":
                self.waiting.append((user, done.intent.intent_id))

    @precondition(lambda self: bool(getattr(self, "waiting", None)))
    @rule(pick=st.integers(0, 7), by_client=st.booleans())
    def authenticate(self, pick: int, by_client: bool) -> None:
        """A customer completes 3-D Secure: the client confirms through the API (credited by its
        answer), or only Stripe hears of it (credited by the webhook or the reconcile)."""
        user, intent_id = self.waiting.pop(pick % len(self.waiting))
        with contextlib.suppress(Exception):  # a fault may cut either short; Stripe keeps it
            if by_client:
                self.checkout.confirm(user, intent_id)
            else:
                self.emulator.stripe_client("sk_test_props").v1.payment_intents.confirm(intent_id)

    @rule()
    def run_top_ups(self) -> None:
        """The task runner gets to the queued top-ups."""
        self.tasks.run_pending()

    @contextlib.contextmanager
    def _dying_at(self, boundary: str) -> Any:
        """The worker of the next operation dies at ``boundary`` (if it passes it)."""
        plan = CrashPlan(at=f"op/{boundary}", armed=True, operation="op")
        self.billing.store = Boundaries(self.port_store, "store", plan)  # type: ignore[assignment]
        self.billing.cache = Boundaries(self.port_cache, "cache", plan)  # type: ignore[assignment]
        try:
            with contextlib.suppress(Crash):
                yield
        finally:
            self.billing.store, self.billing.cache = self.port_store, self.port_cache

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 1_500),
          boundary=st.sampled_from(BOUNDARIES))  # fmt: skip
    def deduct_and_die(self, user: str, credits: int, boundary: str) -> None:
        """A request whose worker is killed at a write boundary."""
        with self._dying_at(boundary), contextlib.suppress(InsufficientCredits, StoreUnavailable):
            self.billing.deduct_credits(user, credits)

    @rule(boundary=st.sampled_from(BOUNDARIES))
    def top_up_and_die(self, boundary: str) -> None:
        """The next queued top-up's worker is killed at a write boundary."""
        with self._dying_at(boundary):
            self.tasks.run_next()

    @rule(user=st.sampled_from(USERS))
    def flush_during_refill(self, user: str) -> None:
        """A refill reads the store; a credit commits and writes the cache; the cache is lost;
        then the refill writes what it read (an older snapshot, into an empty cache)."""
        read = self.store.inner.snapshot(user)
        with contextlib.suppress(StoreUnavailable):
            self.billing.grant_credits(user, 10, reference=f"grant-{next(self.grants)}")
        self.flush_cache()
        self.billing.cache.put(user, read)

    @rule(user=st.sampled_from(USERS), back=st.integers(1, 3))
    def late_failure_event(self, user: str, back: int) -> None:
        """A payment_failed event of an attempt that already ended arrives late: nothing moves."""
        record = self.store.inner.get_user(user)
        seq = record.topup_seq - back
        if seq < 1 or seq == record.open_attempt:
            return
        before = (record.state, record.consecutive_failures, record.balance)
        assert not self.billing.payment_failed(user, seq)
        after = self.store.inner.get_user(user)
        assert (after.state, after.consecutive_failures, after.balance) == before

    @rule(duplicate=st.booleans(), reverse=st.booleans())
    def deliver_webhooks(self, duplicate: bool, reverse: bool) -> None:
        """Due webhooks arrive, perhaps twice and backwards; failures are redelivered later."""
        deliveries = self.emulator.due_deliveries()
        if duplicate:
            deliveries = deliveries * 2
        if reverse:
            deliveries.reverse()
        for delivery in deliveries:
            status = 200
            try:
                signed = delivery.signed_headers(int(self.clock.now()))
                self.webhooks.handle(delivery.payload, signed["Stripe-Signature"])
            except BillingError:
                status = 500
            self.emulator.report_delivery(delivery, status)

    @rule()
    def flush_cache(self) -> None:
        """The cache loses everything."""
        if isinstance(self.cache, MemoryCache):
            self.cache.clear()
        else:
            self.cache.flushall()

    @rule(method=st.sampled_from(STORE_WRITES), failing=st.booleans())
    def store_fault(self, method: str, failing: bool) -> None:
        """A kind of store write starts or stops failing."""
        if failing:
            self.store.failing.add(method)
        else:
            self.store.failing.discard(method)

    @rule(rate=st.sampled_from([0.0, 0.3, 1.0]), kind=st.sampled_from(["server", "drop"]))
    def stripe_faults(self, rate: float, kind: str) -> None:
        """Stripe answers 500s, or applies requests and drops the answers, at some rate."""
        name = "server_error_rate" if kind == "server" else "drop_response_rate"
        self.emulator.faults = Faults(**{name: rate})  # type: ignore[arg-type]

    @rule(user=st.sampled_from(USERS), card=st.sampled_from(CARDS))
    def change_card(self, user: str, card: str) -> None:
        """The user saves another card (which lifts a pause or suspension)."""
        with contextlib.suppress(BillingError):  # under Stripe faults the card is not saved
            self._save_card(user, card)

    @rule(seconds=st.sampled_from([1.0, 59.0, LEASE, 600.0, 3_599.0, 3_600.0, 86_400.0, -30.0]))
    def clock_jump(self, seconds: float) -> None:
        """Time passes (and, rarely, jumps back a little: clock skew)."""
        self.clock.set(self.clock.now() + seconds)

    # ------------------------------------------------------------------ invariants

    def _intents(self, user: str, purpose: str = TOPUP_PURPOSE) -> list[Any]:
        """The user's PaymentIntents of ``purpose`` (auto top-ups unless told) as Stripe holds
        them (read with faults off)."""
        faults, self.emulator.faults = self.emulator.faults, Faults()
        try:
            listed = self.gateway.client.v1.payment_intents.list(
                params={"customer": self.customers[user], "limit": 100}
            )
            return [i for i in listed.auto_paging_iter() if i.metadata["purpose"] == purpose]
        finally:
            self.emulator.faults = faults

    @invariant()
    def balances_equal_ledgers(self) -> None:
        """Store balance = ledger sum; a cached snapshot is never ahead of the store, and at the
        store's version it is the store's."""
        if not hasattr(self, "billing"):
            return
        STEPS[0] += 1
        for user in USERS:
            stored = self.store.inner.get_user(user).balance
            assert stored == self.store.inner.ledger_sum(user)
            cached, truth = self.billing.cache.get(user), self.store.inner.snapshot(user)
            if cached is not None:
                assert cached.version <= truth.version, (user, cached, truth)
                assert cached.version < truth.version or cached == truth, (user, cached, truth)

    @invariant()
    def credits_only_for_succeeded_intents(self) -> None:
        """Each top-up credit is one succeeded intent of the tier's price, credited once."""
        if not hasattr(self, "billing"):
            return
        for user in USERS:
            topups = [e for e in self.store.inner.ledger(user) if e.kind == "topup"]
            assert len({e.reference for e in topups}) == len(topups)
            for entry in topups:
                intent = self.emulator.object(entry.reference or "")
                assert intent is not None and intent["status"] == "succeeded"
                assert (intent["amount"], intent["currency"], entry.delta) == (200, "eur", 1_000)

    @invariant()
    def purchases_credited_once_at_their_price(self) -> None:
        """Each purchase credit is a succeeded purchase of this user, credited once, for the
        credits whose price Stripe took."""
        if not hasattr(self, "billing"):
            return
        for user in USERS:
            bought = self.store.inner.ledger(user, kinds=(PURCHASE_KIND,))
            assert len({e.reference for e in bought}) == len(bought)
            for entry in bought:
                intent = self.emulator.object(entry.reference or "")
                assert intent is not None and intent["status"] == "succeeded"
                metadata = intent["metadata"]
                assert (metadata["purpose"], metadata["user_id"]) == (PURCHASE_PURPOSE, user)
                assert entry.delta == int(metadata["credits"])
                paid = price_of(entry.delta, "eur")
                assert (intent["amount"], intent["currency"]) == (paid.amount_minor, "eur")

    @invariant()
    def one_charge_per_cooldown(self) -> None:
        """Each intent belongs to its own attempt, and those attempts were claimed at least one
        cooldown apart (the charge itself may run late: the claim is what the rule bounds)."""
        if not hasattr(self, "billing"):
            return
        for user in USERS:
            attempts = [int(i.metadata["attempt"]) for i in self._intents(user)]
            assert len(attempts) == len(set(attempts)), (user, attempts)
            claimed = {a.seq: a.claimed_at for a in self.store.inner.attempts(user)}
            times = sorted(claimed[seq] for seq in attempts)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(gap >= COOLDOWN for gap in gaps), (user, times)

    @invariant()
    def monthly_limit_never_passed(self) -> None:
        """The auto top-up credits claimed in a calendar month, by attempts that succeeded or
        are in flight, stay within the limit, whatever the interleaving; and each intent charged
        the credits its attempt's claim reserved."""
        if not hasattr(self, "billing"):
            return
        for user in USERS:
            attempts = self.store.inner.attempts(user)
            reserved = {a.seq: a.claimed_credits for a in attempts}
            for intent in self._intents(user):
                assert int(intent.metadata["credits"]) == reserved[int(intent.metadata["attempt"])]
            if self.limit is None:
                continue
            months: dict[str, int] = {}
            for attempt in attempts:
                if attempt.status in LIMIT_COUNTED_STATUSES:
                    key = month_of(attempt.claimed_at).key
                    months[key] = months.get(key, 0) + (attempt.claimed_credits or 0)
            assert all(total <= self.limit for total in months.values()), (user, months)

    @precondition(lambda self: hasattr(self, "billing"))
    @rule()
    def heal_and_settle(self) -> None:
        """Faults stop, leases run out, the reconcile runs and every webhook arrives: every
        succeeded intent is credited, every cache is the store's, nothing is left open, and
        each attempt told its user exactly what its outcome calls for."""
        self.store.failing.clear()
        self.emulator.faults = Faults()
        self.tasks.run_pending()
        for _ in range(10):  # failed deliveries come back with Stripe's back-off
            self.clock.set(self.clock.now() + 3 * 86_400)
            self.deliver_webhooks(duplicate=False, reverse=False)
            reconcile_all(self.billing, checkout=self.gateway)
            self.tasks.run_pending()
        for user in USERS:
            credited = {e.reference for e in self.store.inner.ledger(user) if e.kind == "topup"}
            succeeded = {i.id for i in self._intents(user) if i.status == "succeeded"}
            assert credited == succeeded, (user, credited ^ succeeded)
            bought = {e.reference for e in self.store.inner.ledger(user, kinds=(PURCHASE_KIND,))}
            paid = {i.id for i in self._intents(user, PURCHASE_PURPOSE) if i.status == "succeeded"}
            assert bought == paid, (user, bought ^ paid)
            cached = self.billing.cache.get(user)
            assert cached is None or cached == self.store.inner.snapshot(user), user
            assert self.store.inner.get_user(user).open_attempt is None, user
            for attempt in self.store.inner.attempts(user):
                told = sorted(
                    {
                        (n.kind, n.notice_id)
                        for n in self.notifier.sent
                        if n.user_id == user and n.detail.get("attempt") == str(attempt.seq)
                        and n.kind in _FINAL_KINDS
                    }
                )  # fmt: skip
                expected = FINAL_NOTICES[attempt.status]
                assert [kind for kind, _ in told] == ([] if expected is None else [expected]), (
                    user, attempt, told,
                )  # fmt: skip


TestBillingMachine = BillingMachine.TestCase
