"""BillingService: deduction, detection, the guarded trigger, the top-up flow and settlement."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingConfig,
    BillingService,
    ChargeRequest,
    ChargeResult,
    DecryptionError,
    Deduction,
    InsufficientCredits,
    InvalidAmount,
    ManualClock,
    Money,
    Notification,
    PaymentMethodMissing,
    PriceMismatch,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    StoreUnavailable,
    ThreadRunner,
    TransientGatewayError,
    Trigger,
    UnknownUser,
    Vault,
    idempotency_key,
)
from sim.billing.errors import IdempotencyKeyReused
from sim.billing.reconcile import reconcile_user
from sim.billing.testing import ScriptedGateway
from sim.crashes import Boundaries, Crash, CrashPlan

from .conftest import MASTER_KEY, BillingFactory, CacheBackend, FlakyStore, run_concurrently
from .test_crash_consistency import LosingGateway

AddUser = Callable[..., str]
HOUR = 3_600.0


def _books_balance(billing: BillingService, store: FlakyStore, user: str) -> int:
    """Assert cache, store and ledger agree; return the balance."""
    balance = store.get_user(user).balance
    assert billing.balance(user) == balance == store.ledger_sum(user)
    return balance


# ------------------------------------------------------------------------- deduction


def test_deduction_takes_credits_and_writes_the_ledger(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A deduction lowers the balance in cache and store and appends a usage entry."""
    add_user(balance=5_000)
    done = billing.deduct_credits("u1", 1_234)
    assert (done.balance, done.trigger, done.attempt) == (3_766, Trigger.NONE, None)
    assert _books_balance(billing, store, "u1") == 3_766
    assert [(e.kind, e.delta) for e in store.ledger("u1")][-1] == ("usage", -1_234)


def test_unaffordable_request_is_refused_and_changes_nothing(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A request above the balance raises InsufficientCredits; balance and ledger stay."""
    add_user(balance=5_000)
    ledger = store.ledger("u1")
    with pytest.raises(InsufficientCredits) as caught:
        billing.deduct_credits("u1", 5_001)
    refused = caught.value
    assert (refused.requested, refused.balance, refused.attempt) == (5_001, 5_000, None)
    assert store.ledger("u1") == ledger
    assert _books_balance(billing, store, "u1") == 5_000


@pytest.mark.parametrize("credits", [0, -5, 1.5, True, "10"])
def test_credit_amount_must_be_a_positive_integer(
    billing: BillingService, add_user: AddUser, credits: object
) -> None:
    """Zero, negative, fractional, boolean or text amounts raise InvalidAmount."""
    add_user()
    with pytest.raises(InvalidAmount):
        billing.deduct_credits("u1", credits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "refused", "smallest", "message"),
    [
        ("cooldown_seconds", -1.0, 0.0, "cooldown_seconds must be >= 0"),
        ("charge_tries", 0, 1, "charge_tries must be >= 1"),
        ("failures_before_suspension", 0, 1, "failures_before_suspension must be >= 1"),
        ("attempt_lease_seconds", 0.0, 0.5, "attempt_lease_seconds must be > 0"),
        ("retry_backoff_seconds", -0.5, 0.0, "retry_backoff_seconds must be >= 0"),
        ("idempotency_window_seconds", 0.0, 0.5, "idempotency_window_seconds must be > 0"),
    ],
)
def test_each_rule_refuses_a_value_past_its_bound_naming_it(
    setting: str, refused: float, smallest: float, message: str
) -> None:
    """Every BillingConfig setting has a bound: past it, a ValueError that says which setting and
    which bound (a server's operator reads it at start-up); at it, the config is built."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        BillingConfig(**{setting: refused})
    assert getattr(BillingConfig(**{setting: smallest}), setting) == smallest


def test_a_request_key_answers_its_first_deduction_and_refuses_other_credits(
    billing: BillingService, add_user: AddUser
) -> None:
    """The same key again answers the first deduction and takes nothing; the same key with other
    credits is refused with what the key took, what was asked, and what to do."""
    add_user(balance=1_500)
    first = billing.deduct_credits("u1", 100, request_key="r1")
    again = billing.deduct_credits("u1", 100, request_key="r1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.balance == first.balance == billing.balance("u1") == 1_400
    with pytest.raises(
        IdempotencyKeyReused, match=r"^this key took 100 credits, not 200: use a new key$"
    ):
        billing.deduct_credits("u1", 200, request_key="r1")
    assert billing.balance("u1") == 1_400


def test_unknown_user_is_refused(billing: BillingService) -> None:
    """Deducting from a user that does not exist raises UnknownUser."""
    with pytest.raises(UnknownUser):
        billing.deduct_credits("ghost", 1)


# ------------------------------------------------------------------------- the trigger


def test_crossing_claims_a_topup_that_runs_after_the_deduction_returns(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """The deduction returns with the claim made and no charge yet; the task then charges once.
    A deduction while it is pending submits no second task: only the claim's lease runs it."""
    add_user(balance=1_500)
    done = billing.deduct_credits("u1", 600)
    assert (done.trigger, done.attempt, done.balance) == (Trigger.CLAIMED, 1, 900)
    assert gateway.calls == [] and len(tasks) == 1
    pending = billing.deduct_credits("u1", 100)
    assert (pending.trigger, pending.attempt, len(tasks)) == (Trigger.PENDING, None, 1)
    assert tasks.run_pending() == 1
    assert [c.idempotency_key for c in gateway.calls] == [idempotency_key("u1", 1)]
    assert _books_balance(billing, store, "u1") == 10_800
    assert store.attempts("u1")[0].status == "succeeded"


def test_fifty_threads_one_crossing_one_charge(
    make_billing: BillingFactory, add_user: AddUser, gateway: ScriptedGateway, store: FlakyStore
) -> None:
    """50 threads deducting at once: the balance is exact and the crossing charges exactly once."""
    runner = ThreadRunner(workers=4)
    billing = make_billing(tasks_runner=runner)
    add_user(balance=5_500, threshold=1_000, amount=10_000, service=billing)
    claims: list[int] = []

    def spend() -> None:
        for _ in range(10):
            done = billing.deduct_credits("u1", 10)
            if done.attempt is not None:
                claims.append(done.attempt)

    run_concurrently(50, spend, runner)
    assert claims == [1]
    assert len(gateway.calls) == len(gateway.succeeded_keys) == 1
    assert _books_balance(billing, store, "u1") == 5_500 - 50 * 10 * 10 + 10_000
    assert sum(1 for e in store.ledger("u1") if e.kind == "usage") == 500


def test_second_crossing_inside_cooldown_charges_nothing_then_charges_after(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """Below the threshold again within the hour: no charge; once the hour is over: a charge."""
    add_user(balance=1_500, threshold=1_000, amount=1_000)
    billing.deduct_credits("u1", 600)  # 900: claim 1
    tasks.run_pending()  # +1,000 -> 1,900
    clock.advance(HOUR - 1)
    done = billing.deduct_credits("u1", 1_000)  # 900 again, inside the cooldown
    assert (done.trigger, len(tasks)) == (Trigger.COOLING, 0)
    clock.advance(1)
    done = billing.deduct_credits("u1", 100)  # 800, the hour is over
    assert (done.trigger, done.attempt) == (Trigger.CLAIMED, 2)
    tasks.run_pending()
    assert len(gateway.succeeded_keys) == 2


def test_cooldown_and_threshold_come_from_config_and_settings(
    make_billing: BillingFactory,
    add_user: AddUser,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """A 10-minute cooldown and a 5,000 threshold are honoured exactly, on the injected clock."""
    billing = make_billing(config=BillingConfig(cooldown_seconds=600))
    add_user(balance=6_000, threshold=5_000, amount=1_000, service=billing)
    assert billing.deduct_credits("u1", 999).trigger is Trigger.NONE  # 5,001
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED  # 5,000
    tasks.run_pending()
    clock.advance(599)
    assert billing.deduct_credits("u1", 1_001).trigger is Trigger.COOLING
    clock.advance(1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED


def test_refused_request_of_a_dry_user_claims_a_topup(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, store: FlakyStore
) -> None:
    """A user too dry to afford a request still gets a due top-up claimed by that request."""
    add_user(balance=1_500)
    billing.update_settings("u1", AutoTopupSettings(False, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 1_400)  # 100 left, auto top-up off
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    tasks.run_pending()  # enabling under the threshold already topped up
    assert _books_balance(billing, store, "u1") == 10_100


def test_refused_request_claims_when_cooldown_ends(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """After a declined top-up, a refused request inside the cooldown says ``cooling``; the
    first one past it claims, even if refused, and says ``claimed``."""
    gateway.queue("declined:insufficient_funds")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 1_000)  # 200: claim 1, declined
    tasks.run_pending()
    with pytest.raises(InsufficientCredits) as cooling:
        billing.deduct_credits("u1", 500)
    assert (cooling.value.attempt, cooling.value.trigger) == (None, "cooling")
    assert str(cooling.value) == "user 'u1' cannot afford 500 credits (balance 200)"
    clock.advance(HOUR)
    with pytest.raises(InsufficientCredits) as caught:
        billing.deduct_credits("u1", 500)
    assert (caught.value.attempt, caught.value.trigger) == (2, "claimed")
    tasks.run_pending()
    assert billing.balance("u1") == 10_200


def test_enabling_below_threshold_tops_up_at_once(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner
) -> None:
    """Saving enabled settings while already under the threshold claims a top-up right away."""
    add_user(balance=800, enabled=False)
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    assert tasks.run_pending() == 1
    assert billing.balance("u1") == 10_800


def test_enabling_needs_a_saved_payment_method(billing: BillingService) -> None:
    """Without a saved card, enabling auto top-up raises PaymentMethodMissing."""
    billing.create_user("u1", balance=100)
    with pytest.raises(PaymentMethodMissing):
        billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))


# ------------------------------------------------------------------------- outcomes


def test_decline_is_recorded_notified_and_keeps_the_cooldown(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """A declined charge records the decline code, tells the user and blocks retries for an hour."""
    gateway.queue("declined:insufficient_funds")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.decline_code, attempt.amount_minor) == (
        "declined", "insufficient_funds", 1_000,
    )  # fmt: skip
    assert notifier.kinds("u1") == ["topup_declined"]
    clock.advance(HOUR - 1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.COOLING
    assert len(gateway.calls) == 1
    assert store.get_user("u1").consecutive_failures == 1


def test_authentication_required_notifies_and_pauses(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """SCA: nothing is credited, the user is asked to act, and auto top-up pauses until they do."""
    gateway.queue("authentication_required")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert store.attempts("u1")[0].status == "requires_action"
    assert notifier.kinds("u1") == ["topup_action_required"]
    assert store.get_user("u1").state == "paused"
    clock.advance(10 * HOUR)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.HELD
    assert billing.balance("u1") == 899
    billing.save_payment_method("u1", "cus_u1", "pm_card_new")
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED


def test_three_failures_suspend_until_settings_are_saved(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """Three declines in a row suspend auto top-up; re-saving the settings lifts it."""
    gateway.queue(*["declined:generic_decline"] * 3)
    add_user(balance=900)  # enabling under the threshold claims attempt 1 at once
    tasks.run_pending()
    for _ in range(2):
        clock.advance(HOUR)
        billing.deduct_credits("u1", 1)
        tasks.run_pending()
    clock.advance(HOUR)
    assert store.get_user("u1").state == "suspended"
    assert notifier.kinds("u1")[-2:] == ["topup_declined", "topup_suspended"]
    assert billing.deduct_credits("u1", 1).trigger is Trigger.HELD
    assert len(gateway.calls) == 3
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    assert store.get_user("u1").state == "active"
    tasks.run_pending()
    assert len(gateway.succeeded_keys) == 1
    assert store.get_user("u1").consecutive_failures == 0


def test_success_resets_the_failure_count(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    gateway.queue("declined:generic_decline", "declined:generic_decline", "succeeded")
    gateway.queue("declined:generic_decline", "declined:generic_decline")
    add_user(balance=1_200, amount=1_000)
    for _ in range(5):
        billing.deduct_credits("u1", max(1, billing.balance("u1") - 1_000))
        tasks.run_pending()
        clock.advance(HOUR)
    assert store.get_user("u1").state == "active"
    assert store.get_user("u1").consecutive_failures == 2


def test_transient_error_is_retried_with_the_same_key(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """Two timeouts then success: three calls, one idempotency key, one charge, credited once."""
    gateway.queue("transient", "transient", "succeeded")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert len({c.idempotency_key for c in gateway.calls}) == 1 and len(gateway.calls) == 3
    assert len(gateway.succeeded_keys) == 1
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.retries) == ("succeeded", 2)
    assert _books_balance(billing, store, "u1") == 10_900


def test_retries_are_bounded_and_leave_the_outcome_unknown(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
) -> None:
    """A charge whose every try failed may have gone through: three tries spaced by a growing,
    jittered back-off, then the outcome is unknown (still open), nobody is told, nothing counts."""
    gateway.queue("transient", "transient", "transient", "transient")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert len(gateway.calls) == 3
    assert tasks.delays[0] == 0 and 1 <= tasks.delays[1] <= 3 and 4 <= tasks.delays[2] <= 12
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.retries) == ("unknown", 2)
    assert store.get_user("u1").open_attempt == 1
    assert notifier.kinds("u1") == []
    user = store.get_user("u1")
    assert (user.state, user.consecutive_failures) == ("active", 0)


def test_unusable_payment_method_pauses_with_a_notification(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
) -> None:
    """A card the provider no longer accepts is never charged; the user is told and paused."""
    add_user(balance=1_200)
    gateway.usable = False
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert gateway.calls == []
    assert store.attempts("u1")[0].status == "no_payment_method"
    assert notifier.kinds("u1") == ["topup_payment_method_missing"]
    assert store.get_user("u1").state == "paused"


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [("eur", 21_000, 2_000), ("usd", 21_000, 3_000), ("jpy", 21_000, 4_000), ("jpy", 1_000, 400)],
)
def test_charge_amount_in_minor_units_matches_the_table(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    currency: str,
    amount: int,
    minor: int,
) -> None:
    """The gateway is asked for exactly the table's price, JPY without decimals."""
    add_user(balance=1_200, amount=amount, currency=currency)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert gateway.calls[0].price == Money(minor, currency)
    assert billing.balance("u1") == 900 + amount


# ------------------------------------------------------------------------- settlement


def test_duplicate_settle_credits_once(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
) -> None:
    """A webhook settling the same PaymentIntent after the confirm did changes nothing."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    intent = store.attempts("u1")[0].payment_intent_id
    assert intent is not None
    meta = {"user_id": "u1", "credits": "10000", "attempt": "1"}
    for _ in range(3):
        assert not billing.settle_payment("u1", intent, Money(1_000, "eur"), meta)
    assert _books_balance(billing, store, "u1") == 10_900
    assert notifier.kinds("u1") == ["topup_succeeded"]


def test_webhook_first_then_confirm_credits_once(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """Whichever of webhook and confirm arrives first credits; the other is a no-op."""
    add_user(balance=5_000)
    meta = {"user_id": "u1", "credits": "10000"}
    assert billing.settle_payment("u1", "pi_x", Money(1_000, "eur"), meta)
    assert not billing.settle_payment("u1", "pi_x", Money(1_000, "eur"), meta)
    assert _books_balance(billing, store, "u1") == 15_000


@pytest.mark.parametrize(
    ("paid", "meta"),
    [
        (Money(1_000, "eur"), {"credits": "21000"}),  # metadata claims more than was paid
        (Money(1_000, "eur"), {"user_id": "someone-else"}),
        (Money(999, "eur"), {}),  # no tier costs 9.99 EUR
    ],
)
def test_settle_credits_what_was_paid_or_nothing(
    billing: BillingService, add_user: AddUser, store: FlakyStore, paid: Money, meta: dict[str, str]
) -> None:
    """Credits follow the money: a mismatch with the table or the metadata credits nothing."""
    add_user(balance=5_000)
    with pytest.raises((PriceMismatch, ValueError)):
        billing.settle_payment("u1", "pi_bad", paid, meta)
    assert _books_balance(billing, store, "u1") == 5_000


# ------------------------------------------------------------------------- cache and store faults


def test_flushed_cache_loses_nothing(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    cache_backend: CacheBackend,
    clock: ManualClock,
) -> None:
    """After a flush, balance and last-triggered time come back from the store: no second charge."""
    add_user(balance=1_500, amount=1_000)
    billing.deduct_credits("u1", 600)  # claim at T0
    tasks.run_pending()
    claimed_at = billing.last_triggered("u1")
    cache_backend.flush()
    assert billing.last_triggered("u1") == claimed_at == clock.now()
    cache_backend.flush()
    assert billing.balance("u1") == 1_900
    clock.advance(60)
    cache_backend.flush()
    done = billing.deduct_credits("u1", 1_000)  # 900: below threshold, inside the cooldown
    assert done.trigger is Trigger.COOLING and len(gateway.calls) == 1
    clock.advance(HOUR)
    cache_backend.flush()
    assert billing.deduct_credits("u1", 1).attempt == 2  # attempt numbers survive the flush too


def test_store_write_failure_leaves_cache_and_store_agreeing(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, store: FlakyStore
) -> None:
    """A failed store write changes nothing anywhere (the store decides first); a retry claims."""
    add_user(balance=1_200)
    store.failing.add("deduct")
    with pytest.raises(StoreUnavailable):
        billing.deduct_credits("u1", 300)
    assert _books_balance(billing, store, "u1") == 1_200
    assert billing.last_triggered("u1") is None and len(tasks) == 0
    store.failing.clear()
    done = billing.deduct_credits("u1", 300)
    assert (done.trigger, done.attempt) == (Trigger.CLAIMED, 1)
    assert _books_balance(billing, store, "u1") == 900


def test_store_failure_while_settling_credits_later_exactly_once(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, store: FlakyStore
) -> None:
    """If the credit cannot be stored, nothing is cached; the webhook's retry credits once."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    store.failing.add("settle_topup")
    tasks.run_pending()  # charged, but the credit write failed: logged, attempt left open
    assert _books_balance(billing, store, "u1") == 900
    store.failing.clear()
    meta = {"user_id": "u1", "credits": "10000", "attempt": "1"}
    assert billing.settle_payment("u1", "pi_scripted_0001", Money(1_000, "eur"), meta)
    assert not billing.settle_payment("u1", "pi_scripted_0001", Money(1_000, "eur"), meta)
    assert _books_balance(billing, store, "u1") == 10_900
    assert store.attempts("u1")[0].status == "succeeded"


def test_unreachable_cache_fails_nothing_and_catches_up(
    vault: Vault, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down the store still decides and records (reads fall back to it), and a
    warning names the user whose cached copy is now behind; once Redis is back, the user's next
    write brings the cache up to date."""
    server = fakeredis.FakeServer()
    store = SQLiteStore(":memory:")
    billing = BillingService(
        clock=clock, cache=fakeredis.FakeRedis(server=server), store=store,
        gateway=ScriptedGateway(), notifier=RecordingNotifier(), tasks=QueueRunner(), vault=vault,
    )  # fmt: skip
    billing.create_user("u1", balance=500)
    server.connected = False
    with caplog.at_level(logging.WARNING, logger="sim.billing.service"):
        assert billing.deduct_credits("u1", 100).balance == 400
    assert [r.getMessage() for r in caplog.records] == [
        "cache unreachable: u1 stays at an older version until its next write"
    ]
    assert billing.balance("u1") == store.get_user("u1").balance == store.ledger_sum("u1") == 400
    server.connected = True
    billing.deduct_credits("u1", 1)
    assert billing.cache.get("u1") == store.snapshot("u1")


# ------------------------------------------------------------------------- encryption at rest


def _on_a_file(
    path: Path, clock: ManualClock, gateway: ScriptedGateway
) -> tuple[BillingService, SQLiteStore, QueueRunner]:
    """A service on a SQLite file of its own (the ``store`` fixture's is in memory), its store
    and its task queue."""
    store, tasks = SQLiteStore(str(path)), QueueRunner()
    billing = BillingService(
        clock=clock, cache=fakeredis.FakeRedis(), store=store, gateway=gateway,
        notifier=RecordingNotifier(), tasks=tasks, vault=Vault(MASTER_KEY),
    )  # fmt: skip
    return billing, store, tasks


def test_store_file_holds_no_plaintext_secrets(tmp_path: Path, clock: ManualClock) -> None:
    """The SQLite file holds no plaintext payment method id, Stripe customer id, e-mail or
    last-triggered time."""
    path = tmp_path / "billing.sqlite"
    billing, store, tasks = _on_a_file(path, clock, ScriptedGateway())
    clock.set(1_767_225_600.123456)
    billing.create_user("u1", email="ada.lovelace@example.com", balance=1_200)
    billing.save_payment_method("u1", "cus_1SecretCustomer", "pm_1SecretCardToken")
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    assert billing.last_triggered("u1") == clock.now()  # all of it is recoverable...
    assert billing.payment_method("u1") == ("cus_1SecretCustomer", "pm_1SecretCardToken")
    store.close()
    files = [path, path.with_name(path.name + "-wal")]  # committed pages may sit in the WAL
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    secrets = ("ada.lovelace@example.com", "pm_1SecretCardToken", "cus_1SecretCustomer")
    for secret in (*secrets, repr(clock.now())):
        assert secret.encode() not in raw  # ...but only with the keys


def test_tampered_payment_method_token_is_refused(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A flipped byte in a stored ciphertext is rejected when read, never used."""
    add_user()
    token = bytearray(store.get_user("u1").encrypted_payment_method_id or b"")
    token[-1] ^= 0x80
    store.inner.save_payment_method("u1", "cus_u1", bytes(token))
    with pytest.raises(DecryptionError):
        billing.payment_method("u1")


# ------------------------------------------------------------------------- attempts in flight


def test_top_up_running_late_is_not_joined_by_a_second_charge(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    cache_backend: CacheBackend,
    clock: ManualClock,
    store: FlakyStore,
) -> None:
    """A claimed top-up still queued after the cooldown blocks new claims, even across a flush:
    past its lease it is taken over (same attempt), and the stale worker is fenced out."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)  # claim 1, not run yet
    clock.advance(60)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.PENDING
    clock.advance(2 * HOUR)
    assert (billing.deduct_credits("u1", 1).trigger, len(tasks)) == (Trigger.RECOVER, 2)
    cache_backend.flush()
    assert billing.deduct_credits("u1", 1).trigger is Trigger.PENDING
    tasks.run_pending()
    assert len(gateway.calls) == 1 and [a.status for a in store.attempts("u1")] == ["succeeded"]
    assert billing.balance("u1") == 1_200 - 300 - 3 + 10_000


def test_top_up_no_longer_due_is_skipped_without_charging(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """Turned off, or refilled by other credits, before the charge ran: nothing is charged."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)  # claim 1
    billing.update_settings("u1", AutoTopupSettings(False, 1_000, 10_000, "eur"))
    tasks.run_pending()
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    clock.advance(HOUR)
    billing.deduct_credits("u1", 1)  # claim 2
    billing.grant_credits("u1", 5_000, reference="support-goodwill")
    tasks.run_pending()
    assert gateway.calls == []
    assert [a.status for a in store.attempts("u1")] == ["skipped", "skipped"]
    assert notifier.kinds("u1") == []
    # A skipped attempt no longer blocks, but its claim still counts for the cooldown.
    assert billing.deduct_credits("u1", 5_000).trigger is Trigger.COOLING
    clock.advance(HOUR)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED


# ------------------------------------------------------------------------- reads and notices


def test_balance_is_read_from_the_cache_when_it_holds_the_user(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """A cached user's balance is answered from the cache, without the store."""
    add_user(balance=5_000)
    held = store.snapshot("u1")
    cache_backend.cache.put("u1", replace(held, version=held.version + 1, balance=4_321))
    assert billing.balance("u1") == 4_321


def test_refill_puts_the_users_snapshot_in_the_cache(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """A read that misses the cache loads the user's snapshot into it, under the user's key."""
    add_user(balance=5_000)
    cache_backend.flush()
    assert billing.balance("u1") == 5_000
    assert cache_backend.cache.get("u1") == store.snapshot("u1")


def test_notify_stamps_the_clock_time_and_keeps_the_detail(
    billing: BillingService, notifier: RecordingNotifier, clock: ManualClock
) -> None:
    """A direct notification carries the injected clock's time and the detail given."""
    clock.set(1_767_300_000.0)
    billing.notify("u1", "subscription_renewed", invoice="in_1")
    assert notifier.sent == [
        Notification("u1", "subscription_renewed", 1_767_300_000.0, {"invoice": "in_1"})
    ]


# ------------------------------------------------------------------------- back-off and leases


def test_retry_delay_grows_fourfold_with_jitter_from_the_key() -> None:
    """Each retry waits 4x longer than the one before, times a jitter in [0.5, 1.5) derived
    from the attempt's key: reproducible for a key, spread over the whole range across keys."""
    config = BillingConfig(retry_backoff_seconds=2.0)
    keys = [f"auto-topup:u{n}:1" for n in range(200)]
    for tries in (1, 2, 3):
        jitters = [config.retry_delay(k, tries) / (2.0 * 4 ** (tries - 1)) for k in keys]
        assert all(0.5 <= j < 1.5 for j in jitters)
        assert min(jitters) < 0.6 and max(jitters) > 1.4
    assert config.retry_delay(keys[0], 2) == config.retry_delay(keys[0], 2)
    assert len({config.retry_delay(k, 1) for k in keys}) == len(keys)


def test_back_off_holds_the_lease_and_records_the_try(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """After a transient error the retry waits the key's back-off, and the lease is held over
    that wait plus a full lease; the attempt records the try while it waits."""
    billing = make_billing(config=BillingConfig(attempt_lease_seconds=300.0))
    gateway.queue("transient", "succeeded")
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)
    tasks.run_next()
    delay = billing.config.retry_delay(idempotency_key("u1", 1), 1)
    assert tasks.delays == [0.0, delay]
    user, attempt = store.get_user("u1"), store.attempts("u1")[0]
    assert user.lease_until == clock.now() + delay + 300.0
    assert (attempt.status, attempt.retries) == ("charging", 1)


def test_recovery_takes_a_full_new_lease(
    billing: BillingService, add_user: AddUser, store: FlakyStore, clock: ManualClock
) -> None:
    """A forced recovery holds the attempt for a full lease from now, so nobody else takes it
    over meanwhile."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)  # claimed, queued, not run
    clock.advance(60)
    assert billing.recover("u1", force=True) == 1
    assert store.get_user("u1").lease_until == clock.now() + billing.config.attempt_lease_seconds


def test_card_check_unreachable_every_try_ends_the_attempt_failed(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
) -> None:
    """The provider cannot tell whether the card is usable, every try: nothing was sent, so the
    attempt ends ``failed`` after its tries (two retries), the user is told and not paused."""
    add_user(balance=1_200)
    checks = {"count": 0}

    def unreachable(customer_id: str, payment_method_id: str) -> bool:
        checks["count"] += 1
        raise TransientGatewayError("connection reset")

    billing.deduct_credits("u1", 300)
    gateway.payment_method_usable = unreachable  # type: ignore[method-assign]
    tasks.run_pending()
    attempt, user = store.attempts("u1")[0], store.get_user("u1")
    assert (checks["count"], attempt.status, attempt.retries) == (3, "failed", 2)
    assert (user.state, user.open_attempt, gateway.calls) == ("active", None, [])
    assert notifier.kinds("u1") == ["topup_failed"]


def test_skipped_attempt_keeps_the_failure_streak(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """An attempt skipped because credits arrived another way leaves the count of consecutive
    failures as it was (it neither failed nor paid)."""
    gateway.queue("declined:generic_decline")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()  # declined: one failure
    clock.advance(HOUR)
    billing.deduct_credits("u1", 1)  # claims attempt 2
    billing.grant_credits("u1", 5_000, reference="support")  # no longer due
    tasks.run_pending()
    assert [a.status for a in store.attempts("u1")] == ["declined", "skipped"]
    assert store.get_user("u1").consecutive_failures == 1


# ------------------------------------------------------------------------- past the key's window


class LookUpGateway:
    """The scripted gateway whose read-back (``find_charge``) first fails ``failures`` times;
    ``during`` runs at each read-back, before it answers (another worker acting meanwhile)."""

    def __init__(self, inner: ScriptedGateway, failures: int = 0) -> None:
        self.inner, self.failures, self.lookups = inner, failures, 0
        self.during: Callable[[], object] = lambda: None

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        self.lookups += 1
        self.during()
        if self.lookups <= self.failures:
            raise TransientGatewayError("read timed out")
        return self.inner.find_charge(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _unknown_past_the_window(
    make_billing: BillingFactory, add_user: AddUser, gateway: ScriptedGateway,
    tasks: QueueRunner, clock: ManualClock, outcome: str, lookup: LookUpGateway,
) -> BillingService:  # fmt: skip
    """Attempt 1 charged with ``outcome`` at Stripe, every answer lost (``unknown``), then a
    request past the idempotency window takes it over; the service reads back via ``lookup``."""
    losing = make_billing(payment_gateway=LosingGateway(gateway))  # type: ignore[arg-type]
    add_user(balance=1_200, service=losing)
    gateway.queue(outcome)
    losing.deduct_credits("u1", 300)
    tasks.run_pending()
    clock.advance(BillingConfig().idempotency_window_seconds)
    billing = make_billing(payment_gateway=lookup)  # type: ignore[arg-type]
    assert billing.deduct_credits("u1", 1).trigger is Trigger.RECOVER
    return billing


def test_read_back_that_times_out_is_retried_after_a_back_off(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stripe cannot say what became of an old attempt: the service logs which attempt, holds
    the lease over a back-off (the charge may have left), asks again, and credits once."""
    lookup = LookUpGateway(gateway, failures=1)
    billing = _unknown_past_the_window(
        make_billing, add_user, gateway, tasks, clock, "succeeded", lookup
    )
    calls = len(gateway.calls)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sim.billing.service"):
        tasks.run_next()
    [warning] = caplog.records
    assert "auto-topup:u1:1" in warning.getMessage() and "read timed out" in warning.getMessage()
    delay = billing.config.retry_delay(idempotency_key("u1", 1), 1)
    attempt, user = store.attempts("u1")[0], store.get_user("u1")
    assert (tasks.delays[-1], attempt.status, attempt.retries) == (delay, "charging", 1)
    assert user.lease_until == clock.now() + delay + billing.config.attempt_lease_seconds
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (lookup.lookups, attempt.status, attempt.retries) == (2, "succeeded", 1)
    assert len(gateway.calls) == calls and store.get_user("u1").balance == 899 + 10_000


def test_read_back_unreachable_every_try_leaves_the_attempt_unknown(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
    notifier: RecordingNotifier,
) -> None:
    """Out of tries without an answer, an attempt whose charge may have left stays open and
    ``unknown``: nobody is told it failed."""
    lookup = LookUpGateway(gateway, failures=10)
    _unknown_past_the_window(make_billing, add_user, gateway, tasks, clock, "succeeded", lookup)
    tasks.run_pending()
    attempt, user = store.attempts("u1")[0], store.get_user("u1")
    assert (lookup.lookups, attempt.status, attempt.retries) == (3, "unknown", 2)
    assert user.open_attempt == 1 and notifier.kinds("u1") == []


def test_read_back_with_nothing_found_after_a_retry_counts_the_retry(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """An attempt Stripe holds no PaymentIntent for ends ``failed`` with the retries it took."""
    lookup = LookUpGateway(ScriptedGateway(), failures=1)  # a Stripe that never saw it
    _unknown_past_the_window(make_billing, add_user, gateway, tasks, clock, "succeeded", lookup)
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.retries) == ("failed", 1)


@pytest.mark.parametrize(
    ("outcome", "told"),
    [("declined:insufficient_funds", "topup_declined"), (None, "topup_failed")],
)
def test_worker_that_lost_its_lease_during_the_read_back_writes_nothing(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
    notifier: RecordingNotifier,
    outcome: str | None,
    told: str,
) -> None:
    """Another worker takes the attempt over while this one reads it back: this one's answer
    (a decline, or no intent at all) is not written; the new holder settles it, once."""
    lookup = LookUpGateway(gateway if outcome else ScriptedGateway())
    billing = _unknown_past_the_window(
        make_billing, add_user, gateway, tasks, clock, outcome or "succeeded", lookup
    )
    lookup.during = lambda: billing.recover("u1", force=True)
    tasks.run_next()  # the first worker: its lease is taken over mid-read
    assert store.get_user("u1").open_attempt == 1
    assert store.attempts("u1")[0].status == "unknown" and notifier.kinds("u1") == []
    lookup.during = lambda: None
    tasks.run_pending()  # the new holder
    assert store.get_user("u1").open_attempt is None and notifier.kinds("u1") == [told]


def test_attempt_left_unknown_is_leased_for_a_full_lease(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """Out of tries with the outcome unknown, the worker keeps the lease for one more full
    lease from its last try: only then may a request take the attempt over."""
    gateway.queue("transient", "transient", "transient")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    lease = billing.config.attempt_lease_seconds
    assert store.get_user("u1").lease_until == clock.now() + lease
    clock.advance(lease - 1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.PENDING
    clock.advance(1)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.RECOVER


def test_final_notice_names_the_attempt_its_status_and_decline_code(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    clock: ManualClock,
) -> None:
    """An attempt's final notice says which attempt, how it ended and (declined) why, under an
    id naming kind, user and attempt, so two attempts' notices never share an id."""
    gateway.queue("declined:insufficient_funds", "declined:insufficient_funds")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    clock.advance(HOUR)
    billing.deduct_credits("u1", 1)
    tasks.run_pending()
    assert [(n.notice_id, dict(n.detail)) for n in notifier.sent] == [
        (f"topup_declined:u1:{seq}",
         {"attempt": str(seq), "status": "declined", "decline_code": "insufficient_funds"})
        for seq in (1, 2)
    ]  # fmt: skip


# ------------------------------------------------------------------------- finishing and settling


def test_finished_attempt_is_stamped_cached_and_its_notice_outboxed(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
    notifier: RecordingNotifier,
    cache_backend: CacheBackend,
) -> None:
    """Ending an attempt records when, puts the user's new snapshot in the cache, and writes
    the notice to the outbox with the outcome: a worker killed right after that commit leaves
    the notice for the reconcile to send."""
    gateway.queue("declined:insufficient_funds")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    clock.advance(5)
    port_store, port_cache = billing.store, billing.cache
    plan = CrashPlan(at="test/store.finish_attempt:after", armed=True, operation="test")
    billing.store = Boundaries(port_store, "store", plan)  # type: ignore[assignment]
    with pytest.raises(Crash):
        tasks.run_pending()
    billing.store, billing.cache = port_store, port_cache
    assert store.attempts("u1")[0].finished_at == clock.now()
    assert [n.kind for n in store.pending_notices("u1")] == ["topup_declined"]
    assert notifier.sent == [] and reconcile_user(billing, "u1").notices_sent == 1
    clock.advance(HOUR)
    gateway.queue("declined:insufficient_funds")
    billing.deduct_credits("u1", 1)
    tasks.run_pending()  # attempt 2 ends without a crash: the cache holds the outcome
    assert cache_backend.cache.get("u1") == store.snapshot("u1")
    assert store.snapshot("u1").open_seq is None


def test_settlement_notice_names_status_and_attempt(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, notifier: RecordingNotifier
) -> None:
    """The success notice says succeeded, which PaymentIntent and which attempt; a payment
    outside any attempt (no ``attempt`` in its metadata) says no attempt."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    paid = {"user_id": "u1", "credits": "10000", "purpose": "auto_topup"}
    assert billing.settle_payment("u1", "pi_by_hand", Money(1_000, "eur"), paid)
    assert [(n.notice_id, dict(n.detail)) for n in notifier.sent] == [
        (
            notifier.sent[0].notice_id,
            {
                "status": "succeeded",
                "payment_intent": notifier.sent[0].notice_id.split(":")[2],
                "attempt": "1",
            },
        ),
        ("topup_succeeded:u1:pi_by_hand", {"status": "succeeded", "payment_intent": "pi_by_hand"}),
    ]


def test_webhook_settlement_records_what_was_paid_and_no_retries(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A payment settled by its webhook before the worker ran records the attempt as paid:
    the credits, currency and amount of the payment, and no retries."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)  # attempt 1 claimed, its worker not run
    meta = {"user_id": "u1", "credits": "10000", "attempt": "1", "purpose": "auto_topup"}
    assert billing.settle_payment("u1", "pi_1", Money(1_000, "eur"), meta)
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.credits, attempt.currency, attempt.amount_minor) == (
        "succeeded", 10_000, "eur", 1_000,
    )  # fmt: skip
    assert attempt.retries == 0


def test_paid_after_a_card_check_retry_records_the_retry(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """A card check that timed out once, then a paid charge: the attempt records one retry."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    usable = gateway.payment_method_usable
    checks = iter([TransientGatewayError("connection reset")])

    def flaky(customer_id: str, payment_method_id: str) -> bool:
        for error in checks:
            raise error
        return usable(customer_id, payment_method_id)

    gateway.payment_method_usable = flaky  # type: ignore[method-assign]
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.retries) == ("succeeded", 1)


# ------------------------------------------------------------------------- grants, reports, fencing


def test_grants_are_ledgered_as_grants_once_per_reference(
    billing: BillingService, store: FlakyStore
) -> None:
    """An opening balance and a support grant are ledger entries of kind ``grant`` under their
    references; a grant under a reference already credited (the opening balance's included)
    adds nothing."""
    billing.create_user("u1", balance=500)
    assert billing.grant_credits("u1", 200, reference="support-1")
    assert not billing.grant_credits("u1", 200, reference="support-1")
    assert not billing.grant_credits("u1", 500, reference="opening-balance:u1")
    assert [(e.kind, e.delta, e.reference) for e in store.ledger("u1")] == [
        ("grant", 500, "opening-balance:u1"), ("grant", 200, "support-1"),
    ]  # fmt: skip
    assert _books_balance(billing, store, "u1") == 700


def test_saving_a_card_puts_the_users_new_snapshot_in_the_cache(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    cache_backend: CacheBackend,
) -> None:
    """A card saved by a paused user lifts the pause in the store and in the cache at once."""
    gateway.queue("authentication_required")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    held = cache_backend.cache.get("u1")
    assert held is not None and held.state == "paused"
    billing.save_payment_method("u1", "cus_u1", "pm_card_new")
    assert cache_backend.cache.get("u1") == store.snapshot("u1")
    assert store.snapshot("u1").state == "active"


def test_deduction_reports_the_user_and_the_credits_asked_for(
    billing: BillingService, add_user: AddUser
) -> None:
    """A deduction's report, and a refusal, name the user and the credits of the request."""
    add_user(balance=5_000)
    assert billing.deduct_credits("u1", 1_234) == Deduction("u1", 1_234, 3_766, Trigger.NONE)
    with pytest.raises(InsufficientCredits) as caught:
        billing.deduct_credits("u1", 4_000)
    assert (caught.value.user_id, caught.value.requested) == ("u1", 4_000)


def test_worker_whose_attempt_was_taken_over_sends_nothing(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """A worker waiting to retry while its attempt is taken over finds itself fenced out when it
    wakes: it calls nobody; the new holder charges, and the user is credited once."""
    gateway.queue("transient")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_next()  # a timeout: the retry waits under lease 1
    assert billing.recover("u1", force=True) == 1
    tasks.run_next()  # the retry wakes up under a lease it no longer holds
    assert len(gateway.calls) == 1 and store.attempts("u1")[0].status == "charging"
    tasks.run_pending()
    assert len(gateway.calls) == 2 and len(gateway.succeeded_keys) == 1
    assert _books_balance(billing, store, "u1") == 10_900


def test_top_up_paid_before_its_worker_ran_is_not_charged(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """A claimed top-up whose payment was settled (by its webhook) before its worker ran: the
    worker finds the attempt ended and charges nothing."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    meta = {"user_id": "u1", "credits": "10000", "attempt": "1", "purpose": "auto_topup"}
    assert billing.settle_payment("u1", "pi_1", Money(1_000, "eur"), meta)
    assert tasks.run_pending() == 1
    assert gateway.calls == []
    assert _books_balance(billing, store, "u1") == 10_900


class MidChargeGateway:
    """The scripted gateway; ``during`` runs inside each charge, before Stripe answers (another
    worker acting meanwhile)."""

    def __init__(self, inner: ScriptedGateway) -> None:
        self.inner = inner
        self.during: Callable[[], object] = lambda: None

    def charge(self, request: ChargeRequest) -> ChargeResult:
        self.during()
        return self.inner.charge(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_worker_that_lost_its_lease_during_the_charge_records_no_decline(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
) -> None:
    """A decline reaching a worker whose attempt was taken over during the charge is not
    written by it; the new holder asks again under the same key and records it, once."""
    mid = MidChargeGateway(gateway)
    billing = make_billing(payment_gateway=mid)  # type: ignore[arg-type]
    gateway.queue("declined:insufficient_funds")
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)
    mid.during = lambda: billing.recover("u1", force=True)
    tasks.run_next()
    user, attempt = store.get_user("u1"), store.attempts("u1")[0]
    assert (user.open_attempt, user.consecutive_failures, attempt.status) == (1, 0, "charging")
    assert notifier.kinds("u1") == []
    mid.during = lambda: None
    tasks.run_pending()
    assert [a.status for a in store.attempts("u1")] == ["declined"]
    assert store.get_user("u1").consecutive_failures == 1
    assert notifier.kinds("u1") == ["topup_declined"]


def _before_next(store: FlakyStore, method: str, action: Callable[[], object]) -> None:
    """Run ``action`` once, just before the store's next ``method`` call: another worker acting
    between two steps of this one."""
    call = getattr(store.inner, method)

    def hooked(*args: object, **kwargs: object) -> object:
        del store.__dict__[method]
        action()
        return call(*args, **kwargs)

    setattr(store, method, hooked)


@pytest.mark.parametrize("fault", ["turned off", "card refused", "card check unreachable"])
def test_worker_that_lost_its_lease_while_checking_writes_no_ending(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
    fault: str,
) -> None:
    """A worker whose attempt is taken over while it checks whether the top-up is still due and
    the card usable ends nothing on what it saw (no skip, no pause, no failure); the new holder
    checks again as things are now and tops up."""
    billing = make_billing(config=BillingConfig(charge_tries=1))
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)
    check = gateway.payment_method_usable

    def unreachable(customer_id: str, payment_method_id: str) -> bool:
        raise TransientGatewayError("connection reset")

    if fault == "turned off":
        billing.update_settings("u1", AutoTopupSettings(False, 1_000, 10_000, "eur"))
    elif fault == "card refused":
        gateway.usable = False
    else:
        gateway.payment_method_usable = unreachable  # type: ignore[method-assign]
    _before_next(store, "attempt", lambda: billing.recover("u1", force=True))
    tasks.run_next()
    user, attempt = store.get_user("u1"), store.attempts("u1")[0]
    assert (user.open_attempt, user.state, attempt.status) == (1, "active", "claimed")
    assert notifier.kinds("u1") == []
    gateway.usable, gateway.payment_method_usable = True, check  # type: ignore[method-assign]
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    tasks.run_pending()
    assert [a.status for a in store.attempts("u1")] == ["succeeded"]
    assert notifier.kinds("u1") == ["topup_succeeded"]
    assert _books_balance(billing, store, "u1") == 10_900


def test_charge_names_the_customer_card_user_credits_attempt_and_purpose(
    billing: BillingService, add_user: AddUser, gateway: ScriptedGateway, tasks: QueueRunner
) -> None:
    """The charge goes to the saved customer and card, with metadata saying whose top-up it
    is, how many credits it buys and which attempt it belongs to."""
    add_user(balance=1_200, amount=10_000)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    [request] = gateway.calls
    assert (request.customer_id, request.payment_method_id) == ("cus_u1", "pm_card_visa")
    assert dict(request.metadata) == {
        "user_id": "u1", "credits": "10000", "attempt": "1", "purpose": "auto_topup",
    }  # fmt: skip


def test_decline_after_a_card_check_retry_records_its_intent_and_the_retry(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
) -> None:
    """A card check that timed out once, then a declined charge: the attempt records the
    declined PaymentIntent and one retry."""
    gateway.queue("declined:insufficient_funds")
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    usable = gateway.payment_method_usable
    checks = iter([TransientGatewayError("connection reset")])

    def flaky(customer_id: str, payment_method_id: str) -> bool:
        for error in checks:
            raise error
        return usable(customer_id, payment_method_id)

    gateway.payment_method_usable = flaky  # type: ignore[method-assign]
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.payment_intent_id, attempt.retries) == (
        "declined", "pi_scripted_0001", 1,
    )  # fmt: skip


def test_authentication_required_as_the_last_failure_suspends_and_says_why(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    notifier: RecordingNotifier,
    clock: ManualClock,
) -> None:
    """Two declines then a charge that needs the customer: the third failure in a row suspends
    auto top-up (not merely pauses it), with a notice naming the attempt and the count."""
    gateway.queue("declined:generic_decline", "declined:generic_decline")
    gateway.queue("authentication_required")
    add_user(balance=900)  # enabling under the threshold claims attempt 1 at once
    tasks.run_pending()
    for _ in range(2):
        clock.advance(HOUR)
        billing.deduct_credits("u1", 1)
        tasks.run_pending()
    assert store.get_user("u1").state == "suspended"
    assert notifier.kinds("u1")[-2:] == ["topup_action_required", "topup_suspended"]
    suspended = notifier.sent[-1]
    assert (suspended.notice_id, dict(suspended.detail)) == (
        "topup_suspended:u1:3", {"failures": "3"},
    )  # fmt: skip


def test_attempt_notice_is_stamped_with_the_time_it_is_sent(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
    clock: ManualClock,
) -> None:
    """An attempt's notice carries the injected clock's time when the worker sends it."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)
    clock.advance(7)
    tasks.run_pending()
    assert [(n.kind, n.at) for n in notifier.sent] == [("topup_succeeded", clock.now())]


def test_recovery_waits_for_the_lease_unless_forced(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, clock: ManualClock
) -> None:
    """Recovering an attempt whose lease still holds does nothing; once the lease has run out,
    recovery takes it over and runs it again."""
    add_user(balance=1_200)
    billing.deduct_credits("u1", 300)  # claimed, its worker queued
    clock.advance(billing.config.attempt_lease_seconds - 1)
    assert billing.recover("u1") is None and len(tasks) == 1
    clock.advance(1)
    assert billing.recover("u1") == 1 and len(tasks) == 2


# ------------------------------------------------------------------------- what is logged
# The warnings of a top-up's run (card check, charge, read-back, unknown, suspended) are
# asserted line by line with the other log events in test_metrics.py.


def test_stopped_top_up_is_logged_with_its_attempt_and_user(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    store: FlakyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store outage mid-flight stops the worker: the log names the attempt and the user (with
    the error's traceback), and the attempt stays open for a recovery."""
    add_user("alice", balance=1_200)
    billing.deduct_credits("alice", 300)  # claims attempt 1
    store.failing.add("attempt")
    with caplog.at_level(logging.ERROR, logger="sim.billing.service"):
        tasks.run_pending()
    [record] = [r for r in caplog.records if r.name == "sim.billing.service"]
    assert record.args == (1, "alice")
    assert record.exc_info is not None and record.exc_info[0] is StoreUnavailable
    store.failing.clear()
    assert store.get_user("alice").open_attempt == 1


# ------------------------------------------------------------------------- the charge's lease


def test_charge_in_flight_holds_a_full_lease_from_its_start(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    clock: ManualClock,
) -> None:
    """Marking the attempt ``charging`` renews its lease for a full lease from then: while the
    charge is in flight nobody may take the attempt over, and it is charged once."""
    mid = MidChargeGateway(gateway)
    billing = make_billing(payment_gateway=mid)  # type: ignore[arg-type]
    add_user(balance=1_200, service=billing)
    billing.deduct_credits("u1", 300)  # claimed at T0
    clock.advance(200)  # the worker starts late, within the claim's lease
    seen: list[tuple[float | None, int | None]] = []
    mid.during = lambda: seen.append((store.get_user("u1").lease_until, billing.recover("u1")))
    tasks.run_next()
    assert seen == [(clock.now() + billing.config.attempt_lease_seconds, None)]
    assert len(tasks) == 0 and len(gateway.calls) == 1
    assert [a.status for a in store.attempts("u1")] == ["succeeded"]


def test_saved_settings_are_put_in_the_cache_under_the_user(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """Saving settings puts the user's new snapshot (threshold, amount, switched off) in the
    cache under that user, at once."""
    add_user(balance=5_000)
    billing.update_settings("u1", AutoTopupSettings(False, 2_000, 21_000, "eur"))
    held = cache_backend.cache.get("u1")
    assert held == store.snapshot("u1")
    assert held is not None and (held.enabled, held.threshold, held.amount) == (
        False,
        2_000,
        21_000,
    )


# ------------------------------------------------------------------------- payment metadata


@pytest.mark.parametrize("attempt", ["x", "1.5", "-1", "\u0661"])
def test_payment_naming_a_malformed_attempt_is_a_price_mismatch(
    billing: BillingService, add_user: AddUser, store: FlakyStore, attempt: str
) -> None:
    """A payment whose metadata ``attempt`` is not a plain ASCII number (a word, a decimal, a
    sign, an Arabic-Indic digit) is refused as a ``PriceMismatch`` naming the payment, before
    anything is credited."""
    add_user(balance=5_000)
    meta = {"user_id": "u1", "credits": "10000", "attempt": attempt}
    with pytest.raises(PriceMismatch) as caught:
        billing.settle_payment("u1", "pi_odd_attempt", Money(1_000, "eur"), meta)
    assert "pi_odd_attempt" in str(caught.value)
    assert _books_balance(billing, store, "u1") == 5_000
    assert store.attempts("u1") == []


# ------------------------------------------------------------------------- users and refusals


def test_email_is_stored_sealed_to_the_user(
    billing: BillingService, store: FlakyStore, vault: Vault
) -> None:
    """A user created with an e-mail holds it encrypted for that user's ``email`` field (it
    opens to the address, and is not the address); without one, nothing is stored."""
    billing.create_user("u1", email="u1@example.com")
    billing.create_user("u2")
    user = store.get_user("u1")
    assert user.encrypted_email is not None and b"u1@example.com" not in user.encrypted_email
    assert vault.decrypt("u1", user.wrapped_key, "email", user.encrypted_email) == (
        "u1@example.com"
    )
    assert store.get_user("u2").encrypted_email is None


def test_enabling_without_a_card_names_the_user(billing: BillingService) -> None:
    """The refusal to enable auto top-up without a card says whose settings were refused."""
    billing.create_user("u1", balance=100)
    with pytest.raises(PaymentMethodMissing) as caught:
        billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    assert caught.value.user_id == "u1"


@pytest.mark.parametrize(("credits", "shown"), [(-5, "-5"), (0, "0"), ("10", "'10'")])
def test_refused_amount_is_shown_in_the_error(
    billing: BillingService, add_user: AddUser, credits: object, shown: str
) -> None:
    """An invalid amount is refused with an error that shows the amount given."""
    add_user()
    with pytest.raises(InvalidAmount) as caught:
        billing.deduct_credits("u1", credits)  # type: ignore[arg-type]
    assert str(caught.value).endswith(f"got {shown}")


def test_unreachable_cache_is_logged_naming_the_user(
    vault: Vault, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A write the cache could not take is logged as a warning that says the cache was
    unreachable and for which user."""
    server = fakeredis.FakeServer()
    billing = BillingService(
        clock=clock, cache=fakeredis.FakeRedis(server=server), store=SQLiteStore(":memory:"),
        gateway=ScriptedGateway(), notifier=RecordingNotifier(), tasks=QueueRunner(), vault=vault,
    )  # fmt: skip
    billing.create_user("alice", balance=500)
    server.connected = False
    with caplog.at_level(logging.WARNING, logger="sim.billing.service"):
        billing.deduct_credits("alice", 100)
    [record] = [r for r in caplog.records if r.name == "sim.billing.service"]
    assert record.levelno == logging.WARNING
    assert "cache unreachable" in record.getMessage() and "alice" in record.getMessage()


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "lowest", "refused"),
    [
        ("cooldown_seconds", 0.0, -0.001),
        ("charge_tries", 1, 0),
        ("failures_before_suspension", 1, 0),
        ("attempt_lease_seconds", 0.001, 0.0),
        ("retry_backoff_seconds", 0.0, -0.001),
        ("idempotency_window_seconds", 0.001, 0.0),
    ],
)
def test_config_accepts_its_lowest_values_and_names_the_field_it_refuses(
    field: str, lowest: float, refused: float
) -> None:
    """Each rule's lowest allowed value is accepted (a zero cooldown, one try, suspension at the
    first failure, no back-off); one step below is refused with an error naming the rule."""
    assert getattr(BillingConfig(**{field: lowest}), field) == lowest
    with pytest.raises(ValueError, match=field):
        BillingConfig(**{field: refused})


def test_redis_client_is_cached_under_the_services_key_prefix(
    vault: Vault, clock: ManualClock
) -> None:
    """Given a redis client, the service keeps each user's snapshot under ``topup:{user}`` by
    default, or under the prefix it is given, so two services can share one Redis."""
    client = fakeredis.FakeRedis()
    ports: dict[str, Any] = {
        "clock": clock, "cache": client, "gateway": ScriptedGateway(),
        "notifier": RecordingNotifier(), "tasks": QueueRunner(), "vault": vault,
    }  # fmt: skip
    default = BillingService(store=SQLiteStore(":memory:"), **ports)
    tenant = BillingService(store=SQLiteStore(":memory:"), cache_prefix="tenant-b", **ports)
    default.create_user("u1", balance=500)
    tenant.create_user("u1", balance=700)
    assert sorted(client.keys()) == [b"tenant-b:{u1}", b"topup:{u1}"]
    assert (default.balance("u1"), tenant.balance("u1")) == (500, 700)


# ------------------------------------------------------------------------- the monthly limit

FEB = 1_769_904_000.0  # 2026-02-01T00:00:00Z: the first reset after the clock's start


def _limit(billing: BillingService, limit: int | None, amount: int = 10_000) -> None:
    billing.update_settings(
        "u1", AutoTopupSettings(True, 1_000, amount, "eur", monthly_limit=limit)
    )


def test_monthly_limit_holds_top_ups_and_tells_the_user_once_a_month(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    clock: ManualClock,
    notifier: RecordingNotifier,
    store: FlakyStore,
) -> None:
    """With a limit of one top-up, the second crossing of the month is held (``limited``, also
    on a refused request), the user is told once that month, and the top-ups resume at the
    month's reset."""
    add_user(balance=5_000)
    _limit(billing, 10_000)
    assert billing.deduct_credits("u1", 4_100).trigger is Trigger.CLAIMED
    tasks.run_pending()
    clock.advance(HOUR)
    held = billing.deduct_credits("u1", 10_000)
    assert (held.balance, held.trigger, held.attempt) == (900, Trigger.LIMITED, None)
    [notice] = [n for n in notifier.sent if n.kind == "topup_limit_reached"]
    assert (notice.notice_id, dict(notice.detail), notice.at) == (
        "topup_limit_reached:u1:2026-01", {"month": "2026-01", "monthly_limit": "10000"},
        clock.now(),
    )  # fmt: skip
    assert store.pending_notices("u1") == []  # sent, and marked sent
    clock.advance(HOUR)
    with pytest.raises(InsufficientCredits) as refused:
        billing.deduct_credits("u1", 901)
    assert (refused.value.trigger, len(tasks)) == ("limited", 0)
    assert notifier.kinds("u1").count("topup_limit_reached") == 1
    clock.set(FEB)
    assert billing.deduct_credits("u1", 1).trigger is Trigger.CLAIMED
    tasks.run_pending()
    assert billing.balance("u1") == 899 + 10_000
    assert notifier.kinds("u1").count("topup_limit_reached") == 1


def test_limit_notice_a_dead_worker_left_is_sent_by_the_reconcile(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    clock: ManualClock,
    notifier: RecordingNotifier,
    store: FlakyStore,
) -> None:
    """The hold's notice is queued in the deduction's transaction: a worker killed before it
    sends it leaves it in the outbox, and the reconcile sends it (once)."""
    add_user(balance=5_000)
    _limit(billing, 10_000)
    billing.deduct_credits("u1", 4_100)
    tasks.run_pending()
    clock.advance(HOUR)
    port_store = billing.store
    plan = CrashPlan(at="test/store.deduct:after", armed=True, operation="test")
    billing.store = Boundaries(port_store, "store", plan)  # type: ignore[assignment]
    with pytest.raises(Crash):
        billing.deduct_credits("u1", 10_000)
    billing.store = port_store
    assert [n.kind for n in store.pending_notices("u1")] == ["topup_limit_reached"]
    assert "topup_limit_reached" not in notifier.kinds("u1")
    assert reconcile_user(billing, "u1").notices_sent == 1
    billing.deduct_credits("u1", 1)  # held again: nothing more to tell this month
    assert notifier.kinds("u1").count("topup_limit_reached") == 1


def test_claim_charges_the_credits_it_reserved(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    gateway: ScriptedGateway,
) -> None:
    """A claim fixes its credits (the limit was checked against them): an amount raised
    between the claim and the charge applies from the next claim, so no charge passes the
    limit."""
    add_user(balance=1_200)
    _limit(billing, 20_000)
    billing.deduct_credits("u1", 300)
    _limit(billing, 54_000, amount=54_000)
    tasks.run_pending()
    assert [call.metadata["credits"] for call in gateway.calls] == ["10000"]
    assert billing.balance("u1") == 900 + 10_000


def test_a_claim_from_before_claims_kept_credits_tops_up_the_settings_amount(
    tmp_path: Path, clock: ManualClock, gateway: ScriptedGateway
) -> None:
    """An attempt claimed by a version that did not yet keep the claim's credits (its
    ``claimed_credits`` is empty in a migrated file) is charged the settings' amount."""
    path = tmp_path / "billing.sqlite"
    billing, store, tasks = _on_a_file(path, clock, gateway)
    billing.create_user("u1", email="u1@example.com", balance=1_200)
    billing.save_payment_method("u1", "cus_u1", "pm_card_visa")
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 21_000, "eur"))
    billing.deduct_credits("u1", 300)  # claims attempt 1, keeping its 21,000 credits
    old = sqlite3.connect(path)  # what the older version's file held
    old.execute("UPDATE topup_attempts SET claimed_credits = NULL")
    old.commit()
    old.close()
    assert store.attempt("u1", 1).claimed_credits is None  # type: ignore[union-attr]
    tasks.run_pending()
    assert [call.metadata["credits"] for call in gateway.calls] == ["21000"]
    assert billing.balance("u1") == 900 + 21_000
    store.close()


def test_no_limit_changes_nothing(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, clock: ManualClock
) -> None:
    """Without a limit, every crossing past the cooldown claims, however many in a month."""
    add_user(balance=1_200)
    for _ in range(5):
        assert billing.deduct_credits("u1", billing.balance("u1") - 500).trigger is (
            Trigger.CLAIMED
        )
        tasks.run_pending()
        clock.advance(HOUR)
    assert billing.balance("u1") == 500 + 10_000
