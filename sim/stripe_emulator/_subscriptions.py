"""Subscriptions, their invoices, and the timers that renew and retry them.

Lifecycle modelled (``collection_method=charge_automatically`` only):

* create: the first invoice (``billing_reason=subscription_create``) is charged at once with the
  subscription's or customer's default card. Paid -> ``active``; failed -> ``incomplete``
  (``payment_behavior=allow_incomplete``, the default) or a 402 with nothing created
  (``error_if_incomplete``); ``default_incomplete`` leaves the invoice open without charging.
* renewal at each period end (on the emulator clock, or the customer's test clock): the period
  moves on,
  a ``subscription_cycle`` invoice is created, finalized and charged off-session at once (Stripe
  waits
  about an hour before finalizing; the emulator does not). Paid -> ``invoice.paid`` and
  ``invoice.payment_succeeded``; failed -> ``invoice.payment_failed``, ``past_due``, retries after
  3, 5
  and 7 days, then the subscription is canceled.
* ``cancel_at_period_end`` ends it at the period end; ``DELETE`` ends it now
  (``customer.subscription.deleted``).
"""

from __future__ import annotations

from typing import Any

from ._cards import AUTHENTICATION_REQUIRED
from ._errors import StripeAPIError, invalid_request, not_modelled
from ._params import Params
from ._payment_intents import attempt
from ._payment_intents import create as create_intent
from ._payment_methods import test_card
from ._periods import period_end
from ._routing import Route
from ._state import State
from ._store import StripeObject

#: Delays before the 2nd, 3rd and 4th payment attempts of a failed renewal invoice.
RETRY_DELAYS = (3 * 86_400, 5 * 86_400, 7 * 86_400)

_BEHAVIOURS = ("allow_incomplete", "error_if_incomplete", "default_incomplete")
_UNMODELLED_CREATE = (
    "trial_period_days",
    "trial_end",
    "billing_cycle_anchor",
    "add_invoice_items",
    "discounts",
    "backdate_start_date",
    "cancel_at",
)


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/subscriptions`` for a customer, charging the first invoice now."""
    for name in _UNMODELLED_CREATE:
        if name in p:
            raise not_modelled(name)
    if p.text("collection_method") not in (None, "charge_automatically"):
        raise not_modelled("collection_method")
    customer_id = p.text("customer", required=True)
    customer = st.store.get(customer_id, "customer", param="customer")  # type: ignore[arg-type]
    behaviour = p.text("payment_behavior", choices=_BEHAVIOURS) or "allow_incomplete"
    items = p.array("items")
    if not items:
        raise invalid_request(
            "Missing required param: items.", param="items", code="parameter_missing"
        )
    prices = [_item_price(st, item, i) for i, item in enumerate(items)]
    first = prices[0][0]
    for price, _ in prices:
        if price["recurring"] is None:
            raise invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts prices "
                "with `type=recurring`.",
                param="items[0][price]",
            )
        if (price["currency"], price["recurring"]["interval"]) != (
            first["currency"],
            first["recurring"]["interval"],
        ) or price["recurring"]["interval_count"] != first["recurring"]["interval_count"]:
            raise invalid_request("All prices must share currency and interval.", param="items")
    pm_id = p.text("default_payment_method")
    if pm_id is not None:
        pm = st.store.get(pm_id, "payment_method", param="default_payment_method")
        if pm["customer"] != customer_id:
            raise invalid_request(
                "The payment method must be attached to the customer.",
                param="default_payment_method",
            )
    card_id = pm_id or customer["invoice_settings"]["default_payment_method"]
    off_session = p.text("off_session") not in (None, "false")
    if behaviour == "error_if_incomplete":
        _refuse_failing_card(st, card_id, off_session)
    now = st.now_for(customer)
    sub_id = st.ids.new("sub")
    recurring = first["recurring"]
    end = period_end(now, recurring["interval"], recurring["interval_count"], 1)
    sub: StripeObject = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "cancel_at": end if p.flag("cancel_at_period_end") else None,
        "cancel_at_period_end": p.flag("cancel_at_period_end"),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": first["currency"],
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": pm_id,
        "description": p.text("description"),
        "ended_at": None,
        "items": None,
        "latest_invoice": None,
        "livemode": False,
        "metadata": p.metadata(),
        "pending_update": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": customer["test_clock"],
        "trial_end": None,
        "trial_start": None,
    }
    sub["items"] = {
        "object": "list",
        "data": [
            {
                "id": st.ids.new("si"),
                "object": "subscription_item",
                "created": now,
                "current_period_end": end,
                "current_period_start": now,
                "metadata": {},
                "price": price,
                "quantity": quantity,
                "subscription": sub_id,
            }
            for price, quantity in prices
        ],
        "has_more": False,
        "total_count": len(prices),
        "url": f"/v1/subscription_items?subscription={sub_id}",
    }
    st.store.put(sub, ("subscription",), ("subscription", "customer", customer_id))
    st.periods[sub_id] = 1
    invoice = _new_invoice(st, sub, customer, "subscription_create", now, end)
    st.emit("customer.subscription.created", sub, created=now)
    if behaviour != "default_incomplete":
        _pay(st, invoice, off_session=off_session)
    st.schedule(sub["test_clock"], end, "renew", sub_id)
    return sub


def retrieve(st: State, p: Params, sub_id: str) -> StripeObject:
    """``GET /v1/subscriptions/{id}``."""
    return st.store.get(sub_id, "subscription")


def update(st: State, p: Params, sub_id: str) -> StripeObject:
    """``POST /v1/subscriptions/{id}``: cancel at period end, default card, metadata,
    description."""
    for name in ("items", "trial_end", "billing_cycle_anchor", "cancel_at", "pause_collection"):
        if name in p:
            raise not_modelled(name)
    sub = st.store.get(sub_id, "subscription")
    if sub["status"] == "canceled":
        raise invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param=next(iter(p.raw), None),
        )
    previous: dict[str, Any] = {}
    if "cancel_at_period_end" in p:
        flag = p.flag("cancel_at_period_end")
        if flag != sub["cancel_at_period_end"]:
            previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
            previous["cancel_at"] = sub["cancel_at"]
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = _current_end(sub) if flag else None
    if "metadata" in p:
        previous["metadata"] = sub["metadata"]
        sub["metadata"] = p.metadata(sub["metadata"])
    if "description" in p:
        previous["description"] = sub["description"]
        sub["description"] = p.text("description")
    if "default_payment_method" in p:
        pm_id = p.text("default_payment_method")
        if pm_id is not None:
            pm = st.store.get(pm_id, "payment_method", param="default_payment_method")
            if pm["customer"] != sub["customer"]:
                raise invalid_request(
                    "The payment method must be attached to the customer.",
                    param="default_payment_method",
                )
        previous["default_payment_method"] = sub["default_payment_method"]
        sub["default_payment_method"] = pm_id
    if previous:
        st.emit("customer.subscription.updated", sub, previous=previous, created=_now(st, sub))
    return sub


def cancel(st: State, p: Params, sub_id: str) -> StripeObject:
    """``DELETE /v1/subscriptions/{id}``: ends the subscription now."""
    sub = st.store.get(sub_id, "subscription")
    if sub["status"] == "canceled":
        raise invalid_request(
            f"No such subscription: '{sub_id}'", code="resource_missing", status=404
        )
    _end(st, sub, _now(st, sub), "cancellation_requested")
    return sub


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/subscriptions``: not canceled ones by default, ``status=all`` for every one."""
    for name in ("created", "price", "current_period_start", "current_period_end"):
        if name in p:
            raise not_modelled(name)
    status = p.text("status") or "not_canceled"
    customer_id = p.text("customer")
    key = ("subscription",) if customer_id is None else ("subscription", "customer", customer_id)
    page = st.page(p, key, "/v1/subscriptions") if status == "all" else None
    if page is not None:
        return page
    return _filtered_page(st, p, key, "/v1/subscriptions", status)


# -- invoices --------------------------------------------------------------------------------------


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
    error = _pay(st, invoice, off_session=p.flag("off_session"), payment_method=pm_id)
    if error is not None:
        raise error
    return invoice


def run_timers(st: State, clock_id: str | None, until: float) -> None:
    """Run every renewal and payment retry of ``clock_id`` due by ``until``, in time order."""
    while True:
        timer = st.pop_timer(clock_id, until)
        if timer is None:
            return
        due, kind, object_id = timer
        if clock_id is None:
            st.at = due
        else:
            clock = st.store.objects[clock_id]
            clock["frozen_time"] = max(clock["frozen_time"], int(due))
        st.request = {"id": None, "idempotency_key": None}
        try:
            if kind == "renew":
                _renew(st, st.store.objects[object_id], int(due))
            else:
                _retry(st, st.store.objects[object_id], int(due))
        finally:
            st.at = None


def _renew(st: State, sub: StripeObject, due: int) -> None:
    if sub["status"] == "canceled" or due != _current_end(sub):
        return
    if sub["cancel_at_period_end"]:
        _end(st, sub, due, "cancellation_requested")
        return
    periods = st.periods[sub["id"]] + 1
    price = sub["items"]["data"][0]["price"]["recurring"]
    end = period_end(
        sub["billing_cycle_anchor"], price["interval"], price["interval_count"], periods
    )
    previous = {"items": sub["items"], "latest_invoice": sub["latest_invoice"]}
    st.periods[sub["id"]] = periods
    sub["items"] = {
        **sub["items"],
        "data": [
            {**item, "current_period_start": due, "current_period_end": end}
            for item in sub["items"]["data"]
        ],
    }
    customer = st.store.objects[sub["customer"]]
    invoice = _new_invoice(st, sub, customer, "subscription_cycle", due, end)
    st.emit("customer.subscription.updated", sub, previous=previous, created=due)
    _pay(st, invoice, off_session=True)
    st.schedule(sub["test_clock"], end, "renew", sub["id"])


def _retry(st: State, invoice: StripeObject, due: int) -> None:
    if invoice["status"] != "open" or invoice["next_payment_attempt"] != due:
        return
    _pay(st, invoice, off_session=True)


def _new_invoice(
    st: State,
    sub: StripeObject,
    customer: StripeObject,
    reason: str,
    start: int,
    end: int,
) -> StripeObject:
    invoice_id = st.ids.new("in")
    lines = []
    for item in sub["items"]["data"]:
        price = item["price"]
        amount = price["unit_amount"] * item["quantity"]
        product = st.store.objects[price["product"]]
        lines.append(
            {
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
                "pricing": {
                    "type": "price_details",
                    "price_details": {"price": price["id"], "product": price["product"]},
                    "unit_amount_decimal": price["unit_amount_decimal"],
                },
                "quantity": item["quantity"],
                "subscription": sub["id"],
            }
        )
    total = sum(line["amount"] for line in lines)
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    invoice: StripeObject = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "status": None,
        },
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": start,
        "currency": sub["currency"],
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "default_payment_method": None,
        "description": None,
        "due_date": None,
        "effective_at": start,
        "ending_balance": 0,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
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
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": sub["metadata"], "subscription": sub["id"]},
        },
        "payments": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/invoice_payments?invoice={invoice_id}",
        },
        "period_end": start if reason == "subscription_create" else end,
        "period_start": start,
        "starting_balance": 0,
        "status": "open",
        "status_transitions": {
            "finalized_at": start,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "test_clock": sub["test_clock"],
        "total": total,
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


def _pay(
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
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
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
        _end(st, sub, now, "payment_failed")


def _end(st: State, sub: StripeObject, now: int, reason: str) -> None:
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": reason}
    st.emit("customer.subscription.deleted", sub, created=now)


def _refuse_failing_card(st: State, card_id: str | None, off_session: bool) -> None:
    """For ``error_if_incomplete``: answer the card's 402 before creating anything."""
    if card_id is None:
        raise invalid_request(
            "This customer has no attached payment source or default payment method.",
            code="resource_missing",
        )
    card = test_card(st, st.store.objects[card_id])
    decline = AUTHENTICATION_REQUIRED if card.requires_authentication else card.decline
    if decline is not None:
        raise decline.error()


def _item_price(st: State, item: Any, index: int) -> tuple[StripeObject, int]:
    if not isinstance(item, dict) or not item.get("price"):
        param = f"items[{index}][price]"
        if isinstance(item, dict) and "price_data" in item:
            raise not_modelled(f"items[{index}][price_data]")
        raise invalid_request(
            f"Missing required param: {param}.", param=param, code="parameter_missing"
        )
    price = st.store.get(item["price"], "price", param=f"items[{index}][price]")
    quantity = str(item.get("quantity", "1"))
    if not quantity.isdigit():
        raise invalid_request(f"Invalid integer: {quantity}", param=f"items[{index}][quantity]")
    return price, int(quantity)


def _current_end(sub: StripeObject) -> int:
    return sub["items"]["data"][0]["current_period_end"]


def _now(st: State, sub: StripeObject) -> int:
    return st.now_for(st.store.objects[sub["customer"]])


def _filtered_page(
    st: State, p: Params, key: tuple[str, ...], url: str, status: str
) -> StripeObject:
    def keep(obj: StripeObject) -> bool:
        return obj["status"] != "canceled" if status == "not_canceled" else obj["status"] == status

    return st.page(p, key, url, keep=keep)


ROUTES = (
    Route("post", "/v1/subscriptions", create, "SubscriptionCreateParams"),
    Route("get", "/v1/subscriptions", list_, "SubscriptionListParams"),
    Route("get", "/v1/subscriptions/{id}", retrieve, "SubscriptionRetrieveParams"),
    Route("post", "/v1/subscriptions/{id}", update, "SubscriptionUpdateParams"),
    Route("delete", "/v1/subscriptions/{id}", cancel, "SubscriptionCancelParams"),
    Route("get", "/v1/invoices", list_invoices, "InvoiceListParams"),
    Route("get", "/v1/invoices/{id}", retrieve_invoice, "InvoiceRetrieveParams"),
    Route("post", "/v1/invoices/{id}/pay", pay_invoice, "InvoicePayParams"),
)
