"""One emulated account per API key: objects, lists, idempotency keys, webhooks stay in theirs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import stripe

from sim.stripe_emulator import EmulatorServer, StripeEmulator

OTHER_KEY = "sk_test_other_account"


@pytest.fixture
def other(emulator: StripeEmulator, transport: str) -> Iterator[stripe.StripeClient]:
    """A client of the same emulator under another secret key, through the same transport."""
    if transport == "in_process":
        yield emulator.stripe_client(OTHER_KEY)
        return
    with EmulatorServer(emulator, port=0, deliver_webhooks=False) as server:
        http = stripe.RequestsClient()
        try:
            yield stripe.StripeClient(
                OTHER_KEY, http_client=http, base_addresses={"api": server.url}
            )
        finally:
            http.close()


def _missing(call: object) -> stripe.InvalidRequestError:
    """The error of ``call()``, asserted to be Stripe's 404 resource_missing."""
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    return caught.value


def test_another_key_cannot_retrieve_update_or_delete(
    client: stripe.StripeClient, other: stripe.StripeClient
) -> None:
    """Another account's customer answers 404 resource_missing to retrieve, update and delete."""
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    error = _missing(lambda: other.v1.customers.retrieve(customer.id))
    assert f"No such customer: '{customer.id}'" in str(error.user_message)
    _missing(lambda: other.v1.customers.update(customer.id, params={"name": "Mallory"}))
    _missing(lambda: other.v1.customers.delete(customer.id))
    assert client.v1.customers.retrieve(customer.id).name is None


def test_lists_show_only_the_callers_objects(
    client: stripe.StripeClient, other: stripe.StripeClient
) -> None:
    """Each key lists its own customers, payment intents and events, nothing of the other's."""
    mine = client.v1.customers.create(params={"email": "a@example.com"})
    theirs = other.v1.customers.create(params={"email": "b@example.com"})
    client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert [c.id for c in client.v1.customers.list().data] == [mine.id]
    assert [c.id for c in other.v1.customers.list().data] == [theirs.id]
    assert other.v1.payment_intents.list().data == []
    assert [e.type for e in other.v1.events.list().data] == ["customer.created"]


def test_another_accounts_id_cannot_be_used_as_a_parameter(
    client: stripe.StripeClient, other: stripe.StripeClient
) -> None:
    """Charging another account's saved card is refused as Stripe refuses an unknown id."""
    customer = client.v1.customers.create(params={})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        other.v1.payment_intents.create(
            params={"amount": 900, "currency": "eur", "payment_method": pm.id, "confirm": True}
        )
    assert (caught.value.http_status, caught.value.code) == (400, "resource_missing")
    assert caught.value.param == "payment_method"


def test_idempotency_keys_are_per_account(
    client: stripe.StripeClient, other: stripe.StripeClient
) -> None:
    """The same idempotency key in two accounts makes two objects, and no idempotency_error."""
    options: stripe.RequestOptions = {"idempotency_key": "shared-key"}
    first = client.v1.customers.create(params={"email": "a@example.com"}, options=options)
    second = other.v1.customers.create(params={"email": "b@example.com"}, options=options)
    assert first.id != second.id
    assert second.last_response.headers["Idempotent-Replayed"] == "false"


def test_caller_chosen_ids_exist_once_per_account(
    client: stripe.StripeClient, other: stripe.StripeClient
) -> None:
    """Two accounts may each own a product ``prod_basic``, as two Stripe accounts may."""
    client.v1.products.create(params={"id": "prod_basic", "name": "Mine"})
    other.v1.products.create(params={"id": "prod_basic", "name": "Theirs"})
    assert client.v1.products.retrieve("prod_basic").name == "Mine"
    assert other.v1.products.retrieve("prod_basic").name == "Theirs"


def test_webhooks_go_to_the_endpoints_of_the_account_whose_object_changed(
    client: stripe.StripeClient, other: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """An account's event is delivered to its endpoints and the operator's, not another's."""
    mine = client.v1.webhook_endpoints.create(
        params={"url": "https://mine.test/hook", "enabled_events": ["customer.created"]}
    )
    other.v1.webhook_endpoints.create(
        params={"url": "https://theirs.test/hook", "enabled_events": ["customer.created"]}
    )
    emulator.add_webhook_endpoint("sim://operator", ("customer.created",))
    customer = client.v1.customers.create(params={})
    deliveries = emulator.due_deliveries()
    assert sorted(d.url for d in deliveries) == ["https://mine.test/hook", "sim://operator"]
    event = json.loads(deliveries[0].payload)
    assert event["data"]["object"]["id"] == customer.id
    assert event["pending_webhooks"] == 2
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [mine.id]


def test_renewals_run_in_their_own_account(
    client: stripe.StripeClient, other: stripe.StripeClient, emulator: StripeEmulator, clock
) -> None:
    """A renewal billed on the emulator clock lands in the subscription's account, whichever key
    made the request that ran it."""
    customer = client.v1.customers.create(params={})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    product = client.v1.products.create(params={"name": "Monthly"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 500,
            "currency": "eur",
            "recurring": {"interval": "day"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "default_payment_method": pm.id,
        }
    )
    clock.advance(86_400)
    assert other.v1.invoices.list().data == []
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]


def test_inspection_finds_objects_of_any_account(
    client: stripe.StripeClient, other: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """``StripeEmulator.object`` looks in every account (the simulation's ground truth)."""
    theirs = other.v1.customers.create(params={"email": "b@example.com"})
    found = emulator.object(theirs.id)
    assert found is not None and found["email"] == "b@example.com"
    assert emulator.object("cus_nope") is None


def test_objects_of_a_type_come_from_every_account_in_creation_order(
    client: stripe.StripeClient, other: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    """``StripeEmulator.objects_of`` lists one type, in every account, oldest first per account
    (accounts in the order they first made a request), and nothing of another type."""
    first = client.v1.customers.create(params={"email": "a1@example.com"})
    theirs = other.v1.customers.create(params={"email": "b@example.com"})
    second = client.v1.customers.create(params={"email": "a2@example.com"})
    client.v1.products.create(params={"name": "not a customer"})
    found = [c["id"] for c in emulator.objects_of("customer")]
    assert found == [first.id, second.id, theirs.id]
    assert emulator.objects_of("invoice") == []
