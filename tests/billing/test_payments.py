"""The Stripe gateway against the offline emulator, through the real stripe library and through
the simulation's direct requester (every test taking ``stripe_gateway`` runs both ways)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.billing import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    GatewayConfigurationError,
    ManualClock,
    Money,
    SubscriptionError,
    TransientGatewayError,
    WebhookSignatureError,
)
from sim.billing.payments import StripeGateway, StripeRefused, WebhookVerifier
from sim.billing.stripe_transport import StripeAnswer
from sim.gateways import EmulatorRequester
from sim.stripe_emulator import Faults, StripeEmulator, signature_header

META = {"user_id": "u1", "credits": "10000", "attempt": "1", "purpose": "auto_topup"}


@pytest.fixture(params=["library", "direct"])
def stripe_gateway(request: pytest.FixtureRequest, emulator: StripeEmulator) -> StripeGateway:
    """The gateway through the stripe library, or with the emulator's direct requester."""
    if request.param == "direct":
        return StripeGateway("sk_test_billing", requester=EmulatorRequester(emulator))
    return StripeGateway("sk_test_billing", http_client=emulator.http_client())


class CannedRequester:
    """Answers every request with one status and Stripe's error envelope; records the paths."""

    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.status, self.paths = status, list[str]()
        self.body = {"error": {"message": "No such thing", "code": "resource_missing"}}
        if body is not None:
            self.body = body

    def request(
        self, method: str, path: str, params: Mapping[str, Any], idempotency_key: str | None = None
    ) -> StripeAnswer:
        self.paths.append(path)
        return StripeAnswer(self.status, self.body)


def _request(gateway: StripeGateway, card: str, price: Money | None = None) -> ChargeRequest:
    customer = gateway.ensure_customer("u1")
    card_id = gateway.attach_card(customer, card)
    return ChargeRequest(customer, card_id, price or Money(1_000, "eur"), "k1", META)


def _charge(gateway: StripeGateway, card: str, price: Money | None = None) -> ChargeResult:
    return gateway.charge(_request(gateway, card, price))


def test_visa_succeeds_with_the_money_and_metadata(stripe_gateway: StripeGateway) -> None:
    """pm_card_visa: a succeeded intent carrying the amount charged and our metadata."""
    result = _charge(stripe_gateway, "pm_card_visa")
    assert isinstance(result, ChargeSucceeded)
    assert result.price == Money(1_000, "eur") and result.metadata == META
    assert result.payment_intent_id.startswith("pi_")


@pytest.mark.parametrize(
    ("card", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_chargeCustomerFail", "card_declined", "generic_decline"),
    ],
)
def test_declines_map_to_declined_with_code(
    stripe_gateway: StripeGateway, card: str, code: str, decline_code: str
) -> None:
    """A declined card becomes ChargeDeclined with Stripe's codes and the intent id."""
    result = _charge(stripe_gateway, card)
    assert isinstance(result, ChargeDeclined)
    assert (result.code, result.decline_code) == (code, decline_code)
    assert result.payment_intent_id is not None


def test_sca_card_off_session_needs_authentication(stripe_gateway: StripeGateway) -> None:
    """The 3-D Secure card, charged off-session, asks for the customer: nothing is charged."""
    result = _charge(stripe_gateway, "pm_card_authenticationRequired")
    assert isinstance(result, ChargeNeedsAuthentication)
    assert result.payment_intent_id is not None


def test_jpy_is_charged_without_decimals(
    stripe_gateway: StripeGateway, emulator: StripeEmulator
) -> None:
    """A JPY price of 400 is sent as amount=400 (¥400), not 40000."""
    result = _charge(stripe_gateway, "pm_card_visa", price=Money(400, "jpy"))
    assert isinstance(result, ChargeSucceeded)
    intent = emulator.object(result.payment_intent_id)
    assert intent is not None and (intent["amount"], intent["currency"]) == (400, "jpy")


def test_same_key_replays_the_same_intent(stripe_gateway: StripeGateway) -> None:
    """Charging twice with one idempotency key returns the first intent: one charge."""
    request = _request(stripe_gateway, "pm_card_visa")
    first, second = stripe_gateway.charge(request), stripe_gateway.charge(request)
    assert isinstance(first, ChargeSucceeded) and isinstance(second, ChargeSucceeded)
    assert first.payment_intent_id == second.payment_intent_id


@pytest.mark.parametrize("fault", ["server_error_rate", "rate_limit_rate", "drop_request_rate"])
def test_transport_faults_are_transient(
    stripe_gateway: StripeGateway, emulator: StripeEmulator, fault: str
) -> None:
    """5xx, 429 and a dropped connection raise TransientGatewayError (retry the same key)."""
    customer = stripe_gateway.ensure_customer("u1")
    card = stripe_gateway.attach_card(customer, "pm_card_visa")
    emulator.faults = Faults(**{fault: 1.0})  # type: ignore[arg-type]
    with pytest.raises(TransientGatewayError):
        stripe_gateway.charge(ChargeRequest(customer, card, Money(1_000, "eur"), "k", META))


def test_retry_after_a_dropped_response_charges_once(
    stripe_gateway: StripeGateway, emulator: StripeEmulator
) -> None:
    """The charge was applied but its answer lost: the retry with the same key replays it."""
    customer = stripe_gateway.ensure_customer("u1")
    card = stripe_gateway.attach_card(customer, "pm_card_visa")
    request = ChargeRequest(customer, card, Money(1_000, "eur"), "k-drop", META)
    emulator.faults = Faults(drop_response_rate=1.0)
    with pytest.raises(TransientGatewayError):
        stripe_gateway.charge(request)
    emulator.faults = Faults()
    result = stripe_gateway.charge(request)
    assert isinstance(result, ChargeSucceeded)
    intents = stripe_gateway.list_all("/v1/payment_intents", {"customer": customer})
    assert [i["id"] for i in intents] == [result.payment_intent_id]


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ("pm_card_visa", ChargeSucceeded),
        ("pm_card_chargeDeclinedInsufficientFunds", ChargeDeclined),
        ("pm_card_authenticationRequired", ChargeNeedsAuthentication),
    ],
)
def test_find_charge_reads_back_what_a_request_made(
    stripe_gateway: StripeGateway, card: str, expected: type
) -> None:
    """A charge is found by its customer and metadata, with the answer its confirm gave."""
    request = _request(stripe_gateway, card)
    sent = stripe_gateway.charge(request)
    found = stripe_gateway.find_charge(request)
    assert isinstance(found, expected) and found.payment_intent_id == sent.payment_intent_id
    if isinstance(found, ChargeDeclined):
        assert found.decline_code == "insufficient_funds"


def test_find_charge_of_a_request_never_sent_is_none(stripe_gateway: StripeGateway) -> None:
    """No intent for the attempt (another attempt was charged): nothing to find."""
    request = _request(stripe_gateway, "pm_card_visa")
    stripe_gateway.charge(request)
    other = ChargeRequest(request.customer_id, request.payment_method_id, request.price, "k2",
                          {**META, "attempt": "2"})  # fmt: skip
    assert stripe_gateway.find_charge(other) is None


def test_find_charge_prefers_the_attempts_paid_intent_to_a_newer_failed_one(
    stripe_gateway: StripeGateway,
) -> None:
    """An attempt with a paid intent and a later declined one (the card changed and the key was
    forgotten) reads back as paid: Stripe lists the newest first, and a success wins."""
    paid_request = _request(stripe_gateway, "pm_card_visa")
    paid = stripe_gateway.charge(paid_request)
    card = stripe_gateway.attach_card(paid_request.customer_id, "pm_card_chargeDeclined")
    declined = stripe_gateway.charge(
        ChargeRequest(paid_request.customer_id, card, paid_request.price, "k2", META)
    )
    assert isinstance(declined, ChargeDeclined)
    found = stripe_gateway.find_charge(paid_request)
    assert isinstance(found, ChargeSucceeded)
    assert found.payment_intent_id == paid.payment_intent_id


@pytest.mark.parametrize(
    "other", [{"user_id": "u2"}, {"purpose": "purchase"}], ids=["another user", "a purchase"]
)
def test_find_charge_matches_user_attempt_and_purpose_all(
    stripe_gateway: StripeGateway, other: dict[str, str]
) -> None:
    """An intent of the customer with the attempt's number but another user or purpose is
    not the attempt's."""
    request = _request(stripe_gateway, "pm_card_visa")
    stripe_gateway.charge(
        ChargeRequest(request.customer_id, request.payment_method_id, request.price, "k9",
                      {**META, **other})
    )  # fmt: skip
    assert stripe_gateway.find_charge(request) is None


def test_succeeded_charges_are_the_customers_own(stripe_gateway: StripeGateway) -> None:
    """Each customer's paid top-ups and purchases, not another customer's."""
    mine = _request(stripe_gateway, "pm_card_visa")
    theirs = stripe_gateway.ensure_customer("u2")
    their_card = stripe_gateway.attach_card(theirs, "pm_card_visa")
    for customer, card, key in ((mine.customer_id, mine.payment_method_id, "k1"),
                                (theirs, their_card, "k2")):  # fmt: skip
        for purpose in ("auto_topup", "purchase"):
            metadata = {**META, "purpose": purpose}
            stripe_gateway.charge(
                ChargeRequest(customer, card, mine.price, f"{key}-{purpose}", metadata)
            )
    for read in (stripe_gateway.succeeded_charges, stripe_gateway.succeeded_purchases):
        assert len(read(mine.customer_id)) == 1 and len(read(theirs)) == 1


def test_payment_method_usable_only_for_its_customer(stripe_gateway: StripeGateway) -> None:
    """A card is usable by the customer it is attached to, not by another or when missing."""
    ada, bob = stripe_gateway.ensure_customer("ada"), stripe_gateway.ensure_customer("bob")
    card = stripe_gateway.attach_card(ada, "pm_card_visa")
    assert stripe_gateway.payment_method_usable(ada, card)
    assert not stripe_gateway.payment_method_usable(bob, card)
    assert not stripe_gateway.payment_method_usable(ada, "pm_does_not_exist")


def test_the_library_never_retries_on_its_own(clock: ManualClock) -> None:
    """Retries are the billing core's, later and under the same key: the stripe library, whose
    client retries a 5xx by default, sends each request once."""
    emulator = StripeEmulator(clock=clock, seed=0, faults=Faults(server_error_rate=1.0))
    transport = emulator.http_client()
    gateway = StripeGateway("sk_test_billing", http_client=transport)
    with pytest.raises(TransientGatewayError):
        gateway.ensure_customer("u1")
    assert transport.last_attempts == 1


@pytest.mark.parametrize("key", ["sk_live_abc", "rk_live_abc", "pk_test_abc", ""])
def test_live_or_malformed_keys_are_refused(key: str) -> None:
    """Only Stripe test keys are accepted: a live key never gets a client."""
    with pytest.raises(GatewayConfigurationError):
        StripeGateway(key)
    with pytest.raises(GatewayConfigurationError):
        StripeGateway.from_env({"STRIPE_API_KEY": key})


def test_from_env_needs_the_variable() -> None:
    """Without STRIPE_API_KEY the error says what to set."""
    with pytest.raises(GatewayConfigurationError, match="STRIPE_API_KEY"):
        StripeGateway.from_env({})


# ------------------------------------------------------------------------- webhook signatures


def _signed(payload: bytes, at: float, secret: str = "whsec_test") -> str:
    return signature_header(payload, secret, int(at))


def test_signature_verified_on_the_injected_clock(clock: ManualClock) -> None:
    """A delivery signed at virtual time passes, though the wall clock is far away."""
    verifier = WebhookVerifier("whsec_test", clock)
    verifier.verify(b'{"id": "evt_1"}', _signed(b'{"id": "evt_1"}', clock.now()))


def test_tampered_payload_is_refused(clock: ManualClock) -> None:
    """One changed byte breaks the signature."""
    verifier = WebhookVerifier("whsec_test", clock)
    header = _signed(b'{"amount": 1000}', clock.now())
    with pytest.raises(WebhookSignatureError):
        verifier.verify(b'{"amount": 9000}', header)


@pytest.mark.parametrize("header", [None, "", "t=1,v1=abc", "garbage"])
def test_missing_or_forged_signature_is_refused(clock: ManualClock, header: str | None) -> None:
    """No header, an empty one, or a forged one is refused."""
    with pytest.raises(WebhookSignatureError):
        WebhookVerifier("whsec_test", clock).verify(b"{}", header)


def test_wrong_secret_is_refused(clock: ManualClock) -> None:
    """A delivery signed with another endpoint's secret is refused."""
    header = _signed(b"{}", clock.now(), secret="whsec_other")
    with pytest.raises(WebhookSignatureError):
        WebhookVerifier("whsec_test", clock).verify(b"{}", header)


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_or_future_timestamp_is_refused(clock: ManualClock, skew: float) -> None:
    """A signature more than 5 minutes from the injected clock is refused (replays too)."""
    header = _signed(b"{}", clock.now() + skew)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        WebhookVerifier("whsec_test", clock).verify(b"{}", header)


@pytest.mark.parametrize("skew", [-300, 300])
def test_a_timestamp_exactly_at_the_tolerance_passes(clock: ManualClock, skew: float) -> None:
    """Five minutes either way is still within it (Stripe's library compares the same way)."""
    WebhookVerifier("whsec_test", clock).verify(b"{}", _signed(b"{}", clock.now() + skew))


def test_a_secret_blank_only_to_unicode_is_still_a_secret(clock: ManualClock) -> None:
    """A secret is blank when only ASCII whitespace is left, as the library reads it: a
    no-break space is a (bad, but real) secret, and deliveries signed with it pass."""
    secret, now = "\u00a0", clock.now()
    WebhookVerifier(secret, clock).verify(b"{}", _signed(b"{}", now, secret))
    assert _library_verdict(secret, now, b"{}", _signed(b"{}", now, secret))
    with pytest.raises(WebhookSignatureError, match="no webhook secret"):
        WebhookVerifier(" \t\n", clock).verify(b"{}", _signed(b"{}", now, " \t\n"))
    assert not _library_verdict(" \t\n", now, b"{}", _signed(b"{}", now, " \t\n"))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_refused_request_is_stripe_refused_naming_no_id(status: int) -> None:
    """A 4xx other than 402 and 429 is Stripe refusing the request itself: ``StripeRefused``
    with the status and Stripe's error, and a message that names the route, not the card."""
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(status))
    with pytest.raises(StripeRefused) as caught:
        gateway.attach_card("cus_SECRET1", "pm_SECRET2")
    assert caught.value.status == status
    assert caught.value.error["code"] == "resource_missing"
    assert str(caught.value) == (
        f"Stripe refused /v1/payment_methods/{{id}}/attach ({status} resource_missing):"
        " No such thing"
    )


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503])
def test_stripes_own_trouble_is_transient_naming_no_id(status: int) -> None:
    """A conflict with a request in flight, a rate limit or a server error: retry the same key
    later (``TransientGatewayError``), and the log line names no object."""
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(status, {}))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.payment_method_usable("cus_SECRET1", "pm_SECRET2")
    assert (
        str(caught.value) == f"Stripe answered {status} to /v1/payment_methods/{{id}}: no message"
    )


def test_payment_method_usable_is_false_only_when_stripe_has_no_such_card() -> None:
    """400 and 404 mean no such card (not usable); a refused key is an error, not a ``False``."""
    for status in (400, 404):
        gateway = StripeGateway("sk_test_x", requester=CannedRequester(status))
        assert not gateway.payment_method_usable("cus_1", "pm_1")
    with pytest.raises(StripeRefused):
        StripeGateway("sk_test_x", requester=CannedRequester(401)).payment_method_usable(
            "cus_1", "pm_1"
        )


def test_a_refused_charge_other_than_the_card_is_raised() -> None:
    """Only a 402 is the card's answer; a 400 on a charge is raised, never read as a decline."""
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(400))
    with pytest.raises(StripeRefused):
        gateway.charge(ChargeRequest("cus_1", "pm_1", Money(1_000, "eur"), "k", META))


def test_a_gateway_on_another_requester_has_no_library_client() -> None:
    """``client`` is the stripe library's, and only a library-built gateway has one."""
    with pytest.raises(GatewayConfigurationError, match="does not use the stripe library"):
        _ = StripeGateway("sk_test_x", requester=CannedRequester(200)).client
    with pytest.raises(GatewayConfigurationError):
        StripeGateway("sk_live_x", requester=CannedRequester(200))


def test_lists_are_read_past_their_first_page(stripe_gateway: StripeGateway) -> None:
    """More charges than a page holds (100): every one is found, oldest first."""
    customer = stripe_gateway.ensure_customer("u1")
    card = stripe_gateway.attach_card(customer, "pm_card_visa")
    made = [
        stripe_gateway.charge(
            ChargeRequest(customer, card, Money(1_000, "eur"), f"k{n}", {**META, "attempt": str(n)})
        ).payment_intent_id
        for n in range(103)
    ]
    assert [c.payment_intent_id for c in stripe_gateway.succeeded_charges(customer)] == made
    last = ChargeRequest(customer, card, Money(1_000, "eur"), "k0", {**META, "attempt": "0"})
    found = stripe_gateway.find_charge(last)  # the oldest, on the second page
    assert found is not None and found.payment_intent_id == made[0]


def test_ids_in_stripes_messages_are_left_out_of_errors() -> None:
    """Stripe's own message names the object it could not find; the error (which is logged)
    keeps the words and leaves out the ids and keys, whatever their prefix."""
    missing = {
        "error": {
            "message": "No such PaymentMethod: 'pm_1NvSECRETcard42'; key"
            " sk_test_51SECRETkey, customer cus_SECRET123",
            "code": "resource_missing",
        }
    }
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(404, missing))
    with pytest.raises(StripeRefused) as refused:
        gateway.attach_card("cus_1", "pm_1")
    assert str(refused.value).endswith("No such PaymentMethod: '{id}'; key {id}, customer {id}")
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(500, missing))
    with pytest.raises(TransientGatewayError) as transient:
        gateway.attach_card("cus_1", "pm_1")
    assert "SECRET" not in str(transient.value) and "No such PaymentMethod" in str(transient.value)


def _canned_charge(status: int, body: dict[str, Any]) -> ChargeResult:
    gateway = StripeGateway("sk_test_x", requester=CannedRequester(status, body))
    return gateway.charge(ChargeRequest("cus_1", "pm_1", Money(1_000, "eur"), "k", META))


def test_an_intent_neither_paid_nor_waiting_for_the_customer_is_transient() -> None:
    """A confirmed intent still ``processing`` (or declined without a card error) is not an
    answer yet: retry the same key, which replays it."""
    for status in ("processing", "requires_payment_method"):
        with pytest.raises(TransientGatewayError, match=f"payment intent pi_1 is {status}"):
            _canned_charge(200, {"id": "pi_1", "status": status, "last_payment_error": None})


def test_a_paid_intent_is_read_with_its_amount_received_and_metadata() -> None:
    """The money is the amount received (the amount when Stripe leaves that out), in the
    intent's currency, with its metadata as sent back."""
    paid = {"id": "pi_1", "status": "succeeded", "amount": 1_000, "currency": "eur",
            "metadata": {"user_id": "u1"}}  # fmt: skip
    assert _canned_charge(200, paid) == ChargeSucceeded(
        "pi_1", Money(1_000, "eur"), {"user_id": "u1"}
    )
    assert _canned_charge(200, {**paid, "amount_received": 900, "metadata": None}) == (
        ChargeSucceeded("pi_1", Money(900, "eur"), {})
    )


def test_card_errors_read_the_intent_whether_expanded_or_not() -> None:
    """A 402 names its PaymentIntent by id or as an object; the decline keeps Stripe's code,
    decline code and message (``card_declined`` and an empty message when left out)."""
    bare = {"error": {"type": "card_error", "payment_intent": {"id": "pi_9"}}}
    assert _canned_charge(402, bare) == ChargeDeclined("pi_9", "card_declined", None, "")
    full = {"error": {"code": "expired_card", "decline_code": "expired", "message": "Expired.",
                      "payment_intent": "pi_8"}}  # fmt: skip
    assert _canned_charge(402, full) == ChargeDeclined(
        "pi_8", "expired_card", "expired", "Expired."
    )
    sca = {"error": {"code": "authentication_required", "message": "Confirm it."}}
    assert _canned_charge(402, sca) == ChargeNeedsAuthentication(None, "Confirm it.")


@pytest.mark.parametrize("status", [199, 300, 302])
def test_only_a_2xx_is_an_answer(status: int) -> None:
    """A status outside 200-299 is never read as an object, whatever its body holds."""
    body = {"id": "pi_1", "status": "succeeded", "amount": 1_000, "currency": "eur"}
    with pytest.raises(TransientGatewayError, match=f"Stripe answered {status}"):
        _canned_charge(status, body)


def test_an_error_body_of_the_wrong_shape_still_gives_one_clear_error() -> None:
    """``error`` as a string (an OAuth-style body) is read as no details, not a crash."""
    with pytest.raises(StripeRefused, match=r"\(404 refused\): no message"):
        StripeGateway("sk_test_x", requester=CannedRequester(404, {"error": "gone"})).attach_card(
            "cus_1", "pm_1"
        )


def test_a_first_month_refused_by_the_card_is_a_subscription_error() -> None:
    """A 402 on the subscription's first invoice names the decline code (or the code); any
    other refusal is raised as Stripe's refusal."""
    price = {"data": [{"id": "price_1"}]}
    for error, reason in (
        ({"code": "card_declined", "decline_code": "insufficient_funds"}, "insufficient_funds"),
        ({"code": "expired_card"}, "expired_card"),
        ({}, "declined"),
    ):
        gateway = StripeGateway("sk_test_x", requester=SequenceRequester(
            StripeAnswer(200, price), StripeAnswer(402, {"error": error})
        ))  # fmt: skip
        with pytest.raises(SubscriptionError, match=f"refused for the first month: {reason}$"):
            gateway.create_subscription("cus_1", "pm_1", Money(1_000, "eur"), "k", META)
    gateway = StripeGateway("sk_test_x", requester=SequenceRequester(
        StripeAnswer(200, price), StripeAnswer(400, {"error": {"message": "bad"}})
    ))  # fmt: skip
    with pytest.raises(StripeRefused):
        gateway.create_subscription("cus_1", "pm_1", Money(1_000, "eur"), "k", META)


class SequenceRequester:
    """Answers the requests in turn with the answers given."""

    def __init__(self, *answers: StripeAnswer) -> None:
        self.answers = list(answers)

    def request(
        self, method: str, path: str, params: Mapping[str, Any], idempotency_key: str | None = None
    ) -> StripeAnswer:
        return self.answers.pop(0)


def _library_verdict(secret: str, now: float, payload: bytes, header: str | None) -> bool:
    """The check this verifier replaced: the library's ``verify_header`` (its clock off), then
    the first ``t=`` strictly a whole number within 300 s of ``now``."""
    import stripe as library

    try:
        library.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except (library.SignatureVerificationError, UnicodeDecodeError, TypeError):
        return False  # TypeError: compare_digest refuses non-ASCII text
    assert header is not None
    stamps = [p[2:] for p in header.split(",") if p.startswith("t=")]
    if not stamps or not (stamps[0].isascii() and stamps[0].isdigit()):
        return False
    return abs(now - int(stamps[0])) <= 300


def _verdict(secret: str, now: float, payload: bytes, header: str | None) -> bool:
    try:
        WebhookVerifier(secret, ManualClock(now)).verify(payload, header)
    except WebhookSignatureError:
        return False
    return True


_NOW = 1_767_225_600
_PAYLOADS = st.sampled_from([b"{}", b'{"id": "evt_1", "note": "\xc3\xa9"}', b'{"x": "\xff"}', b""])
_STAMPS = st.sampled_from(
    [str(_NOW), str(_NOW - 299), str(_NOW + 301), f"0{_NOW}", f" {_NOW}", f"{_NOW}=1", "1_0",
     "-5", "", "9" * 30, "١٢"]
)  # fmt: skip


@st.composite
def _headers(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """A secret, a body, and a header of items a sender could write: a timestamp well or badly
    formed, a signature over some timestamp and body with some secret (mostly the right ones),
    and among them bare keys, other schemes, empty items, in any order."""
    secret = draw(st.sampled_from(["whsec_test", "whsec_test", "whsec_other", " ", "whsec_é"]))
    payload, stamp = draw(_PAYLOADS), draw(st.sampled_from([str(_NOW)] * 6) | _STAMPS)
    signed_stamp = draw(st.sampled_from([stamp, stamp, str(_NOW)]))
    signed_body = draw(st.sampled_from([payload, payload, payload + b" "]))
    signer = draw(st.sampled_from([secret, secret, "whsec_test"]))
    mac = hmac.new(signer.encode(), signed_stamp.encode() + b"." + signed_body, hashlib.sha256)
    extra = st.sampled_from(
        [f"t={_NOW}", "t", "v1", "v0=abc", "v1=", "v1=é", f"v1={mac.hexdigest()}=x", "t=", "x", ""]
    )
    items = draw(st.lists(extra, max_size=2))
    for wanted in (f"t={stamp}", f"v1={mac.hexdigest()}"):
        if draw(st.integers(0, 4)):  # four times in five
            items.insert(draw(st.integers(0, len(items))), wanted)
    header = None if draw(st.integers(0, 9)) == 0 else ",".join(items)
    return secret, payload, header


@settings(max_examples=600)
@given(_headers())
def test_the_verdict_is_the_libraries(case: tuple[str, bytes, str | None]) -> None:
    """On any header and body, a delivery passes exactly when it passed the library's check and
    the strict timestamp: same secret, same clock."""
    secret, payload, header = case
    assert _verdict(secret, _NOW, payload, header) == _library_verdict(
        secret, _NOW, payload, header
    )


def test_signed_deliveries_pass_whatever_the_header_holds_besides() -> None:
    """The right signature among others, another scheme, a leading-zero stamp: it passes, as
    in the library; the same with the body changed does not."""
    payload = b'{"id": "evt_1"}'
    digest = hmac.new(b"whsec_test", b"%d." % _NOW + payload, hashlib.sha256).hexdigest()
    for header in (
        f"t={_NOW},v1={digest}",
        f"v0=abc,t={_NOW},v1=00,v1={digest}",
        f"t=0{_NOW},v1={digest}",
        f"t={_NOW},v1={digest}=x",
    ):
        assert _verdict("whsec_test", _NOW, payload, header), header
        assert _library_verdict("whsec_test", _NOW, payload, header), header
        assert not _verdict("whsec_test", _NOW, payload + b" ", header)


def test_the_secret_is_read_only() -> None:
    """The HMAC is keyed with the secret once: the secret cannot change under it."""
    verifier = WebhookVerifier("whsec_test", ManualClock(_NOW))
    assert verifier.secret == "whsec_test"
    with pytest.raises(AttributeError):
        verifier.secret = "whsec_other"  # type: ignore[misc]
