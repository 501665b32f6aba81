"""A lean Hypothesis state machine for crash consistency, fast enough for a million steps.

The full machine (``test_properties``) drives Stripe's emulator through the real ``stripe``
library; this one trades that fidelity for speed (``ScriptedGateway``, which replays by key as
Stripe does, on ``MemoryCache`` and SQLite) so that ``make proptest`` can search far: workers
killed at every write boundary of deductions, top-ups and settlements, answers lost after the
charge, the credit path failing, cache flushes (one in the middle of a refill), clock jumps
across leases and cooldowns, late and duplicated payment events, and the reconcile.

After every step: balances equal ledgers; a cached snapshot is never ahead of the store; each
attempt holds at most one PaymentIntent; charged attempts were claimed a cooldown apart; ada's
monthly limit (two top-ups) is never passed by the month's claims. After a heal (faults off,
leases run out, reconcile, every pending event delivered): every charge is credited once, every
cache equals its store, nothing is left open, each attempt told its user exactly the one notice
its outcome calls for, and every month in which the limit held a top-up was told, under one id.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ChargeRequest,
    ChargeResult,
    InsufficientCredits,
    ManualClock,
    MemoryCache,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    StoreUnavailable,
    TransientGatewayError,
    Vault,
)
from sim.billing.claims import month_of
from sim.billing.reconcile import reconcile_all
from sim.billing.store import FINAL_NOTICES, LIMIT_COUNTED_STATUSES, LIMIT_NOTICE
from sim.billing.testing import ScriptedGateway
from sim.crashes import Boundaries, Crash, CrashPlan, all_boundaries

from ..conftest import LONG_SEARCH_FACTOR
from .conftest import MASTER_KEY, STEPS, FlakyStore

USERS = ("ada", "bob")
COOLDOWN, LEASE = 3_600.0, 300.0
BOUNDARIES = tuple(
    b for b in all_boundaries() if b.startswith(("store.", "cache.put", "notifier.", "gateway."))
)
OUTCOMES = ("succeeded", "succeeded", "declined:insufficient_funds", "authentication_required")
FINAL_KINDS = frozenset(kind for kind in FINAL_NOTICES.values() if kind is not None)
#: Ada may buy two 1,000-credit top-ups a calendar month; bob has no limit.
LIMITS = {"ada": 2_000, "bob": None}


class LossyGateway:
    """The scripted Stripe, losing answers (after applying the charge) while ``lossy``, and
    failing the next ``unreachable`` calls before they reach it."""

    def __init__(self) -> None:
        self.inner, self.lossy, self.unreachable = ScriptedGateway(), False, 0

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if self.unreachable:
            self.unreachable -= 1
            raise TransientGatewayError("Stripe unreachable")
        result = self.inner.charge(request)
        if self.lossy:
            raise TransientGatewayError("answer lost")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CrashMachine(RuleBasedStateMachine):
    """Billing on memory and SQLite under crashes, losses, flushes and late events."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.store = FlakyStore(SQLiteStore(":memory:"))
        self.cache = MemoryCache()
        self.gateway = LossyGateway()
        self.tasks = QueueRunner()
        self.notifier = RecordingNotifier()
        self.billing = BillingService(
            clock=self.clock, cache=self.cache, store=self.store,  # type: ignore[arg-type]
            gateway=self.gateway, notifier=self.notifier, tasks=self.tasks,  # type: ignore[arg-type]
            vault=Vault(MASTER_KEY),
        )  # fmt: skip
        self.grants = itertools.count(1)
        #: (user, month) of every deduction that answered ``limited`` (its worker lived).
        self.held: set[tuple[str, str]] = set()
        for user in USERS:
            self.billing.create_user(user, balance=2_000)
            self.billing.save_payment_method(user, f"cus_{user}", "pm_card_visa")
            self.billing.update_settings(
                user, AutoTopupSettings(True, 1_000, 1_000, "eur", monthly_limit=LIMITS[user])
            )

    # ------------------------------------------------------------------ operations

    @contextlib.contextmanager
    def _dying_at(self, boundary: str | None) -> Any:
        """Run one operation whose worker dies at ``boundary`` (``None``: it lives)."""
        if boundary is None:
            yield
            return
        plan = CrashPlan(at=f"op/{boundary}", armed=True, operation="op")
        ports = self.billing.store, self.billing.cache, self.billing.gateway, self.billing.notifier
        self.billing.store = Boundaries(ports[0], "store", plan)  # type: ignore[assignment]
        self.billing.cache = Boundaries(ports[1], "cache", plan)  # type: ignore[assignment]
        self.billing.gateway = Boundaries(ports[2], "gateway", plan)  # type: ignore[assignment]
        self.billing.notifier = Boundaries(ports[3], "notifier", plan)  # type: ignore[assignment]
        try:
            with contextlib.suppress(Crash):
                yield
        finally:
            (self.billing.store, self.billing.cache, self.billing.gateway,
             self.billing.notifier) = ports  # fmt: skip

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 1_500),
          boundary=st.none() | st.sampled_from(BOUNDARIES))  # fmt: skip
    def deduct(self, user: str, credits: int, boundary: str | None) -> None:
        """A request, whose worker may die at a write boundary."""
        trigger = None
        with self._dying_at(boundary), contextlib.suppress(StoreUnavailable):
            try:
                trigger = self.billing.deduct_credits(user, credits).trigger.value
            except InsufficientCredits as refused:
                trigger = refused.trigger
        if trigger == "limited":
            self.held.add((user, month_of(self.clock.now()).key))

    @rule(user=st.sampled_from(USERS), boundary=st.none() | st.sampled_from(BOUNDARIES))
    def spend_after_cooldown(self, user: str, boundary: str | None) -> None:
        """A cooldown passes, queued top-ups run, and the user spends down to the threshold (a
        worker perhaps dying): the crossing a monthly limit counts, then holds, in many runs."""
        self.clock.advance(COOLDOWN)
        with contextlib.suppress(StoreUnavailable):
            self.tasks.run_pending()
        spend = max(self.store.inner.get_user(user).balance - 1_000, 1)
        self.deduct(user, spend, boundary)

    @rule(outcome=st.sampled_from(OUTCOMES), boundary=st.none() | st.sampled_from(BOUNDARIES))
    def top_up(self, outcome: str, boundary: str | None) -> None:
        """The next queued top-up runs (Stripe will answer ``outcome`` to a new charge)."""
        self.gateway.inner.queue(outcome)
        with self._dying_at(boundary):
            self.tasks.run_next()

    @rule(lossy=st.booleans(), unreachable=st.integers(0, 4))
    def stripe(self, lossy: bool, unreachable: int) -> None:
        """Stripe starts or stops losing answers, and the next few calls fail before reaching
        it."""
        self.gateway.lossy, self.gateway.unreachable = lossy, unreachable

    @rule(method=st.sampled_from(("deduct", "settle_topup", "finish_attempt", "start_charge")),
          failing=st.booleans())  # fmt: skip
    def store_fault(self, method: str, failing: bool) -> None:
        """A kind of store write starts or stops failing."""
        (self.store.failing.add if failing else self.store.failing.discard)(method)

    @rule(user=st.sampled_from(USERS), twice=st.booleans())
    def succeeded_events(self, user: str, twice: bool) -> None:
        """``payment_intent.succeeded`` of every charge of the user (perhaps twice)."""
        for charge in self.gateway.succeeded_charges(f"cus_{user}") * (2 if twice else 1):
            with contextlib.suppress(StoreUnavailable):
                self.billing.settle_payment(
                    user, charge.payment_intent_id, charge.price, charge.metadata
                )

    @rule(user=st.sampled_from(USERS), back=st.integers(0, 3))
    def failed_event(self, user: str, back: int) -> None:
        """A ``payment_intent.payment_failed`` for the newest attempt or an older one: it never
        decides anything itself; for an ended attempt nothing moves."""
        record = self.store.inner.get_user(user)
        seq = record.topup_seq - back
        if seq < 1:
            return
        before = (record.state, record.consecutive_failures, record.balance)
        with contextlib.suppress(StoreUnavailable):
            asked = self.billing.payment_failed(user, seq)
            if not asked:
                after = self.store.inner.get_user(user)
                assert (after.state, after.consecutive_failures, after.balance) == before

    @rule(user=st.sampled_from(USERS), during_refill=st.booleans())
    def flush(self, user: str, during_refill: bool) -> None:
        """The cache is lost; perhaps while a refill that read the store before a credit was
        in flight (it then writes its older snapshot into the empty cache)."""
        read = self.store.inner.snapshot(user)
        if during_refill:
            with contextlib.suppress(StoreUnavailable):
                self.billing.grant_credits(user, 10, reference=f"grant-{next(self.grants)}")
        self.cache.clear()
        if during_refill:
            self.cache.put(user, read)

    @rule(user=st.sampled_from(USERS), card=st.sampled_from(("pm_card_visa", "pm_other")))
    def change_card(self, user: str, card: str) -> None:
        """The user saves a card, which lifts a pause or suspension."""
        self.billing.save_payment_method(user, f"cus_{user}", card)

    @rule(seconds=st.sampled_from([1.0, 60.0, LEASE, COOLDOWN, 86_400.0]))
    def clock_jump(self, seconds: float) -> None:
        """Time passes: a second, a lease, a cooldown, a day."""
        self.clock.advance(seconds)

    @rule()
    def reconcile(self) -> None:
        """The periodic reconcile job."""
        with contextlib.suppress(StoreUnavailable):
            reconcile_all(self.billing)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def books(self) -> None:
        """Balance = ledger; the cache is never ahead; one intent per attempt; claims of
        charged attempts a cooldown apart."""
        STEPS[0] += 1
        inner = self.store.inner
        for user in USERS:
            assert inner.get_user(user).balance == inner.ledger_sum(user)
            cached, truth = self.cache.get(user), inner.snapshot(user)
            if cached is not None:
                assert cached.version < truth.version or cached == truth, (cached, truth)
            charged = sorted(
                int(c.metadata["attempt"])
                for c in self.gateway.succeeded_charges(f"cus_{user}")
            )  # fmt: skip
            assert len(charged) == len(set(charged)), charged
            claimed = {a.seq: a.claimed_at for a in inner.attempts(user)}
            times = sorted(claimed[seq] for seq in charged)
            assert all(b - a >= COOLDOWN for a, b in itertools.pairwise(times)), times
            months: dict[str, int] = {}
            for attempt in inner.attempts(user):
                if attempt.status in LIMIT_COUNTED_STATUSES:
                    key = month_of(attempt.claimed_at).key
                    months[key] = months.get(key, 0) + (attempt.claimed_credits or 0)
            limit = LIMITS[user]
            assert limit is None or all(total <= limit for total in months.values()), months

    def teardown(self) -> None:
        """Heal: faults off, every lease run out, reconcile, every event delivered; then
        everything is settled and told exactly once."""
        self.store.failing.clear()
        self.gateway.lossy, self.gateway.unreachable = False, 0
        for _ in range(3):
            self.tasks.run_pending()
            self.clock.advance(LEASE + 60)
            reconcile_all(self.billing)
            self.tasks.run_pending()
            for user in USERS:
                self.succeeded_events(user, twice=False)
        inner = self.store.inner
        for user in USERS:
            credited = {e.reference for e in inner.ledger(user) if e.kind == "topup"}
            paid = {c.payment_intent_id for c in self.gateway.succeeded_charges(f"cus_{user}")}
            assert credited == paid, (user, credited ^ paid)
            cached = self.cache.get(user)
            assert cached is None or cached == inner.snapshot(user), user
            assert inner.get_user(user).open_attempt is None, user
            assert inner.pending_notices(user) == [], user
            told = {n.notice_id for n in self.notifier.sent if n.kind == LIMIT_NOTICE}
            held = {f"{LIMIT_NOTICE}:{u}:{month}" for u, month in self.held}
            assert held <= told, (held, told)
            assert LIMITS[user] is not None or not any(f":{user}:" in t for t in told), told
            for attempt in inner.attempts(user):
                told = {
                    n.notice_id: n.kind
                    for n in self.notifier.sent
                    if n.user_id == user and n.kind in FINAL_KINDS
                    and n.detail.get("attempt") == str(attempt.seq)
                }  # fmt: skip
                expected = FINAL_NOTICES[attempt.status]
                assert sorted(told.values()) == ([] if expected is None else [expected]), (
                    user, attempt, told,
                )  # fmt: skip


TestCrashMachine = CrashMachine.TestCase
TestCrashMachine.settings = settings(
    max_examples=settings.default.max_examples * LONG_SEARCH_FACTOR, stateful_step_count=100
)
