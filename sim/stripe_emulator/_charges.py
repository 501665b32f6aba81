"""Charges (made by confirming a PaymentIntent) and the Refunds taken from them.

A charge is created by the PaymentIntent state machine at each card attempt, succeeded or failed;
clients only read them (retrieve, list) and refund them. Fields for features the emulator does not
model (Connect transfers, Radar reviews, receipts, Level 3 data) carry the value Stripe shows when
the feature is unused, so a client reading them sees what it would see in test mode.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from . import _currencies
from ._cards import Decline, TestCard
from ._errors import invalid_request
from ._params import Params
from ._routing import Route
from ._state import State
from ._store import StripeObject


def new_charge(
    st: State,
    pi: StripeObject,
    pm: StripeObject,
    card: TestCard,
    now: int,
    decline: Decline | None,
) -> StripeObject:
    """Store the charge of one attempt at ``pi`` with card ``pm`` (failed when ``decline``)."""
    ok = decline is None
    captured = ok and pi["capture_method"] != "manual"
    charge: StripeObject = {
        "id": st.ids.new("ch"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if captured else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": pi["application_fee_amount"],
        "balance_transaction": st.ids.new("txn") if ok else None,
        "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": pi["statement_descriptor"],
        "captured": captured,
        "created": now,
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None if ok else decline.code,  # type: ignore[union-attr]
        "failure_message": None if ok else decline.message,  # type: ignore[union-attr]
        "fraud_details": _NO_FRAUD_DETAILS,
        "livemode": False,
        "metadata": pi["metadata"],
        "on_behalf_of": pi["on_behalf_of"],
        "outcome": _APPROVED if decline is None else _declined(decline.decline_code),
        "paid": ok,
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": _details(st, pm, card, pi["amount"] if ok else None),
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": pi["shipping"],
        "source": None,
        "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": "succeeded" if ok else "failed",
        "transfer_data": pi["transfer_data"],
        "transfer_group": pi["transfer_group"],
    }
    keys = [("charge",), ("charge", "payment_intent", pi["id"])]
    if pi["customer"] is not None:
        keys.append(("charge", "customer", pi["customer"]))
    return st.store.put(charge, *keys)


def retrieve_charge(st: State, p: Params, charge_id: str) -> StripeObject:
    """``GET /v1/charges/{id}``."""
    return st.store.get(charge_id, "charge")


def list_charges(st: State, p: Params) -> StripeObject:
    """``GET /v1/charges`` (optionally by ``customer`` or ``payment_intent``)."""
    p.refuse_unmodelled("created")
    for name in ("payment_intent", "customer"):
        value = p.text(name)
        if value is not None:
            return st.page(p, ("charge", name, value), "/v1/charges")
    return st.page(p, ("charge",), "/v1/charges")


def create_refund(st: State, p: Params) -> StripeObject:
    """``POST /v1/refunds`` for a succeeded charge, by ``charge`` or ``payment_intent``."""
    currency = _currencies.read(p)
    pi_id = p.text("payment_intent")
    charge_id = p.text("charge")
    if pi_id is None and charge_id is None:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent or "
            "charge.",
            code="parameter_missing",
        )
    if charge_id is None:
        pi = st.store.get(pi_id, "payment_intent", param="payment_intent")  # type: ignore[arg-type]
        charge_id = pi["latest_charge"]
        if pi["status"] != "succeeded" or charge_id is None:
            raise invalid_request(
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                param="payment_intent",
            )
    charge = st.store.get(charge_id, "charge", param="charge")
    if currency is not None and currency != charge["currency"]:
        raise invalid_request(
            f"The refund currency ({currency}) must match the charge's ({charge['currency']}).",
            param="currency",
        )
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    amount = p.integer("amount", minimum=1)
    amount = remaining if amount is None else amount
    if charge["status"] != "succeeded" or remaining <= 0:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    if amount > remaining:
        raise invalid_request(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            param="amount",
        )
    refund: StripeObject = {
        "id": st.ids.new("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": st.ids.new("txn"),
        "charge": charge["id"],
        "created": st.now(),
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "destination_details": _CARD_REFUND_DESTINATION,
        "metadata": p.metadata(),
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": p.text("reason", choices=("duplicate", "fraudulent", "requested_by_customer")),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    st.store.put(refund, ("refund",), ("refund", "charge", charge["id"]))
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    st.emit("refund.created", refund)
    st.emit("charge.refunded", charge)
    return refund


def retrieve_refund(st: State, p: Params, refund_id: str) -> StripeObject:
    """``GET /v1/refunds/{id}``."""
    return st.store.get(refund_id, "refund")


def list_refunds(st: State, p: Params) -> StripeObject:
    """``GET /v1/refunds`` (optionally one charge's)."""
    p.refuse_unmodelled("created")
    charge_id = p.text("charge")
    if charge_id is not None:
        return st.page(p, ("refund", "charge", charge_id), "/v1/refunds")
    p.refuse_unmodelled("payment_intent")
    return st.page(p, ("refund",), "/v1/refunds")


def _details(st: State, pm: StripeObject, card: TestCard, authorized: int | None) -> dict[str, Any]:
    """A charge's ``payment_method_details``: the card's fixed part is built once per
    PaymentMethod (charging is the hot path), the authorised amount is the charge's own."""
    fixed = st.charge_details.get(pm["id"])
    if fixed is None:
        shown = pm["card"]
        fixed = st.charge_details[pm["id"]] = {
            "authorization_code": None,
            "brand": card.brand,
            "capture_before": None,
            "checks": shown["checks"],
            "country": card.country,
            "exp_month": shown["exp_month"],
            "exp_year": shown["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": shown["fingerprint"],
            "funding": card.funding,
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card.last4,
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card.brand,
            "network_token": {"used": False},
            "network_transaction_id": None,
            "regulated_status": "unregulated",
            "three_d_secure": None,
            "wallet": None,
        }
    overcapture = {"maximum_amount_capturable": authorized or 0, "status": "unavailable"}
    return {
        "card": {**fixed, "amount_authorized": authorized, "overcapture": overcapture},
        "type": "card",
    }


# Nested values shared by many charges. Safe because stored objects are copy-on-write (see
# ``_store``), and cheaper than rebuilding them on every charge, which is the hot path.
_NO_FRAUD_DETAILS: dict[str, Any] = {}
_APPROVED: dict[str, Any] = {
    "advice_code": None,
    "network_advice_code": None,
    "network_decline_code": None,
    "network_status": "approved_by_network",
    "reason": None,
    "risk_level": "normal",
    "risk_score": None,
    "rule": None,
    "seller_message": "Payment complete.",
    "type": "authorized",
}
_CARD_REFUND_DESTINATION: dict[str, Any] = {
    "card": {
        "reference_status": "pending",
        "reference_type": "acquirer_reference_number",
        "type": "refund",
    },
    "type": "card",
}


@cache
def _declined(decline_code: str) -> dict[str, Any]:
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "declined_by_network",
        "reason": decline_code,
        "risk_level": "normal",
        "risk_score": None,
        "rule": None,
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


ROUTES = (
    Route("get", "/v1/charges", list_charges, "ChargeListParams"),
    Route("get", "/v1/charges/{id}", retrieve_charge, "ChargeRetrieveParams"),
    Route("post", "/v1/refunds", create_refund, "RefundCreateParams"),
    Route("get", "/v1/refunds", list_refunds, "RefundListParams"),
    Route("get", "/v1/refunds/{id}", retrieve_refund, "RefundRetrieveParams"),
)
