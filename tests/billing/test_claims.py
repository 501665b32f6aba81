"""The claim decision: one table of cases, as the store applies it inside the deduction."""

from __future__ import annotations

import pytest

from sim.billing.claims import ClaimPolicy, Trigger, UserTopupState, decide, idempotency_key

T0 = 1_767_225_600.0
POLICY = ClaimPolicy(cooldown_seconds=3_600.0, lease_seconds=300.0)


def _state(**overrides: object) -> UserTopupState:
    fields: dict[str, object] = {
        "balance": 900, "enabled": True, "threshold": 1_000, "state": "active",
        "open_seq": None, "lease_until": None,
    }  # fmt: skip
    fields.update(overrides)
    return UserTopupState(**fields)  # type: ignore[arg-type]


def _never() -> float | None:
    raise AssertionError("the last claim time was read where it cannot matter")


@pytest.mark.parametrize(
    ("overrides", "last", "expected"),
    [
        ({"balance": 1_001}, None, Trigger.NONE),
        ({"balance": 1_000}, None, Trigger.CLAIMED),  # at the threshold counts
        ({"enabled": False}, None, Trigger.NONE),
        ({"state": "paused"}, None, Trigger.HELD),
        ({"state": "suspended"}, None, Trigger.HELD),
        ({}, T0 - 3_599.0, Trigger.COOLING),
        ({}, T0 - 3_600.0, Trigger.CLAIMED),  # the cooldown is over at exactly its length
        ({"open_seq": 2, "lease_until": T0 + 1}, None, Trigger.PENDING),
        ({"open_seq": 2, "lease_until": T0}, None, Trigger.RECOVER),  # the lease ends at until
        ({"open_seq": 2, "lease_until": None}, None, Trigger.RECOVER),
        ({"open_seq": 2, "lease_until": T0 + 1, "balance": 5_000}, None, Trigger.NONE),
        ({"open_seq": 2, "lease_until": T0 - 1, "balance": 5_000}, None, Trigger.RECOVER),
        ({"open_seq": 2, "lease_until": T0 - 1, "state": "paused"}, None, Trigger.RECOVER),
        ({"open_seq": 2, "lease_until": T0 + 1, "enabled": False}, None, Trigger.NONE),
    ],
)
def test_decision_table(
    overrides: dict[str, object], last: float | None, expected: Trigger
) -> None:
    """Each row: what the user looks like after the credits were taken, and the trigger."""
    assert decide(_state(**overrides), T0, POLICY, lambda: last) is expected


@pytest.mark.parametrize(
    "overrides",
    [
        {"balance": 1_001},
        {"enabled": False},
        {"state": "paused"},
        {"open_seq": 1, "lease_until": T0},
    ],
)
def test_last_claim_is_read_only_when_it_decides(overrides: dict[str, object]) -> None:
    """The cooldown's timestamp costs a read, so it is asked for only when it decides."""
    decide(_state(**overrides), T0, POLICY, _never)


def test_idempotency_key_names_user_and_attempt() -> None:
    """The key is derived from the claim alone, so every retry of an attempt reuses it."""
    assert idempotency_key("u1", 7) == "auto-topup:u1:7"


def test_open_attempt_at_exactly_the_threshold_is_pending() -> None:
    """With an attempt in flight, a balance at the threshold (not only below it) is pending."""
    user = _state(balance=1_000, open_seq=2, lease_until=T0 + 1)
    assert decide(user, T0, POLICY, _never) is Trigger.PENDING
