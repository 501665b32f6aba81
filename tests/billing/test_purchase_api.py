"""Buying credits, saving a card and spending over HTTP, through the emulator.

Each flow runs from the endpoint to Stripe's answer and its webhooks: a purchase is credited once
whichever of the synchronous answer and the (duplicated) webhook comes first, 3-D Secure waits for
a confirm, a declined card writes nothing, a refused code moves no money, and the usage endpoint
deducts once per idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sim.billing import BillingService, ManualClock, QueueRunner
from sim.billing.api import build_app
from sim.billing.payments import StripeGateway
from sim.billing.purchases import PURCHASE_KIND
from sim.billing.reconcile import reconcile_user
from sim.billing.store import USAGE_KEY_SECONDS
from sim.billing.twofactor import TwoFactor
from sim.stripe_emulator import Faults, StripeEmulator

from .conftest import BillingFactory
from .test_api import SECRET, SETTINGS, Api

SERVICE_TOKEN = "svc-test-token-0123456789"


class Shop(Api):
    """The API client of ``test_api`` plus the purchase, card and usage calls."""

    twofactor: TwoFactor

    def buy(self, credits: int = 1_000, card: str = "pm_card_visa", **changes: Any) -> Any:
        body = {
            "credits": credits,
            "currency": "eur",
            "payment_method": card,
            "totp_code": self.next_code(),
            **changes,
        }
        body = {k: v for k, v in body.items() if v is not ...}
        return self.client.post("/v1/purchases", json=body, headers=self.auth)

    def confirm(self, intent_id: str) -> Any:
        return self.client.post(f"/v1/purchases/{intent_id}/confirm", headers=self.auth)

    def setup(self, card: str, **changes: Any) -> Any:
        body = {"payment_method": card, "totp_code": self.next_code(), **changes}
        return self.client.post("/v1/payment-method", json=body, headers=self.auth)

    def card(self) -> dict[str, Any]:
        answer = self.client.get("/v1/payment-method", headers=self.auth)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def spend(
        self, credits: int, key: str | None = "k-1", token: str | None = SERVICE_TOKEN, **body: Any
    ) -> Any:
        headers = {}
        if token is not None:
            headers["X-Service-Token"] = token
        if key is not None:
            headers["Idempotency-Key"] = key
        payload = {"user_id": "u1", "credits": credits, **body}
        return self.client.post("/v1/usage", json=payload, headers=headers)

    def purchases(self) -> list[Any]:
        return self.billing.store.ledger("u1", kinds=(PURCHASE_KIND,))

    def webhooks(self, times: int = 1) -> list[int]:
        """Deliver every due webhook ``times`` times over (duplicates included)."""
        return self.deliver(self.emulator.due_deliveries() * times)


@pytest.fixture
def shop(
    make_billing: BillingFactory,
    stripe_gateway: StripeGateway,
    emulator: StripeEmulator,
    clock: ManualClock,
) -> Iterator[Shop]:
    """The app on the emulator with a service token; u1 has a Visa, 2FA and 1,500 credits."""
    billing: BillingService = make_billing(payment_gateway=stripe_gateway)
    emulator.add_webhook_endpoint("https://billing.example/v1/payments/webhook")
    wired = build_app(billing, stripe_gateway, emulator.webhook_secret, service_token=SERVICE_TOKEN)
    billing.create_user("u1", balance=1_500)
    customer = stripe_gateway.ensure_customer("u1")
    billing.save_payment_method(
        "u1", customer, stripe_gateway.attach_card(customer, "pm_card_visa")
    )
    wired.twofactor.enable("u1", SECRET)
    with TestClient(wired.app, raise_server_exceptions=False) as client:
        shop = Shop(client, wired.sessions.issue("u1"), billing, clock, emulator)
        shop.twofactor = wired.twofactor
        yield shop


def _error(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and "\n" not in error["message"]
    return error


# ---------------------------------------------------------------------------------- purchases


def test_purchase_is_credited_once_by_answer_and_duplicated_webhooks(shop: Shop) -> None:
    """The synchronous answer credits; every (duplicated) webhook after it is a no-op."""
    answer = shop.buy(1_000)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["purchase"]["status"] == "succeeded" and body["purchase"]["credited"] is True
    assert (body["purchase"]["amount"], body["purchase"]["currency"]) == (200, "eur")
    assert body["balance"] == 2_500
    assert set(shop.webhooks(times=3)) == {200}
    assert shop.billing.balance("u1") == 2_500
    [entry] = shop.purchases()
    assert (entry.delta, entry.reference) == (1_000, body["purchase"]["id"])


def test_webhook_first_then_confirm_credits_once(shop: Shop) -> None:
    """3-D Secure: requires_action (nothing credited), the webhook of the success credits, the
    confirm's own answer after it changes nothing."""
    answer = shop.buy(10_000, card="pm_card_threeDSecure2Required")
    purchase = answer.json()["purchase"]
    assert purchase["status"] == "requires_action" and purchase["credited"] is False
    assert purchase["next_action"]["type"] == "use_stripe_sdk" and purchase["client_secret"]
    assert shop.billing.balance("u1") == 1_500
    assert set(shop.webhooks()) == {200}  # created / requires_action: ignored
    assert shop.purchases() == []
    # The customer authenticates; Stripe's success event reaches us before the confirm's answer.
    shop.emulator.stripe_client("sk_test_billing").v1.payment_intents.confirm(purchase["id"])
    shop.webhooks(times=2)
    assert shop.billing.balance("u1") == 11_500
    done = shop.confirm(purchase["id"]).json()["purchase"]
    assert (done["status"], done["credited"]) == ("succeeded", False)
    assert shop.billing.balance("u1") == 11_500 and len(shop.purchases()) == 1


def test_a_purchase_paid_while_its_answer_and_webhooks_were_lost_is_credited_by_reconcile(
    shop: Shop, stripe_gateway: StripeGateway
) -> None:
    """3-D Secure; the customer authenticates at Stripe, but the client never confirms and
    every webhook is lost: the money moved and nothing was credited. The reconcile, given the
    checkout gateway, credits it once and lists it; a second pass and a late confirm change
    nothing. Without the checkout gateway it does not look at purchases. An earlier purchase,
    credited when it was paid, is passed over and the lost one after it still found."""
    assert shop.buy(1_000).json()["balance"] == 2_500
    purchase = shop.buy(10_000, card="pm_card_authenticationRequired").json()["purchase"]
    shop.emulator.stripe_client("sk_test_billing").v1.payment_intents.confirm(purchase["id"])
    shop.emulator.due_deliveries()  # taken, never delivered: lost
    assert shop.billing.balance("u1") == 2_500
    assert reconcile_user(shop.billing, "u1").uncredited_purchases == ()
    assert shop.billing.balance("u1") == 2_500
    found = reconcile_user(shop.billing, "u1", stripe_gateway)
    assert found.uncredited_purchases == (purchase["id"],) and not found.clean
    assert shop.billing.balance("u1") == 12_500
    again = reconcile_user(shop.billing, "u1", stripe_gateway)
    assert again.clean and again.uncredited_purchases == ()
    assert shop.confirm(purchase["id"]).json()["purchase"]["credited"] is False
    assert shop.billing.balance("u1") == 12_500 and len(shop.purchases()) == 2


def test_reconcile_of_a_user_who_never_bought_asks_stripe_nothing(
    shop: Shop, stripe_gateway: StripeGateway
) -> None:
    shop.billing.create_user("u5")
    assert reconcile_user(shop.billing, "u5", stripe_gateway).clean
    assert shop.billing.customer_id("u5") is None  # no customer was made to look


def test_first_purchase_without_a_card_is_credited_by_its_webhook(shop: Shop) -> None:
    """A user with no saved card buys with 3-D Secure; the customer authenticates and Stripe's
    webhook arrives with no confirm from the client: the webhook credits (it finds the customer
    saved by the purchase), and a late confirm changes nothing. No card is saved."""
    shop.billing.create_user("u4")
    shop.twofactor.enable("u4", SECRET)
    shop.auth = shop.login("u4")
    purchase = shop.buy(1_000, card="pm_card_authenticationRequired").json()["purchase"]
    assert purchase["status"] == "requires_action"
    shop.emulator.stripe_client("sk_test_billing").v1.payment_intents.confirm(purchase["id"])
    assert set(shop.webhooks(times=2)) == {200}
    assert shop.billing.balance("u4") == 1_000
    assert shop.confirm(purchase["id"]).json()["purchase"]["credited"] is False
    assert shop.billing.balance("u4") == 1_000 and shop.billing.payment_method("u4") is None
    assert shop.billing.store.dead_letters() == []


def test_three_d_secure_purchase_confirmed_through_the_api(shop: Shop) -> None:
    """requires_action -> confirm -> credited once; a second confirm changes nothing."""
    purchase = shop.buy(1_000, card="pm_card_authenticationRequired").json()["purchase"]
    done = shop.confirm(purchase["id"])
    assert done.status_code == 200, done.text
    assert done.json()["purchase"]["credited"] is True and done.json()["balance"] == 2_500
    assert shop.confirm(purchase["id"]).json()["purchase"]["credited"] is False
    shop.webhooks(times=2)
    assert shop.billing.balance("u1") == 2_500 and len(shop.purchases()) == 1


def test_declined_purchase_is_402_and_writes_nothing(shop: Shop) -> None:
    before = shop.billing.payment_method("u1")
    error = _error(
        shop.buy(1_000, card="pm_card_chargeDeclinedInsufficientFunds", save_card=True),
        402,
        "card_declined",
    )
    assert error["decline_code"] == "insufficient_funds"
    shop.webhooks()
    assert shop.billing.balance("u1") == 1_500 and shop.purchases() == []
    assert shop.billing.payment_method("u1") == before


def test_purchase_with_save_card_replaces_the_card_used_by_auto_topup(
    shop: Shop, tasks: QueueRunner
) -> None:
    """setup_future_usage: the paid card becomes the saved card; the next top-up charges it."""
    old = shop.billing.payment_method("u1")
    body = shop.buy(1_000, card="pm_card_mastercard", save_card=True).json()
    assert body["card_saved"] is True
    assert shop.card()["brand"] == "mastercard" and shop.card()["usable"] is True
    assert shop.billing.payment_method("u1") != old
    _topup_charges_saved_card(shop, tasks, "mastercard")


def test_manual_purchase_does_not_use_the_monthly_limit(shop: Shop, tasks: QueueRunner) -> None:
    """A purchase is ledger kind purchase: the limit (one top-up's worth) still allows a top-up."""
    assert shop.save(totp_code=shop.next_code(), monthly_limit=10_000).status_code == 200
    assert shop.buy(54_000).json()["purchase"]["credited"] is True
    answer = shop.spend(54_600, key="drain")  # past the per-request cap: refused
    _error(answer, 422, "invalid_field")
    for n in range(6):
        assert shop.spend(9_100, key=f"drain-{n}").status_code == 200
    assert shop.billing.balance("u1") == 900
    tasks.run_pending()
    assert shop.billing.balance("u1") == 10_900  # the auto top-up was claimed and paid


def test_bad_purchase_input_is_422_keeps_the_code_and_writes_nothing(shop: Shop) -> None:
    code = shop.next_code()
    for changes, field in (
        ({"credits": 999}, "credits"),
        ({"currency": "gbp"}, "currency"),
        ({"credits": "1000"}, "credits"),
        ({"payment_method": "card_4242"}, "payment_method"),
        ({"extra": 1}, "extra"),
    ):
        body = {"credits": 1_000, "currency": "eur", "payment_method": "pm_card_visa"}
        answer = shop.client.post(
            "/v1/purchases", json={**body, "totp_code": code, **changes}, headers=shop.auth
        )
        assert _error(answer, 422, "invalid_field")["field"] == field
    # The code was never used: it still buys.
    answer = shop.client.post(
        "/v1/purchases",
        json={"credits": 1_000, "currency": "eur", "payment_method": "pm_card_visa",
              "totp_code": code},
        headers=shop.auth,
    )  # fmt: skip
    assert answer.status_code == 200 and len(shop.purchases()) == 1


def test_unknown_payment_method_is_422_and_nothing_happens(shop: Shop) -> None:
    answer = shop.buy(1_000, card="pm_doesNotExist123")
    assert _error(answer, 422, "invalid_field")["field"] == "payment_method"
    assert shop.billing.balance("u1") == 1_500 and shop.purchases() == []


def test_refused_code_moves_no_money(shop: Shop) -> None:
    customer = shop.billing.customer_id("u1")
    stripe = shop.emulator.stripe_client("sk_test_billing")
    _error(shop.buy(1_000, totp_code=shop.wrong_code()), 403, "invalid_code")
    _error(shop.setup("pm_card_mastercard", totp_code=shop.wrong_code()), 403, "invalid_code")
    assert stripe.v1.payment_intents.list(params={"customer": str(customer)}).data == []
    assert shop.card()["brand"] == "visa" and shop.purchases() == []


def test_confirming_another_users_purchase_is_404(shop: Shop) -> None:
    purchase = shop.buy(1_000, card="pm_card_authenticationRequired").json()["purchase"]
    shop.billing.create_user("u2")
    other = {"Authorization": f"Bearer {shop.client.app.state.sessions.issue('u2')}"}  # type: ignore[attr-defined]
    answer = shop.client.post(f"/v1/purchases/{purchase['id']}/confirm", headers=other)
    _error(answer, 404, "unknown_intent")
    _error(shop.confirm("pi_doesNotExist1"), 404, "unknown_intent")
    assert shop.billing.balance("u2") == 0 and shop.billing.balance("u1") == 1_500


# ---------------------------------------------------------------------------------- cards


def test_setup_intent_saves_the_card_used_by_a_later_auto_topup(
    shop: Shop, tasks: QueueRunner
) -> None:
    answer = shop.setup("pm_card_mastercard")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["setup"]["status"] == "succeeded"
    assert body["card"] == {"saved": True, "usable": True, "brand": "mastercard",
                            "last4": "4444", "exp_month": 12, "exp_year": 2034}  # fmt: skip
    _topup_charges_saved_card(shop, tasks, "mastercard")


def test_three_d_secure_setup_saves_after_confirm(shop: Shop) -> None:
    setup = shop.setup("pm_card_threeDSecure2Required").json()["setup"]
    assert setup["status"] == "requires_action" and setup["next_action"] is not None
    assert shop.card()["last4"] == "4242"  # not replaced yet
    answer = shop.client.post(f"/v1/payment-method/setups/{setup['id']}/confirm", headers=shop.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["last4"] == "3220" and answer.json()["card"]["usable"]


def test_declined_setup_keeps_the_old_card(shop: Shop) -> None:
    _error(shop.setup("pm_card_chargeDeclined"), 402, "card_declined")
    assert shop.card()["last4"] == "4242"


def test_card_status_without_a_card(shop: Shop) -> None:
    shop.billing.create_user("u3")
    headers = {"Authorization": f"Bearer {shop.client.app.state.sessions.issue('u3')}"}  # type: ignore[attr-defined]
    answer = shop.client.get("/v1/payment-method", headers=headers).json()
    assert answer["saved"] is False and answer["usable"] is False and answer["brand"] is None


def test_a_purchase_resent_with_its_idempotency_key_charges_and_credits_once(shop: Shop) -> None:
    """The client's Idempotency-Key makes a resent purchase the same PaymentIntent: one charge at
    Stripe, one credit; another key is another purchase."""
    answers = []
    for _ in range(2):
        body = {"credits": 1_000, "currency": "eur", "payment_method": "pm_card_visa",
                "totp_code": shop.next_code()}  # fmt: skip
        headers = {**shop.auth, "Idempotency-Key": "buy-1"}
        answers.append(shop.client.post("/v1/purchases", json=body, headers=headers))
    first, again = (a.json()["purchase"] for a in answers)
    assert first["id"] == again["id"]
    assert (first["credited"], again["credited"]) == (True, False)
    assert shop.billing.balance("u1") == 2_500 and len(shop.purchases()) == 1
    assert shop.buy(1_000).json()["purchase"]["id"] != first["id"]  # no key: a new purchase
    assert shop.billing.balance("u1") == 3_500


def test_a_purchase_without_save_card_keeps_the_saved_card(shop: Shop) -> None:
    """Paying with another card saves it only when asked to."""
    before = shop.billing.payment_method("u1")
    body = shop.buy(1_000, card="pm_card_mastercard").json()
    assert body["purchase"]["credited"] is True and body["card_saved"] is False
    assert shop.billing.payment_method("u1") == before and shop.card()["brand"] == "visa"


def test_paying_with_the_saved_card_without_save_card_saves_nothing(shop: Shop) -> None:
    """The saved card is attached to the customer already; a purchase that did not ask to keep
    its card does not save it again (saving lifts a pause or suspension)."""
    saved = shop.billing.payment_method("u1")
    assert saved is not None
    body = shop.buy(1_000, card=saved[1]).json()
    assert body["purchase"]["credited"] is True and body["card_saved"] is False


def test_a_declined_setup_names_its_decline_code(shop: Shop) -> None:
    """The 402 of a card the bank refuses at setup carries Stripe's decline code and message."""
    error = _error(shop.setup("pm_card_chargeDeclined"), 402, "card_declined")
    assert error["decline_code"] == "generic_decline" and error["message"]


def test_a_saved_card_stripe_does_not_know_is_saved_but_not_usable(shop: Shop) -> None:
    """A saved payment method that Stripe no longer finds: shown as saved, not usable."""
    customer = shop.billing.customer_id("u1")
    assert customer is not None
    shop.billing.save_payment_method("u1", customer, "pm_1NotAtStripe")
    card = shop.card()
    assert (card["saved"], card["usable"], card["brand"]) == (True, False, None)


def test_confirming_the_users_own_top_up_through_the_purchase_route_is_404(
    shop: Shop, tasks: QueueRunner
) -> None:
    """The confirm route finds purchases only: an auto top-up's PaymentIntent of the same user
    is not one (its metadata purpose is auto_topup), so it is 404 and nothing is paid again."""
    _topup_charges_saved_card(shop, tasks, "visa")
    [attempt] = shop.billing.store.attempts("u1")
    assert attempt.payment_intent_id is not None
    balance = shop.billing.balance("u1")
    _error(shop.confirm(attempt.payment_intent_id), 404, "unknown_intent")
    assert shop.billing.balance("u1") == balance


def test_a_card_is_usable_through_its_expiry_month_and_not_after(shop: Shop) -> None:
    """The test Visa expires 12/2034: usable on December 15th 2034, not on January 1st 2035."""
    shop.clock.set(datetime(2034, 12, 15, tzinfo=UTC).timestamp())
    shop.auth = shop.login("u1")
    assert (shop.card()["exp_month"], shop.card()["exp_year"]) == (12, 2034)
    assert shop.card()["usable"] is True
    shop.clock.set(datetime(2035, 1, 1, tzinfo=UTC).timestamp())
    shop.auth = shop.login("u1")
    assert (shop.card()["saved"], shop.card()["usable"]) == (True, False)


# ---------------------------------------------------------------------------------- usage


def test_usage_deducts_once_per_idempotency_key(shop: Shop) -> None:
    first = shop.spend(100, key="req-1")
    assert first.status_code == 200 and first.json()["balance"] == 1_400
    again = shop.spend(100, key="req-1")
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert shop.billing.balance("u1") == 1_400
    _error(shop.spend(200, key="req-1"), 422, "idempotency_key_reused")
    assert shop.spend(100, key="req-2").json()["balance"] == 1_300


def test_a_usage_retry_reaching_another_api_process_takes_nothing(
    shop: Shop, make_billing: BillingFactory, stripe_gateway: StripeGateway
) -> None:
    """Two API processes on one store and cache (each with its own services and app): the retry
    of a spend that reached the first replays on the second; the key is the user's, so another
    user may use the same one."""
    other = make_billing(payment_gateway=stripe_gateway)
    second = build_app(other, stripe_gateway, "whsec_x", service_token=SERVICE_TOKEN).app
    first = shop.spend(300, key="lost-answer")
    assert first.status_code == 200 and first.json()["balance"] == 1_200
    with TestClient(second) as client:
        retry = client.post(
            "/v1/usage", json={"user_id": "u1", "credits": 300},
            headers={"X-Service-Token": SERVICE_TOKEN, "Idempotency-Key": "lost-answer"},
        )  # fmt: skip
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    assert shop.billing.balance("u1") == 1_200 and other.balance("u1") == 1_200
    shop.billing.create_user("u2", balance=500)
    assert shop.spend(300, key="lost-answer", user_id="u2").json()["balance"] == 200


def test_a_usage_key_names_a_new_request_after_a_day(shop: Shop) -> None:
    assert shop.spend(100, key="daily").json()["balance"] == 1_400
    shop.clock.advance(USAGE_KEY_SECONDS - 1)
    assert shop.spend(100, key="daily").headers.get("Idempotent-Replayed") == "true"
    shop.clock.advance(1)
    again = shop.spend(100, key="daily")
    assert "Idempotent-Replayed" not in again.headers and again.json()["balance"] == 1_300


def test_usage_guard(shop: Shop) -> None:
    _error(shop.spend(100, token=None), 401, "unauthenticated")
    _error(shop.spend(100, token="wrong"), 401, "unauthenticated")
    user_session = shop.client.post(
        "/v1/usage", json={"user_id": "u1", "credits": 1}, headers={**shop.auth,
                                                                   "Idempotency-Key": "x"}
    )  # fmt: skip
    _error(user_session, 401, "unauthenticated")
    _error(shop.spend(100, key=None), 422, "invalid_field")
    _error(shop.spend(0), 422, "invalid_field")
    _error(shop.spend(10_001), 422, "invalid_field")
    _error(shop.spend(True), 422, "invalid_field")
    _error(shop.spend(1, user_id="nobody"), 404, "unknown_user")
    assert shop.billing.balance("u1") == 1_500


def test_refused_usage_is_not_replayed(shop: Shop) -> None:
    """Not enough credits: 402; the same key is evaluated again once credits arrived."""
    error = _error(shop.spend(2_000, key="big"), 402, "insufficient_credits")
    assert error["balance"] == 1_500
    shop.billing.grant_credits("u1", 1_000, reference="support-1")
    assert shop.spend(2_000, key="big").json()["balance"] == 500


def test_usage_without_a_configured_token_refuses_everything(
    make_billing: BillingFactory, stripe_gateway: StripeGateway
) -> None:
    billing = make_billing(payment_gateway=stripe_gateway)
    billing.create_user("u1", balance=100)
    wired = build_app(billing, stripe_gateway, "whsec_x")
    with TestClient(wired.app) as client:
        answer = client.post(
            "/v1/usage",
            json={"user_id": "u1", "credits": 1},
            headers={"X-Service-Token": "", "Idempotency-Key": "k"},
        )
    assert answer.status_code == 401 and billing.balance("u1") == 100


# ---------------------------------------------------------------------------------- helpers


def _topup_charges_saved_card(shop: Shop, tasks: QueueRunner, brand: str) -> None:
    """Enable auto top-up, spend under the threshold: the top-up is charged to the saved card."""
    assert shop.save(totp_code=shop.next_code(), **SETTINGS).status_code == 200
    balance = shop.billing.balance("u1")
    assert shop.spend(balance - 500, key="to-threshold").status_code == 200
    tasks.run_pending()
    assert shop.billing.balance("u1") == 500 + 10_000
    customer = shop.billing.customer_id("u1")
    stripe = shop.emulator.stripe_client("sk_test_billing")
    intents = stripe.v1.payment_intents.list(params={"customer": str(customer)}).data
    topup = next(i for i in intents if i.metadata["purpose"] == "auto_topup")
    card = stripe.v1.payment_methods.retrieve(str(topup.payment_method)).card
    assert topup.status == "succeeded" and card is not None and card.brand == brand


def test_stripe_down_is_503_for_a_purchase_and_nothing_is_credited(shop: Shop) -> None:
    """Stripe answers only 500s: the purchase is the app's 503 ``unavailable`` (the same answer
    as every route's), and nothing is credited or saved."""
    card = shop.billing.payment_method("u1")
    shop.emulator.faults = Faults(server_error_rate=1.0)
    answer = shop.buy(1_000, save_card=True)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == {
        "code": "unavailable", "message": "the payment provider did not answer; retry",
    }  # fmt: skip
    assert shop.billing.balance("u1") == 1_500 and shop.billing.payment_method("u1") == card
