"""Stripe webhooks and monthly subscriptions, end to end with the emulator's deliveries."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable

import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    PaymentMethodMissing,
    QueueRunner,
    RecordingNotifier,
    SubscriptionError,
    Subscriptions,
    UnknownTier,
    WebhookHandler,
    WebhookSignatureError,
)
from sim.billing.payments import StripeGateway, WebhookVerifier
from sim.billing.reconcile import reconcile_user
from sim.stripe_emulator import Delivery, StripeEmulator, signature_header

from .conftest import BillingFactory, FlakyStore

DAY = 86_400.0
MONTH_CREDITS = 10_000 + 500  # the 10,000 tier and its monthly bonus


@pytest.fixture
def billing(make_billing: BillingFactory, stripe_gateway: StripeGateway) -> BillingService:
    """The service charging through the emulator."""
    return make_billing(payment_gateway=stripe_gateway)


@pytest.fixture
def subscriptions(billing: BillingService, stripe_gateway: StripeGateway) -> Subscriptions:
    """Monthly top-ups through the emulator."""
    return Subscriptions(billing=billing, gateway=stripe_gateway)


@pytest.fixture
def handler(
    billing: BillingService,
    subscriptions: Subscriptions,
    emulator: StripeEmulator,
    clock: ManualClock,
) -> WebhookHandler:
    """The webhook handler, registered with the emulator as an endpoint."""
    emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
    verifier = WebhookVerifier(emulator.webhook_secret, clock)
    return WebhookHandler(billing=billing, subscriptions=subscriptions, verifier=verifier)


@pytest.fixture
def user(billing: BillingService, stripe_gateway: StripeGateway) -> Callable[..., str]:
    """Create a user with a Stripe customer and a card; return the card id."""

    def make(card: str = "pm_card_visa", user_id: str = "u1", balance: int = 5_000) -> str:
        billing.create_user(user_id, balance=balance)
        customer = stripe_gateway.ensure_customer(user_id)
        card_id = stripe_gateway.attach_card(customer, card)
        billing.save_payment_method(user_id, customer, card_id)
        return card_id

    return make


def _deliver(handler: WebhookHandler, deliveries: list[Delivery]) -> list[str]:
    """Hand each delivery to the handler, signed at delivery time as Stripe signs it."""
    now = int(handler.billing.clock.now())
    return [
        handler.handle(d.payload, d.signed_headers(now)["Stripe-Signature"]) for d in deliveries
    ]


def _due(emulator: StripeEmulator, types: tuple[str, ...] = ()) -> list[Delivery]:
    found = emulator.due_deliveries()
    return [d for d in found if not types or d.event_type in types]


def test_renewals_credit_once_per_invoice_despite_triple_out_of_order_delivery(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    user: Callable[..., str],
) -> None:
    """Each invoice (first and two renewals) credits 10,500 once, every webhook sent 3x shuffled."""
    user(balance=0)
    record = subscriptions.create("u1", 10_000, "eur")
    assert record.status == "active" and record.current_period_end is not None
    shuffle = random.Random(3)
    for month in range(3):
        if month:
            clock.set(subscriptions.live("u1").current_period_end + 60)  # type: ignore[union-attr]
        deliveries = _due(emulator) * 3
        shuffle.shuffle(deliveries)
        outcomes = _deliver(handler, deliveries)
        assert outcomes.count("credited") == 1
        assert billing.balance("u1") == (month + 1) * MONTH_CREDITS
    paid = [e for e in store.ledger("u1") if e.kind == "subscription"]
    assert [e.delta for e in paid] == [MONTH_CREDITS] * 3
    assert len({e.reference for e in paid}) == 3


def test_invoice_payment_failed_marks_past_due_and_notifies(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    stripe_gateway: StripeGateway,
    notifier: RecordingNotifier,
    clock: ManualClock,
    user: Callable[..., str],
) -> None:
    """A renewal charged to a failing card leaves the subscription past due and tells the user."""
    user()
    record = subscriptions.create("u1", 21_000, "usd")
    _deliver(handler, _due(emulator))
    customer = stripe_gateway.ensure_customer("u1")
    failing = stripe_gateway.attach_card(customer, "pm_card_chargeCustomerFail")
    stripe_gateway.client.v1.subscriptions.update(
        record.subscription_id, params={"default_payment_method": failing}
    )
    clock.set((record.current_period_end or 0) + 60)
    _deliver(handler, _due(emulator))
    assert subscriptions.live("u1").status == "past_due"  # type: ignore[union-attr]
    assert "subscription_payment_failed" in notifier.kinds("u1")


def test_cancel_at_period_end_stops_renewals(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    user: Callable[..., str],
) -> None:
    """After cancelling, the paid month runs out, the subscription ends and nothing renews."""
    user(balance=0)
    record = subscriptions.create("u1", 10_000, "eur")
    _deliver(handler, _due(emulator))
    cancelled = subscriptions.cancel("u1")
    assert cancelled.cancel_at_period_end and cancelled.status == "active"
    clock.set((record.current_period_end or 0) + 60)
    _deliver(handler, _due(emulator))
    clock.advance(40 * DAY)
    _deliver(handler, _due(emulator))
    assert subscriptions.live("u1") is None
    assert store.subscription(record.subscription_id).status == "canceled"  # type: ignore[union-attr]
    assert billing.balance("u1") == MONTH_CREDITS


def test_older_subscription_event_never_overwrites_a_newer_state(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    user: Callable[..., str],
) -> None:
    """A late 'updated' event from before the cancellation does not revive the subscription."""
    user()
    record = subscriptions.create("u1", 10_000, "eur")
    early = _due(emulator)
    clock.advance(DAY)
    subscriptions.cancel("u1")
    clock.set((record.current_period_end or 0) + 60)
    late = _due(emulator)
    _deliver(handler, late)
    _deliver(handler, early)  # the oldest events arrive last
    assert store.subscription(record.subscription_id).status == "canceled"  # type: ignore[union-attr]


def test_one_live_subscription_per_user_and_only_bonus_tiers(
    subscriptions: Subscriptions, billing: BillingService, user: Callable[..., str]
) -> None:
    """A second subscription, the bonus-less tier, an unknown tier or no card are refused."""
    user()
    with pytest.raises(SubscriptionError, match="no monthly subscription"):
        subscriptions.create("u1", 1_000, "eur")
    with pytest.raises(UnknownTier):
        subscriptions.create("u1", 5_000, "eur")
    subscriptions.create("u1", 54_000, "jpy")
    with pytest.raises(SubscriptionError, match="already"):
        subscriptions.create("u1", 10_000, "eur")
    billing.create_user("u2")
    with pytest.raises(PaymentMethodMissing):
        subscriptions.create("u2", 10_000, "eur")
    with pytest.raises(SubscriptionError, match="no live subscription"):
        subscriptions.cancel("u2")


def test_top_up_credited_by_webhook_when_the_confirm_could_not(
    billing: BillingService,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    tasks: QueueRunner,
    user: Callable[..., str],
) -> None:
    """The store failed while the confirm path settled: the webhook credits, exactly once."""
    user(balance=1_200)
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 300)
    store.failing.add("settle_topup")
    tasks.run_pending()
    store.failing.clear()
    assert billing.balance("u1") == 900
    succeeded = _due(emulator, ("payment_intent.succeeded",))
    assert _deliver(handler, succeeded * 2) == ["credited", "duplicate"]
    assert billing.balance("u1") == store.ledger_sum("u1") == 10_900
    assert store.attempts("u1")[0].status == "succeeded"


def test_webhook_after_confirm_changes_nothing(
    billing: BillingService,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    notifier: RecordingNotifier,
    tasks: QueueRunner,
    user: Callable[..., str],
) -> None:
    """Success and failure events for attempts the confirm already settled are no-ops."""
    user(balance=1_200)
    user("pm_card_chargeDeclined", user_id="u2", balance=1_200)
    for user_id in ("u1", "u2"):
        billing.update_settings(user_id, AutoTopupSettings(True, 1_000, 10_000, "eur"))
        billing.deduct_credits(user_id, 300)
    tasks.run_pending()
    kinds = ("payment_intent.succeeded", "payment_intent.payment_failed")
    assert _deliver(handler, _due(emulator, kinds)) == ["unchanged", "unchanged"]
    assert billing.balance("u1") == 10_900
    assert store.get_user("u2").consecutive_failures == 1
    assert notifier.kinds("u2") == ["topup_declined"]


def test_failure_reported_only_by_webhook_is_recorded_once(
    billing: BillingService,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    tasks: QueueRunner,
    user: Callable[..., str],
) -> None:
    """If the confirm path never finished, payment_intent.payment_failed makes the billing ask
    Stripe again at once (same key): the replayed decline is recorded, once."""
    user("pm_card_chargeDeclinedInsufficientFunds", balance=1_200)
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 300)
    store.failing.add("finish_attempt")
    tasks.run_pending()  # declined, but the outcome could not be stored
    store.failing.clear()
    assert store.attempts("u1")[0].status == "charging"
    failed = _due(emulator, ("payment_intent.payment_failed",))
    assert _deliver(handler, failed * 2) == ["recovering", "duplicate"]
    tasks.run_pending()
    attempt = store.attempts("u1")[0]
    assert (attempt.status, attempt.decline_code) == ("declined", "insufficient_funds")
    assert store.get_user("u1").consecutive_failures == 1


def test_processing_failure_raises_and_the_redelivery_credits_once(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    store: FlakyStore,
    user: Callable[..., str],
) -> None:
    """A failing handler raises (so the endpoint answers 5xx); Stripe's retry then credits."""
    user(balance=0)
    subscriptions.create("u1", 10_000, "eur")
    paid = _due(emulator, ("invoice.payment_succeeded",))
    store.failing.add("credit")
    with pytest.raises(Exception, match="injected failure"):
        _deliver(handler, paid)
    store.failing.clear()
    assert not store.event_processed(paid[0].event_id)
    assert _deliver(handler, paid * 2) == ["credited", "duplicate"]
    assert billing.balance("u1") == MONTH_CREDITS


def test_forged_signature_changes_nothing(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    store: FlakyStore,
    user: Callable[..., str],
) -> None:
    """A delivery with a forged or tampered payload is refused and not recorded."""
    user(balance=0)
    subscriptions.create("u1", 10_000, "eur")
    paid = _due(emulator, ("invoice.payment_succeeded",))[0]
    signature = paid.headers["Stripe-Signature"]
    with pytest.raises(WebhookSignatureError):
        handler.handle(paid.payload.replace(b"10000", b"99999"), signature)
    with pytest.raises(WebhookSignatureError):
        handler.handle(paid.payload, signature.replace("v1=", "v1=0"))
    assert billing.balance("u1") == 0 and not store.event_processed(paid.event_id)


def test_events_of_other_products_are_ignored(
    handler: WebhookHandler, emulator: StripeEmulator, stripe_gateway: StripeGateway
) -> None:
    """Events that are not ours (a customer created elsewhere) answer 'ignored'."""
    stripe_gateway.ensure_customer("someone")
    assert set(_deliver(handler, _due(emulator))) == {"ignored"}


def test_card_refused_for_the_first_month_creates_no_subscription(
    subscriptions: Subscriptions, user: Callable[..., str]
) -> None:
    """The first month is charged at once: a declining card gets a clear error, no subscription."""
    user("pm_card_chargeDeclinedInsufficientFunds")
    with pytest.raises(SubscriptionError, match="insufficient_funds"):
        subscriptions.create("u1", 10_000, "eur")
    assert subscriptions.live("u1") is None


def test_each_tier_is_billed_at_its_own_price(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    user: Callable[..., str],
) -> None:
    """Two tiers in one currency each get their own monthly Price, found again by lookup key."""
    user(user_id="u1", balance=0)
    user(user_id="u2", balance=0)
    subscriptions.create("u1", 21_000, "eur")
    subscriptions.create("u2", 54_000, "eur")
    _deliver(handler, _due(emulator))
    assert (billing.balance("u1"), billing.balance("u2")) == (22_000, 57_000)


def test_success_is_notified_once_when_the_first_settle_fails(
    billing: BillingService,
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    notifier: RecordingNotifier,
    tasks: QueueRunner,
    user: Callable[..., str],
) -> None:
    """The credit and the attempt's close are one write: when it fails nobody is told yet; the
    payment_intent.succeeded webhook credits, closes and tells once, and its copy tells nobody."""
    user(balance=1_200)
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 300)
    store.failing.add("settle_topup")
    tasks.run_pending()
    store.failing.clear()
    assert billing.balance("u1") == 900 and notifier.kinds("u1") == []
    assert store.attempts("u1")[0].status == "charging"
    _deliver(handler, _due(emulator, ("payment_intent.succeeded",)) * 2)
    assert store.attempts("u1")[0].status == "succeeded"
    assert notifier.kinds("u1") == ["topup_succeeded"]


def test_dead_letter_is_logged_naming_the_event_its_type_and_the_reason(
    handler: WebhookHandler,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A signed top-up event of a user we do not have is dead-lettered, and the warning that
    tells an operator so names the event, its type and why, as the dead letter keeps them."""
    payload = json.dumps(
        {
            "id": "evt_ghost",
            "type": "payment_intent.succeeded",
            "created": int(clock.now()),
            "data": {
                "object": {
                    "id": "pi_ghost",
                    "amount": 1_000,
                    "currency": "eur",
                    "customer": "cus_ghost",
                    "metadata": {"user_id": "ghost", "purpose": "auto_topup"},
                }
            },
        }
    ).encode()
    signature = signature_header(payload, emulator.webhook_secret, int(clock.now()))
    with caplog.at_level(logging.WARNING, logger="sim.billing.webhooks"):
        assert handler.handle(payload, signature) == "dead_letter"
    [letter] = store.dead_letters()
    assert (letter.event_id, letter.type) == ("evt_ghost", "payment_intent.succeeded")
    assert "ghost" in letter.reason
    [record] = [r for r in caplog.records if r.name == "sim.billing.webhooks"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert all(part in message for part in ("evt_ghost", "payment_intent.succeeded", letter.reason))


def test_reconcile_credits_paid_invoices_whose_webhooks_were_all_lost_once(
    subscriptions: Subscriptions,
    handler: WebhookHandler,
    billing: BillingService,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    user: Callable[..., str],
) -> None:
    """An invoice is credited only by its webhook: with every delivery of two months lost, the
    reconcile finds both paid invoices at Stripe and credits each once; a later delivery, and a
    second reconcile, change nothing."""
    user(balance=0)
    subscriptions.create("u1", 10_000, "eur")
    lost = _due(emulator)  # the first month's deliveries, never handed to the handler
    clock.set(subscriptions.live("u1").current_period_end + 60)  # type: ignore[union-attr]
    lost += _due(emulator)  # the renewal's too
    assert billing.balance("u1") == 0
    assert reconcile_user(billing, "u1").uncredited_invoices == ()  # not asked to look
    found = reconcile_user(billing, "u1", subscriptions=subscriptions)
    invoices = [e.reference for e in store.ledger("u1") if e.kind == "subscription"]
    assert found.uncredited_invoices == tuple(invoices) and len(invoices) == 2
    created = [emulator.object(i)["created"] for i in found.uncredited_invoices]  # type: ignore[index]
    assert created[0] < created[1]  # oldest first, as they were paid
    assert billing.balance("u1") == 2 * MONTH_CREDITS
    assert not found.clean
    assert "credited" not in _deliver(handler, lost)  # the webhooks arriving late
    again = reconcile_user(billing, "u1", subscriptions=subscriptions)
    assert again.uncredited_invoices == () and again.clean
    assert billing.balance("u1") == 2 * MONTH_CREDITS
