"""Metrics and structured logs: the counters move as the service works, ``/metrics`` serves
them from the service's own registry, and each trigger and payment outcome logs its stable
event name."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import sim.billing
from sim.billing import (
    BillingConfig,
    BillingService,
    InsufficientCredits,
    ManualClock,
    Money,
    QueueRunner,
    StoreUnavailable,
    TransientGatewayError,
    Trigger,
)
from sim.billing.metrics import METRIC_NAMES, METRICS, NoMetrics, PrometheusMetrics
from sim.billing.reconcile import reconcile_user
from sim.billing.subscriptions import Subscriptions
from sim.billing.testing import ScriptedGateway
from sim.billing.webhooks import WebhookHandler

from .conftest import BillingFactory, FlakyStore
from .test_api import Api, api  # noqa: F401  (the fixture, used by name)
from .test_service import LookUpGateway, _unknown_past_the_window

AddUser = Callable[..., str]


def _metrics(billing: BillingService) -> PrometheusMetrics:
    assert isinstance(billing.metrics, PrometheusMetrics)
    return billing.metrics


def test_deductions_and_triggers_are_counted_by_kind(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, clock: ManualClock
) -> None:
    """Served and refused deductions; claimed, pending and cooling decisions, one each per
    request that made them; a credit observes its delay since the claim."""
    add_user("u1", balance=1_500)
    m = _metrics(billing)
    billing.deduct_credits("u1", 600)  # 900: claims
    billing.deduct_credits("u1", 100)  # 800: the attempt is in flight
    with pytest.raises(InsufficientCredits):
        billing.deduct_credits("u1", 50_000)  # refused, still pending
    clock.advance(7)
    tasks.run_pending()  # charged and credited: 10,800
    billing.deduct_credits("u1", 10_000)  # 800 again, within the cooldown
    assert m.value("topup_deductions_total", result="served") == 3
    assert m.value("topup_deductions_total", result="refused") == 1
    kinds = {k: m.value("topup_triggers_total", kind=k) for k in ("claimed", "pending", "cooling")}
    assert kinds == {"claimed": 1, "pending": 2, "cooling": 1}
    assert m.value("topup_charges_total", outcome="succeeded", decline_code="") == 1
    assert m.value("topup_attempts_finished_total", status="succeeded") == 1
    assert m.value("topup_credit_delay_seconds_count") == 1
    assert m.value("topup_credit_delay_seconds_sum") == 7
    assert m.value("topup_credit_delay_seconds_bucket", le="5.0") == 0
    assert m.value("topup_credit_delay_seconds_bucket", le="10.0") == 1


def test_a_deduction_the_store_cannot_make_is_counted_failed(
    billing: BillingService, add_user: AddUser, store: FlakyStore
) -> None:
    """A store outage is a failed deduction (what ``TopupDeductionsFailing`` pages on), not a
    served or refused one; nothing was taken."""
    add_user("u1", balance=1_500)
    m = _metrics(billing)
    billing.deduct_credits("u1", 100)
    store.failing.add("deduct")
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            billing.deduct_credits("u1", 100)
    store.failing.clear()
    assert m.value("topup_deductions_total", result="failed") == 2
    assert m.value("topup_deductions_total", result="served") == 1
    assert m.value("topup_deductions_total", result="refused") == 0
    assert billing.balance("u1") == 1_400


def test_a_credit_whose_claim_cannot_be_read_back_loses_only_its_delay(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, store: FlakyStore
) -> None:
    """The credit's delay is measured from its claim, read back after the credit is written: a
    store that fails that read costs the observation and nothing else (the credit stands, the
    attempt is closed and counted, the call returns)."""
    add_user("u1", balance=1_500)
    m = _metrics(billing)
    billing.deduct_credits("u1", 600)  # 900: claims attempt 1
    store.failing.add("settle_topup")
    tasks.run_pending()  # charged; the credit's write failed, the attempt stays open
    store.failing = {"attempt"}
    meta = {"user_id": "u1", "credits": "10000", "attempt": "1"}
    assert billing.settle_payment("u1", "pi_scripted_0001", Money(1_000, "eur"), meta)
    store.failing.clear()
    assert billing.balance("u1") == 10_900
    assert store.attempts("u1")[0].status == "succeeded"
    assert m.value("topup_attempts_finished_total", status="succeeded") == 1
    assert m.value("topup_credit_delay_seconds_count") == 0


def test_declines_suspension_and_unknown_outcomes_are_counted(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
) -> None:
    """A decline by its code, the suspension it leads to, and an attempt whose every answer was
    lost (``unknown``), with each transient answer counted."""
    billing = make_billing(config=BillingConfig(failures_before_suspension=1, cooldown_seconds=0))
    add_user("u1", balance=1_500, service=billing)
    add_user("u2", balance=1_500, service=billing)
    m = _metrics(billing)
    gateway.queue("declined:insufficient_funds")
    billing.deduct_credits("u1", 600)
    tasks.run_pending()
    assert m.value("topup_charges_total", outcome="declined", decline_code="insufficient_funds")
    assert m.value("topup_attempts_finished_total", status="declined") == 1
    assert m.value("topup_suspensions_total") == 1
    gateway.queue("transient", "transient", "transient")
    billing.deduct_credits("u2", 600)
    tasks.run_pending()
    assert m.value("topup_charges_total", outcome="transient", decline_code="") == 3
    assert m.value("topup_unknown_outcomes_total") == 1
    assert m.value("topup_credit_delay_seconds_count") == 0


def test_reconcile_counts_stuck_attempts(
    billing: BillingService, add_user: AddUser, tasks: QueueRunner, clock: ManualClock
) -> None:
    """An attempt whose worker never ran is taken over by the reconcile once its lease ran out:
    one stuck attempt; its credit then observes the whole delay since the claim."""
    add_user("u1", balance=1_500)
    billing.deduct_credits("u1", 600)
    tasks._queue.clear()  # the worker died with its task
    clock.advance(billing.config.attempt_lease_seconds + 1)
    assert reconcile_user(billing, "u1").attempt_recovered == 1
    tasks.run_pending()
    m = _metrics(billing)
    assert m.value("topup_stuck_attempts_total") == 1
    assert m.value("topup_credit_delay_seconds_sum") == billing.config.attempt_lease_seconds + 1


class _AcceptAll:
    """A verifier that accepts every delivery (the payloads below are not Stripe's)."""

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Accept."""


def test_webhook_results_and_dead_letters_are_counted(
    billing: BillingService, gateway: ScriptedGateway
) -> None:
    """An unreadable signed delivery is dead-lettered (by type ``unknown``); its copy is a
    duplicate."""
    handler = WebhookHandler(
        billing=billing,
        subscriptions=Subscriptions(billing=billing, gateway=gateway),  # type: ignore[arg-type]
        verifier=_AcceptAll(),
    )
    assert handler.handle(b"not json", None) == "dead_letter"
    assert handler.handle(b"not json", None) == "duplicate"
    m = _metrics(billing)
    assert m.value("topup_webhooks_total", result="dead_letter") == 1
    assert m.value("topup_webhooks_total", result="duplicate") == 1
    assert m.value("topup_dead_letters_total", type="unknown") == 1


def test_metrics_endpoint_serves_the_services_own_registry(api: Api) -> None:  # noqa: F811
    """``GET /metrics`` is the Prometheus text format, with every exported metric; a webhook
    delivery and a forged one show up in it as ``credited`` and ``rejected``."""
    assert api.subscribe().status_code == 201
    paid = [d for d in api.emulator.due_deliveries() if d.event_type == "invoice.paid"]
    assert api.deliver(paid) == [200]
    forged = api.client.post("/v1/payments/webhook", content=paid[0].payload)
    assert forged.status_code == 400
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    # (``*_created`` are the library's standard creation-time series of each counter.)
    exported = {
        f"{name}_total" if f.type == "counter" else name
        for name, f in families.items()
        if not name.endswith("_created")
    }
    assert exported == set(METRIC_NAMES)
    for name, family in families.items():
        base = name.removesuffix("_created")
        queried = f"{base}_total" if f"{base}_total" in METRICS else base
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= set(METRICS.get(queried, ())), sample
    webhooks = {s.labels["result"]: s.value for s in families["topup_webhooks"].samples
                if s.name == "topup_webhooks_total"}  # fmt: skip
    assert webhooks == {"credited": 1, "rejected": 1}


def test_two_services_never_share_counts(make_billing: BillingFactory, add_user: AddUser) -> None:
    """Each service counts in its own registry: nothing global is touched."""
    first, second = make_billing(), make_billing()
    add_user("u1", balance=5_000, service=first)
    first.deduct_credits("u1", 10)
    assert _metrics(first).value("topup_deductions_total", result="served") == 1
    assert _metrics(second).value("topup_deductions_total", result="served") == 0
    assert _metrics(first).registry is not _metrics(second).registry


def test_a_service_without_prometheus_metrics_serves_none(
    make_billing: BillingFactory, add_user: AddUser, tasks: QueueRunner
) -> None:
    """``NoMetrics`` counts nothing and changes nothing; the app then answers 404 on
    ``/metrics``."""
    from sim.billing.api import build_app

    billing = BillingService(
        clock=ManualClock(), cache=make_billing().cache, store=make_billing().store,
        gateway=ScriptedGateway(), notifier=make_billing().notifier, tasks=tasks,
        vault=make_billing().vault, metrics=NoMetrics(),
    )  # fmt: skip
    add_user("u1", balance=1_500, service=billing)
    assert billing.deduct_credits("u1", 600).attempt == 1
    tasks.run_pending()
    assert billing.balance("u1") == 10_900
    wired = build_app(billing, ScriptedGateway(), "whsec_test")  # type: ignore[arg-type]
    with TestClient(wired.app, raise_server_exceptions=False) as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_triggers_and_outcomes_log_stable_event_names(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``event=<name> key=value`` lines, one per trigger and payment outcome."""
    caplog.set_level(logging.INFO, logger="sim.billing")
    add_user("u1", balance=1_500)
    gateway.queue("declined:expired_card")
    billing.deduct_credits("u1", 600)
    tasks.run_pending()
    clock.advance(billing.config.cooldown_seconds)
    billing.deduct_credits("u1", 1)
    tasks.run_pending()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=")]
    assert lines[:6] == [
        "event=topup_claimed user=u1 attempt=1",
        "event=topup_charge_declined user=u1 attempt=1 decline_code=expired_card"
        " payment_intent=pi_scripted_0001",
        "event=topup_finished user=u1 attempt=1 status=declined decline_code=expired_card",
        "event=topup_claimed user=u1 attempt=2",
        "event=topup_charge_succeeded user=u1 attempt=2 payment_intent=pi_scripted_0002",
        "event=topup_credited user=u1 attempt=2 payment_intent=pi_scripted_0002 delay=0.000",
    ]
    assert {getattr(r, "event", None) for r in caplog.records} >= {"topup_claimed"}


def test_the_decisions_every_request_repeats_log_at_debug_and_the_claim_at_info(
    billing: BillingService,
    add_user: AddUser,
    tasks: QueueRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a top-up is in flight or cooling, every request below the threshold makes the same
    decision: those log at debug level, so that an info log holds one line per claim, not one
    per request."""
    caplog.set_level(logging.DEBUG, logger="sim.billing")
    add_user("u1", balance=1_500)
    billing.deduct_credits("u1", 600)  # claims
    billing.deduct_credits("u1", 1)  # pending: the attempt is in flight
    tasks.run_pending()
    billing.deduct_credits("u1", 10_000)  # cooling
    levels = {r.event: r.levelno for r in caplog.records if hasattr(r, "event")}
    assert levels["topup_claimed"] == logging.INFO
    assert (levels["topup_pending"], levels["topup_cooling"]) == (logging.DEBUG, logging.DEBUG)


def test_every_logged_event_is_documented() -> None:
    """The events table of ``docs/operations.md`` lists exactly the event names the module logs
    (read from the source: a new or renamed event must be documented)."""
    billing_dir = Path(sim.billing.__file__).parent
    source = "\n".join(p.read_text() for p in sorted(billing_dir.glob("*.py")))
    calls = re.findall(r"log_event\(\s*\w+,\s*[^,]+,\s*(f?)\"([^\"]+)\"", source)
    expanded = {
        "topup_{trigger.value}": {f"topup_{t.value}" for t in Trigger if t is not Trigger.NONE},
        "topup_charge_{outcome}": {
            f"topup_charge_{o}" for o in ("succeeded", "declined", "requires_action")
        },
    }
    logged = set()
    for is_format, name in calls:
        logged |= expanded[name] if is_format else {name}
    docs = (billing_dir.parents[1] / "docs" / "operations.md").read_text()
    table = docs.split("## Log events", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert len(calls) >= 15
    assert documented == logged


def test_deductions_counted_from_many_threads_are_all_counted() -> None:
    """The request path's lock-free counts lose nothing under concurrent increments."""
    metrics = PrometheusMetrics()

    def work() -> None:
        for _ in range(20_000):
            metrics.deduction(True)
            metrics.trigger(Trigger.PENDING)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.value("topup_deductions_total", result="served") == 160_000
    assert metrics.value("topup_triggers_total", kind="pending") == 160_000
    metrics.trigger(Trigger.NONE)  # not a decision at the threshold: not counted
    assert sum(s.value for s in metrics.samples() if s.name == "topup_triggers_total") == 160_000


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The service's warning lines, in order."""
    return [
        r.getMessage() for r in caplog.records
        if r.name == "sim.billing.service" and r.levelno == logging.WARNING
    ]  # fmt: skip


def test_charges_without_an_answer_warn_with_their_key_then_once_unknown(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each try that got no answer is a warning naming the user, the attempt, its idempotency
    key and the error; out of tries, one more says the outcome is unknown."""
    caplog.set_level(logging.WARNING, logger="sim.billing")
    gateway.queue("transient", "transient", "transient")
    add_user("u1", balance=1_200)
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    transient = (
        "event=topup_charge_transient user=u1 attempt=1 key=auto-topup:u1:1"
        " error='scripted transient failure'"
    )
    assert _warnings(caplog) == [transient] * 3 + ["event=topup_unknown user=u1 attempt=1"]


def test_a_card_check_without_an_answer_warns_and_checks_again_before_charging(
    billing: BillingService,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    store: FlakyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The check is retried as what it was: the attempt stays ``claimed`` (nothing was sent),
    so the next try checks the card again, and only then charges."""
    caplog.set_level(logging.WARNING, logger="sim.billing")
    checks: list[str] = []

    def once_unreachable(customer_id: str, payment_method_id: str) -> bool:
        checks.append(payment_method_id)
        if len(checks) == 1:
            raise TransientGatewayError("connection reset")
        return True

    add_user("u1", balance=1_200)
    gateway.payment_method_usable = once_unreachable  # type: ignore[method-assign]
    billing.deduct_credits("u1", 300)
    tasks.run_next()
    assert _warnings(caplog) == [
        "event=topup_card_check_transient user=u1 attempt=1 error='connection reset'"
    ]
    assert store.attempts("u1")[0].status == "claimed" and gateway.calls == []
    tasks.run_pending()
    assert checks == ["pm_card_visa", "pm_card_visa"] and len(gateway.calls) == 1
    assert store.attempts("u1")[0].status == "succeeded"


def test_a_charge_that_needs_the_customer_is_counted_logged_and_may_suspend(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``requires_action`` is an outcome of its own in the charge counter and the log; as the
    failure that reaches the limit it suspends, with a warning naming the failure count."""
    caplog.set_level(logging.INFO, logger="sim.billing")
    billing = make_billing(config=BillingConfig(failures_before_suspension=1))
    add_user("u1", balance=1_200, service=billing)
    gateway.queue("authentication_required")
    billing.deduct_credits("u1", 300)
    tasks.run_pending()
    m = _metrics(billing)
    assert m.value("topup_charges_total", outcome="requires_action", decline_code="") == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=")]
    assert lines[1:] == [
        "event=topup_charge_requires_action user=u1 attempt=1 payment_intent=pi_scripted_0001",
        "event=topup_finished user=u1 attempt=1 status=requires_action",
        "event=topup_suspended user=u1 attempt=1 failures=1",
    ]


def test_a_read_back_without_an_answer_warns_with_the_attempts_key(
    make_billing: BillingFactory,
    add_user: AddUser,
    gateway: ScriptedGateway,
    tasks: QueueRunner,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the idempotency window an open attempt is read back, not charged again; a read-back
    that gets no answer is a warning naming the attempt's key and the error."""
    lookup = LookUpGateway(gateway, failures=1)
    _unknown_past_the_window(make_billing, add_user, gateway, tasks, clock, "succeeded", lookup)
    caplog.clear()  # the lost answers' warnings, tested above
    caplog.set_level(logging.WARNING, logger="sim.billing")
    tasks.run_pending()
    assert _warnings(caplog) == [
        "event=topup_lookup_transient user=u1 attempt=1 key=auto-topup:u1:1 error='read timed out'"
    ]
