"""Subscription invoices: how each is built, charged and retried, and the invoice endpoints.

An invoice is created finalized (``open``) for each billing period of a subscription and charged at
once through a PaymentIntent it keeps across attempts (listed in ``payments``, as Stripe does in
the pinned API version). A failed renewal invoice is retried after 3, 5 and 7 days, then its
subscription is canceled; what a payment outcome does to the subscription (``active``,
``past_due``, canceled) lives here too, since it is decided by the invoice's payment.
"""

from __future__ import annotations

from typing import Any

from ._errors import StripeAPIError, invalid_request, not_modelled, raise_if
from ._params import Params
from ._payment_intents import attempt
from ._payment_intents import create as create_intent
from ._routing import Route
from ._state import State
from ._store import StripeObject

#: Delays before the 2nd, 3rd and 4th payment attempts of a failed renewal invoice.
RETRY_DELAYS = (3 * 86_400, 5 * 86_400, 7 * 86_400)


def retrieve_invoice(st: State, p: Params, invoice_id: str) -> StripeObject:
    """``GET /v1/invoices/{id}``."""
    return st.store.get(invoice_id, "invoice")


def list_invoices(st: State, p: Params) -> StripeObject:
    """``GET /v1/invoices`` (optionally one customer's or one subscription's)."""
    for name in ("created", "status", "due_date", "collection_method"):
        if name in p:
            raise not_modelled(name)
    for name in ("subscription", "customer"):
        value = p.text(name)
        if value is not None:
            return st.page(p, ("invoice", name, value), "/v1/invoices")
    return st.page(p, ("invoice",), "/v1/invoices")


def pay_invoice(st: State, p: Params, invoice_id: str) -> StripeObject:
    """``POST /v1/invoices/{id}/pay``: charge an open invoice now (402 when the card fails)."""
    invoice = st.store.get(invoice_id, "invoice")
    if invoice["status"] != "open":
        raise invalid_request(
            f"Only an open invoice can be paid; this one is {invoice['status']}.",
            code="invoice_not_open",
        )
    pm_id = p.text("payment_method")
    if pm_id is not None:
        pm = st.store.get(pm_id, "payment_method", param="payment_method")
        if pm["customer"] != invoice["customer"]:
            raise invalid_request(
                "The payment method must be attached to the customer.", param="payment_method"
            )
    raise_if(pay(st, invoice, off_session=p.flag("off_session"), payment_method=pm_id))
    return invoice


def new_invoice(
    st: State,
    sub: StripeObject,
    customer: StripeObject,
    reason: str,
    start: int,
    end: int,
) -> StripeObject:
    """Create, finalize and store the invoice of ``sub`` for the period ``start``..``end``."""
    invoice_id = st.ids.new("in")
    lines = [_line(st, sub, item, invoice_id, start, end) for item in sub["items"]["data"]]
    total = sum(line["amount"] for line in lines)
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    invoice: StripeObject = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": start,
        "currency": sub["currency"],
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": customer["shipping"],
        "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": start,
        "ending_balance": 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": _ISSUER,
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": f"{customer['invoice_prefix']}-{sequence:04d}",
        "on_behalf_of": None,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": sub["metadata"],
                "subscription": sub["id"],
                "subscription_proration_date": None,
            },
        },
        "payment_settings": _PAYMENT_SETTINGS,
        "payments": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/invoice_payments?invoice={invoice_id}",
        },
        "period_end": start if reason == "subscription_create" else end,
        "period_start": start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "open",
        "status_details": None,
        "status_transitions": {
            "finalized_at": start,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": sub["test_clock"],
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": start,
    }
    st.store.put(
        invoice,
        ("invoice",),
        ("invoice", "customer", customer["id"]),
        ("invoice", "subscription", sub["id"]),
    )
    sub["latest_invoice"] = invoice_id
    st.emit("invoice.created", invoice, created=start)
    st.emit("invoice.finalized", invoice, created=start)
    return invoice


def pay(
    st: State, invoice: StripeObject, *, off_session: bool, payment_method: str | None = None
) -> StripeAPIError | None:
    """Charge ``invoice`` and update it and its subscription; return the card error, if any."""
    sub = st.store.objects[invoice["parent"]["subscription_details"]["subscription"]]
    customer = st.store.objects[invoice["customer"]]
    now = st.now_for(customer)
    card_id = (
        payment_method
        or sub["default_payment_method"]
        or customer["invoice_settings"]["default_payment_method"]
    )
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    error: StripeAPIError | None
    if card_id is None:
        error = invalid_request(
            "This customer has no attached payment source or default payment method.",
            code="invoice_no_payment_method_types",
        )
    else:
        pi = _invoice_intent(st, invoice, card_id)
        error = attempt(st, pi, off_session=off_session)
        if pi["status"] == "requires_action":
            return None
    if error is None:
        _paid(st, invoice, sub, now)
        return None
    _failed(st, invoice, sub, now)
    return error


def retry_payment(st: State, invoice: StripeObject, due: int) -> None:
    """The payment retry timer of ``invoice`` fell due: charge it again if still the one planned."""
    if invoice["status"] != "open" or invoice["next_payment_attempt"] != due:
        return
    pay(st, invoice, off_session=True)


def end_subscription(st: State, sub: StripeObject, now: int, reason: str) -> None:
    """Cancel ``sub`` at ``now`` (for ``reason``) and emit ``customer.subscription.deleted``."""
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "feedback_option": None,
        "reason": reason,
    }
    st.emit("customer.subscription.deleted", sub, created=now)


def _line(
    st: State, sub: StripeObject, item: StripeObject, invoice_id: str, start: int, end: int
) -> StripeObject:
    """The invoice line billing subscription item ``item`` for one period."""
    price = item["price"]
    amount = price["unit_amount"] * item["quantity"]
    product = st.store.objects[price["product"]]
    return {
        "id": st.ids.new("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": f"{item['quantity']} x {product['name']}",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
        },
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": item["quantity"],
        "quantity_decimal": str(item["quantity"]),
        "subscription": sub["id"],
        "subtotal": amount,
        "taxes": [],
    }


def _invoice_intent(st: State, invoice: StripeObject, card_id: str) -> StripeObject:
    """The invoice's PaymentIntent (reused across attempts, as Stripe does), set to ``card_id``."""
    payments = invoice["payments"]["data"]
    if payments:
        pi = st.store.objects[payments[-1]["payment"]["payment_intent"]]
        pi["payment_method"] = card_id
        return pi
    pi = create_intent(
        st,
        Params(
            {
                "amount": str(invoice["amount_due"]),
                "currency": invoice["currency"],
                "customer": invoice["customer"],
                "payment_method": card_id,
                "description": f"Subscription {invoice['billing_reason'].replace('_', ' ')}",
            }
        ),
    )
    invoice["payments"] = {
        **invoice["payments"],
        "data": [
            {
                "id": st.ids.new("inpay"),
                "object": "invoice_payment",
                "amount_paid": None,
                "amount_requested": invoice["amount_due"],
                "created": pi["created"],
                "currency": invoice["currency"],
                "invoice": invoice["id"],
                "is_default": True,
                "livemode": False,
                "payment": {
                    "type": "payment_intent",
                    "charge": None,
                    "payment_intent": pi["id"],
                    "payment_record": None,
                },
                "status": "open",
                "status_transitions": {"canceled_at": None, "paid_at": None},
            }
        ],
        "total_count": 1,
    }
    return pi


def _paid(st: State, invoice: StripeObject, sub: StripeObject, now: int) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"] = {**invoice["status_transitions"], "paid_at": now}
    payment = invoice["payments"]["data"][0] if invoice["payments"]["data"] else None
    if payment is not None:
        paid = {
            **payment,
            "amount_paid": invoice["amount_due"],
            "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": now},
        }
        invoice["payments"] = {**invoice["payments"], "data": [paid]}
    st.emit("invoice.paid", invoice, created=now)
    st.emit("invoice.payment_succeeded", invoice, created=now)
    if sub["status"] != "active" and sub["status"] != "canceled":
        previous = {"status": sub["status"]}
        sub["status"] = "active"
        st.emit("customer.subscription.updated", sub, previous=previous, created=now)


def _failed(st: State, invoice: StripeObject, sub: StripeObject, now: int) -> None:
    attempts = invoice["attempt_count"]
    renewal = invoice["billing_reason"] != "subscription_create"
    next_attempt = None
    if renewal and attempts <= len(RETRY_DELAYS):
        next_attempt = now + RETRY_DELAYS[attempts - 1]
        st.schedule(sub["test_clock"], next_attempt, "retry", invoice["id"])
    invoice["next_payment_attempt"] = next_attempt
    st.emit("invoice.payment_failed", invoice, created=now)
    if renewal and sub["status"] == "active":
        sub["status"] = "past_due"
        st.emit("customer.subscription.updated", sub, previous={"status": "active"}, created=now)
    if renewal and next_attempt is None and sub["status"] != "canceled":
        end_subscription(st, sub, now, "payment_failed")


# Nested values shared by every invoice; safe because stored objects are copy-on-write.
_ISSUER: dict[str, Any] = {"type": "self"}
_PAYMENT_SETTINGS: dict[str, Any] = {
    "default_mandate": None,
    "payment_method_options": None,
    "payment_method_types": None,
}

ROUTES = (
    Route("get", "/v1/invoices", list_invoices, "InvoiceListParams"),
    Route("get", "/v1/invoices/{id}", retrieve_invoice, "InvoiceRetrieveParams"),
    Route("post", "/v1/invoices/{id}/pay", pay_invoice, "InvoicePayParams"),
)
