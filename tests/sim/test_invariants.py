"""Invariants: chaos keeps them all; a broken billing rule or a lost credit is caught."""

from __future__ import annotations

from typing import Any

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
from sim.billing.cache import DeductResult
from sim.billing.testing import ScriptedGateway
from sim.gateways import Payment

from .conftest import shipped


class StampAfterChargeCache:
    """Test-only broken rule: the cooldown is checked against the last *credited* top-up,
    stamped when its credits land, instead of being claimed before the charge."""

    def __init__(self) -> None:
        self._inner = MemoryCache()
        self._credited_at: dict[str, float] = {}
        self._now = 0.0

    def deduct(
        self, user_id: str, credits: int, now: float, cooldown: float, *rules: Any
    ) -> DeductResult:
        # Any further rule (e.g. an attempt still in flight) is waived too: only the last
        # credited top-up holds a new one back.
        self._now = now
        last = self._credited_at.get(user_id)
        cooling = last is not None and now - last < cooldown
        if cooling:
            return self._inner.deduct(user_id, credits, now, cooldown, *rules)
        return self._inner.deduct(user_id, credits, now, 0.0, *(0.0 for _ in rules))

    def credit(self, user_id: str, credits: int) -> None:
        self._credited_at[user_id] = self._now
        self._inner.credit(user_id, credits)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _broken_backend() -> OpenBackend:
    cache = StampAfterChargeCache()
    return OpenBackend(cache, SQLiteStore(), cache.clear, lambda: None)


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


def test_lost_credit_is_caught_without_webhooks_and_recovered_with_them() -> None:
    """Store faults while crediting a paid top-up leave money charged but not credited: caught
    when no webhook comes back, made good by the payment_intent.succeeded webhook otherwise."""
    scenario = shipped("chaos").with_overrides(
        {"faults.store.operations": ["credit"], "faults.store.rate": 0.5}
    )
    with pytest.raises(InvariantViolation) as caught:
        run(scenario.with_overrides({"webhooks.enabled": False}), backend="memory")
    assert "charged_equals_credited" in {v.rule for v in caught.value.violations}
    recovered = run(scenario, backend="memory").events
    webhooks = recovered[recovered["kind"] == "webhook"]
    assert (webhooks["outcome"] == "credited").any()


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
