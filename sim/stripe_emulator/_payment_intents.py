"""PaymentIntents with Stripe's status machine (their Charges and Refunds live in ``_charges``).

Status machine (cards)::

    requires_payment_method --(payment_method)--> requires_confirmation --(confirm)--> charge
    attempt
    charge attempt: succeeded | requires_capture (capture_method=manual)
                  | requires_payment_method + last_payment_error (declined: 402 card_error)
                  | requires_action (3-D Secure on session) | 402 authentication_required (off
                  session)
    requires_action --(confirm: the customer authenticated)--> charge attempt, authenticated
    any state before success --(cancel)--> canceled

``requires_action`` carries Stripe's ``next_action`` (``use_stripe_sdk``, a 3-D Secure
challenge). In Stripe the customer completes the challenge in the browser (Stripe.js) and the
intent is confirmed again; the emulator has no browser, so it models test mode's "Complete
authentication" button: confirming an intent in ``requires_action`` counts as the customer having
authenticated, and the charge then goes to the issuer without asking again (a card that also
declines still declines).

The outcome is the test card's, decided here at charge time. A declined confirm answers 402 with the
error carrying the updated intent, so ``stripe.CardError.error.payment_intent`` is what Stripe
sends.
"""

from __future__ import annotations

from typing import Any

from . import _currencies
from ._cards import AUTHENTICATION_REQUIRED, Decline, issuer_decline
from ._charges import new_charge
from ._errors import StripeAPIError, invalid_request, raise_if
from ._params import Params
from ._payment_methods import attach_to, resolve, test_card
from ._routing import Route
from ._state import State
from ._store import StripeObject

#: Stripe's minimum charge amounts (minor units) for the currencies the project uses and a few more.
MINIMUM_AMOUNTS = {"usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "jpy": 50}
MAX_AMOUNT = 99_999_999

#: Plain fields stored as given and echoed back; the emulator attaches no behaviour to them.
_ECHOED = (
    "description",
    "receipt_email",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_group",
    "on_behalf_of",
    "transfer_data",
    "payment_method_options",
)
#: Documented parameters whose effect would matter but is not modelled: refused loudly.
_NOT_MODELLED = ("payment_method_data", "confirmation_token", "mandate", "mandate_data")

_OPEN_STATES = ("requires_payment_method", "requires_confirmation", "requires_action")


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/payment_intents`` (``confirm=true`` confirms in the same call)."""
    p.refuse_unmodelled(*_NOT_MODELLED)
    amount = p.integer("amount", required=True)
    currency = _currencies.read(p, required=True)
    _check_amount(amount, currency)  # type: ignore[arg-type]
    confirm = p.flag("confirm")
    if not confirm:
        for name in ("off_session", "error_on_requires_action", "return_url"):
            if name in p:
                raise invalid_request(f"You may only specify {name} when confirm=true.", param=name)
    customer_id = p.text("customer")
    customer = None
    if customer_id is not None:
        customer = st.store.get(customer_id, "customer", param="customer")
    types = p.array("payment_method_types") or ["card"]
    if types != ["card"]:
        raise invalid_request(
            "The emulator only models card payments.", param="payment_method_types"
        )
    pi: StripeObject = {
        "id": st.ids.new("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": _AMOUNT_DETAILS,
        "amount_received": 0,
        "application": None,
        "application_fee_amount": p.integer("application_fee_amount"),
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": p.text("capture_method", choices=_CAPTURE) or "automatic_async",
        "client_secret": None,
        "confirmation_method": p.text("confirmation_method", choices=("automatic", "manual"))
        or "automatic",
        "created": st.now_for(customer),
        "currency": currency,
        "customer": customer_id,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": p.metadata(),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": _CARD_OPTIONS,
        "payment_method_types": types,
        "payment_record": None,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": _future_usage(p),
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    pi["client_secret"] = f"{pi['id']}_secret_{st.ids.token(25)}"
    if "automatic_payment_methods" in p:
        enabled = (p.hash("automatic_payment_methods") or {}).get("enabled") == "true"
        pi["automatic_payment_methods"] = {"allow_redirects": "always", "enabled": enabled}
    _echo(pi, p)
    pm_id = p.text("payment_method")
    if confirm and pm_id is None:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. Update "
            "the payment_method and try again.",
            code="payment_intent_unexpected_state",
        )
    pm = _payment_method_for(st, pm_id, customer_id) if pm_id is not None else None
    if pm is not None:
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    keys = [("payment_intent",)]
    if customer_id is not None:
        keys.append(("payment_intent", "customer", customer_id))
    st.store.put(pi, *keys)
    st.emit("payment_intent.created", pi, created=pi["created"])
    if confirm:
        _confirm(st, pi, p)
    return pi


def retrieve(st: State, p: Params, pi_id: str) -> StripeObject:
    """``GET /v1/payment_intents/{id}``."""
    return st.store.get(pi_id, "payment_intent")


def update(st: State, p: Params, pi_id: str) -> StripeObject:
    """``POST /v1/payment_intents/{id}`` while the intent is still open."""
    p.refuse_unmodelled(*_NOT_MODELLED)
    pi = st.store.get(pi_id, "payment_intent")
    if pi["status"] not in (*_OPEN_STATES, "requires_capture"):
        raise _unexpected_state(pi, "update")
    amount = p.integer("amount")
    currency = _currencies.read(p) or pi["currency"]
    if amount is not None or "currency" in p:
        _check_amount(amount if amount is not None else pi["amount"], currency)
        pi["amount"] = amount if amount is not None else pi["amount"]
        pi["currency"] = currency
    if "metadata" in p:
        pi["metadata"] = p.metadata(pi["metadata"])
    if "setup_future_usage" in p:
        pi["setup_future_usage"] = _future_usage(p)
    _echo(pi, p)
    customer_id = p.text("customer")
    if customer_id is not None and customer_id != pi["customer"]:
        st.store.get(customer_id, "customer", param="customer")
        pi["customer"] = customer_id
        st.store.add_to(("payment_intent", "customer", customer_id), pi["id"])
    pm_id = p.text("payment_method")
    if pm_id is not None:
        pi["payment_method"] = _payment_method_for(st, pm_id, pi["customer"])["id"]
        pi["status"] = "requires_confirmation"
        pi["next_action"] = None
    return pi


def confirm(st: State, p: Params, pi_id: str) -> StripeObject:
    """``POST /v1/payment_intents/{id}/confirm``."""
    p.refuse_unmodelled(*_NOT_MODELLED)
    pi = st.store.get(pi_id, "payment_intent")
    if "setup_future_usage" in p:
        pi["setup_future_usage"] = _future_usage(p)
    _confirm(st, pi, p)
    return pi


def cancel(st: State, p: Params, pi_id: str) -> StripeObject:
    """``POST /v1/payment_intents/{id}/cancel``."""
    pi = st.store.get(pi_id, "payment_intent")
    if pi["status"] not in (*_OPEN_STATES, "requires_capture"):
        raise _unexpected_state(pi, "cancel")
    pi["status"] = "canceled"
    pi["canceled_at"] = st.now()
    pi["cancellation_reason"] = p.text("cancellation_reason", choices=_CANCEL_REASONS)
    pi["next_action"] = None
    pi["amount_capturable"] = 0
    st.emit("payment_intent.canceled", pi)
    return pi


def capture(st: State, p: Params, pi_id: str) -> StripeObject:
    """``POST /v1/payment_intents/{id}/capture`` for ``capture_method=manual`` intents."""
    pi = st.store.get(pi_id, "payment_intent")
    if pi["status"] != "requires_capture":
        raise _unexpected_state(pi, "capture")
    amount = p.integer("amount_to_capture", minimum=1)
    amount = pi["amount_capturable"] if amount is None else amount
    if amount > pi["amount_capturable"]:
        raise invalid_request(
            "The amount to capture must be less than or equal to the amount capturable.",
            param="amount_to_capture",
        )
    if "metadata" in p:
        pi["metadata"] = p.metadata(pi["metadata"])
    charge = st.store.objects[pi["latest_charge"]]
    charge["captured"] = True
    charge["amount_captured"] = amount
    pi["amount_received"] = amount
    pi["amount_capturable"] = 0
    pi["status"] = "succeeded"
    st.emit("charge.captured", charge)
    st.emit("payment_intent.succeeded", pi)
    return pi


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/payment_intents`` (optionally one customer's)."""
    p.refuse_unmodelled("created")
    customer_id = p.text("customer")
    if customer_id is None:
        return st.page(p, ("payment_intent",), "/v1/payment_intents")
    return st.page(p, ("payment_intent", "customer", customer_id), "/v1/payment_intents")


def attempt(
    st: State,
    pi: StripeObject,
    *,
    off_session: bool,
    error_on_requires_action: bool = False,
    authenticated: bool = False,
) -> StripeAPIError | None:
    """Charge ``pi``'s card now and move the intent on; return the card error a caller should raise.

    Shared by the confirm endpoint and by invoice payment, which records failures instead of
    raising. ``authenticated``: the customer completed the 3-D Secure challenge of this intent, so
    the card's authentication requirement is met for this charge.
    """
    pm = st.store.objects[pi["payment_method"]]
    card = test_card(st, pm)
    customer = st.store.find(pi["customer"], "customer")
    now = st.now_for(customer)
    pi["next_action"] = None
    needs_authentication = card.requires_authentication and not authenticated
    if needs_authentication and not off_session and not error_on_requires_action:
        pi["status"] = "requires_action"
        pi["next_action"] = three_d_secure_action(pi)
        st.emit("payment_intent.requires_action", pi, created=now)
        return None
    decline = AUTHENTICATION_REQUIRED if needs_authentication else card.decline
    law = st.issuer_laws.get(pm["id"]) if decline is None else None
    if law is not None:  # the issuer decides this charge alone (the card's own outcome is success)
        decline = issuer_decline(law, st.issuer_rng.random())
    if decline is None:
        charge = new_charge(st, pi, pm, card, now, None)
        pi["latest_charge"] = charge["id"]
        pi["last_payment_error"] = None
        if pi["capture_method"] == "manual":
            pi["status"] = "requires_capture"
            pi["amount_capturable"] = pi["amount"]
            st.emit("charge.succeeded", charge, created=now)
            st.emit("payment_intent.amount_capturable_updated", pi, created=now)
        else:
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            st.emit("charge.succeeded", charge, created=now)
            st.emit("payment_intent.succeeded", pi, created=now)
        if pi["setup_future_usage"] and customer is not None and pm["customer"] is None:
            attach_to(st, pm["id"], customer, param="payment_method")
        return None
    charge = None if needs_authentication else new_charge(st, pi, pm, card, now, decline)
    error = card_error(decline, pm)
    if charge is not None:
        error["charge"] = charge["id"]
        pi["latest_charge"] = charge["id"]
        st.emit("charge.failed", charge, created=now)
    pi["status"] = "requires_payment_method"
    pi["last_payment_error"] = error
    st.emit("payment_intent.payment_failed", pi, created=now)
    extra = {"payment_intent": dict(pi), "payment_method": dict(pm)}
    if charge is not None:
        extra["charge"] = charge["id"]
    return decline.error(**extra)


def _confirm(st: State, pi: StripeObject, p: Params) -> None:
    # A confirm of an intent waiting for its customer is the customer's authentication done
    # (the emulator's model of completing the 3-D Secure challenge; see the module docstring).
    authenticated = pi["status"] == "requires_action"
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise _unexpected_state(pi, "confirm")
    pm_id = p.text("payment_method")
    if pm_id is not None and authenticated:
        raise invalid_request(
            "You cannot change the payment method of a PaymentIntent while it requires action.",
            param="payment_method",
        )
    if pm_id is not None:
        pi["payment_method"] = _payment_method_for(st, pm_id, pi["customer"])["id"]
    if pi["payment_method"] is None:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. Update "
            "the payment_method and try again.",
            code="payment_intent_unexpected_state",
        )
    off_session = p.text("off_session") not in (None, "false")
    raise_if(
        attempt(
            st,
            pi,
            off_session=off_session,
            error_on_requires_action=p.flag("error_on_requires_action"),
            authenticated=authenticated,
        )
    )


# Nested values shared by many intents. Safe because stored objects are copy-on-write (see
# ``_store``), and cheaper than rebuilding them on every intent, which is the hot path.
_AMOUNT_DETAILS: dict[str, Any] = {"tip": {}}
_CARD_OPTIONS: dict[str, Any] = {
    "card": {
        "installments": None,
        "mandate_options": None,
        "network": None,
        "request_three_d_secure": "automatic",
    }
}


def _payment_method_for(st: State, pm_id: str, customer_id: str | None) -> StripeObject:
    pm = resolve(st, pm_id, param="payment_method")
    owner = pm["customer"]
    if owner is not None and owner != customer_id:
        if customer_id is None:
            message = (
                "The provided PaymentMethod is attached to a Customer. Please provide the "
                "Customer in the `customer` parameter."
            )
        else:
            message = "The provided PaymentMethod belongs to a different Customer."
        raise invalid_request(message, param="payment_method")
    return pm


#: The PaymentMethod a request names, checked against the customer (SetupIntents share the rule).
payment_method_for = _payment_method_for


def three_d_secure_action(intent: StripeObject) -> dict[str, Any]:
    """The ``next_action`` of a PaymentIntent or SetupIntent whose card asks for 3-D Secure: the
    challenge Stripe.js completes in the browser."""
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": f"https://hooks.stripe.com/redirect/authenticate/{intent['id']}",
            "source": intent["payment_method"],
        },
    }


def card_error(decline: Decline, pm: StripeObject) -> dict[str, Any]:
    """The ``last_payment_error`` / ``last_setup_error`` of a card the bank declined."""
    return {
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "doc_url": "https://stripe.com/docs/error-codes/" + decline.code.replace("_", "-"),
        "message": decline.message,
        "payment_method": dict(pm),
    }


def _check_amount(amount: int, currency: str) -> None:
    minimum = MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        shown = str(minimum) if currency in _currencies.ZERO_DECIMAL else f"{minimum / 100:.2f}"
        raise invalid_request(
            f"Amount must be at least {shown} {currency}",
            param="amount",
            code="amount_too_small",
        )
    if amount > MAX_AMOUNT:
        raise invalid_request(
            "Amount must be no more than 999,999.99", param="amount", code="amount_too_large"
        )


def _future_usage(p: Params) -> str | None:
    return p.text("setup_future_usage", choices=("on_session", "off_session"))


def _echo(pi: StripeObject, p: Params) -> None:
    raw = p.raw
    for name in _ECHOED:
        if name in raw:
            value = raw[name]
            pi[name] = None if value == "" else value


def _unexpected_state(pi: StripeObject, action: str) -> StripeAPIError:
    return StripeAPIError(
        400,
        "invalid_request_error",
        f"You cannot {action} this PaymentIntent because it has a status of {pi['status']}.",
        code="payment_intent_unexpected_state",
        payment_intent=dict(pi),
    )


_CAPTURE = ("automatic", "automatic_async", "manual")
_CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")


ROUTES = (
    Route("post", "/v1/payment_intents", create, "PaymentIntentCreateParams"),
    Route("get", "/v1/payment_intents", list_, "PaymentIntentListParams"),
    Route("get", "/v1/payment_intents/{id}", retrieve, "PaymentIntentRetrieveParams"),
    Route("post", "/v1/payment_intents/{id}", update, "PaymentIntentUpdateParams"),
    Route("post", "/v1/payment_intents/{id}/confirm", confirm, "PaymentIntentConfirmParams"),
    Route("post", "/v1/payment_intents/{id}/cancel", cancel, "PaymentIntentCancelParams"),
    Route("post", "/v1/payment_intents/{id}/capture", capture, "PaymentIntentCaptureParams"),
)
