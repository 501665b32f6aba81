"""The claim decision: one table of cases, as the store applies it inside the deduction."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.billing.claims import (
    ClaimPolicy,
    Month,
    Trigger,
    UserTopupState,
    at_rest,
    decide,
    idempotency_key,
    month_of,
)

T0 = 1_767_225_600.0
POLICY = ClaimPolicy(cooldown_seconds=3_600.0, lease_seconds=300.0)


def _state(**overrides: object) -> UserTopupState:
    fields: dict[str, object] = {
        "balance": 900, "enabled": True, "threshold": 1_000, "state": "active",
        "open_seq": None, "lease_until": None, "amount": 10_000, "monthly_limit": None,
    }  # fmt: skip
    fields.update(overrides)
    return UserTopupState(**fields)  # type: ignore[arg-type]


def _never() -> float | None:
    raise AssertionError("the last claim time was read where it cannot matter")


def _no_month(month: Month) -> int:
    raise AssertionError("the month's claimed credits were read where they cannot matter")


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
    assert decide(_state(**overrides), T0, POLICY, lambda: last, _no_month) is expected


@given(
    balance=st.integers(-5, 5),
    enabled=st.booleans(),
    state=st.sampled_from(["active", "paused", "suspended"]),
    open_seq=st.none() | st.just(3),
    lease=st.none() | st.floats(-2, 2),
    last=st.none() | st.floats(-7_200, 0),
    limit=st.none() | st.integers(0, 30_000),
)
def test_at_rest_is_exactly_when_nothing_is_in_flight_and_decide_says_none(
    balance: int, enabled: bool, state: str, open_seq: int | None, lease: float | None,
    last: float | None, limit: int | None,
) -> None:  # fmt: skip
    """The shortcut a store may take before building the state agrees with the decision: with
    nothing in flight, at rest exactly when ``decide`` answers NONE; never at rest with an
    attempt open (that attempt may be due for recovery, whatever the balance)."""
    user = _state(
        balance=1_000 + balance, enabled=enabled, state=state, open_seq=open_seq,
        lease_until=None if lease is None else T0 + lease, monthly_limit=limit,
    )  # fmt: skip
    rested = at_rest(user.balance, user.enabled, user.threshold, user.open_seq)
    decided = decide(user, T0, POLICY, lambda: None if last is None else T0 + last, lambda m: 0)
    if open_seq is None:
        assert rested == (decided is Trigger.NONE)
    else:
        assert not rested


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
    decide(_state(**overrides), T0, POLICY, _never, _no_month)


def test_idempotency_key_names_user_and_attempt() -> None:
    """The key is derived from the claim alone, so every retry of an attempt reuses it."""
    assert idempotency_key("u1", 7) == "auto-topup:u1:7"


def test_open_attempt_at_exactly_the_threshold_is_pending() -> None:
    """With an attempt in flight, a balance at the threshold (not only below it) is pending."""
    user = _state(balance=1_000, open_seq=2, lease_until=T0 + 1)
    assert decide(user, T0, POLICY, _never, _no_month) is Trigger.PENDING


def _at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("claimed", "limit", "expected"),
    [
        (0, 10_000, Trigger.CLAIMED),  # one top-up of the amount fits exactly
        (10_000, 20_000, Trigger.CLAIMED),
        (10_001, 20_000, Trigger.LIMITED),  # the claim would pass the limit by one credit
        (20_000, 20_000, Trigger.LIMITED),
        (0, 9_999, Trigger.LIMITED),
    ],
)
def test_monthly_limit_holds_a_claim_that_would_pass_it(
    claimed: int, limit: int, expected: Trigger
) -> None:
    """A claim is made only if the month's counted credits plus its own stay within the limit;
    the month asked about is the calendar month (UTC) of ``now``."""
    asked: list[Month] = []

    def claimed_in(month: Month) -> int:
        asked.append(month)
        return claimed

    user = _state(monthly_limit=limit)
    assert decide(user, T0 + 5, POLICY, lambda: None, claimed_in) is expected
    assert asked == [Month("2026-01", T0, _at(2026, 2, 1))]


@pytest.mark.parametrize(
    ("overrides", "last"),
    [
        ({"monthly_limit": None}, None),  # no limit: nothing to count
        ({"monthly_limit": 10_000, "balance": 1_001}, None),
        ({"monthly_limit": 10_000, "state": "paused"}, None),
        ({"monthly_limit": 10_000}, T0 - 1),  # cooling: the cooldown decides first
        ({"monthly_limit": 10_000, "open_seq": 1, "lease_until": T0 + 1}, None),
    ],
)
def test_month_is_counted_only_when_it_decides(
    overrides: dict[str, object], last: float | None
) -> None:
    """Counting the month's attempts costs a read, so it is asked for only for a claim that is
    otherwise due; without a limit it is never asked for."""
    assert decide(_state(**overrides), T0, POLICY, lambda: last, _no_month) is not Trigger.LIMITED


@pytest.mark.parametrize(
    ("now", "key", "start", "end"),
    [
        (_at(2026, 1, 1), "2026-01", _at(2026, 1, 1), _at(2026, 2, 1)),  # its first instant
        (_at(2026, 1, 31, 23, 59, 59), "2026-01", _at(2026, 1, 1), _at(2026, 2, 1)),
        (_at(2026, 2, 28, 12), "2026-02", _at(2026, 2, 1), _at(2026, 3, 1)),
        (_at(2026, 12, 31, 23), "2026-12", _at(2026, 12, 1), _at(2027, 1, 1)),  # the year turns
        (_at(2028, 2, 29), "2028-02", _at(2028, 2, 1), _at(2028, 3, 1)),  # a leap day
    ],
)
def test_month_is_the_utc_calendar_month(now: float, key: str, start: float, end: float) -> None:
    """The limit resets at 00:00 UTC on the first of each month, whatever the server's zone."""
    assert month_of(now) == Month(key, start, end)
    assert month_of(now).start <= now < month_of(now).end


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_the_month_is_utc_whatever_the_servers_local_time_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hours into February in UTC is still January in New York and already February 1st
    09:00 in Tokyo: the limit's month follows UTC, not the host's zone, so servers in different
    zones agree on it."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        now = datetime(2026, 2, 1, 2, 0, tzinfo=UTC).timestamp()
        start = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
        end = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
        assert month_of(now) == Month("2026-02", start, end)
        late = datetime(2026, 1, 31, 23, 0, tzinfo=UTC).timestamp()  # February 1st in Tokyo
        assert month_of(late).key == "2026-01"
    finally:
        monkeypatch.undo()
        time.tzset()
