"""The SQLite store: one transaction a call, unique references, typed errors."""

from __future__ import annotations

import pytest

from sim.billing import (
    DuplicateUser,
    InsufficientCredits,
    SQLiteStore,
    StoreUnavailable,
    UnknownUser,
)
from sim.billing.store import AttemptOutcome, NewAttempt

T0 = 1_767_225_600.0


@pytest.fixture
def db() -> SQLiteStore:
    """A store with one user holding 1,000 credits."""
    store = SQLiteStore(":memory:")
    store.create_user("u1", b"wrapped", None, T0)
    store.credit("u1", 1_000, "grant", "opening:u1", T0)
    return store


def _claim(seq: int = 1, key: str = "auto-topup:u1:1") -> NewAttempt:
    return NewAttempt(seq, key, T0, b"token")


def test_credit_once_per_reference(db: SQLiteStore) -> None:
    """A reference (PaymentIntent, invoice) credits once; the second call changes nothing."""
    assert db.credit("u1", 10_000, "topup", "pi_1", T0)
    assert not db.credit("u1", 10_000, "topup", "pi_1", T0)
    assert db.get_user("u1").balance == 11_000
    assert [e.reference for e in db.ledger("u1")] == ["opening:u1", "pi_1"]


def test_balance_equals_ledger_sum(db: SQLiteStore) -> None:
    """Every change is a ledger entry, so the balance always equals the ledger's sum."""
    db.apply_deduction("u1", 300, T0, None)
    db.credit("u1", 1_000, "topup", "pi_1", T0)
    entries = db.ledger("u1")
    assert db.get_user("u1").balance == db.ledger_sum("u1") == sum(e.delta for e in entries)
    assert db.ledger_sum("u1") == 1_700
    assert [e.balance_after for e in entries] == [1_000, 700, 1_700]


def test_overdraft_is_refused_and_nothing_written(db: SQLiteStore) -> None:
    """The store itself never lets a balance go below zero, claim included."""
    with pytest.raises(InsufficientCredits) as caught:
        db.apply_deduction("u1", 1_001, T0, _claim())
    assert caught.value.balance == 1_000
    assert db.get_user("u1").topup_seq == 0
    assert db.attempts("u1") == []
    assert len(db.ledger("u1")) == 1


def test_deduction_and_claim_are_one_transaction(db: SQLiteStore) -> None:
    """If the claim cannot be recorded, the usage entry is rolled back with it."""
    db.apply_deduction("u1", 100, T0, _claim())
    with pytest.raises(StoreUnavailable):
        db.apply_deduction("u1", 100, T0, _claim(seq=2, key="auto-topup:u1:1"))  # duplicate key
    user = db.get_user("u1")
    assert (user.balance, user.topup_seq, len(db.ledger("u1"))) == (900, 1, 2)


def test_zero_credit_claim_writes_no_usage_entry(db: SQLiteStore) -> None:
    """A claim made by a refused request records the attempt and no ledger entry."""
    db.apply_deduction("u1", 0, T0, _claim())
    assert len(db.ledger("u1")) == 1
    assert [(a.seq, a.status) for a in db.attempts("u1")] == [(1, "claimed")]


def test_finish_attempt_records_outcome_and_state(db: SQLiteStore) -> None:
    """Finishing an attempt stores its result and the user's new auto top-up state."""
    db.apply_deduction("u1", 0, T0, _claim())
    outcome = AttemptOutcome(
        "declined", 10_000, "eur", 1_000, "pi_1", "lost_card", state="suspended",
        consecutive_failures=3,
    )  # fmt: skip
    db.finish_attempt("u1", 1, outcome, T0 + 5)
    attempt = db.attempts("u1")[0]
    assert (attempt.status, attempt.decline_code, attempt.finished_at) == (
        "declined", "lost_card", T0 + 5,
    )  # fmt: skip
    user = db.get_user("u1")
    assert (user.state, user.consecutive_failures) == ("suspended", 3)


def test_unknown_user_is_a_typed_error(db: SQLiteStore) -> None:
    """Reads and writes for an unknown id raise UnknownUser."""
    with pytest.raises(UnknownUser):
        db.get_user("nobody")
    with pytest.raises(UnknownUser):
        db.apply_deduction("nobody", 1, T0, None)
    with pytest.raises(UnknownUser):
        db.save_payment_method("nobody", "cus", b"x")


def test_duplicate_user_is_a_typed_error(db: SQLiteStore) -> None:
    """Creating an existing user raises DuplicateUser."""
    with pytest.raises(DuplicateUser):
        db.create_user("u1", b"other", None, T0)


def test_webhook_event_processed_once(db: SQLiteStore) -> None:
    """An event id is remembered: the second delivery is reported as seen."""
    assert db.mark_event_processed("evt_1", "payment_intent.succeeded", T0)
    assert not db.mark_event_processed("evt_1", "payment_intent.succeeded", T0)


def test_file_store_survives_reopen(tmp_path: object) -> None:
    """A file-backed store keeps balances and ledgers across connections."""
    path = str(tmp_path) + "/billing.sqlite"  # type: ignore[operator]
    first = SQLiteStore(path)
    first.create_user("u1", b"wrapped", None, T0)
    first.credit("u1", 42, "grant", "g1", T0)
    first.close()
    again = SQLiteStore(path)
    assert again.get_user("u1").balance == 42
    assert again.user_ids() == ["u1"]
