"""Reconciliation: what one pass repairs, and the command, wired like the server, that reports
per user and in total."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ChargeRequest,
    ManualClock,
    MemoryCache,
    Money,
    QueueRunner,
    RecordingNotifier,
    RedisCache,
    StoreUnavailable,
    Subscriptions,
    TaskRunner,
    Vault,
    serve,
)
from sim.billing import SQLiteStore as Store
from sim.billing.pricing import price_of
from sim.billing.reconcile import main, reconcile_all, reconcile_user
from sim.billing.store import SubscriptionRecord
from sim.billing.tasks import InlineRunner
from sim.billing.testing import ScriptedGateway
from sim.billing.webhook_events import InvoiceEvent
from sim.crashes import Boundaries, Crash, CrashPlan

from .conftest import CacheBackend, FlakyStore

AddUser = Callable[..., str]

KEY = bytes(range(32))


def _billing_on(db: str) -> BillingService:
    """A billing service writing the SQLite file ``db`` under the master key ``KEY``, as a
    server with ``TOPUP_MASTER_KEY`` set to it would."""
    return BillingService(
        clock=ManualClock(), cache=MemoryCache(), store=Store(db), gateway=ScriptedGateway(),
        notifier=RecordingNotifier(), tasks=InlineRunner(), vault=Vault(KEY),
    )  # fmt: skip


def test_command_reconciles_a_store_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m sim.billing.reconcile`` reads the server's store and keys and says what it
    found: here two users, nothing to repair, and ``--user`` narrows it to one."""
    db = str(tmp_path / "billing.sqlite")
    billing = _billing_on(db)
    billing.create_user("ada", balance=500)
    billing.create_user("bob")
    monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(KEY).decode())
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["--db", db]) == 0
    assert capsys.readouterr().out.splitlines() == ["reconciled 2 users: 0 needed repair"]
    assert main(["--db", db, "--user", "bob"]) == 0
    assert capsys.readouterr().out.splitlines() == ["reconciled 1 users: 0 needed repair"]


# reconcile_user and reconcile_all --------------------------------------------------------------


def test_reconcile_replaces_a_cache_entry_ahead_of_the_store(
    billing: BillingService, add_user: AddUser, store: FlakyStore, cache_backend: CacheBackend
) -> None:
    """A cached snapshot newer than the store's (a store restored from a backup) is replaced by
    the store's, although a plain put would keep the newer version."""
    add_user("u1")
    truth = store.snapshot("u1")
    cache_backend.cache.put("u1", replace(truth, version=truth.version + 5, balance=1))
    found = reconcile_user(billing, "u1")
    assert (found.user_id, found.cache_repaired) == ("u1", True)
    assert cache_backend.cache.get("u1") == truth


def test_reconcile_skips_another_users_charge_and_checks_the_rest(
    billing: BillingService, add_user: AddUser, gateway: ScriptedGateway
) -> None:
    """A charge on the customer that names another user is not credited here, and the charges
    after it are still checked: the orphan among them is credited."""
    add_user("u1")
    meta = {"credits": "10000", "purpose": "auto_topup"}
    for key, user in (("theirs-1", "u2"), ("ours-1", "u1")):
        gateway.charge(
            ChargeRequest("cus_u1", "pm_card_visa", Money(1_000, "eur"), key,
                          {"user_id": user, **meta})
        )  # fmt: skip
    ours = gateway.succeeded_charges("cus_u1")[1].payment_intent_id
    assert reconcile_user(billing, "u1").uncredited_charges == (ours,)


def test_reconcile_sends_the_notice_a_dead_worker_left(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    tasks: QueueRunner,
    notifier: RecordingNotifier,
) -> None:
    """A worker killed after notifying and before marking the notice sent leaves it pending:
    the reconcile sends it again (same notice id) and counts it."""
    add_user("u1", balance=1_200)
    billing.deduct_credits("u1", 300)
    port_store, port_cache = billing.store, billing.cache
    plan = CrashPlan(at="test/store.mark_notice_sent:before", armed=True, operation="test")
    billing.store = Boundaries(port_store, "store", plan)  # type: ignore[assignment]
    billing.cache = Boundaries(port_cache, "cache", plan)  # type: ignore[assignment]
    with pytest.raises(Crash):
        tasks.run_pending()
    billing.store, billing.cache = port_store, port_cache
    found = reconcile_user(billing, "u1")
    assert found.notices_sent == 1 and not found.clean
    assert [n.kind for n in notifier.sent] == ["topup_succeeded", "topup_succeeded"]
    assert notifier.sent[0].notice_id == notifier.sent[1].notice_id
    assert store.pending_notices("u1") == []


def test_with_redis_down_the_reconcile_still_recovers_and_credits(
    billing: BillingService, add_user: AddUser, clock: ManualClock
) -> None:
    """Redis unreachable: the cache step is skipped, and the attempt a dead worker left is
    still taken over and credited from the store and Stripe."""
    add_user("u1", balance=1_200)
    billing.deduct_credits("u1", 300)  # claims attempt 1; its worker dies with its queue
    billing.tasks = QueueRunner()
    server = fakeredis.FakeServer()
    server.connected = False
    billing.cache = RedisCache(fakeredis.FakeRedis(server=server))
    clock.advance(301)  # past the attempt's lease
    found = reconcile_user(billing, "u1")
    assert (found.cache_repaired, found.attempt_recovered) == (False, 1)
    billing.tasks.run_pending()  # type: ignore[attr-defined]
    assert billing.store.get_user("u1").balance == 10_900


def test_reconcile_all_skips_a_failing_user_and_logs_which(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user whose reconcile hits an outage is skipped, named in an error log line with the
    exception; the other users are reconciled."""
    add_user("u1")
    add_user("u2")
    snapshot = store.inner.snapshot

    def failing_for_u1(user_id: str) -> Any:
        if user_id == "u1":
            raise StoreUnavailable("store error: disk I/O error")
        return snapshot(user_id)

    store.snapshot = failing_for_u1  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="sim.billing.reconcile"):
        found = reconcile_all(billing)
    assert [r.user_id for r in found] == ["u2"]
    [record] = caplog.records
    assert "u1" in record.getMessage() and record.exc_info is not None


# the command -----------------------------------------------------------------------------------


class _Invoices:
    """A Stripe account whose only payments are the invoices it was given (oldest first):
    nobody bought a tier."""

    def __init__(self, *invoices: InvoiceEvent) -> None:
        self.invoices = invoices
        self.asked: list[str] = []

    def succeeded_purchases(self, customer_id: str) -> list[object]:
        return []

    def paid_invoices(self, customer_id: str) -> list[InvoiceEvent]:
        self.asked.append(customer_id)
        return list(self.invoices)


def test_command_defaults_to_the_local_file_and_finishes_its_recoveries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no options it reads ./billing.sqlite through the emulator's URL, runs each attempt it
    takes over to its end before exiting (inline), credits a paid invoice whose webhook never
    came, and prints the repair, one line a user."""
    monkeypatch.chdir(tmp_path)
    clock = ManualClock(1_000_000_000.0)  # long ago: the lease below has run out by now
    gateway = ScriptedGateway()
    billing = BillingService(
        clock=clock, cache=MemoryCache(), store=Store("billing.sqlite"), gateway=gateway,
        notifier=RecordingNotifier(), tasks=QueueRunner(), vault=Vault(KEY),
    )  # fmt: skip
    billing.create_user("ada", balance=1_200)
    billing.save_payment_method("ada", "cus_ada", "pm_card_visa")
    billing.update_settings("ada", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("ada", 300)  # claims attempt 1, whose worker never runs it
    # A monthly top-up whose paid invoice never reached the webhook.
    billing.store.save_subscription(
        SubscriptionRecord("sub_1", "ada", 21_000, "eur", "active", None, False, 0.0)
    )
    meta = {"user_id": "ada", "credits": "21000", "purpose": "monthly_topup"}
    paid = price_of(21_000, "eur").amount_minor
    account = _Invoices(InvoiceEvent("in_1", paid, "eur", "cus_ada", "sub_1", meta))
    wired: list[tuple[str, str, type]] = []
    build_billing = serve.build_billing

    def wire(db: str, stripe_url: str, tasks: TaskRunner) -> tuple[BillingService, object]:
        wired.append((db, stripe_url, type(tasks)))
        built, _ = build_billing(db, stripe_url, tasks)
        built.gateway = gateway  # charge through the script, not over HTTP
        return built, account  # no purchases; the one lost invoice

    monkeypatch.setattr(serve, "build_billing", wire)
    monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(KEY).decode())
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main([]) == 0
    assert wired == [("billing.sqlite", "http://127.0.0.1:12111", InlineRunner)]
    assert capsys.readouterr().out.splitlines() == [
        "ada: cache repaired=False attempt recovered=1 charges credited=[]"
        " purchases credited=[] invoices credited=['in_1'] notices sent=0",
        "reconciled 1 users: 1 needed repair",
    ]
    assert [c.idempotency_key for c in gateway.calls] == ["auto-topup:ada:1"]
    assert [a.status for a in billing.store.attempts("ada")] == ["succeeded"]


def test_command_help_names_the_command_and_each_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--help`` shows how to invoke it, what it does, and what each option means."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for text in (
        "usage: python -m sim.billing.reconcile [-h] [--db DB] [--stripe-url STRIPE_URL]"
        " [--user USER] Compare cache, store and Stripe for each user; repair what drifted. ",
        "--db DB SQLite file (default: the store at STORE_URL, else billing.sqlite)",
        "--stripe-url STRIPE_URL Stripe API base; the emulator's server by default, '' for real"
        " Stripe test mode",
        "--user USER only this user (repeatable)",
    ):
        assert text in shown


@contextlib.contextmanager
def _fresh_root_logging() -> Iterator[None]:
    """The root logger as a fresh process has it (no handlers, WARNING) for the duration; then
    pytest's handlers and every level the command set are put back."""
    root, stripe = logging.getLogger(), logging.getLogger("stripe")
    handlers, levels = root.handlers[:], (root.level, stripe.level)
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(levels[0])
        stripe.setLevel(levels[1])


def test_command_logs_warnings_as_level_logger_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Log lines go to stderr as ``LEVEL logger: message`` (here: the missing master key)."""
    monkeypatch.delenv("TOPUP_MASTER_KEY", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with _fresh_root_logging():
        assert main(["--db", str(tmp_path / "empty.sqlite")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "WARNING sim.billing.serve: TOPUP_MASTER_KEY is not set: using a throw-away master key"
        " for this run"
    ]


def test_command_quiets_the_stripe_library_under_verbose_logging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Called where logging is already set up verbosely, it still sets the stripe library's
    logger to WARNING, so request logs do not flood the report."""
    stripe = logging.getLogger("stripe")
    stripe_level = stripe.level
    monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(KEY).decode())
    monkeypatch.delenv("REDIS_URL", raising=False)
    try:
        stripe.setLevel(logging.NOTSET)  # as in a fresh process (an earlier main may have set it)
        with caplog.at_level(logging.DEBUG):
            assert main(["--db", str(tmp_path / "empty.sqlite")]) == 0
        assert stripe.level == logging.WARNING
    finally:
        stripe.setLevel(stripe_level)


def test_command_with_a_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The reconcile wires the billing like the server: a setting it cannot use ends it with one
    line naming the setting and status 2, not a traceback."""
    monkeypatch.setenv("TOPUP_MASTER_KEY", "not base64!")
    with pytest.raises(SystemExit) as exit_:
        main(["--db", str(tmp_path / "b.sqlite"), "--stripe-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "TOPUP_MASTER_KEY" in err


@pytest.mark.parametrize("key", [bytes(range(1, 33)), None], ids=["another key", "no key"])
def test_command_refuses_a_master_key_that_cannot_open_the_store(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: bytes | None,
) -> None:
    """A store written under one master key, opened with another (or with none: a throw-away
    one): the command stops at once with one line naming the setting and status 2, instead of
    failing on each user that has a card or a customer."""
    db = str(tmp_path / "billing.sqlite")
    billing = _billing_on(db)
    billing.create_user("ada", balance=500)
    billing.save_payment_method("ada", "cus_ada", "pm_ada")
    if key is None:
        monkeypatch.delenv("TOPUP_MASTER_KEY", raising=False)
    else:
        monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(key).decode())
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--db", db])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2
    assert "TOPUP_MASTER_KEY" in err and "user ada's" in err, err
    assert ("is not set" if key is None else "does not open the data keys") in err, err
    # The key it was written with opens it.
    monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(KEY).decode())
    assert main(["--db", db]) == 0


def test_reconcile_credits_only_the_users_checked_invoices_and_logs_each(
    billing: BillingService,
    add_user: AddUser,
    store: FlakyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Of the paid invoices Stripe lists for the user's customer, one that the webhook would
    refuse (a price that is not the tier's) is logged and left, one of another product is
    skipped, and each of the rest is credited once and logged, in Stripe's order; a user with no
    subscription on record is not looked up at all (both through ``reconcile_all``)."""
    add_user("u1", balance=0)
    add_user("u2", balance=0)
    store.save_subscription(
        SubscriptionRecord("sub_1", "u1", 21_000, "eur", "active", None, False, 0.0)
    )
    paid = price_of(21_000, "eur")
    meta = {"user_id": "u1", "credits": "21000", "purpose": "monthly_topup"}
    account = _Invoices(
        InvoiceEvent("in_wrong", paid.amount_minor - 1, "eur", "cus_u1", "sub_1", meta),
        InvoiceEvent("in_other", 999, "eur", "cus_u1", "sub_x", {"purpose": "something else"}),
        InvoiceEvent("in_1", paid.amount_minor, "eur", "cus_u1", "sub_1", meta),
        InvoiceEvent("in_2", paid.amount_minor, "eur", "cus_u1", "sub_1", meta),
    )
    subscriptions = Subscriptions(billing=billing, gateway=account)  # type: ignore[arg-type]
    billing.add_credits("u1", 21_000 + 2_000, kind="subscription", reference="in_1")
    with caplog.at_level(logging.WARNING, logger="sim.billing.reconcile"):
        found, other = reconcile_all(billing, ["u1", "u2"], subscriptions=subscriptions)
        assert other.clean
    assert found.uncredited_invoices == ("in_2",)
    assert account.asked == ["cus_u1"]
    assert [e.reference for e in store.ledger("u1", kinds=("subscription",))] == ["in_1", "in_2"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith(
        "event=reconcile_invoice_refused user=u1 invoice=in_wrong reason='invoice in_wrong paid"
    ), lines
    assert lines[1] == "event=reconcile_uncredited_invoice user=u1 invoice=in_2"
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
