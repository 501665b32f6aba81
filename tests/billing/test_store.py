"""The store: one transaction a call, decisions where the truth is, fenced attempt writes.

Every test taking ``db`` runs against each Store implementation (SQLite, memory and, at
``POSTGRES_URL``, PostgreSQL), which is how the other stores are held to SQLite's semantics; the
tests of SQLite itself (files, WAL, two connections) build a ``SQLiteStore`` directly, and
PostgreSQL's own are in ``test_postgres_store.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.billing import DuplicateUser, SQLiteStore, Store, StoreUnavailable, Trigger, UnknownUser
from sim.billing.claims import ClaimPolicy, month_of
from sim.billing.settings import AutoTopupSettings
from sim.billing.sqlite_schema import SCHEMA
from sim.billing.store import (
    USAGE_KEY_SECONDS,
    AttemptOutcome,
    ChargeTerms,
    DeadLetter,
    PendingNotice,
    UsageRecord,
)
from sim.billing.twofactor import Guess, TfaPolicy, TfaVerdict

from .conftest import STORES

T0 = 1_767_225_600.0
POLICY = ClaimPolicy(cooldown_seconds=3_600.0, lease_seconds=300.0)
TERMS = ChargeTerms(10_000, "eur", 1_000, b"pm-token")
TFA = TfaPolicy(max_failures=2, failure_window=60.0, lockout=120.0)


def _seal(user_id: str, wrapped: bytes, at: float) -> bytes:
    return f"sealed:{user_id}:{at}".encode()


@pytest.fixture(params=sorted(STORES))
def db(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Each store in turn, with one user holding 1,000 credits, auto top-up on at a 500
    threshold."""
    with STORES[request.param]() as store:
        store.create_user("u1", b"wrapped", None)
        store.credit("u1", 1_000, "grant", "opening:u1", T0)
        store.save_settings("u1", AutoTopupSettings(True, 500, 10_000, "eur"))
        yield store


def _claim(db: Store, at: float = T0) -> tuple[int, int]:
    done = db.deduct("u1", 600, at, POLICY, _seal)
    assert done.trigger is Trigger.CLAIMED and done.attempt and done.lease
    return done.attempt, done.lease


def test_credit_once_per_reference(db: Store) -> None:
    """A reference (PaymentIntent, invoice) credits once; the second call changes nothing."""
    first = db.credit("u1", 10_000, "topup", "pi_1", T0)
    assert first is not None and first.balance == 11_000
    assert db.credit("u1", 10_000, "topup", "pi_1", T0) is None
    assert db.get_user("u1").balance == 11_000
    assert [e.reference for e in db.ledger("u1")] == ["opening:u1", "pi_1"]


def test_every_write_to_cached_fields_raises_the_version(db: Store) -> None:
    """Credits, deductions, claims, settings and card saves each return a newer snapshot."""
    versions = [db.snapshot("u1").version]
    versions.append(db.deduct("u1", 100, T0, POLICY, _seal).snapshot.version)
    versions.append(db.credit("u1", 5, "grant", "g", T0).version)  # type: ignore[union-attr]
    versions.append(db.save_settings("u1", AutoTopupSettings()).version)
    versions.append(db.save_payment_method("u1", b"cus", b"pm").version)
    assert versions == sorted(set(versions)) and db.snapshot("u1").version == versions[-1]


def test_save_customer_keeps_a_saved_one(db: Store) -> None:
    """A first purchase saves the customer; a saved one (or one saved with a card) is kept, and
    nothing cached changes. An unknown user is refused."""
    version = db.snapshot("u1").version
    db.save_customer("u1", b"cus-1")
    db.save_customer("u1", b"cus-2")
    user = db.get_user("u1")
    assert (user.encrypted_stripe_customer_id, user.encrypted_payment_method_id) == (b"cus-1", None)
    assert db.snapshot("u1").version == version
    db.save_payment_method("u1", b"cus-3", b"pm")
    db.save_customer("u1", b"cus-4")
    assert db.get_user("u1").encrypted_stripe_customer_id == b"cus-3"
    with pytest.raises(UnknownUser):
        db.save_customer("nobody", b"cus")


def test_balance_equals_ledger_sum(db: Store) -> None:
    """Every change is a ledger entry, so the balance always equals the ledger's sum."""
    db.deduct("u1", 300, T0, POLICY, _seal)
    db.credit("u1", 1_000, "topup", "pi_1", T0)
    entries = db.ledger("u1")
    assert db.get_user("u1").balance == db.ledger_sum("u1") == sum(e.delta for e in entries)
    assert [e.balance_after for e in entries] == [1_000, 700, 1_700]


def test_ledger_of_chosen_kinds(db: Store) -> None:
    """``kinds`` keeps the entries of those kinds, in order, whole; none chosen, none kept."""
    db.deduct("u1", 300, T0, POLICY, _seal)
    db.credit("u1", 1_000, "topup", "pi_1", T0)
    db.credit("u1", 2_000, "subscription", "in_1", T0 + 1)
    db.deduct("u1", 100, T0 + 2, POLICY, _seal)
    every = db.ledger("u1")
    assert [e.kind for e in every] == ["grant", "usage", "topup", "subscription", "usage"]
    paid = db.ledger("u1", kinds=("subscription", "topup"))
    assert paid == [e for e in every if e.kind in ("topup", "subscription")]
    assert [e.reference for e in db.ledger("u1", kinds={"usage"})] == [None, None]
    assert db.ledger("u1", kinds=()) == []
    assert db.ledger("nobody", kinds=("topup",)) == []


def test_refused_deduction_takes_nothing_but_may_claim(db: Store) -> None:
    """An unaffordable request writes no usage entry, yet a due top-up is still claimed."""
    db.deduct("u1", 600, T0, POLICY, _seal)  # 400 left: claims attempt 1
    db.finish_attempt("u1", 1, None, AttemptOutcome("skipped"), T0)
    done = db.deduct("u1", 401, T0 + 3_600, POLICY, _seal)
    assert (done.refused, done.balance, done.trigger, done.attempt) == (
        True, 400, Trigger.CLAIMED, 2,
    )  # fmt: skip
    assert [e.delta for e in db.ledger("u1")] == [1_000, -600]


def test_claim_records_attempt_lease_and_sealed_time(db: Store) -> None:
    """A claim writes the attempt, the user's seq, the open attempt, its lease and the sealed
    last-triggered time, with the deduction, in one transaction."""
    seq, lease = _claim(db)
    user = db.get_user("u1")
    assert (seq, lease, user.topup_seq, user.open_attempt) == (1, 1, 1, 1)
    assert user.lease_until == T0 + 300 and user.encrypted_last_triggered == b"sealed:u1:" + (
        repr(T0).encode()
    )
    assert [(a.seq, a.status, a.idempotency_key) for a in db.attempts("u1")] == [
        (1, "claimed", "auto-topup:u1:1")
    ]


def test_deduction_and_claim_are_one_transaction(db: Store) -> None:
    """If the claim cannot be written, the usage entry is rolled back with it."""

    def broken_seal(user_id: str, wrapped: bytes, at: float) -> bytes:
        raise StoreUnavailable("the vault is down")

    with pytest.raises(StoreUnavailable):
        db.deduct("u1", 600, T0, POLICY, broken_seal)
    user = db.get_user("u1")
    assert (user.balance, user.topup_seq, len(db.ledger("u1")), db.attempts("u1")) == (
        1_000, 0, 1, [],
    )  # fmt: skip


def test_open_attempt_blocks_claims_past_the_cooldown(db: Store) -> None:
    """While an attempt is open and leased, later crossings wait, however late they come."""
    _claim(db)
    db.take_over("u1", 1, T0, T0 + 10 * 3_600, force=True)  # a long-held lease
    later = db.deduct("u1", 1, T0 + 2 * 3_600, POLICY, _seal)
    assert (later.trigger, later.attempt) == (Trigger.PENDING, None)


def test_expired_lease_is_taken_over_by_the_next_deduction(db: Store) -> None:
    """Past its lease the open attempt is recovered: same attempt, a new fencing token."""
    _claim(db)
    done = db.deduct("u1", 1, T0 + 300, POLICY, _seal)
    assert (done.trigger, done.attempt, done.lease) == (Trigger.RECOVER, 1, 2)
    assert db.get_user("u1").lease_until == T0 + 600


def test_take_over_waits_for_the_lease_unless_forced(db: Store) -> None:
    """A live lease is not taken (``None``); an ended one or a forced takeover grows the token."""
    _claim(db)
    assert db.take_over("u1", 1, T0 + 299, T0 + 599, force=False) is None
    assert db.take_over("u1", 1, T0 + 300, T0 + 600, force=False) == 2
    assert db.take_over("u1", 1, T0 + 301, T0 + 601, force=True) == 3
    assert db.take_over("u1", 2, T0 + 999, T0 + 999, force=True) is None  # not the open one


def test_start_charge_is_fenced_and_first_terms_stick(db: Store) -> None:
    """Only the lease holder starts the charge; a re-run sends the terms fixed the first time."""
    seq, lease = _claim(db)
    assert db.start_charge("u1", seq, lease + 1, TERMS, T0 + 300) is None
    assert db.start_charge("u1", seq, lease, TERMS, T0 + 300) == TERMS
    other = ChargeTerms(21_000, "usd", 3_000, b"other")
    assert db.start_charge("u1", seq, lease, other, T0 + 300) == TERMS
    assert db.attempt("u1", seq).status == "charging"  # type: ignore[union-attr]


def test_hold_lease_extends_and_moves_to_unknown(db: Store) -> None:
    """A back-off holds the lease; out of tries the attempt becomes ``unknown``, still open."""
    seq, lease = _claim(db)
    db.start_charge("u1", seq, lease, TERMS, T0 + 300)
    assert not db.hold_lease("u1", seq, lease + 1, T0 + 900, "unknown", 2)
    assert db.hold_lease("u1", seq, lease, T0 + 900, "unknown", 2)
    attempt, user = db.attempt("u1", seq), db.get_user("u1")
    assert (attempt.status, attempt.retries) == ("unknown", 2)  # type: ignore[union-attr]
    assert (user.open_attempt, user.lease_until) == (seq, T0 + 900)


def test_finish_attempt_once_and_only_by_the_lease_holder(db: Store) -> None:
    """A stale worker's outcome is refused; the holder's applies once, with the user's state."""
    seq, lease = _claim(db)
    outcome = AttemptOutcome(
        "declined", 10_000, "eur", 1_000, "pi_1", "lost_card", state="suspended",
        consecutive_failures=3,
    )  # fmt: skip
    assert db.finish_attempt("u1", seq, lease - 1, outcome, T0 + 5) is None
    snapshot = db.finish_attempt("u1", seq, lease, outcome, T0 + 5)
    assert snapshot is not None and snapshot.open_seq is None and snapshot.state == "suspended"
    assert db.finish_attempt("u1", seq, lease, outcome, T0 + 6) is None
    attempt, user = db.attempt("u1", seq), db.get_user("u1")
    assert (attempt.status, attempt.decline_code, attempt.finished_at) == (  # type: ignore[union-attr]
        "declined", "lost_card", T0 + 5,
    )  # fmt: skip
    assert (user.state, user.consecutive_failures, user.open_attempt) == ("suspended", 3, None)


def _paid(pi: str = "pi_1") -> AttemptOutcome:
    return AttemptOutcome("succeeded", 10_000, "eur", 1_000, pi)


def test_settle_credits_and_closes_the_open_attempt_at_once(db: Store) -> None:
    """The credit and the attempt's close are one transaction; the failure streak ends."""
    seq, lease = _claim(db)
    db.finish_attempt("u1", seq, lease, AttemptOutcome("skipped", consecutive_failures=2), T0)
    seq, _ = _claim(db, T0 + 3_600)
    settled = db.settle_topup("u1", seq, _paid(), T0 + 3_601)
    assert (settled.credited, settled.closed, settled.snapshot.open_seq) == (True, True, None)
    user = db.get_user("u1")
    assert (user.balance, user.consecutive_failures) == (400 + 10_000, 0)  # 2nd claim refused
    again = db.settle_topup("u1", seq, _paid(), T0 + 3_602)
    assert (again.credited, again.closed) == (False, False)


def test_settle_corrects_a_closed_attempt_without_touching_the_user(db: Store) -> None:
    """Money moved for an attempt recorded otherwise: the record says succeeded, and the
    user's present state (paused by a newer attempt, say) stays as it is."""
    seq, lease = _claim(db)
    db.finish_attempt("u1", seq, lease, AttemptOutcome("failed", state="paused",
                                                      consecutive_failures=1), T0)  # fmt: skip
    settled = db.settle_topup("u1", seq, _paid(), T0 + 10)
    assert (settled.credited, settled.closed) == (True, False)
    user, attempt = db.get_user("u1"), db.attempt("u1", seq)
    assert (user.state, user.consecutive_failures) == ("paused", 1)
    assert (attempt.status, attempt.payment_intent_id) == ("succeeded", "pi_1")  # type: ignore[union-attr]


def test_unknown_user_is_a_typed_error(db: Store) -> None:
    """Reads and writes for an unknown id raise UnknownUser."""
    with pytest.raises(UnknownUser):
        db.get_user("nobody")
    with pytest.raises(UnknownUser):
        db.snapshot("nobody")
    with pytest.raises(UnknownUser):
        db.deduct("nobody", 1, T0, POLICY, _seal)
    with pytest.raises(UnknownUser):
        db.credit("nobody", 1, "grant", "g-nobody", T0)
    with pytest.raises(UnknownUser):
        db.save_payment_method("nobody", b"cus", b"x")
    with pytest.raises(UnknownUser):
        db.save_settings("nobody", AutoTopupSettings())
    with pytest.raises(UnknownUser):
        db.save_tfa_secret("nobody", b"x")
    with pytest.raises(UnknownUser):
        db.tfa_guess("nobody", None, T0, TFA)


def test_duplicate_user_is_a_typed_error(db: Store) -> None:
    """Creating an existing user raises DuplicateUser."""
    with pytest.raises(DuplicateUser):
        db.create_user("u1", b"other", None)


def test_webhook_event_processed_once(db: Store) -> None:
    """An event id is remembered: the second delivery is reported as seen."""
    assert not db.event_processed("evt_1")
    assert db.mark_event_processed("evt_1", "payment_intent.succeeded", T0)
    assert not db.mark_event_processed("evt_1", "payment_intent.succeeded", T0)
    assert db.event_processed("evt_1")


# SQLite only: files and reopening them are SQLite's.
def test_file_store_survives_reopen(tmp_path: object) -> None:
    """A file-backed store keeps balances and ledgers across connections."""
    path = str(tmp_path) + "/billing.sqlite"  # type: ignore[operator]
    first = SQLiteStore(path)
    first.create_user("u1", b"wrapped", None)
    first.credit("u1", 42, "grant", "g1", T0)
    first.close()
    again = SQLiteStore(path)
    assert again.get_user("u1").balance == 42
    assert again.user_ids() == ["u1"]


def test_missing_subscription_reads_as_none(db: Store) -> None:
    """An unknown subscription id is ``None``, not an error."""
    assert db.subscription("sub_missing") is None


def test_unknown_user_error_carries_the_id(db: Store) -> None:
    """UnknownUser names the id that was asked for, so a caller can report it."""
    calls = [
        lambda: db.get_user("nobody"),
        lambda: db.snapshot("nobody"),
        lambda: db.deduct("nobody", 1, T0, POLICY, _seal),
        lambda: db.deduct("nobody", 0, T0, POLICY, _seal),
        lambda: db.credit("nobody", 1, "grant", "g-nobody", T0),
        lambda: db.save_payment_method("nobody", b"cus", b"x"),
        lambda: db.save_settings("nobody", AutoTopupSettings()),
        lambda: db.save_tfa_secret("nobody", b"x"),
        lambda: db.tfa_guess("nobody", 57, T0, TFA),
    ]
    for call in calls:
        with pytest.raises(UnknownUser) as raised:
            call()
        assert raised.value.user_id == "nobody"


def test_outbox_lists_unsent_notices_oldest_first(db: Store) -> None:
    """Queued notices come back oldest first with their detail; a sent one drops out, and
    queueing the same notice id again adds nothing."""
    seq, lease = _claim(db)
    first = PendingNotice("topup_declined:u1:1", "u1", "topup_declined", {"attempt": "1"})
    second = PendingNotice("topup_suspended:u1:1", "u1", "topup_suspended", {"failures": "3"})
    db.finish_attempt("u1", seq, lease, AttemptOutcome("declined"), T0, [first, second])
    db.settle_topup("u1", None, _paid(), T0 + 1, first)  # same id: ignored
    assert db.pending_notices("u1") == [first, second]
    db.mark_notice_sent(first.notice_id, T0 + 2)
    assert db.pending_notices("u1") == [second]


def test_settle_stamps_the_attempts_finish_time(db: Store) -> None:
    """Settling an open attempt records when it finished."""
    seq, _ = _claim(db)
    db.settle_topup("u1", seq, _paid(), T0 + 42)
    assert db.attempt("u1", seq).finished_at == T0 + 42  # type: ignore[union-attr]


def test_settle_of_an_unrecorded_attempt_still_credits(db: Store) -> None:
    """A payment naming an attempt the store has no record of is credited, and nothing closes."""
    settled = db.settle_topup("u1", 99, _paid(), T0)
    assert (settled.credited, settled.closed, settled.snapshot.balance) == (True, False, 11_000)
    assert db.attempts("u1") == []


def test_settle_for_an_unknown_user_is_a_typed_error(db: Store) -> None:
    """Settling for an unknown id raises UnknownUser and writes nothing, whether its
    PaymentIntent is new or was credited already (to another user)."""
    with pytest.raises(UnknownUser):
        db.settle_topup("nobody", None, _paid("pi_new"), T0)
    db.settle_topup("u1", None, _paid("pi_1"), T0)
    with pytest.raises(UnknownUser):
        db.settle_topup("nobody", 1, _paid("pi_1"), T0)
    assert db.user_ids() == ["u1"] and db.get_user("u1").balance == 11_000


def test_succeeded_attempt_keeps_its_first_payment(db: Store) -> None:
    """A second intent paid under an attempt already succeeded is credited (money moved), but
    the attempt's record keeps the intent it succeeded with."""
    seq, _ = _claim(db)
    db.settle_topup("u1", seq, _paid("pi_1"), T0 + 1)
    settled = db.settle_topup("u1", seq, _paid("pi_2"), T0 + 2)
    assert (settled.credited, settled.closed) == (True, False)
    attempt = db.attempt("u1", seq)
    assert (attempt.payment_intent_id, attempt.finished_at) == ("pi_1", T0 + 1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "outcome",
    [AttemptOutcome("succeeded", None, "eur", 1_000, "pi_1"), AttemptOutcome("succeeded", 10_000)],
)
def test_settle_refuses_an_outcome_without_credits_or_intent(
    db: Store, outcome: AttemptOutcome
) -> None:
    """Settling needs both the credits and the PaymentIntent: without either it fails before
    writing anything."""
    with pytest.raises(AssertionError):
        db.settle_topup("u1", None, outcome, T0)
    assert db.get_user("u1").balance == 1_000


def test_missing_attempt_reads_as_none(db: Store) -> None:
    """An attempt number never claimed reads as ``None``, not an error."""
    _claim(db)
    assert db.attempt("u1", 2) is None and db.attempt("nobody", 1) is None


def test_snapshot_shows_the_attempt_in_flight(db: Store) -> None:
    """The snapshot a claim returns, and the store's own, name the open attempt (the cache
    shows it); settling it clears it."""
    seq, _ = _claim(db)
    assert db.deduct("u1", 1, T0, POLICY, _seal).snapshot.open_seq == seq
    assert db.snapshot("u1").open_seq == seq
    assert db.settle_topup("u1", seq, _paid(), T0).snapshot.open_seq is None


def test_duplicate_user_error_carries_the_id(db: Store) -> None:
    """DuplicateUser names the id that was taken."""
    with pytest.raises(DuplicateUser) as raised:
        db.create_user("u1", b"other", None)
    assert raised.value.user_id == "u1"


# SQLite only: WAL mode and another process's write lock are SQLite's.
def test_file_store_waits_for_another_writer(tmp_path: Path) -> None:
    """A file store is shared in WAL mode and waits for another process's write lock (up to its
    busy timeout) instead of failing at once; it keeps its path."""
    path = str(tmp_path / "billing.sqlite")
    store = SQLiteStore(path)
    assert store.path == path
    store.create_user("u1", b"wrapped", None)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.execute("BEGIN IMMEDIATE")  # another worker holds the write lock ...
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()  # ... for 0.3 s
    try:
        assert store.credit("u1", 5, "grant", "g1", T0) is not None
    finally:
        release.join()
        other.close()
    assert store.get_user("u1").balance == 5


def test_user_record_holds_what_was_stored(db: Store) -> None:
    """The user record carries the encrypted e-mail, the last accepted TOTP step and the
    version of the cached fields, as stored."""
    db.create_user("u2", b"wrapped", b"sealed-email")
    db.tfa_guess("u2", 57, T0, TFA)
    user = db.get_user("u2")
    assert (user.encrypted_email, user.tfa_last_step) == (b"sealed-email", 57)
    assert db.get_user("u1").version == db.snapshot("u1").version == 2  # credit, settings


# SQLite only: the memory store has no file to write.
def test_default_store_is_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path the store lives in memory: it writes no file."""
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore()
    store.create_user("u1", b"wrapped", None)
    store.close()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- two-factor guesses


def test_tfa_guess_records_what_it_decided(db: Store) -> None:
    """A wrong code is recorded as a failure and an accepted step as the last one; a replay
    and a guess while locked record nothing."""
    assert db.tfa_guess("u1", 57, T0, TFA) == TfaVerdict(Guess.ACCEPTED)
    assert db.tfa_guess("u1", 57, T0 + 1, TFA) == TfaVerdict(Guess.REPLAYED)
    assert db.tfa_guess("u1", 56, T0 + 2, TFA) == TfaVerdict(Guess.REPLAYED)
    assert db.tfa_failures_since("u1", 0) == []
    assert db.tfa_guess("u1", None, T0 + 3, TFA) == TfaVerdict(Guess.WRONG)
    assert db.tfa_guess("u1", None, T0 + 4, TFA) == TfaVerdict(Guess.WRONG)
    assert db.tfa_guess("u1", 58, T0 + 5, TFA) == TfaVerdict(Guess.LOCKED, T0 + 4 + 120)
    assert db.tfa_guess("u1", None, T0 + 6, TFA) == TfaVerdict(Guess.LOCKED, T0 + 4 + 120)
    assert db.tfa_failures_since("u1", 0) == [T0 + 3, T0 + 4]
    assert db.get_user("u1").tfa_last_step == 57
    assert db.tfa_guess("u1", 58, T0 + 4 + 120, TFA) == TfaVerdict(Guess.ACCEPTED)
    assert db.get_user("u1").tfa_last_step == 58


def test_tfa_guess_reads_only_the_failures_that_can_matter(db: Store) -> None:
    """Failures older than window + lockout are left out: they cannot lock any more."""
    db.tfa_guess("u1", None, T0, TFA)
    db.tfa_guess("u1", None, T0 + 60, TFA)  # locks until T0 + 180
    assert db.tfa_guess("u1", 1, T0 + 179, TFA).guess is Guess.LOCKED
    assert db.tfa_guess("u1", 1, T0 + 180, TFA).guess is Guess.ACCEPTED


def test_tfa_guess_reads_a_failure_just_inside_what_can_matter(db: Store) -> None:
    """A lock's first failure, a hair after the oldest time that can matter, is still read:
    the lock holds to its very end."""
    db.tfa_guess("u1", None, T0, TFA)
    db.tfa_guess("u1", None, T0 + 60, TFA)  # exactly a window apart: locks until T0 + 180
    assert db.tfa_guess("u1", 1, T0 + 179.999, TFA) == TfaVerdict(Guess.LOCKED, T0 + 180)


def test_tfa_secret_change_forgets_the_accepted_step(db: Store) -> None:
    """A new secret starts a new sequence of steps: its first code is not a replay."""
    db.tfa_guess("u1", 57, T0, TFA)
    db.save_tfa_secret("u1", b"new-secret")
    assert db.tfa_guess("u1", 57, T0, TFA).guess is Guess.ACCEPTED


# SQLite only: two connections to one file (test_memory_store.py has the threads' version).
def test_tfa_guesses_from_two_connections_are_judged_one_at_a_time(tmp_path: Path) -> None:
    """Two processes' connections to one file, guessing wrong at once: the write lock makes them
    take turns, so exactly ``max_failures`` are judged wrong and the rest are locked."""
    path = str(tmp_path / "billing.sqlite")
    stores = [SQLiteStore(path), SQLiteStore(path)]
    stores[0].create_user("u1", b"wrapped", None)
    barrier = threading.Barrier(20)
    verdicts: list[Guess] = []

    def guess(store: SQLiteStore) -> None:
        barrier.wait()
        verdicts.append(store.tfa_guess("u1", None, T0, TFA).guess)

    threads = [threading.Thread(target=guess, args=(stores[n % 2],)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert Counter(verdicts) == Counter({Guess.LOCKED: 18, Guess.WRONG: 2})


# ---------------------------------------------------------------------- zero credits, outbox


def test_zero_credit_deduction_only_decides(db: Store) -> None:
    """A deduction of 0 credits (settings just changed) takes nothing, is not refused and writes
    no ledger entry or version; it claims a top-up if one is due under the new settings."""
    before = db.snapshot("u1")
    done = db.deduct("u1", 0, T0, POLICY, _seal)
    assert (done.refused, done.balance, done.trigger, done.attempt, done.lease) == (
        False, 1_000, Trigger.NONE, None, None,
    )  # fmt: skip
    assert done.snapshot == before == db.snapshot("u1")
    db.save_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    done = db.deduct("u1", 0, T0, POLICY, _seal)
    assert (done.refused, done.balance, done.trigger, done.attempt) == (
        False, 1_000, Trigger.CLAIMED, 1,
    )  # fmt: skip
    assert [e.delta for e in db.ledger("u1")] == [1_000]


def test_settlement_that_credits_nothing_queues_no_notice(db: Store) -> None:
    """Only the settlement that credits queues its notice: a repeat of a credited payment,
    carrying a notice of its own, leaves the outbox as it was."""
    first = PendingNotice("topup_succeeded:u1:pi_1", "u1", "topup_succeeded", {"n": "1"})
    again = PendingNotice("topup_succeeded:u1:again", "u1", "topup_succeeded", {"n": "2"})
    assert db.settle_topup("u1", None, _paid(), T0, first).credited
    assert not db.settle_topup("u1", None, _paid(), T0 + 1, again).credited
    assert db.pending_notices("u1") == [first]


def test_dead_letters_lists_the_newest_hundred_by_default(db: Store) -> None:
    """Without a limit, the dead letters listed are the newest 100, newest first: the oldest
    of 101 is left out."""
    for n in range(101):
        letter = DeadLetter(f"evt_{n:03}", "invoice.paid", "unknown user", b"{}", T0 + n)
        assert db.dead_letter(letter)
    listed = db.dead_letters()
    assert [letter.event_id for letter in listed] == [f"evt_{n:03}" for n in range(100, 0, -1)]


# ---------------------------------------------------------------------- the monthly limit

#: No cooldown, so that claims follow one another as fast as attempts settle.
NO_COOLDOWN = ClaimPolicy(cooldown_seconds=0.0, lease_seconds=300.0)
FEB = 1_769_904_000.0  # 2026-02-01T00:00:00Z: the limit's first reset after T0


def _limited(db: Store, limit: int | None) -> None:
    db.save_settings("u1", AutoTopupSettings(True, 500, 10_000, "eur", monthly_limit=limit))


def _decide(db: Store, at: float, credits: int = 0) -> tuple[Trigger, int | None]:
    done = db.deduct("u1", credits, at, NO_COOLDOWN, _seal)
    return done.trigger, done.attempt


def _end(db: Store, status: str, at: float) -> None:
    """End the open attempt with ``status`` (``succeeded``: as the charge's settlement does)."""
    user = db.get_user("u1")
    assert user.open_attempt is not None
    outcome = AttemptOutcome(status, 10_000) if status == "succeeded" else AttemptOutcome(status)
    assert db.finish_attempt("u1", user.open_attempt, user.lease, outcome, at) is not None


def test_claim_reserves_the_amount_of_the_settings(db: Store) -> None:
    """A claim records the credits it reserves: what the charge then uses and the limit counts."""
    _claim(db)
    assert [a.claimed_credits for a in db.attempts("u1")] == [10_000]


def test_monthly_limit_reached_claims_nothing_and_queues_one_notice(db: Store) -> None:
    """Two top-ups of 10,000 fit a 20,000 limit; the third crossing is held: no attempt, no
    lease, the trigger ``limited`` and one notice in the outbox, returned once (by the call that
    queued it), however many requests the limit holds that month."""
    _limited(db, 20_000)
    assert db.auto_topup_credits_in("u1", month_of(T0)) == 0
    assert _decide(db, T0, 600) == (Trigger.CLAIMED, 1)
    assert db.auto_topup_credits_in("u1", month_of(T0)) == 10_000  # reserved by the claim
    _end(db, "succeeded", T0 + 1)
    assert _decide(db, T0 + 2) == (Trigger.CLAIMED, 2)
    _end(db, "succeeded", T0 + 3)
    assert db.auto_topup_credits_in("u1", month_of(T0)) == 20_000
    assert db.auto_topup_credits_in("nobody", month_of(T0)) == 0
    held = db.deduct("u1", 1, T0 + 4, NO_COOLDOWN, _seal)
    assert (held.refused, held.balance, held.trigger, held.attempt, held.lease) == (
        False, 399, Trigger.LIMITED, None, None,
    )  # fmt: skip
    expected = PendingNotice(
        "topup_limit_reached:u1:2026-01", "u1", "topup_limit_reached",
        {"month": "2026-01", "monthly_limit": "20000"},
    )  # fmt: skip
    assert held.notice == expected
    user = db.get_user("u1")
    assert (user.topup_seq, user.open_attempt, len(db.attempts("u1"))) == (2, None, 2)
    again = db.deduct("u1", 400, T0 + 5, NO_COOLDOWN, _seal)  # refused: still held, no notice
    assert (again.refused, again.trigger, again.notice) == (True, Trigger.LIMITED, None)
    db.mark_notice_sent(expected.notice_id, T0 + 6)
    assert db.deduct("u1", 1, T0 + 7, NO_COOLDOWN, _seal).notice is None  # sent: still once
    assert db.pending_notices("u1") == []


def test_monthly_limit_resumes_at_the_month_reset(db: Store) -> None:
    """The limit counts the calendar month (UTC): at 00:00 on the first, claims resume, and a
    hold in the new month tells the user again."""
    _limited(db, 10_000)
    _decide(db, T0, 600)
    _end(db, "succeeded", T0 + 1)
    assert _decide(db, FEB - 0.001) == (Trigger.LIMITED, None)
    assert _decide(db, FEB) == (Trigger.CLAIMED, 2)
    _end(db, "succeeded", FEB + 1)
    assert db.auto_topup_credits_in("u1", month_of(FEB - 1)) == 10_000  # each month its own
    assert db.auto_topup_credits_in("u1", month_of(FEB)) == 10_000
    held = db.deduct("u1", 0, FEB + 2, NO_COOLDOWN, _seal)
    assert held.trigger is Trigger.LIMITED
    assert held.notice is not None and held.notice.notice_id == "topup_limit_reached:u1:2026-02"
    assert [n.detail["month"] for n in db.pending_notices("u1")] == ["2026-01", "2026-02"]


@pytest.mark.parametrize(
    "status", ["declined", "requires_action", "failed", "no_payment_method", "skipped"]
)
def test_attempt_that_moved_no_money_does_not_use_the_limit_up(db: Store, status: str) -> None:
    """An attempt that ended without a charge gives its credits back: the next crossing claims
    under a limit of one top-up; once one succeeds, the limit holds."""
    _limited(db, 10_000)
    _decide(db, T0, 600)
    _end(db, status, T0 + 1)
    assert db.auto_topup_credits_in("u1", month_of(T0)) == 0
    assert _decide(db, T0 + 2) == (Trigger.CLAIMED, 2)
    _end(db, "succeeded", T0 + 3)
    assert _decide(db, T0 + 4) == (Trigger.LIMITED, None)


def test_paid_correction_of_a_failed_attempt_counts(db: Store) -> None:
    """An attempt recorded failed that Stripe later reports paid counts from then on."""
    _limited(db, 20_000)
    _decide(db, T0, 600)
    _end(db, "failed", T0 + 1)
    assert db.settle_topup("u1", 1, _paid(), T0 + 2).credited
    db.deduct("u1", 10_000, T0 + 3, NO_COOLDOWN, _seal)  # back to 400: claims attempt 2
    _end(db, "succeeded", T0 + 4)
    assert _decide(db, T0 + 5) == (Trigger.LIMITED, None)


def test_other_purchases_do_not_count_towards_the_limit(db: Store) -> None:
    """Only auto top-up attempts count: credits bought by hand, granted or paid by a
    subscription, even under a ``topup`` ledger kind, leave the limit as it was."""
    _limited(db, 10_000)
    db.credit("u1", 54_000, "topup", "pi_manual", T0)
    db.credit("u1", 21_000, "subscription", "in_1", T0)
    db.credit("u1", 1_000, "grant", "support:1", T0)
    assert _decide(db, T0 + 1, 76_600) == (Trigger.CLAIMED, 1)


def test_limit_change_applies_to_the_next_claim(db: Store) -> None:
    """Lowered under what the month used, the limit holds at once; raised, claims resume; and
    removed, nothing is counted."""
    _limited(db, 20_000)
    _decide(db, T0, 600)
    _end(db, "succeeded", T0 + 1)
    _limited(db, 10_000)
    assert _decide(db, T0 + 2) == (Trigger.LIMITED, None)
    _limited(db, 30_000)
    assert _decide(db, T0 + 3) == (Trigger.CLAIMED, 2)
    _end(db, "succeeded", T0 + 4)
    _limited(db, None)
    assert _decide(db, T0 + 5) == (Trigger.CLAIMED, 3)
    assert db.get_user("u1").settings.monthly_limit is None


def test_concurrent_deductions_never_claim_past_the_limit(db: Store) -> None:
    """Eight workers deduct and settle as fast as they can: every decision is made in the
    deduction's transaction, so the month's claims stop at the limit exactly."""
    _limited(db, 50_000)
    db.credit("u1", -600, "grant", "to-400", T0)  # under the threshold from the start
    lock = threading.Lock()
    claimed: list[int] = []

    def worker() -> None:
        for _ in range(40):
            done = db.deduct("u1", 0, T0 + 1, NO_COOLDOWN, _seal)
            if done.attempt is not None and done.lease is not None:
                with lock:
                    claimed.append(done.attempt)
                outcome = AttemptOutcome("succeeded", 10_000)
                db.finish_attempt("u1", done.attempt, done.lease, outcome, T0 + 1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [1, 2, 3, 4, 5]
    assert [a.status for a in db.attempts("u1")] == ["succeeded"] * 5
    assert db.deduct("u1", 0, T0 + 2, NO_COOLDOWN, _seal).trigger is Trigger.LIMITED


# SQLite only: a file from before the limit is the SQLite store's.
def test_file_from_before_the_monthly_limit_is_migrated(tmp_path: Path) -> None:
    """A store file created before the limit's columns gets them when it is opened: its users
    have no limit, its attempts no reserved credits (their charge's credits count), and the
    limit then works on it."""
    path = str(tmp_path / "billing.sqlite")
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        SCHEMA.replace("    auto_topup_monthly_limit INTEGER,\n", "").replace(
            "    claimed_credits INTEGER,\n", ""
        )
    )
    old.execute("INSERT INTO users (user_id, wrapped_key, balance) VALUES ('u1', x'00', 400)")
    old.execute(
        "INSERT INTO topup_attempts (user_id, seq, idempotency_key, claimed_at, status, credits)"
        " VALUES ('u1', 1, 'auto-topup:u1:1', ?, 'succeeded', 10000)",
        (T0,),
    )
    old.execute("UPDATE users SET auto_topup_seq = 1 WHERE user_id = 'u1'")
    old.close()
    store = SQLiteStore(path)
    assert store.get_user("u1").settings.monthly_limit is None
    assert store.attempt("u1", 1).claimed_credits is None  # type: ignore[union-attr]
    _limited(store, 10_000)
    assert _decide(store, T0 + 1) == (Trigger.LIMITED, None)
    store.close()
    reopened = SQLiteStore(path)  # opening again adds nothing twice
    assert reopened.get_user("u1").settings.monthly_limit == 10_000
    reopened.close()


# ---------------------------------------------------------------------- spends kept under a key


def test_a_spend_under_a_key_is_taken_once_and_replayed(db: Store) -> None:
    """The first spend under a key takes, decides and claims; the same key again answers the
    kept record (its balance and trigger) and takes, decides and writes nothing."""
    first = db.deduct("u1", 600, T0, POLICY, _seal, "req-1")
    assert (first.refused, first.balance, first.trigger, first.replay) == (
        False, 400, Trigger.CLAIMED, None,
    )  # fmt: skip
    ledger, version = db.ledger("u1"), db.snapshot("u1").version
    again = db.deduct("u1", 600, T0 + 5, POLICY, _seal, "req-1")
    assert again.replay == UsageRecord(600, 400, Trigger.CLAIMED, T0)
    assert (again.refused, again.balance, again.trigger, again.attempt) == (
        False, 400, Trigger.NONE, None,
    )  # fmt: skip
    assert db.ledger("u1") == ledger and db.snapshot("u1").version == version
    assert len(db.attempts("u1")) == 1


def test_a_refused_spend_is_not_kept_and_keys_are_per_user(db: Store) -> None:
    refused = db.deduct("u1", 5_000, T0, POLICY, _seal, "big")
    assert refused.refused and refused.replay is None
    db.credit("u1", 10_000, "grant", "support-1", T0 + 1)
    taken = db.deduct("u1", 5_000, T0 + 2, POLICY, _seal, "big")
    assert (taken.refused, taken.balance, taken.replay) == (False, 6_000, None)
    db.create_user("u2", b"key-2", None)
    db.credit("u2", 100, "grant", "support-2", T0)
    other = db.deduct("u2", 50, T0 + 3, POLICY, _seal, "big")
    assert (other.balance, other.replay) == (50, None)


def test_keeping_a_new_key_forgets_only_the_expired_ones(db: Store) -> None:
    """Keeping a spend under a new key drops the keys past their window, not the others: a
    retry of an earlier request inside its window still replays after later keyed spends."""
    db.credit("u1", 10_000, "grant", "support-1", T0)
    db.deduct("u1", 100, T0, POLICY, _seal, "old")
    db.deduct("u1", 100, T0 + 10, POLICY, _seal, "first")
    db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS, POLICY, _seal, "second")  # "old" expires
    retried = db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS + 5, POLICY, _seal, "first")
    assert retried.replay == UsageRecord(100, 10_800, Trigger.NONE, T0 + 10)
    assert retried.balance == 10_800
    again = db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS + 6, POLICY, _seal, "old")
    assert (again.replay, again.balance) == (None, 10_600)


def test_a_kept_spend_expires_after_its_window(db: Store) -> None:
    db.deduct("u1", 100, T0, POLICY, _seal, "k")
    inside = db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS - 1, POLICY, _seal, "k")
    assert inside.replay is not None and inside.balance == 900
    after = db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS, POLICY, _seal, "k")
    assert (after.replay, after.balance) == (None, 800)
    kept = db.deduct("u1", 100, T0 + USAGE_KEY_SECONDS + 1, POLICY, _seal, "k")
    assert kept.replay == UsageRecord(100, 800, Trigger.NONE, T0 + USAGE_KEY_SECONDS)
