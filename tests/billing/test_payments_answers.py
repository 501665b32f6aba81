"""The Stripe gateway's requests and its reading of Stripe's answers, each answer given as it
comes (a scripted requester, no emulator): the charge's parameters, intents paid, waiting or
not final, refusals, saved cards, and the on-session intents (a purchase with the customer
present, a card saved with a SetupIntent): declined with their reason, waiting for the customer
with what the client needs, confirmed only while they wait.

Both this and ``test_payments.py`` (the same gateway against the emulator, both ways) test
``payments.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import stripe

from sim.billing import (
    ChargeNeedsAuthentication,
    ChargeRequest,
    GatewayConfigurationError,
    Money,
    TransientGatewayError,
)
from sim.billing.gateway import OnSessionIntent
from sim.billing.payments import StripeGateway, StripeRefused, check_test_key
from sim.billing.stripe_transport import StripeAnswer

from .test_payments import META, _canned_charge


class ScriptedRequester:
    """Answers requests in turn from ``answers`` (status, body); records what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict[str, Any], str | None]] = []

    def request(
        self, method: str, path: str, params: Mapping[str, Any], idempotency_key: str | None = None
    ) -> StripeAnswer:
        self.sent.append((method, path, dict(params), idempotency_key))
        status, body = self.answers.pop(0)
        return StripeAnswer(status, body)


def _gateway(*answers: tuple[int, dict[str, Any]]) -> tuple[StripeGateway, ScriptedRequester]:
    requester = ScriptedRequester(*answers)
    return StripeGateway("sk_test_x", requester=requester), requester


def _pay(*answers: tuple[int, dict[str, Any]], save_card: bool = False) -> OnSessionIntent:
    gateway, _ = _gateway(*answers)
    return gateway.pay_on_session(
        "cus_1", "pm_1", Money(1_000, "eur"), "purchase:u1:1", {"user_id": "u1"},
        save_card=save_card,
    )  # fmt: skip


INTENT = {
    "id": "pi_1", "object": "payment_intent", "amount": 1_000, "currency": "eur",
    "customer": "cus_1", "payment_method": "pm_1", "metadata": {"user_id": "u1"},
    "client_secret": "pi_1_secret_x",
}  # fmt: skip
CARD_ERROR = {
    "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds. No such PaymentMethod: 'pm_1AbCdEfGhIjKlMn'",
}  # fmt: skip


def test_a_purchase_is_confirmed_with_the_customer_present_under_its_key() -> None:
    """No ``off_session``: a card asking for 3-D Secure then waits for the customer. The card
    is kept for later top-ups only when asked."""
    for save_card in (False, True):
        gateway, requester = _gateway((200, {**INTENT, "status": "succeeded"}))
        gateway.pay_on_session("cus_1", "pm_1", Money(1_000, "eur"), "purchase:u1:1", {},
                               save_card=save_card)  # fmt: skip
        [(method, path, params, key)] = requester.sent
        assert (method, path, key) == ("post", "/v1/payment_intents", "purchase:u1:1")
        assert params["confirm"] is True and "off_session" not in params
        assert ("setup_future_usage" in params) is save_card
        if save_card:
            assert params["setup_future_usage"] == "off_session"


def test_a_paid_purchase_is_read_with_its_money_and_no_next_action() -> None:
    answer = {**INTENT, "status": "succeeded", "amount_received": 1_000,
              "next_action": {"type": "ignored"}, "setup_future_usage": "off_session"}  # fmt: skip
    paid = _pay((200, answer))
    assert paid == OnSessionIntent(
        "pi_1", "succeeded", "cus_1", "pm_1", Money(1_000, "eur"), {"user_id": "u1"}, None,
        "pi_1_secret_x", None, "", keeps_card=True,
    )  # fmt: skip


def test_a_purchase_waiting_for_the_customer_carries_the_next_action() -> None:
    action = {"type": "use_stripe_sdk"}
    waiting = _pay((200, {**INTENT, "status": "requires_action", "next_action": action}))
    assert (waiting.status, waiting.next_action, waiting.keeps_card) == (
        "requires_action",
        action,
        False,
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CARD_ERROR, "insufficient_funds"),
        ({"code": "expired_card", "message": "Expired."}, "expired_card"),
    ],
    ids=["decline code", "code alone"],
)
def test_an_intent_back_to_needing_a_card_is_declined_with_its_reason(
    error: dict[str, str], code: str
) -> None:
    """An intent answered ``requires_payment_method`` with its last error is declined: the
    bank's decline code (else the error's code) and the message, Stripe's ids left out."""
    declined = _pay((200, {**INTENT, "status": "requires_payment_method",
                           "last_payment_error": error}))  # fmt: skip
    assert (declined.status, declined.decline_code) == ("declined", code)
    assert declined.message == error["message"].replace("pm_1AbCdEfGhIjKlMn", "{id}")
    assert "pm_1AbCdEfGhIjKlMn" not in declined.message


def test_an_intent_needing_a_card_without_an_error_keeps_stripes_status() -> None:
    """Not declined yet (never confirmed): the status as Stripe gave it, no reason."""
    fresh = _pay((200, {**INTENT, "status": "requires_payment_method"}))
    assert (fresh.status, fresh.decline_code, fresh.message) == (
        "requires_payment_method",
        None,
        "",
    )


def test_a_card_refused_at_once_is_the_declined_intent_the_refusal_carries() -> None:
    """A 402 card error carries the intent: declined, with the error's reason (its code, else
    ``card_declined``) over whatever the intent says."""
    carried = {**INTENT, "status": "requires_payment_method"}
    declined = _pay((402, {"error": {**CARD_ERROR, "payment_intent": carried}}))
    assert (declined.intent_id, declined.status, declined.decline_code) == (
        "pi_1",
        "declined",
        "insufficient_funds",
    )
    assert declined.message == "Your card has insufficient funds. No such PaymentMethod: '{id}'"
    bare = _pay((402, {"error": {"type": "card_error", "payment_intent": carried}}))
    assert (bare.decline_code, bare.message) == ("card_declined", "")
    coded = _pay((402, {"error": {"code": "expired_card", "payment_intent": carried}}))
    assert coded.decline_code == "expired_card"


@pytest.mark.parametrize(
    "answer",
    [
        (400, {"error": {"message": "bad", "payment_intent": {**INTENT, "status": "canceled"}}}),
        (402, {"error": {"message": "declined, no intent"}}),
    ],
    ids=["not a card error", "no intent carried"],
)
def test_other_refusals_are_raised_as_they_are(answer: tuple[int, dict[str, Any]]) -> None:
    with pytest.raises(StripeRefused) as refused:
        _pay(answer)
    assert refused.value.status == answer[0]


def test_a_saved_card_is_checked_by_a_setup_intent_for_off_session_use() -> None:
    gateway, requester = _gateway(
        (200, {"id": "seti_1", "object": "setup_intent", "status": "succeeded",
               "customer": "cus_1", "payment_method": "pm_1"})
    )  # fmt: skip
    saved = gateway.setup_card("cus_1", "pm_1", "setup:u1:1")
    [(method, path, params, key)] = requester.sent
    assert (method, path, key) == ("post", "/v1/setup_intents", "setup:u1:1")
    assert params == {"customer": "cus_1", "payment_method": "pm_1", "usage": "off_session",
                      "confirm": True}  # fmt: skip
    assert (saved.intent_id, saved.status, saved.price) == ("seti_1", "succeeded", None)


def test_a_setup_intent_the_bank_refused_is_declined_with_its_setup_error() -> None:
    refused = {"id": "seti_1", "object": "setup_intent", "status": "requires_payment_method",
               "last_setup_error": {"code": "card_declined", "message": "Declined."}}  # fmt: skip
    gateway, _ = _gateway((200, refused))
    declined = gateway.setup_card("cus_1", "pm_1", "setup:u1:1")
    assert (declined.status, declined.decline_code, declined.message) == (
        "declined",
        "card_declined",
        "Declined.",
    )
    gateway, _ = _gateway((402, {"error": {"code": "card_declined", "setup_intent": refused}}))
    assert gateway.setup_card("cus_1", "pm_1", "setup:u1:2").status == "declined"


@pytest.mark.parametrize(
    ("confirm", "base", "kind", "prefix"),
    [
        ("confirm_payment", "/v1/payment_intents", "payment_intent", "pi"),
        ("confirm_setup", "/v1/setup_intents", "setup_intent", "seti"),
    ],
)
def test_confirm_posts_only_while_the_intent_waits_for_its_customer(
    confirm: str, base: str, kind: str, prefix: str
) -> None:
    """Read first: another customer's intent is no such intent (404, named by its kind); one
    that waits (for the customer or a confirmation) is confirmed; a finished one is answered as
    it is, without confirming it again."""
    intent = {"id": f"{prefix}_1", "object": kind, "customer": "cus_1", "amount": 1_000,
              "currency": "eur"}  # fmt: skip
    gateway, requester = _gateway(
        (200, {**intent, "customer": "cus_2", "status": "requires_action"})
    )
    with pytest.raises(StripeRefused, match=f"no such {kind}") as refused:
        getattr(gateway, confirm)("cus_1", f"{prefix}_1")
    assert refused.value.status == 404 and [s[0] for s in requester.sent] == ["get"]
    for waiting in ("requires_action", "requires_confirmation"):
        gateway, requester = _gateway(
            (200, {**intent, "status": waiting}), (200, {**intent, "status": "succeeded"})
        )
        done = getattr(gateway, confirm)("cus_1", f"{prefix}_1")
        assert [(m, p) for m, p, _, _ in requester.sent] == [
            ("get", f"{base}/{prefix}_1"), ("post", f"{base}/{prefix}_1/confirm"),
        ]  # fmt: skip
        assert done.status == "succeeded"
    card_error = {"code": "card_declined", kind: {**intent, "status": "requires_payment_method"}}
    gateway, _ = _gateway(
        (200, {**intent, "status": "requires_action"}), (402, {"error": card_error})
    )
    assert getattr(gateway, confirm)("cus_1", f"{prefix}_1").status == "declined"
    gateway, requester = _gateway((200, {**intent, "status": "succeeded"}))
    assert getattr(gateway, confirm)("cus_1", f"{prefix}_1").status == "succeeded"
    assert len(requester.sent) == 1


# ------------------------------------------------------------------------- charges, refusals, cards


def test_a_charge_is_sent_confirmed_off_session_under_the_attempts_key() -> None:
    """The charge asks Stripe to confirm at once and off session (the customer is not there:
    a card that needs them answers ``authentication_required`` instead of waiting)."""
    gateway, requester = _gateway(
        (200, {"id": "pi_1", "status": "succeeded", "amount": 1_000, "currency": "eur"})
    )
    gateway.charge(ChargeRequest("cus_1", "pm_1", Money(1_000, "eur"), "auto-topup:u1:1", META))
    [(_, _, params, key)] = requester.sent
    assert (params["confirm"], params["off_session"], key) == (True, True, "auto-topup:u1:1")
    assert (params["customer"], params["payment_method"], params["metadata"]) == (
        "cus_1",
        "pm_1",
        META,
    )


def test_an_intent_waiting_for_the_customer_needs_authentication() -> None:
    """A confirmed intent in ``requires_action`` is the bank asking for the customer."""
    assert _canned_charge(200, {"id": "pi_1", "status": "requires_action"}) == (
        ChargeNeedsAuthentication("pi_1", "the bank asks the customer to confirm")
    )


def test_a_charge_answered_with_a_failed_intent_but_no_refusal_is_transient() -> None:
    """Stripe refuses a charge the card declines (402); an intent answered 200 yet waiting for a
    new card is not an answer to act on: the retry replays it under the same key."""
    error = {"code": "card_declined", "decline_code": "lost_card"}
    failed = {"id": "pi_1", "status": "requires_payment_method", "last_payment_error": error}
    with pytest.raises(TransientGatewayError, match="pi_1 is requires_payment_method"):
        _canned_charge(200, failed)


def test_a_refusal_names_stripes_code_or_else_its_error_type() -> None:
    """The refusal's message carries Stripe's ``code``, else the error's ``type``."""
    typed = StripeRefused("/v1/customers", 400, {"type": "invalid_request_error"})
    coded = StripeRefused("/v1/customers", 400, {"type": "card_error", "code": "card_declined"})
    bare = StripeRefused("/v1/customers", 400, {})
    assert "(400 invalid_request_error)" in str(typed)
    assert "(400 card_declined)" in str(coded) and "(400 refused)" in str(bare)


def test_from_env_takes_the_test_key_it_finds() -> None:
    """With ``STRIPE_API_KEY`` set to a test key, a gateway on the stripe library."""
    gateway = StripeGateway.from_env({"STRIPE_API_KEY": "sk_test_from_env"})
    assert isinstance(gateway.client, stripe.StripeClient)


def test_card_details_read_what_stripe_gives_and_say_so_when_it_gives_nothing() -> None:
    """Brand, last four and expiry as Stripe gives them, with plain defaults for what it left
    out; a payment method Stripe refuses to show (400, or 404: no such card) is no card."""
    card = {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}
    gateway, requester = _gateway((200, {"id": "pm_1", "card": card, "customer": "cus_1"}))
    details = gateway.card_details("pm_1")
    assert details is not None and requester.sent[0][:2] == ("get", "/v1/payment_methods/pm_1")
    assert (details.brand, details.last4, details.exp_month, details.exp_year) == (
        "visa",
        "4242",
        12,
        2030,
    )
    gateway, _ = _gateway((200, {"id": "pm_1", "customer": None}))
    bare = gateway.card_details("pm_1")
    assert bare is not None
    assert (bare.brand, bare.last4, bare.exp_month, bare.exp_year) == ("unknown", "", 0, 0)
    for status in (400, 404):
        gateway, _ = _gateway((status, {"error": {"message": "No such PaymentMethod"}}))
        assert gateway.card_details("pm_1") is None
    gateway, _ = _gateway((401, {"error": {"message": "Invalid API key"}}))
    with pytest.raises(StripeRefused):
        gateway.card_details("pm_1")


# ------------------------------------------------------------------------- subscriptions, lists

SUBSCRIPTION = {
    "id": "sub_1", "object": "subscription", "status": "active", "customer": "cus_1",
    "cancel_at_period_end": False, "current_period_end": 1_769_904_000,
    "items": {"data": [{"price": {"id": "price_1"}, "current_period_end": 1_769_904_000}]},
    "metadata": {"user_id": "u1", "credits": "10000"},
}  # fmt: skip


def _subscribe(gateway: StripeGateway, key: str = "subscribe:u1:1") -> None:
    gateway.create_subscription(
        "cus_1", "pm_1", Money(10_000, "eur"), key, {"user_id": "u1", "credits": "10000"}
    )


def test_a_tiers_monthly_price_is_found_by_lookup_key_once() -> None:
    """A Price that exists is found by its lookup key and remembered: the next subscription of
    that tier and currency asks Stripe for it no more."""
    found = (200, {"data": [{"id": "price_found"}], "has_more": False})
    gateway, requester = _gateway(found, (200, SUBSCRIPTION), (200, SUBSCRIPTION))
    _subscribe(gateway)
    _subscribe(gateway, "subscribe:u1:2")
    lookups = [s for s in requester.sent if s[1] == "/v1/prices"]
    assert [(m, params) for m, _, params, _ in lookups] == [
        ("get", {"lookup_keys": ["topup-monthly-10000-eur"], "limit": 1})
    ]
    subscriptions = [s for s in requester.sent if s[1] == "/v1/subscriptions"]
    assert [s[2]["items"] for s in subscriptions] == [[{"price": "price_found"}]] * 2


def test_a_missing_monthly_price_is_created_once_under_keys_of_its_own() -> None:
    """No Price yet: its Product and Price are created, each under an idempotency key named
    for the lookup key (two servers creating it at once make one), then subscribed to."""
    gateway, requester = _gateway(
        (200, {"data": [], "has_more": False}), (200, {"id": "prod_1"}),
        (200, {"id": "price_new"}), (200, SUBSCRIPTION),
    )  # fmt: skip
    _subscribe(gateway)
    assert [(m, p, k) for m, p, _, k in requester.sent] == [
        ("get", "/v1/prices", None),
        ("post", "/v1/products", "product:topup-monthly-10000-eur"),
        ("post", "/v1/prices", "price:topup-monthly-10000-eur"),
        ("post", "/v1/subscriptions", "subscribe:u1:1"),
    ]
    price = requester.sent[2][2]
    assert (price["product"], price["lookup_key"], price["unit_amount"]) == (
        "prod_1",
        "topup-monthly-10000-eur",
        10_000,
    )
    assert requester.sent[3][2]["items"] == [{"price": "price_new"}]


def test_a_subscription_charges_its_first_month_off_session_or_not_at_all() -> None:
    """The first invoice is paid at once with the saved card, off session, and a card that
    fails it leaves no subscription behind (``error_if_incomplete``)."""
    found = (200, {"data": [{"id": "price_1"}], "has_more": False})
    gateway, requester = _gateway(found, (200, SUBSCRIPTION))
    _subscribe(gateway)
    params = requester.sent[-1][2]
    assert (
        params["off_session"],
        params["payment_behavior"],
        params["default_payment_method"],
    ) == (True, "error_if_incomplete", "pm_1")


def test_a_list_stops_at_the_page_that_says_there_is_no_more() -> None:
    """One request per page: the last page (``has_more`` false) is not followed by another."""
    first = {"data": [{"id": "pi_2"}, {"id": "pi_1"}], "has_more": True}
    last = {"data": [{"id": "pi_0"}], "has_more": False}
    gateway, requester = _gateway((200, first), (200, last))
    assert [i["id"] for i in gateway.list_all("/v1/payment_intents", {})] == [
        "pi_2",
        "pi_1",
        "pi_0",
    ]
    assert [s[2].get("starting_after") for s in requester.sent] == [None, "pi_1"]


def test_a_decline_without_a_message_has_an_empty_one() -> None:
    declined = _pay((200, {**INTENT, "status": "requires_payment_method",
                           "last_payment_error": {"code": "card_declined"}}))  # fmt: skip
    assert (declined.status, declined.message) == ("declined", "")


# ------------------------------------------------------------------------- keys, customers, cards


def test_restricted_test_keys_are_test_keys_and_restricted_live_keys_are_live() -> None:
    assert check_test_key("rk_test_abc") == "rk_test_abc"
    with pytest.raises(GatewayConfigurationError, match="live Stripe keys are refused"):
        check_test_key("rk_live_abc")


def test_a_customer_is_made_once_per_user_with_its_id_and_email() -> None:
    """Under the user's own idempotency key, with the user's id in its metadata, and the
    e-mail only when there is one."""
    gateway, requester = _gateway((200, {"id": "cus_1"}), (200, {"id": "cus_2"}))
    assert gateway.ensure_customer("u1", "ada@example.com") == "cus_1"
    gateway.ensure_customer("u2")
    assert requester.sent == [
        ("post", "/v1/customers", {"metadata": {"user_id": "u1"}, "email": "ada@example.com"},
         "customer:u1"),
        ("post", "/v1/customers", {"metadata": {"user_id": "u2"}}, "customer:u2"),
    ]  # fmt: skip


def test_an_attached_card_becomes_the_customers_default() -> None:
    gateway, requester = _gateway((200, {"id": "pm_1"}), (200, {"id": "cus_1"}))
    assert gateway.attach_card("cus_1", "pm_card_visa") == "pm_1"
    assert [(p, params) for _, p, params, _ in requester.sent] == [
        ("/v1/payment_methods/pm_card_visa/attach", {"customer": "cus_1"}),
        ("/v1/customers/cus_1", {"invoice_settings": {"default_payment_method": "pm_1"}}),
    ]
