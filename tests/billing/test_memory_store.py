"""The memory store behaves exactly as the SQLite store: a differential state machine, and what
only the memory store needs proving (its lock, its conformance to the port).

The state machine applies every step to a ``SQLiteStore(":memory:")`` and a ``MemoryStore()`` side
by side: random users (and one never created), deductions under random policies and times (ints
and floats, out of order), a seal that sometimes crashes, credits and settlements under shared
references, takeovers, charges, lease holds and finishes with right and wrong leases, notices
(some naming an unknown user), settings, cards, webhook events, dead letters, subscriptions and
TOTP guesses. Each step's return value or raised error (type and message) must be the same, by
``repr`` (so an int where SQLite returns a float is a difference), and after every step so must
every read of every user and of the global tables. With ``POSTGRES_URL`` set, the same machine
holds PostgreSQL to SQLite's outcomes too (``PostgresDifferentialMachine``).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sim.billing import (
    ACTIVE,
    PAUSED,
    SUSPENDED,
    THRESHOLDS,
    TIER_CREDITS,
    AutoTopupSettings,
    DeadLetter,
    MemoryStore,
    SQLiteStore,
    Store,
    SubscriptionRecord,
    Trigger,
)
from sim.billing.claims import ClaimPolicy
from sim.billing.store import FINAL_NOTICES, AttemptOutcome, ChargeTerms, PendingNotice
from sim.billing.twofactor import Guess, TfaPolicy
from sim.crashes import Crash

from .postgres import postgres_store

T0 = 1_767_225_600  # an int: times built on it are ints or floats, as callers may pass either
USERS = ("ada", "bob", "cy")
GHOST = "nobody"  # never created: every call naming it meets the unknown-user rules
REFERENCES = ("pi_1", "pi_2", "pi_3", "grant:1")
NOTICE_IDS = ("n1", "n2", "n3")
EVENT_IDS = ("evt_1", "evt_2", "evt_3")
SUBSCRIPTION_IDS = ("sub_1", "sub_2")
STATUSES = (*FINAL_NOTICES, "unknown", "charging")
#: The kinds the ledger is read by: credits only, usage only, both, none.
LEDGER_KINDS = (("topup",), ("grant", "topup"), ("usage",), {"usage", "grant"}, ())

#: Mostly the two users created at the start, so that most calls meet live state.
users = st.sampled_from((*USERS[:2], *USERS[:2], *USERS, GHOST))
times = st.one_of(st.integers(0, 4_000), st.floats(0, 4_000)).map(lambda offset: T0 + offset)
#: Deductions' times reach into the next month now and then, where the monthly limit resets.
FEB = T0 + 31 * 86_400
deduction_times = st.one_of(times, times.map(lambda t: t - T0 + FEB))
policies = st.builds(
    ClaimPolicy, st.sampled_from((0, 60, 3_600.0)), st.sampled_from((0, 30, 300.0))
)
#: Half seconds over a few windows and lockouts (``tfa_policies``, seconds long): guesses land
#: exactly on their edges, and on the edge of the failures a guess reads.
guess_times = st.integers(0, 40).map(lambda halves: T0 + halves / 2)
seqs = st.integers(0, 4)
#: Whether a fenced call names the lease holder (mostly), or draws a seq and lease (mostly stale).
rightly = st.sampled_from((True, True, True, False))
leases = st.integers(0, 6)
blobs = st.binary(max_size=4)
references = st.sampled_from(REFERENCES)
outcomes = st.builds(
    AttemptOutcome,
    status=st.sampled_from(STATUSES),
    credits=st.none() | st.sampled_from(TIER_CREDITS),
    currency=st.none() | st.sampled_from(("eur", "usd")),
    amount_minor=st.none() | st.integers(0, 5_000),
    payment_intent_id=st.none() | references,
    decline_code=st.none() | st.just("card_declined"),
    retries=st.integers(0, 3),
    state=st.sampled_from((ACTIVE, PAUSED, SUSPENDED)),
    consecutive_failures=st.integers(0, 3),
)
#: A paid outcome, as settling needs (credits and an intent), now and then one without either.
paid = st.builds(
    AttemptOutcome,
    status=st.just("succeeded"),
    credits=st.sampled_from(TIER_CREDITS),
    currency=st.sampled_from(("eur", "usd")),
    amount_minor=st.integers(0, 5_000),
    payment_intent_id=references,
)
settled = st.integers(0, 3).flatmap(lambda n: paid if n else outcomes)
details = st.dictionaries(
    st.sampled_from(("attempt", "failures")),
    st.one_of(st.text(max_size=3), st.integers(0, 9), st.tuples(st.integers(0, 9))),
    max_size=2,
)
notices = st.builds(
    PendingNotice, st.sampled_from(NOTICE_IDS), users, st.sampled_from(("a", "b")), details
)


def _settings(
    enabled: bool, threshold: int, amount: int, currency: str, top_ups: int | None
) -> AutoTopupSettings:
    """Settings with no monthly limit, or one that holds after ``top_ups`` top-ups."""
    limit = None if top_ups is None else amount * top_ups
    return AutoTopupSettings(enabled, threshold, amount, currency, limit)


all_settings = st.builds(
    _settings,
    st.booleans(),
    st.sampled_from(THRESHOLDS),
    st.sampled_from(TIER_CREDITS),
    st.sampled_from(("eur", "usd")),
    st.none() | st.integers(1, 3),
)
tfa_policies = st.builds(
    TfaPolicy, st.integers(1, 3), st.sampled_from((0, 1, 2.5)), st.sampled_from((1, 3.5))
)


def _seal(user_id: str, wrapped: bytes, at: float) -> bytes:
    return f"sealed:{user_id}:{at!r}".encode()


def _crashing_seal(user_id: str, wrapped: bytes, at: float) -> bytes:
    raise Crash("vault.encrypt:inside", "deduct")


def _outcome(call: Callable[[], object]) -> str:
    """What a call did, comparably: the ``repr`` of its value or of its error's type and text."""
    try:
        return repr(call())
    except (Exception, Crash) as exc:
        return f"raised {type(exc).__name__}: {exc}"


class DifferentialMachine(RuleBasedStateMachine):
    """One random sequence of store calls, on SQLite and another store at once (``other``: the
    memory store here, PostgreSQL in :class:`PostgresDifferentialMachine`)."""

    def __init__(self) -> None:
        super().__init__()
        self.sqlite = SQLiteStore(":memory:")
        self.other = self.open_other()

    def open_other(self) -> Store:
        """The store held to SQLite's outcomes, empty."""
        return MemoryStore()

    def teardown(self) -> None:
        self.sqlite.close()

    def both(self, call: Callable[[Store], object]) -> None:
        """Make the same call on each store; their outcomes must be identical."""
        expected = _outcome(lambda: call(self.sqlite))
        assert _outcome(lambda: call(self.other)) == expected

    def held(self, user_id: str, seq: int, lease: int, right: bool) -> tuple[int, int]:
        """When ``right``, the user's open attempt (else their newest) and its lease, else the
        drawn ``seq`` and ``lease``: so that fenced calls hit both the holder and the stale."""
        if right and user_id in self.sqlite.user_ids():
            user = self.sqlite.get_user(user_id)
            return user.open_attempt or user.topup_seq, user.lease
        return seq, lease

    def amount(self, user_id: str, drawn: int | str) -> int:
        """``drawn`` credits, or for ``"all"`` the user's balance and for ``"all+1"`` one more:
        so that takes and credits meet the balance's edge (a balance never goes below 0)."""
        if isinstance(drawn, int):
            return drawn
        known = user_id in self.sqlite.user_ids()
        balance = self.sqlite.get_user(user_id).balance if known else 0
        return balance + 1 if drawn == "all+1" else balance

    # ------------------------------------------------------------------ users and money

    @initialize(
        opening=st.lists(st.integers(0, 2_000), min_size=2, max_size=2),
        chosen=st.lists(
            all_settings.map(lambda s: replace(s, enabled=True)), min_size=2, max_size=2
        ),
    )
    def two_users_with_auto_topup(
        self, opening: list[int], chosen: list[AutoTopupSettings]
    ) -> None:
        """Most steps should meet live state: two users start with credits, auto top-up on and,
        if their balance is low, an attempt open (the third user, and the ghost, start unknown).
        The invariant compares the stores after this, as after every step."""
        policy = ClaimPolicy(cooldown_seconds=60, lease_seconds=300.0)
        for user_id, credits, choice in zip(USERS, opening, chosen, strict=False):
            for store in (self.sqlite, self.other):
                store.create_user(user_id, b"wrapped", None)
                store.credit(user_id, credits, "grant", f"opening:{user_id}", T0)
                store.save_settings(user_id, choice)
                store.deduct(user_id, 0, T0, policy, _seal)

    @rule(user_id=st.sampled_from(USERS), key=blobs, email=st.none() | blobs)
    def create_user(self, user_id: str, key: bytes, email: bytes | None) -> None:
        self.both(lambda store: store.create_user(user_id, key, email))

    @rule(
        user_id=users,
        drawn=st.sampled_from((0, 1, 5, 100, 600, 1_000, 5_000, -7, "all", "all+1")),
        now=deduction_times,
        policy=policies,
        crash=st.booleans(),
        request_key=st.none() | st.sampled_from(("k1", "k2")),
    )
    def deduct(
        self,
        user_id: str,
        drawn: int | str,
        now: float,
        policy: ClaimPolicy,
        crash: bool,
        request_key: str | None,
    ) -> None:
        """A deduction, with a request key from a small set so that keys are met again: kept,
        replayed (the same or other credits), and past their window (deductions reach a month
        later, and times go back and forth)."""
        seal = _crashing_seal if crash else _seal
        credits = self.amount(user_id, drawn)
        self.both(lambda store: store.deduct(user_id, credits, now, policy, seal, request_key))

    @rule(
        user_id=users,
        drawn=st.sampled_from((1, 10, 1_000, 10_000, -500, -5_000, "all", "all+1")),
        kind=st.sampled_from(("grant", "topup")),
        reference=references,
        now=times,
    )
    def credit(self, user_id: str, drawn: int | str, kind: str, reference: str, now: float) -> None:
        credits = -self.amount(user_id, drawn) if isinstance(drawn, str) else drawn
        self.both(lambda store: store.credit(user_id, credits, kind, reference, now))

    @rule(
        user_id=users,
        seq=st.none() | seqs,
        right=rightly,
        outcome=settled,
        now=times,
        notice=st.none() | notices,
    )
    def settle_topup(
        self,
        user_id: str,
        seq: int | None,
        right: bool,
        outcome: AttemptOutcome,
        now: float,
        notice: PendingNotice | None,
    ) -> None:
        if seq is not None:
            seq, _ = self.held(user_id, seq, 0, right)
        self.both(lambda store: store.settle_topup(user_id, seq, outcome, now, notice))

    # ------------------------------------------------------------------ attempts and leases

    @rule(user_id=users, seq=seqs, now=times, until=times, force=st.booleans(), right=rightly)
    def take_over(
        self, user_id: str, seq: int, now: float, until: float, force: bool, right: bool
    ) -> None:
        seq, _ = self.held(user_id, seq, 0, right)
        self.both(lambda store: store.take_over(user_id, seq, now, until, force))

    @rule(
        user_id=users,
        seq=seqs,
        lease=leases,
        right=rightly,
        terms=st.builds(
            ChargeTerms,
            st.sampled_from(TIER_CREDITS),
            st.sampled_from(("eur", "usd")),
            st.integers(0, 5_000),
            blobs,
        ),
        until=times,
    )
    def start_charge(
        self, user_id: str, seq: int, lease: int, right: bool, terms: ChargeTerms, until: float
    ) -> None:
        seq, lease = self.held(user_id, seq, lease, right)
        self.both(lambda store: store.start_charge(user_id, seq, lease, terms, until))

    @rule(
        user_id=users,
        terms=st.builds(
            ChargeTerms, st.sampled_from(TIER_CREDITS), st.just("eur"), st.just(1_000), blobs
        ),
        until=times,
        status=st.sampled_from(("unknown", "charging")),
        retries=st.integers(1, 3),
    )
    def charge_and_back_off(
        self, user_id: str, terms: ChargeTerms, until: float, status: str, retries: int
    ) -> None:
        """What a worker does with its lease: start the charge, then hold the lease over a
        back-off (so that attempts are charging or unknown, with retries, in many runs)."""
        seq, lease = self.held(user_id, 0, 0, True)
        self.both(lambda store: store.start_charge(user_id, seq, lease, terms, until))
        self.both(lambda store: store.hold_lease(user_id, seq, lease, until, status, retries))

    @rule(
        user_id=users,
        seq=seqs,
        lease=leases,
        right=rightly,
        until=times,
        status=st.sampled_from((None, "unknown", "charging", "claimed")),
        retries=st.integers(0, 3),
    )
    def hold_lease(
        self,
        user_id: str,
        seq: int,
        lease: int,
        right: bool,
        until: float,
        status: str | None,
        retries: int,
    ) -> None:
        seq, lease = self.held(user_id, seq, lease, right)
        self.both(lambda store: store.hold_lease(user_id, seq, lease, until, status, retries))

    @rule(
        user_id=users,
        seq=seqs,
        lease=st.none() | leases,
        right=rightly,
        outcome=outcomes,
        now=times,
        queued=st.lists(notices, max_size=3),
    )
    def finish_attempt(
        self,
        user_id: str,
        seq: int,
        lease: int | None,
        right: bool,
        outcome: AttemptOutcome,
        now: float,
        queued: list[PendingNotice],
    ) -> None:
        seq, held = self.held(user_id, seq, lease or 0, right)
        fence = None if lease is None else held
        self.both(lambda store: store.finish_attempt(user_id, seq, fence, outcome, now, queued))

    @rule(notice_id=st.sampled_from(NOTICE_IDS), now=times)
    def mark_notice_sent(self, notice_id: str, now: float) -> None:
        self.both(lambda store: store.mark_notice_sent(notice_id, now))

    # ------------------------------------------------------------------ settings and cards

    @rule(
        user_id=users,
        status=st.sampled_from(("succeeded", "succeeded", *STATUSES)),
        now=deduction_times,
        policy=policies,
    )
    def end_then_cross(self, user_id: str, status: str, now: float, policy: ClaimPolicy) -> None:
        """The open attempt ends (often paid) and the balance falls to 0 at once: what the
        monthly limit counts, and then holds, in many runs."""
        seq, lease = self.held(user_id, 0, 0, True)
        outcome = AttemptOutcome(status, 1_000)
        self.both(lambda store: store.finish_attempt(user_id, seq, lease, outcome, now))
        credits = self.amount(user_id, "all")
        self.both(lambda store: store.deduct(user_id, credits, now, policy, _seal))

    @rule(user_id=users, chosen=all_settings)
    def save_settings(self, user_id: str, chosen: AutoTopupSettings) -> None:
        self.both(lambda store: store.save_settings(user_id, chosen))

    @rule(user_id=users, customer=blobs, card=blobs)
    def save_payment_method(self, user_id: str, customer: bytes, card: bytes) -> None:
        self.both(lambda store: store.save_payment_method(user_id, customer, card))

    # ------------------------------------------------------------------ events and subscriptions

    @rule(event_id=st.sampled_from(EVENT_IDS), now=times)
    def mark_event_processed(self, event_id: str, now: float) -> None:
        self.both(lambda store: store.mark_event_processed(event_id, "invoice.paid", now))

    @rule(
        letter=st.builds(
            DeadLetter,
            st.sampled_from(EVENT_IDS),
            st.just("payment_intent.succeeded"),
            st.sampled_from(("unknown user", "wrong price")),
            blobs,
            st.sampled_from((T0, T0 + 1.5, T0 + 9)),
        )
    )
    def dead_letter(self, letter: DeadLetter) -> None:
        self.both(lambda store: store.dead_letter(letter))

    @rule(
        record=st.builds(
            SubscriptionRecord,
            st.sampled_from(SUBSCRIPTION_IDS),
            users,
            st.sampled_from(TIER_CREDITS),
            st.sampled_from(("eur", "usd")),
            st.sampled_from(("active", "past_due", "canceled")),
            st.none() | times,
            st.booleans(),
            st.sampled_from((T0, T0 + 10, T0 + 20.5)),
        )
    )
    def save_subscription(self, record: SubscriptionRecord) -> None:
        self.both(lambda store: store.save_subscription(record))

    # ------------------------------------------------------------------ two-factor

    @rule(user_id=users, secret=blobs)
    def save_tfa_secret(self, user_id: str, secret: bytes) -> None:
        self.both(lambda store: store.save_tfa_secret(user_id, secret))

    @rule(user_id=users, step=st.none() | st.integers(0, 5), now=guess_times, policy=tfa_policies)
    def tfa_guess(self, user_id: str, step: int | None, now: float, policy: TfaPolicy) -> None:
        self.both(lambda store: store.tfa_guess(user_id, step, now, policy))

    # ------------------------------------------------------------------ every read, every step

    @invariant()
    def every_read_is_the_same(self) -> None:
        self.both(lambda store: store.user_ids())
        self.both(lambda store: [store.dead_letters(limit) for limit in (-1, 0, 1, 100)])
        self.both(lambda store: [store.event_processed(event) for event in EVENT_IDS])
        self.both(lambda store: [store.subscription(sub) for sub in SUBSCRIPTION_IDS])
        for user_id in (*USERS, GHOST):
            self.both(lambda store, user_id=user_id: store.get_user(user_id))  # type: ignore[misc]
            self.both(lambda store, user_id=user_id: store.snapshot(user_id))  # type: ignore[misc]
            self.both(lambda store, user_id=user_id: self.reads(store, user_id))  # type: ignore[misc]

    @staticmethod
    def reads(store: Store, user_id: str) -> list[object]:
        """Every read of one user that cannot raise."""
        return [
            store.attempts(user_id),
            [store.attempt(user_id, seq) for seq in range(6)],
            store.ledger(user_id),
            [store.ledger(user_id, kinds) for kinds in LEDGER_KINDS],
            store.ledger_sum(user_id),
            store.pending_notices(user_id),
            store.subscriptions(user_id),
            store.tfa_failures_since(user_id, 0),
            store.tfa_failures_since(user_id, T0 + 10),
        ]


TestDifferential = DifferentialMachine.TestCase
TestDifferential.settings = settings(
    max_examples=settings.default.max_examples, stateful_step_count=60
)


# ---------------------------------------------------------------------- PostgreSQL


class _RankedEntries:
    """A PostgreSQL store whose ledger entries are numbered 1, 2, 3, ... in entry order across
    users, as SQLite's ``AUTOINCREMENT`` numbers them: a PostgreSQL sequence keeps the numbers a
    rolled-back transaction drew (gaps), which the port never promised to avoid. Everything else
    is the store's own."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def ledger(self, user_id: str, kinds: Any = None) -> list[Any]:
        numbers = self._store._read("SELECT entry_id FROM ledger ORDER BY entry_id", ())
        rank = {row["entry_id"]: n for n, row in enumerate(numbers, 1)}
        return [replace(e, entry_id=rank[e.entry_id]) for e in self._store.ledger(user_id, kinds)]


def _comparable(outcome: str) -> str:
    """An outcome with a database error's text left out: SQLite and PostgreSQL word a refused
    constraint differently, and what is compared is that both refused it."""
    refused = "raised StoreUnavailable"
    return refused if outcome.startswith(refused) else outcome


class PostgresDifferentialMachine(DifferentialMachine):
    """The same random sequences on SQLite and PostgreSQL: every outcome and every read the
    same, but for ledger entry numbers (:class:`_RankedEntries`) and database error texts."""

    #: The PostgreSQL store the examples share, emptied before each (set by the test).
    shared: ClassVar[Any] = None

    def open_other(self) -> Store:
        from sim.billing.sqlite_schema import TABLES

        with self.shared._tx() as db:
            db.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        return _RankedEntries(self.shared)  # type: ignore[return-value]

    def both(self, call: Callable[[Store], object]) -> None:
        """Make the same call on each store; their outcomes must be the same (error texts
        aside)."""
        expected = _comparable(_outcome(lambda: call(self.sqlite)))
        assert _comparable(_outcome(lambda: call(self.other))) == expected


@pytest.mark.timeout(900)
def test_postgres_store_behaves_as_sqlite() -> None:
    """The differential machine on PostgreSQL (at ``POSTGRES_URL``), with half the profile's
    examples and no shrinking: each step costs the server dozens of round trips, so a failing
    sequence is reported as found (every step and the one that differed) rather than shrunk for
    many minutes."""
    with postgres_store() as store:
        PostgresDifferentialMachine.shared = store
        try:
            run_state_machine_as_test(
                PostgresDifferentialMachine,
                settings=settings(
                    max_examples=max(1, settings.default.max_examples // 2),
                    stateful_step_count=60,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate),
                ),
            )
        finally:
            PostgresDifferentialMachine.shared = None


# ---------------------------------------------------------------------- the memory store alone


def test_memory_store_has_every_store_method_with_sqlites_signature() -> None:
    """Each method of the Store port exists on MemoryStore with the signature SQLiteStore gives
    it, so a new port method cannot be left out of the memory store unnoticed."""
    # Under `make mutation` the port also holds mutmut's trampolines (names with "ǁ"): not ours.
    methods = [
        name
        for name, _ in inspect.getmembers(Store, inspect.isfunction)
        if name.isascii() and not name.startswith("_")
    ]
    assert len(methods) > 25
    for name in methods:
        ours, theirs = getattr(MemoryStore, name), getattr(SQLiteStore, name)
        assert inspect.signature(ours) == inspect.signature(theirs), name


@pytest.fixture
def racy() -> Iterator[None]:
    """Switch threads as often as the interpreter allows, so that any unlocked read-modify-write
    would interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` on ``count`` threads released together; their results in thread order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        results[n] = work(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.usefixtures("racy")
def test_concurrent_deductions_are_one_at_a_time() -> None:
    """Twenty threads deducting at once: every credit is accounted for once, every write has a
    version of its own, and the crossing claims exactly one top-up."""
    store = MemoryStore()
    store.create_user("u1", b"wrapped", None)
    store.credit("u1", 10_000, "grant", "opening", T0)
    store.save_settings("u1", AutoTopupSettings(True, 5_000, 10_000, "eur"))
    policy = ClaimPolicy(cooldown_seconds=3_600.0, lease_seconds=300.0)

    def work(n: int) -> list[Any]:
        return [store.deduct("u1", 10, T0, policy, _seal) for _ in range(25)]

    done = [d for batch in _at_once(20, work) for d in batch]
    entries = store.ledger("u1")
    assert store.get_user("u1").balance == store.ledger_sum("u1") == 10_000 - 20 * 25 * 10
    assert [e.balance_after for e in entries[1:]] == list(range(9_990, 4_999, -10))
    assert [e.entry_id for e in entries] == list(range(1, 502))
    versions = [d.snapshot.version for d in done]
    assert len(set(versions)) == len(versions) == 500
    assert Counter(d.trigger for d in done)[Trigger.CLAIMED] == 1
    assert len(store.attempts("u1")) == 1


class _Unwalkable(list[Any]):
    """Ledger entries that can be added to and indexed, but not walked."""

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("the whole ledger was walked")


def test_credits_and_the_sum_are_read_without_walking_the_usage_rows() -> None:
    """The books check and the reconcile read a user's credits and ledger sum at the end of a
    run; neither walks the month of usage rows to find them."""
    store = MemoryStore()
    store.create_user("u1", b"wrapped", None)
    store.credit("u1", 1_000, "grant", "opening", T0)
    store._users["u1"].spends = _Unwalkable(store._users["u1"].spends)
    for n in range(5):
        store.deduct("u1", 100, T0 + n, ClaimPolicy(3_600.0, 300.0), _seal)
    store.credit("u1", 2_000, "topup", "pi_1", T0 + 10)
    store.deduct("u1", 50, T0 + 11, ClaimPolicy(3_600.0, 300.0), _seal)
    assert [
        (e.kind, e.delta, e.reference) for e in store.ledger("u1", kinds=("topup", "grant"))
    ] == [
        ("grant", 1_000, "opening"),
        ("topup", 2_000, "pi_1"),
    ]
    assert [e.entry_id for e in store.ledger("u1", kinds=("topup",))] == [7]
    assert store.ledger_sum("u1") == store.get_user("u1").balance == 2_450
    # Asked for, the usage entries come back merged with the credits in entry order.
    kept = store._users["u1"].spends
    store._users["u1"].spends = list(list.__iter__(kept))
    assert [(e.entry_id, e.kind, e.delta, e.balance_after) for e in store.ledger("u1")] == [
        (1, "grant", 1_000, 1_000), (2, "usage", -100, 900), (3, "usage", -100, 800),
        (4, "usage", -100, 700), (5, "usage", -100, 600), (6, "usage", -100, 500),
        (7, "topup", 2_000, 2_500), (8, "usage", -50, 2_450),
    ]  # fmt: skip


@pytest.mark.usefixtures("racy")
def test_tfa_guesses_from_threads_are_judged_one_at_a_time() -> None:
    """Twenty threads guessing wrong at once: exactly ``max_failures`` are judged wrong and the
    rest are locked, as two SQLite connections to one file take turns."""
    store = MemoryStore()
    store.create_user("u1", b"wrapped", None)
    policy = TfaPolicy(max_failures=2, failure_window=60.0, lockout=120.0)
    verdicts = _at_once(20, lambda n: store.tfa_guess("u1", None, T0, policy).guess)
    assert Counter(verdicts) == Counter({Guess.LOCKED: 18, Guess.WRONG: 2})
    assert store.tfa_failures_since("u1", 0) == [float(T0)] * 2


def test_close_drops_every_row_as_a_fresh_store_holds_none() -> None:
    """Closing empties every table (users with their ledgers, attempts and notices; credited
    references; processed events; dead letters; subscriptions; the entry counter), so a run's
    store lets go of its memory when the backend is closed, whoever still refers to it."""
    store = MemoryStore()
    store.create_user("u1", b"wrapped", None)
    store.credit("u1", 1_000, "grant", "opening", T0)
    store.deduct("u1", 100, T0 + 1, ClaimPolicy(3_600.0, 300.0), _seal)
    paid = AttemptOutcome("succeeded", credits=100, payment_intent_id="pi_1")
    notice = PendingNotice("topup_succeeded:u1:pi_1", "u1", "topup_succeeded", {"credits": "100"})
    store.settle_topup("u1", None, paid, T0 + 2, notice)
    store.mark_event_processed("evt_1", "payment_intent.succeeded", T0 + 3)
    store.dead_letter(DeadLetter("evt_2", "invoice.paid", "unknown user", b"{}", T0 + 4))
    store.save_subscription(
        SubscriptionRecord("sub_1", "u1", 10_000, "eur", "active", T0 + 30, False, T0 + 5)
    )
    fresh = {name: value for name, value in vars(MemoryStore()).items() if name != "_lock"}
    full = {name: value for name, value in vars(store).items() if name != "_lock"}
    assert all(full[name] != empty for name, empty in fresh.items())  # every table was written
    lock = store._lock
    store.close()
    assert {name: value for name, value in vars(store).items() if name != "_lock"} == fresh
    assert store._lock is lock
    assert store.user_ids() == []
