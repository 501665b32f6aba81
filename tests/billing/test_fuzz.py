"""Hostile input, fuzzed over every endpoint: never a 5xx, except 503 while the store is down.

Each test sends Hypothesis-built requests to one endpoint of one app shared by the module: JSON of
every shape and type, raw bytes, odd headers, and signed webhook events built from real event
shapes with their fields replaced by what Stripe never sends (numbers as text, fractions, lists
for objects, other users and customers, nesting thousands of levels deep, numbers of thousands of
digits, ``NaN``). The rules checked on every answer:

- the status is below 500; 503 only while an injected store failure is on (and the test turns
  one on for about one signed event in five);
- every 4xx is in the documented envelope ``{"error": {"code": ..., "message": ...}}``;
- a refused request changes nothing: a dead-lettered event, like a 4xx, leaves the books alone.

``make test`` runs :data:`EXAMPLES` examples per test (the ``ci`` profile); ``make proptest`` runs
enough for at least 50,000 requests over all of them, and prints the count of answers by endpoint
and status at the end of the run (``FUZZ``, see ``conftest.py``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    Vault,
)
from sim.billing.api import BillingApp, build_app
from sim.billing.payments import StripeGateway
from sim.stripe_emulator import StripeEmulator, signature_header

from ..conftest import PROFILE
from .conftest import FUZZ, MASTER_KEY, FlakyStore

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
WEBHOOK_SECRET = "whsec_fuzz_only_this_module_knows"
SERVICE_TOKEN = "svc_fuzz_only_this_module_knows"
#: Examples per test: bounded in ``make test``; in ``make proptest`` 6,000 (12,000 for signed
#: events of real shape): about 57,000 requests over the nine tests.
EXAMPLES = 6_000 if PROFILE == "long" else 40
#: Store writes a webhook may make; all fail while the store is "down".
STORE_WRITES = {
    "settle_topup", "credit", "dead_letter", "mark_event_processed", "save_subscription",
    "take_over", "finish_attempt", "start_charge", "hold_lease", "deduct",
}  # fmt: skip

#: Text the HTTP client sends in a header (printable ASCII): other text never leaves the client,
#: so it would not test the server.
header_text = st.characters(min_codepoint=0x20, max_codepoint=0x7E)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


class Deep:
    """A value written into the JSON text as ``depth`` nested arrays (too deep for json.dumps)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


class Raw:
    """A value written into the JSON text as it is: ``NaN``, ``Infinity``, 5,000 digits."""

    def __init__(self, text: str) -> None:
        self.text = text


#: What Stripe never sends where a field of an event is expected.
hostile = (
    json_values
    | st.sampled_from(["1000", "10000", "", "x", "ghost", "u2", "cus_other", "eur ", "EUR"])
    # Copied per draw: a shared [] placed in an event and then edited would contain itself.
    | st.sampled_from([1000.0, 1000.9, -1000, 0, True, False, 10**30, [], {}, [1000]]).map(
        copy.deepcopy
    )
    | st.integers(min_value=100, max_value=6_000).map(Deep)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "9" * 5_000, "1e400"]).map(Raw)
)


class Wired:
    """One app for the whole module (building one per example would dominate the time)."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.emulator = StripeEmulator(clock=self.clock, seed=3)
        gateway = StripeGateway("sk_test_fuzz", http_client=self.emulator.http_client())
        self.store = FlakyStore(SQLiteStore(":memory:"))
        self.billing = BillingService(
            clock=self.clock, cache=fakeredis.FakeRedis(), store=self.store,  # type: ignore[arg-type]
            gateway=gateway, notifier=RecordingNotifier(), tasks=QueueRunner(),
            vault=Vault(MASTER_KEY),
        )  # fmt: skip
        self.wired: BillingApp = build_app(
            self.billing, gateway, WEBHOOK_SECRET, service_token=SERVICE_TOKEN
        )
        for user_id in ("u1", "u2"):
            self.billing.create_user(user_id, balance=1_500)
            customer = gateway.ensure_customer(user_id)
            card = gateway.attach_card(customer, "pm_card_visa")
            self.billing.save_payment_method(user_id, customer, card)
        self.customer = gateway.ensure_customer("u1")
        self.wired.twofactor.enable("u1", SECRET)
        self.client = TestClient(self.wired.app, raise_server_exceptions=False)
        self.auth = {"Authorization": f"Bearer {self.wired.sessions.issue('u1')}"}

    def books(self) -> tuple[Any, ...]:
        """What a refused request must not change: settings, balances, ledgers, subscriptions."""
        return tuple(
            (user.settings, user.balance, user.state, len(self.store.ledger(user_id)),
             self.store.subscriptions(user_id))
            for user_id in ("u1", "u2")
            for user in [self.store.get_user(user_id)]
        )  # fmt: skip

    def send(
        self, endpoint: str, method: str, path: str, *, store_down: bool = False, **kwargs: Any
    ) -> Any:
        """Send one request, check the rules every answer must keep, count it."""
        self.store.failing = set(STORE_WRITES) if store_down else set()
        try:
            response = self.client.request(method, path, **kwargs)
        finally:
            self.store.failing = set()
        status = response.status_code
        FUZZ[(endpoint, status)] += 1
        assert status < 500 or (store_down and status == 503), (endpoint, status, response.text)
        if 400 <= status < 500:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        return response

    def post_event(self, event: Any, *, store_down: bool = False) -> Any:
        """POST ``event`` (JSON with :class:`Deep` and :class:`Raw` values) correctly signed."""
        payload = _dumps(event)
        header = signature_header(payload, WEBHOOK_SECRET, int(self.clock.now()))
        return self.send(
            "webhook (signed)", "POST", "/v1/payments/webhook", store_down=store_down,
            content=payload, headers={"Stripe-Signature": header},
        )  # fmt: skip


def _dumps(event: Any) -> bytes:
    """JSON text of ``event``; :class:`Deep` and :class:`Raw` values are spliced in as text."""
    spliced: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Deep):
            spliced.append("[" * value.depth + "]" * value.depth)
        elif isinstance(value, Raw):
            spliced.append(value.text)
        else:
            raise TypeError(type(value))
        return f"@@{len(spliced) - 1}@@"

    text = json.dumps(event, default=mark)
    for index, value in enumerate(spliced):
        text = text.replace(f'"@@{index}@@"', value)
    return text.encode()


@pytest.fixture(scope="module")
def wired() -> Iterator[Wired]:
    """The shared app."""
    app = Wired()
    with app.client:
        yield app


# ------------------------------------------------------------------------- signed events


def _templates(customer: str) -> dict[str, dict[str, Any]]:
    """Real event objects of each type the handler applies, for u1 and its customer."""
    topup = {"user_id": "u1", "credits": "10000", "purpose": "auto_topup", "attempt": "1"}
    monthly = {"user_id": "u1", "credits": "10000", "purpose": "monthly_topup"}
    intent = {
        "id": "pi_fuzz", "object": "payment_intent", "amount": 1000, "amount_received": 1000,
        "currency": "eur", "customer": customer, "status": "succeeded", "metadata": topup,
    }  # fmt: skip
    subscription = {
        "id": "sub_fuzz", "object": "subscription", "status": "active", "customer": customer,
        "currency": "eur", "cancel_at_period_end": False, "current_period_end": 2_000_000,
        "metadata": monthly,
        "items": {"data": [{"current_period_end": 2_000_000, "price": {"currency": "eur"}}]},
    }  # fmt: skip
    invoice = {
        "id": "in_fuzz", "object": "invoice", "amount_paid": 1000, "currency": "eur",
        "customer": customer, "subscription": "sub_fuzz",
        "parent": {"subscription_details": {"subscription": "sub_fuzz", "metadata": monthly}},
    }  # fmt: skip
    return {
        "payment_intent.succeeded": intent,
        "payment_intent.payment_failed": intent | {"status": "requires_payment_method"},
        "customer.subscription.created": subscription,
        "customer.subscription.updated": subscription,
        "invoice.paid": invoice,
        "invoice.payment_failed": invoice,
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a field in ``value`` (keys of objects, indexes of arrays)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def signed_events(draw: st.DrawFn, customer: str) -> Any:
    """A real event of a random type with up to four fields replaced (or removed)."""
    kind = draw(st.sampled_from(sorted(_templates(customer))))
    event = {
        "id": f"evt_{draw(st.integers(0, 10**6))}", "object": "event", "type": kind,
        "created": draw(st.integers(0, 2_000_000)),
        "data": {"object": json.loads(json.dumps(_templates(customer)[kind]))},
    }  # fmt: skip
    event["data"]["object"]["id"] += str(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(event)
        *parents, last = draw(st.sampled_from(paths))
        node: Any = event
        for key in parents:
            node = node[key]
        if isinstance(node, dict) and draw(st.booleans()) and draw(st.booleans()):
            node.pop(last, None)
        else:
            node[last] = draw(hostile)
    return event


@settings(max_examples=2 * EXAMPLES)  # the richest strategy: twice the search
@given(data=st.data())
def test_fuzzed_signed_events_never_5xx_and_refusals_write_nothing(
    wired: Wired, data: st.DataObject
) -> None:
    """Signed events of real shape with hostile fields: 200 (applied, ignored, duplicate or
    dead-lettered) or 503 under a store failure; a dead letter leaves the books unchanged."""
    event = data.draw(signed_events(wired.customer))
    store_down = data.draw(st.integers(0, 4)) == 0
    before = wired.books()
    response = wired.post_event(event, store_down=store_down)
    if response.status_code == 503:
        assert wired.books() == before
    elif response.json().get("outcome") in ("dead_letter", "duplicate", "ignored"):
        assert wired.books() == before, response.json()


@settings(max_examples=EXAMPLES)
@given(
    event=json_values
    | st.fixed_dictionaries({
        "id": st.text(max_size=10) | hostile,
        "type": st.sampled_from(["payment_intent.succeeded", "invoice.paid",
                                 "customer.subscription.updated", "invoice.payment_failed",
                                 "payment_intent.payment_failed"]) | hostile,
        "created": st.integers(0, 2**40) | hostile,
        "data": st.fixed_dictionaries({"object": hostile}) | hostile,
    })
)  # fmt: skip
def test_fuzzed_signed_envelopes_never_5xx(wired: Wired, event: Any) -> None:
    """Signed bodies that are hardly events at all: never 5xx, nothing written."""
    before = wired.books()
    wired.post_event(event)
    assert wired.books() == before


@settings(max_examples=EXAMPLES)
@given(
    stamp=st.text(header_text, max_size=20) | st.integers().map(str),
    extra=st.text(header_text, max_size=30),
    body=st.binary(max_size=100),
)
def test_fuzzed_signature_headers_signed_with_the_secret_are_400(
    wired: Wired, stamp: str, extra: str, body: bytes
) -> None:
    """A header holding a correct HMAC over any ``t=`` text, and anything else: 400 unless the
    stamp is a whole number within the tolerance; never 5xx."""
    import hashlib
    import hmac

    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    header = f"t={stamp},v1={digest.hexdigest()},{extra}"
    try:
        wired.send(
            "webhook (header)", "POST", "/v1/payments/webhook", content=body,
            headers={"Stripe-Signature": header},
        )  # fmt: skip
    except UnicodeEncodeError:
        return  # the HTTP client cannot send such a header at all


@settings(max_examples=EXAMPLES)
@given(payload=st.binary(max_size=300), header=st.none() | st.text(header_text, max_size=80))
def test_fuzzed_unsigned_webhook_is_400(wired: Wired, payload: bytes, header: str | None) -> None:
    """Anything without a valid signature is 400 and changes nothing."""
    before = wired.books()
    headers = {} if header is None else {"Stripe-Signature": header}
    try:
        response = wired.send(
            "webhook (unsigned)", "POST", "/v1/payments/webhook", content=payload, headers=headers
        )
    except UnicodeEncodeError:
        return  # the HTTP client cannot send such a header at all
    assert response.status_code == 400
    assert wired.books() == before


# ------------------------------------------------------------------------- the user's endpoints

plausible_settings = {
    "enabled": st.booleans() | json_values,
    "threshold": st.sampled_from([500, 1000, 1500, -1, 10**30]) | json_values,
    "amount": st.sampled_from([1000, 10000, 5000, 0]) | json_values,
    "currency": st.sampled_from(["eur", "usd", "jpy", "EUR", "€", ""]) | json_values,
    "totp_code": st.text(alphabet="0123456789a ", min_size=0, max_size=8) | json_values,
}
plausible_subscription = {
    "credits": st.sampled_from([10000, 21000, 54000, 1000, 0, -1]) | json_values,
    "currency": plausible_settings["currency"],
    "totp_code": plausible_settings["totp_code"],
}


def _bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional=fields) | json_values | hostile


@settings(max_examples=EXAMPLES)
@given(body=_bodies(plausible_settings))
def test_fuzzed_settings_body_is_4xx_and_changes_nothing(wired: Wired, body: Any) -> None:
    """Random JSON, wrong types, huge numbers, unicode, missing fields: 4xx, nothing stored."""
    wired.clock.advance(120)  # stay clear of the lockout: wrong codes are expected here
    before = wired.books()
    response = wired.send(
        "settings", "POST", "/v1/settings/auto-topup/low-balance", content=_dumps(body),
        headers={**wired.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    assert wired.books() == before
    assert wired.store.get_user("u1").settings == AutoTopupSettings()


@settings(max_examples=EXAMPLES)
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "multipart/form-data; boundary=x", "", "x/y"]
    ),
)
def test_fuzzed_raw_settings_bytes_are_4xx(wired: Wired, raw: bytes, content_type: str) -> None:
    """Bytes that are not JSON at all, under any content type, are refused as a whole."""
    response = wired.send(
        "settings (raw)", "POST", "/v1/settings/auto-topup/low-balance", content=raw,
        headers={**wired.auth, "Content-Type": content_type},
    )  # fmt: skip
    assert 400 <= response.status_code < 500


@settings(max_examples=EXAMPLES)
@given(body=_bodies(plausible_subscription), cancel=st.booleans())
def test_fuzzed_subscription_bodies_never_5xx_and_move_no_money(
    wired: Wired, body: Any, cancel: bool
) -> None:
    """Subscribing and cancelling with random bodies: 4xx, no subscription, no charge."""
    wired.clock.advance(120)
    before = wired.books()
    path = "/v1/subscriptions/cancel" if cancel else "/v1/subscriptions"
    response = wired.send(
        "subscriptions", "POST", path, content=_dumps(body),
        headers={**wired.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    assert wired.books() == before


@settings(max_examples=EXAMPLES)
@given(
    authorization=st.none()
    | st.text(header_text, max_size=60)
    | st.sampled_from(["Bearer ", "Basic x"]),
    path=st.sampled_from(["/v1/settings/billing", "/v1/settings/billing/", "/v1/settings"]),
)
def test_fuzzed_authorization_is_401_or_the_user_never_5xx(
    wired: Wired, authorization: str | None, path: str
) -> None:
    """Any ``Authorization`` header: 401 unless it is a session's token; never 5xx."""
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        response = wired.send("overview", "GET", path, headers=headers)
    except UnicodeEncodeError:
        return  # the HTTP client cannot send such a header at all
    assert response.status_code in (401, 404, 405)


@settings(max_examples=EXAMPLES)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(
        ["/v1/subscriptions", "/v1/payments/webhook", "/v1/settings/auto-topup/low-balance",
         "/v1/nothing", "/", "/v1/subscriptions/cancel/x", "/v1/purchases", "/v1/usage",
         "/v1/purchases/pi_x/confirm", "/v1/purchases/x/confirm", "/v1/payment-method",
         "/v1/payment-method/setups/seti_x/confirm", "/v1/payment-method/setups/%00/confirm"]
    ) | st.text(alphabet="abc/%.?=&", max_size=20).map(lambda p: "/v1/" + p),
)  # fmt: skip
def test_fuzzed_methods_and_paths_answer_in_the_envelope(
    wired: Wired, method: str, path: str
) -> None:
    """Wrong methods and unknown paths: 4xx in the envelope (the send checks it), never 5xx."""
    wired.send("routes", method, path, headers=wired.auth)


# ------------------------------------------------------------------------- money endpoints

plausible_purchase = {
    "credits": plausible_subscription["credits"],
    "currency": plausible_settings["currency"],
    "payment_method": st.sampled_from(
        ["pm_card_visa", "pm_card_chargeDeclined", "pm_nope", "pm_", "card_x", "pm_card_visa\n"]
    )
    | json_values,
    "save_card": st.booleans() | json_values,
    "totp_code": plausible_settings["totp_code"],
}


@settings(max_examples=EXAMPLES)
@given(
    body=_bodies(plausible_purchase),
    path=st.sampled_from(["/v1/purchases", "/v1/payment-method"]),
)
def test_fuzzed_purchase_and_card_bodies_are_4xx_and_move_no_money(
    wired: Wired, body: Any, path: str
) -> None:
    """Buying and saving a card with random bodies (no valid code): 4xx, nothing charged,
    credited or saved."""
    wired.clock.advance(120)
    before = wired.books(), wired.billing.payment_method("u1")
    response = wired.send(
        "purchases and cards", "POST", path, content=_dumps(body),
        headers={**wired.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    assert (wired.books(), wired.billing.payment_method("u1")) == before


@settings(max_examples=EXAMPLES)
@given(
    intent=st.text(header_text, max_size=40)
    | st.sampled_from(["pi_x", "seti_x", "pi_" + "a" * 99]),
    kind=st.sampled_from(["/v1/purchases/{}/confirm", "/v1/payment-method/setups/{}/confirm"]),
)
def test_fuzzed_confirm_ids_are_4xx(wired: Wired, intent: str, kind: str) -> None:
    """Confirming ids that are no intent of the user's: 4xx, nothing changed."""
    before = wired.books()
    path = kind.format(quote(intent, safe=""))
    response = wired.send("confirms", "POST", path, headers=wired.auth)
    assert 400 <= response.status_code < 500, response.text
    assert wired.books() == before


plausible_usage = {
    "user_id": st.sampled_from(["u1", "u2", "nobody", "", "u1\x00"]) | json_values,
    "credits": st.sampled_from([1, 0, -1, 10_000, 10_001, 10**30]) | json_values,
}


@settings(max_examples=EXAMPLES)
@given(
    body=_bodies(plausible_usage),
    token=st.none() | st.just(SERVICE_TOKEN) | st.text(header_text, max_size=40),
    key=st.none() | st.text(header_text, max_size=300),
)
def test_fuzzed_usage_never_5xx_and_only_a_200_deducts(
    wired: Wired, body: Any, token: str | None, key: str | None
) -> None:
    """Spending with random bodies, tokens and keys: a 4xx changes nothing; only an authorised,
    keyed, valid request deducts."""
    before = wired.books()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Service-Token"] = token
    if key is not None:
        headers["Idempotency-Key"] = key
    try:
        response = wired.send("usage", "POST", "/v1/usage", content=_dumps(body), headers=headers)
    except UnicodeEncodeError:
        return
    if response.status_code != 200:
        assert wired.books() == before
    else:
        assert token == SERVICE_TOKEN and key is not None
        wired.billing.grant_credits(body["user_id"], body["credits"], reference=f"refill:{key}")
