"""SetupIntents: saving a card for later payments without charging it.

Status machine (cards)::

    requires_payment_method --(payment_method)--> requires_confirmation --(confirm)--> setup
    attempt
    setup attempt: succeeded (the card is attached to the customer)
                 | requires_action (the card asks for 3-D Secure)
                 | requires_payment_method + last_setup_error (declined: 402 card_error)
    requires_action --(confirm: the customer authenticated)--> succeeded
    any state before success --(cancel)--> canceled

As with PaymentIntents (see ``_payment_intents``), the emulator has no browser for the 3-D Secure
challenge: confirming a SetupIntent in ``requires_action`` models test mode's "Complete
authentication". The issuer is asked when the card is set up (Stripe verifies it with a zero-amount
authorisation), so a card that declines every charge declines the setup too, except the
``chargeCustomerFail`` card, which Stripe documents as attaching fine and failing at charge time.
A card set up this way keeps its own charge-time behaviour: the ``authenticationRequired`` card
still asks for authentication on every later payment, as Stripe documents for it.
"""

from __future__ import annotations

from . import _payment_intents
from ._errors import StripeAPIError, invalid_request, raise_if
from ._params import Params
from ._payment_methods import attach_to, test_card
from ._routing import Route
from ._state import State
from ._store import StripeObject

#: Documented parameters whose effect would matter but is not modelled: refused loudly.
_NOT_MODELLED = ("payment_method_data", "confirmation_token", "mandate_data", "attach_to_self")
#: The card that Stripe lets attach and set up, then declines at charge time.
_FAILS_ONLY_WHEN_CHARGED = frozenset({"4000000000000341"})
_OPEN_STATES = ("requires_payment_method", "requires_confirmation", "requires_action")


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/setup_intents`` (``confirm=true`` confirms in the same call)."""
    p.refuse_unmodelled(*_NOT_MODELLED)
    customer_id = p.text("customer")
    customer = None
    if customer_id is not None:
        customer = st.store.get(customer_id, "customer", param="customer")
    types = p.array("payment_method_types") or ["card"]
    if types != ["card"]:
        raise invalid_request("The emulator only models card setups.", param="payment_method_types")
    confirm = p.flag("confirm")
    if not confirm and "return_url" in p:
        raise invalid_request(
            "You may only specify return_url when confirm=true.", param="return_url"
        )
    si: StripeObject = {
        "id": st.ids.new("seti"),
        "object": "setup_intent",
        "application": None,
        "attach_to_self": None,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": None,
        "created": st.now_for(customer),
        "customer": customer_id,
        "customer_account": None,
        "description": p.text("description"),
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "managed_payments": None,
        "mandate": None,
        "metadata": p.metadata(),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": types,
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": p.text("usage", choices=("on_session", "off_session")) or "off_session",
    }
    si["client_secret"] = f"{si['id']}_secret_{st.ids.token(25)}"
    pm_id = p.text("payment_method")
    if confirm and pm_id is None:
        raise invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. Update "
            "the payment_method and try again.",
            code="setup_intent_unexpected_state",
        )
    if pm_id is not None:
        si["payment_method"] = _payment_intents.payment_method_for(st, pm_id, customer_id)["id"]
        si["status"] = "requires_confirmation"
    st.store.put(si, ("setup_intent",))
    st.emit("setup_intent.created", si, created=si["created"])
    if confirm:
        _confirm(st, si, p)
    return si


def retrieve(st: State, p: Params, si_id: str) -> StripeObject:
    """``GET /v1/setup_intents/{id}``."""
    return st.store.get(si_id, "setup_intent")


def confirm(st: State, p: Params, si_id: str) -> StripeObject:
    """``POST /v1/setup_intents/{id}/confirm``."""
    p.refuse_unmodelled(*_NOT_MODELLED)
    _confirm(st, st.store.get(si_id, "setup_intent"), p)
    return st.store.get(si_id, "setup_intent")


def cancel(st: State, p: Params, si_id: str) -> StripeObject:
    """``POST /v1/setup_intents/{id}/cancel``."""
    si = st.store.get(si_id, "setup_intent")
    if si["status"] not in _OPEN_STATES:
        raise _unexpected_state(si, "cancel")
    si["status"] = "canceled"
    si["next_action"] = None
    si["cancellation_reason"] = p.text(
        "cancellation_reason", choices=("abandoned", "duplicate", "requested_by_customer")
    )
    st.emit("setup_intent.canceled", si)
    return si


def _confirm(st: State, si: StripeObject, p: Params) -> None:
    authenticated = si["status"] == "requires_action"
    if si["status"] not in _OPEN_STATES:
        raise _unexpected_state(si, "confirm")
    pm_id = p.text("payment_method")
    if pm_id is not None:
        if authenticated:
            raise invalid_request(
                "You cannot change the payment method of a SetupIntent while it requires action.",
                param="payment_method",
            )
        si["payment_method"] = _payment_intents.payment_method_for(st, pm_id, si["customer"])["id"]
    if si["payment_method"] is None:
        raise invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. Update "
            "the payment_method and try again.",
            code="setup_intent_unexpected_state",
        )
    raise_if(_attempt(st, si, authenticated=authenticated))


def _attempt(st: State, si: StripeObject, *, authenticated: bool) -> StripeAPIError | None:
    """Set the card up now and move the intent on; the card error to raise, if declined."""
    pm = st.store.objects[si["payment_method"]]
    card = test_card(st, pm)
    customer = st.store.find(si["customer"], "customer")
    now = st.now_for(customer)
    si["next_action"] = None
    if card.requires_authentication and not authenticated:
        si["status"] = "requires_action"
        si["next_action"] = _payment_intents.three_d_secure_action(si)
        st.emit("setup_intent.requires_action", si, created=now)
        return None
    decline = card.decline if card.number not in _FAILS_ONLY_WHEN_CHARGED else None
    if decline is None:
        si["status"] = "succeeded"
        si["last_setup_error"] = None
        if customer is not None and pm["customer"] is None:
            attach_to(st, pm["id"], customer, param="payment_method")
        st.emit("setup_intent.succeeded", si, created=now)
        return None
    si["status"] = "requires_payment_method"
    si["last_setup_error"] = _payment_intents.card_error(decline, pm)
    st.emit("setup_intent.setup_failed", si, created=now)
    return decline.error(setup_intent=dict(si), payment_method=dict(pm))


def _unexpected_state(si: StripeObject, action: str) -> StripeAPIError:
    return StripeAPIError(
        400,
        "invalid_request_error",
        f"You cannot {action} this SetupIntent because it has a status of {si['status']}.",
        code="setup_intent_unexpected_state",
        setup_intent=dict(si),
    )


ROUTES = (
    Route("post", "/v1/setup_intents", create, "SetupIntentCreateParams"),
    Route("get", "/v1/setup_intents/{id}", retrieve, "SetupIntentRetrieveParams"),
    Route("post", "/v1/setup_intents/{id}/confirm", confirm, "SetupIntentConfirmParams"),
    Route("post", "/v1/setup_intents/{id}/cancel", cancel, "SetupIntentCancelParams"),
)
