"""Signed but hostile webhook deliveries: each outcome by class, every check before any write.

A correctly signed event can still be wrong for good (a replayed fixture, a bug at the sender, a
leaked secret): it is answered 2xx so that Stripe stops retrying, dead-lettered with its reason,
and changes nothing. A transient failure is answered 503 so that Stripe delivers it again. A bad
signature is 400. Nothing here is ever a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
    SQLiteStore,
    Subscriptions,
)
from sim.billing.api import build_app
from sim.billing.payments import StripeGateway
from sim.billing.reconcile import reconcile_all, report_lines
from sim.billing.webhooks import MAX_PAYLOAD_BYTES
from sim.stripe_emulator import StripeEmulator, signature_header

from .conftest import BillingFactory, FlakyStore

SECRET = "whsec_hostile_test_secret"
WEBHOOK = "/v1/payments/webhook"


@dataclass
class Hook:
    """The app, the services behind it, and a real ``payment_intent.succeeded`` to vary."""

    client: TestClient
    billing: BillingService
    store: FlakyStore
    clock: ManualClock
    template: dict[str, Any]
    subscriptions: Subscriptions

    def post(self, payload: bytes, signature: str | None = None) -> Any:
        """POST ``payload`` signed now (or with the ``signature`` header given)."""
        header = signature or signature_header(payload, SECRET, int(self.clock.now()))
        return self.client.post(WEBHOOK, content=payload, headers={"Stripe-Signature": header})

    def event(self, edit: Callable[[dict[str, Any]], object] = lambda e: None) -> bytes:
        """The template as a new event of a new payment, changed by ``edit``."""
        event = json.loads(json.dumps(self.template))
        self.serial = getattr(self, "serial", 0) + 1
        event["id"] = f"evt_hostile_{self.serial}"
        event["data"]["object"]["id"] = f"pi_hostile_{self.serial}"
        event["created"] = int(self.clock.now())
        edit(event)
        return json.dumps(event).encode()

    def books(self) -> tuple[int, int]:
        """The user's balance and ledger length: what no refused event may change."""
        return self.store.get_user("u1").balance, len(self.store.ledger("u1"))


@pytest.fixture
def hook(
    make_billing: BillingFactory,
    stripe_gateway: StripeGateway,
    emulator: StripeEmulator,
    store: FlakyStore,
    clock: ManualClock,
    tasks: QueueRunner,
) -> Iterator[Hook]:
    """u1 with a card, one paid top-up (whose webhook is the template), and the app."""
    billing = make_billing(payment_gateway=stripe_gateway)
    emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
    wired = build_app(billing, stripe_gateway, SECRET)
    billing.create_user("u1", balance=1_500)
    customer = stripe_gateway.ensure_customer("u1")
    billing.save_payment_method(
        "u1", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    billing.create_user("u2", balance=0)
    billing.save_payment_method(
        "u2", stripe_gateway.ensure_customer("u2"), stripe_gateway.attach_card(
            stripe_gateway.ensure_customer("u2"), "pm_card_visa"
        ),
    )  # fmt: skip
    billing.update_settings("u1", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    billing.deduct_credits("u1", 600)  # under 1,000: a 10,000-credit top-up, paid
    tasks.run_pending()
    [paid] = [d for d in emulator.due_deliveries() if d.event_type == "payment_intent.succeeded"]
    with TestClient(wired.app, raise_server_exceptions=False) as client:
        yield Hook(client, billing, store, clock, json.loads(paid.payload), wired.subscriptions)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``data.object.<path>`` (dots between keys) to ``value``."""

    def edit(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = event["data"]["object"]
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _amount(value: object) -> Callable[[dict[str, Any]], None]:
    def edit(event: dict[str, Any]) -> None:
        _set("amount", value)(event)
        _set("amount_received", value)(event)

    return edit


def test_new_payment_of_the_template_is_credited(hook: Hook) -> None:
    """The control: the template, as a new payment, credits its 10,000 credits once."""
    balance, _ = hook.books()
    payload = hook.event()
    first, again = hook.post(payload), hook.post(payload)
    assert (first.status_code, first.json()["outcome"]) == (200, "credited")
    assert again.json()["outcome"] == "duplicate"
    assert hook.books()[0] == balance + 10_000


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "amount no tier's price": (_amount(1_234), "1234"),
    "amount as a string": (_amount("1000"), "amount"),
    "amount as a fraction": (_amount(1000.9), "amount"),
    "amount negative": (_amount(-1000), "amount"),
    "amount a boolean": (_amount(True), "amount"),
    "currency not sold": (_set("currency", "xxx"), "xxx"),
    "currency not text": (_set("currency", 978), "currency"),
    "unknown user": (_set("metadata.user_id", "ghost"), "ghost"),
    "another user's customer": (_set("customer", "cus_someone_else"), "cus_someone_else"),
    "no customer": (_set("customer", None), "customer"),
    "metadata a list": (_set("metadata", ["user_id", "u1"]), "metadata"),
    "metadata values not text": (_set("metadata.credits", 10000), "metadata"),
    "attempt not a number": (_set("metadata.attempt", "x"), "attempt"),
    "credits not what was paid": (_set("metadata.credits", "54000"), "54000"),
    "intent id a number": (_set("id", 7), "id"),
    "object a list": (lambda e: e["data"].update(object=[1]), "object"),
    "created as text": (lambda e: e.update(created="yesterday"), "created"),
    "created past 64 bits": (lambda e: e.update(created=10**30), "created"),
    "amount past JSON's safe integers": (_amount(2**64), "amount"),
    "event id missing": (lambda e: e.pop("id"), "id"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_signed_event_that_can_never_apply_is_dead_lettered(hook: Hook, case: str) -> None:
    """A signed event that fails a check: 200 ``dead_letter``, the reason kept, no credit, and
    its redelivery is a duplicate (Stripe stops retrying; a person reads the dead letter)."""
    edit, named = HOSTILE[case]
    before = hook.books()
    payload = hook.event(edit)
    response = hook.post(payload)
    assert (response.status_code, response.json()["outcome"]) == (200, "dead_letter")
    [letter] = hook.store.dead_letters()
    assert named in letter.reason and letter.payload == payload
    assert hook.post(payload).json()["outcome"] == "duplicate"
    assert hook.books() == before and len(hook.store.dead_letters()) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "created": 1, "data": '
        b'{"object": {"amount": Infinity}}}',
        b'{"id": "evt_1", "created": NaN}',
        b"[" * 5_000 + b"]" * 5_000,
        b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"deep": '
        + b"[" * 5_000
        + b"]" * 5_000
        + b"}}}",
        b'{"id": "evt_1", "created": ' + b"9" * 5_000 + b"}",
        b'{"truncated": ',
        b"[]",
    ],
    ids=["infinity", "nan", "deep", "deep-inside", "huge-int", "truncated", "array"],
)
def test_signed_body_that_is_not_a_stripe_event_is_dead_lettered(hook: Hook, raw: bytes) -> None:
    """Not strict JSON, nested past the bound, or not an event: dead-lettered under a digest of
    the payload (there is no trusted id), once."""
    before = hook.books()
    response = hook.post(raw, _signed(raw, str(int(hook.clock.now()))))
    assert (response.status_code, response.json()["outcome"]) == (200, "dead_letter")
    [letter] = hook.store.dead_letters()
    assert letter.event_id.startswith("unparsed:") and letter.type == "unknown"
    assert hook.post(raw, _signed(raw, str(int(hook.clock.now())))).json()["outcome"] == "duplicate"
    assert hook.books() == before


def test_subscription_event_of_an_unknown_user_is_dead_lettered(hook: Hook) -> None:
    """``customer.subscription.created`` naming a user we do not have: dead-lettered, no row."""
    event = {
        "id": "evt_sub_ghost", "type": "customer.subscription.created", "created": 1,
        "data": {"object": {
            "id": "sub_ghost", "status": "active", "currency": "eur",
            "customer": "cus_ghost", "cancel_at_period_end": False, "current_period_end": 10,
            "metadata": {"user_id": "ghost", "credits": "10000", "purpose": "monthly_topup"},
        }},
    }  # fmt: skip
    response = hook.post(json.dumps(event).encode())
    assert (response.status_code, response.json()["outcome"]) == (200, "dead_letter")
    assert hook.store.subscription("sub_ghost") is None
    assert "ghost" in hook.store.dead_letters()[0].reason


def _first_invoice(hook: Hook, user_id: str, customer: str, amount: int = 1_000) -> bytes:
    invoice = {
        "id": f"evt_inv_{user_id}_{amount}", "type": "invoice.paid", "created": 1,
        "data": {"object": {
            "id": f"in_{user_id}_{amount}", "amount_paid": amount, "currency": "eur",
            "customer": customer, "subscription": f"sub_{user_id}",
            "subscription_details": {
                "metadata": {"user_id": user_id, "credits": "10000", "purpose": "monthly_topup"}
            },
        }},
    }  # fmt: skip
    return json.dumps(invoice).encode()


def test_subscription_event_past_64_bits_is_dead_lettered(hook: Hook) -> None:
    """A subscription event whose time does not fit the store's integers (it was a 500: the
    overflow reached SQLite) is dead-lettered, and no subscription is recorded."""
    customer = hook.billing.customer_id("u1")
    event = {
        "id": "evt_sub_huge", "type": "customer.subscription.updated", "created": 10**30,
        "data": {"object": {
            "id": "sub_huge", "status": "active", "currency": "eur", "customer": customer,
            "cancel_at_period_end": False, "current_period_end": 10,
            "metadata": {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"},
        }},
    }  # fmt: skip
    response = hook.post(json.dumps(event).encode())
    assert (response.status_code, response.json()["outcome"]) == (200, "dead_letter")
    assert hook.store.subscription("sub_huge") is None


def test_invoice_before_our_record_of_its_subscription_records_it_and_credits(
    hook: Hook,
) -> None:
    """The first invoice's event can arrive before :meth:`Subscriptions.create` has recorded the
    subscription: the invoice says whose it is and which tier, so it is recorded from it (as of
    time 0, superseded by any subscription event) and credited at once; no retry."""
    balance, _ = hook.books()
    customer = hook.billing.customer_id("u1")
    assert customer is not None
    response = hook.post(_first_invoice(hook, "u1", customer))
    assert (response.status_code, response.json()["outcome"]) == (200, "credited")
    assert hook.books()[0] == balance + 10_500
    record = hook.store.subscription("sub_u1")
    assert record is not None and (record.user_id, record.credits, record.as_of) == (
        "u1", 10_000, 0.0,
    )  # fmt: skip
    assert hook.subscriptions.live("u1") == record


def test_first_invoice_of_another_customer_or_wrong_price_is_dead_lettered(hook: Hook) -> None:
    """Made from the invoice alone, the record is still checked: the user's customer, the
    tier's price; a refused invoice records no subscription."""
    customer = hook.billing.customer_id("u1")
    assert customer is not None
    for payload in (
        _first_invoice(hook, "u1", "cus_other"),
        _first_invoice(hook, "u1", customer, 999),
    ):
        assert hook.post(payload).json()["outcome"] == "dead_letter"
    assert hook.store.subscription("sub_u1") is None and len(hook.store.dead_letters()) == 2


def test_invoice_of_our_subscription_for_an_unknown_user_is_dead_lettered(hook: Hook) -> None:
    """The same invoice naming a user we do not have can never apply: dead-lettered."""
    invoice = {
        "id": "evt_inv_ghost", "type": "invoice.paid", "created": 1,
        "data": {"object": {
            "id": "in_ghost", "amount_paid": 1000, "currency": "eur", "customer": "cus_x",
            "subscription": "sub_ghost",
            "subscription_details": {
                "metadata": {"user_id": "ghost", "credits": "10000", "purpose": "monthly_topup"}
            },
        }},
    }  # fmt: skip
    response = hook.post(json.dumps(invoice).encode())
    assert (response.status_code, response.json()["outcome"]) == (200, "dead_letter")


def test_store_down_is_503_and_the_redelivery_credits(hook: Hook) -> None:
    """A transient failure answers 503, writes nothing, and the next delivery applies."""
    balance, _ = hook.books()
    payload = hook.event()
    hook.store.failing.add("settle_topup")
    assert hook.post(payload).status_code == 503
    assert hook.books()[0] == balance and hook.store.dead_letters() == []
    hook.store.failing.clear()
    assert hook.post(payload).json()["outcome"] == "credited"
    assert hook.books()[0] == balance + 10_000


def test_store_down_while_dead_lettering_is_503(hook: Hook) -> None:
    """A dead letter that cannot be written is not lost: 503, and Stripe retries."""
    hook.store.failing.add("dead_letter")
    assert hook.post(hook.event(_amount(1_234))).status_code == 503


def _signed(payload: bytes, stamp: str) -> str:
    """A ``Stripe-Signature`` whose HMAC is right for ``stamp`` as Stripe computes it."""
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


@pytest.mark.parametrize("stamp", ["{now}=junk", "1e9", "nan", "-5", "", " 12"])
def test_signature_over_a_malformed_timestamp_is_400(hook: Hook, stamp: str) -> None:
    """A header whose HMAC is right but whose ``t=`` is not a whole number is refused as
    unsigned (it was a 500: the timestamp was parsed outside the signature check)."""
    stamp = stamp.format(now=int(hook.clock.now()))
    payload = hook.event()
    response = hook.post(payload, _signed(payload, stamp))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    assert hook.store.dead_letters() == []


def test_signed_body_that_is_not_utf8_is_400(hook: Hook) -> None:
    """Stripe signs text: bytes that are not UTF-8 are refused with the signature."""
    payload = b'{"id": "evt_\xff"}'
    response = hook.post(payload, _signed(payload, str(int(hook.clock.now()))))
    assert response.status_code == 400


def test_body_past_the_bound_is_413_unread(hook: Hook) -> None:
    """A delivery larger than ``MAX_PAYLOAD_BYTES`` is refused before it is parsed."""
    payload = b" " * (MAX_PAYLOAD_BYTES + 1)
    response = hook.post(payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_dead_letters_are_counted_by_the_reconcile(hook: Hook) -> None:
    """The reconcile report names the dead letters, so they reach a person."""
    hook.post(hook.event(_amount(1_234)))
    lines = report_lines(reconcile_all(hook.billing), hook.store.dead_letters())
    assert lines[-2].startswith("dead letter evt_hostile_1 (payment_intent.succeeded) at ")
    assert "1234" in lines[-2]
    assert lines[-1] == "1 dead-lettered webhook events shown (newest first)"


def test_dead_letter_keeps_the_newest_first(hook: Hook) -> None:
    """The store lists dead letters newest first, as far as asked."""
    for amount in (1_111, 2_222, 3_333):
        hook.clock.advance(1)
        hook.post(hook.event(_amount(amount)))
    letters = hook.store.dead_letters(limit=2)
    assert ["3333" in letters[0].reason, "2222" in letters[1].reason] == [True, True]
    assert isinstance(hook.store, FlakyStore) and isinstance(hook.store.inner, SQLiteStore)


@pytest.mark.parametrize(
    "metadata",
    [
        {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"},
        {"user_id": "u1", "credits": "10000"},
        {"credits": "10000", "purpose": "auto_topup"},
    ],
    ids=["another-purpose", "no-purpose", "no-user"],
)
def test_payment_that_is_not_an_auto_top_up_is_ignored(
    hook: Hook, metadata: dict[str, str]
) -> None:
    """A succeeded payment credits only as an auto top-up of a user: with another purpose, none,
    or no user, it is ``ignored`` (subscription invoices credit by invoice), not dead-lettered."""
    before = hook.books()
    response = hook.post(hook.event(_set("metadata", metadata)))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    assert hook.books() == before and hook.store.dead_letters() == []


def test_failed_payment_without_its_attempt_is_ignored(hook: Hook) -> None:
    """A failed auto top-up payment that names no attempt has nothing to recover: ``ignored``."""

    def failed_without_attempt(event: dict[str, Any]) -> None:
        event["type"] = "payment_intent.payment_failed"
        del event["data"]["object"]["metadata"]["attempt"]

    response = hook.post(hook.event(failed_without_attempt))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


def test_outcomes_say_what_each_event_did(hook: Hook) -> None:
    """The answer names what happened: an invoice of no subscription of ours changes nothing,
    a paid one credits once, a failed one marks the subscription past due once (an older event
    changes nothing), subscription events update unless older, other types are ignored."""
    customer = hook.billing.customer_id("u1")
    serial = iter(range(100))

    def post(kind: str, obj: dict[str, Any], created: int) -> str:
        event = {"id": f"evt_o{next(serial)}", "type": kind, "created": created,
                 "data": {"object": obj}}  # fmt: skip
        response = hook.post(json.dumps(event).encode())
        return str(response.json()["outcome"])

    monthly = {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"}
    paid = {"id": "in_p", "amount_paid": 1000, "currency": "eur", "customer": customer,
            "subscription": "sub_o", "subscription_details": {"metadata": monthly}}  # fmt: skip
    one_off = {"id": "in_x", "amount_paid": 1000, "currency": "eur", "customer": customer}
    assert post("invoice.paid", one_off, 10) == "unchanged"
    assert post("invoice.paid", paid, 11) == "credited"
    assert post("invoice.payment_succeeded", paid, 12) == "unchanged"  # the same invoice
    failed = {**paid, "id": "in_f"}
    assert post("invoice.payment_failed", failed, 14) == "past_due"
    assert post("invoice.payment_failed", failed, 13) == "unchanged"  # older than the state
    subscription = {"id": "sub_o", "status": "active", "customer": customer,
                    "metadata": monthly, "current_period_end": 99}  # fmt: skip
    assert post("customer.subscription.updated", subscription, 20) == "updated"
    assert post("customer.subscription.updated", subscription, 19) == "unchanged"
    other = {**subscription, "id": "sub_z", "metadata": {"purpose": "something_else"}}
    assert post("customer.subscription.created", other, 21) == "unchanged"
    assert post("charge.refunded", {"id": "ch_1"}, 22) == "ignored"


def test_price_refusal_names_the_payment(hook: Hook) -> None:
    """The dead letter of a payment whose metadata disagrees with what was paid names the
    payment, what it paid and what it buys: a person can look it up at Stripe."""
    hook.post(hook.event(_set("metadata.credits", "54000")))
    [letter] = hook.store.dead_letters()
    assert letter.reason.startswith("payment pi_hostile_1 of ")
    assert "buys 10000 credits" in letter.reason


def test_customer_refusal_names_the_payment_and_both_parties(hook: Hook) -> None:
    """The dead letter of another customer's payment names the payment, that customer and the
    user it claimed to be for."""
    hook.post(hook.event(_set("customer", "cus_someone_else")))
    [letter] = hook.store.dead_letters()
    assert letter.reason == (
        "payment pi_hostile_1: customer 'cus_someone_else' is not the customer of user 'u1'"
    )
