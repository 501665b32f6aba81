"""Invariants: chaos keeps them all; a broken billing rule or a lost credit is caught."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim import Backend, InvariantViolation, OpenBackend, Violation, check_invariants, run
from sim.billing import (
    BillingService,
    ManualClock,
    MemoryCache,
    Money,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    Vault,
)
from sim.billing.claims import ClaimPolicy
from sim.billing.store import AttemptOutcome, Deducted, PendingNotice, Sealer, Settled
from sim.billing.testing import ScriptedGateway
from sim.gateways import Payment

from .conftest import shipped


class StampAfterChargeStore(SQLiteStore):
    """Test-only broken rule: the cooldown is checked against the last *credited* top-up,
    stamped when its credits land, instead of being claimed before the charge; the attempt in
    flight holds nothing back either."""

    def __init__(self) -> None:
        super().__init__()
        self._credited_at: dict[str, float] = {}

    def deduct(
        self,
        user_id: str,
        credits: int,
        now: float,
        policy: ClaimPolicy,
        seal: Sealer,
        request_key: str | None = None,
    ) -> Deducted:
        last = self._credited_at.get(user_id)
        if last is None or now - last >= policy.cooldown_seconds:
            policy = replace(policy, cooldown_seconds=0.0)
            with self._tx() as db:
                db.execute("UPDATE users SET auto_topup_open_seq = NULL WHERE user_id = ?",
                           (user_id,))  # fmt: skip
        return super().deduct(user_id, credits, now, policy, seal, request_key)

    def settle_topup(
        self,
        user_id: str,
        seq: int | None,
        outcome: AttemptOutcome,
        now: float,
        notice: PendingNotice | None = None,
    ) -> Settled:
        self._credited_at[user_id] = now
        return super().settle_topup(user_id, seq, outcome, now, notice)


class CreditLosingStore(SQLiteStore):
    """Test-only broken store: every top-up credit is reported done and never written."""

    def settle_topup(
        self,
        user_id: str,
        seq: int | None,
        outcome: AttemptOutcome,
        now: float,
        notice: PendingNotice | None = None,
    ) -> Settled:
        return Settled(True, False, self.snapshot(user_id))


def _broken_backend(store: type[SQLiteStore] = StampAfterChargeStore) -> OpenBackend:
    cache = MemoryCache()
    return OpenBackend(cache, store(), cache.clear, lambda: None)


def test_chaos_keeps_every_invariant() -> None:
    """Every fault at once, and the books still balance (run raises otherwise)."""
    results = run(shipped("chaos", users=40, days=3), backend="memory")
    summary = results.summary.iloc[0]
    assert summary["store_faults"] > 0 and summary["transient_errors"] > 0
    assert summary["cache_flushes"] > 0 and summary["topups"] > 0


def test_cooldown_stamped_after_the_charge_is_caught() -> None:
    """A cooldown not claimed before charging double-charges bursts; the check names it."""
    backend = Backend("stamp-after-charge", _broken_backend)
    with pytest.raises(InvariantViolation, match=r"\[cooldown\] u\d+: attempts 1 and 2") as caught:
        run(shipped("cooldown_stress"), backend=backend)
    assert {v.rule for v in caught.value.violations} == {"cooldown"}


def test_lost_credit_is_recovered_with_webhooks_and_without() -> None:
    """Store faults while crediting a paid top-up leave money charged but not credited: the
    payment_intent.succeeded webhook makes it good, and without webhooks the attempt's recovery
    (its lease ran out) asks Stripe again and credits it; every invariant holds either way."""
    scenario = shipped("chaos").with_overrides(
        {"faults.store.operations": ["settle_topup"], "faults.store.rate": 0.5}
    )
    with_hooks = run(scenario, backend="memory").events
    webhooks = with_hooks[with_hooks["kind"] == "webhook"]
    assert (webhooks["outcome"] == "credited").any()
    # Subscription renewals are credited by their invoice's webhook alone: none in this half.
    no_hooks = scenario.with_overrides(
        {"webhooks.enabled": False, "groups.subscribers.subscription": 0}
    )
    without = run(no_hooks, backend="memory").events
    recovered = without[(without["kind"] == "request") & (without["trigger"] == "recover")]
    assert len(recovered) > 0


def test_lost_credit_is_caught() -> None:
    """A store that drops top-up credits breaks ``charged_equals_credited``."""
    backend = Backend("credit-losing", lambda: _broken_backend(CreditLosingStore))
    with pytest.raises(InvariantViolation) as caught:
        run(shipped("chaos", users=10, days=2), backend=backend)
    assert "charged_equals_credited" in {v.rule for v in caught.value.violations}


def test_violation_report_lists_each_breach() -> None:
    """The exception's message counts the breaches and shows each one."""
    violations = [
        Violation("balance", f"u{i}", "cache 1, store 2, ledger sum 2") for i in range(25)
    ]
    message = str(InvariantViolation(violations))
    assert message.startswith("25 invariant violation(s):")
    assert "[balance] u0: cache 1" in message and "... and 5 more" in message


def test_check_can_be_turned_off() -> None:
    """run(check=False) returns the frames of a broken run for inspection."""
    backend = Backend("stamp-after-charge", _broken_backend)
    results = run(shipped("cooldown_stress"), backend=backend, check=False)
    assert len(results.events) > 0


def test_paid_top_up_without_one_success_notification_is_caught() -> None:
    """A credited top-up whose user was told zero or two times breaks ``notified_once``."""
    billing = BillingService(
        clock=ManualClock(), cache=MemoryCache(), store=SQLiteStore(), gateway=ScriptedGateway(),
        notifier=RecordingNotifier(), tasks=QueueRunner(), vault=Vault(bytes(32)),
    )  # fmt: skip
    billing.create_user("u1")
    billing.add_credits("u1", 1_000, kind="topup", reference="pi_1")
    paid = [Payment("u1", "pi_1", "topup", Money(200, "eur"), attempt=1)]

    def rules(told: dict[tuple[str, int], int]) -> set[str]:
        found = check_invariants(billing, billing.store, paid, {}, {}, told)
        return {v.rule for v in found}

    assert rules({("u1", 1): 1}) == set()
    assert rules({}) == {"notified_once"}
    assert rules({("u1", 1): 2}) == {"notified_once"}
