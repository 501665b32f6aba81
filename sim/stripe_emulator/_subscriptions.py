"""Subscriptions and the timers that renew them (their invoices are built and charged in
``_invoices``).

Lifecycle modelled (``collection_method=charge_automatically`` only):

* create: the first invoice (``billing_reason=subscription_create``) is charged at once with the
  subscription's or customer's default card. Paid -> ``active``; failed -> ``incomplete``
  (``payment_behavior=allow_incomplete``, the default) or a 402 with nothing created
  (``error_if_incomplete``); ``default_incomplete`` leaves the invoice open without charging.
* renewal at each period end (on the emulator clock, or the customer's test clock): the period
  moves on, a ``subscription_cycle`` invoice is created, finalized and charged off-session at once
  (Stripe waits about an hour before finalizing; the emulator does not). Paid -> ``invoice.paid``
  and ``invoice.payment_succeeded``; failed -> ``invoice.payment_failed``, ``past_due``, retries
  after 3, 5 and 7 days, then the subscription is canceled.
* ``cancel_at_period_end`` ends it at the period end; ``DELETE`` ends it now
  (``customer.subscription.deleted``).
"""

from __future__ import annotations

from typing import Any

from . import _currencies
from ._cards import AUTHENTICATION_REQUIRED
from ._errors import invalid_request, not_modelled
from ._invoices import end_subscription, new_invoice, pay, retry_payment
from ._params import Params, whole_number
from ._payment_methods import test_card
from ._periods import period_end
from ._routing import Route
from ._state import State
from ._store import StripeObject

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
    currency = _currencies.read(p)
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
    if currency is not None and currency != first["currency"]:
        raise invalid_request(
            f"The price specified does not support the currency '{currency}'.", param="currency"
        )
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
    cancel_at_period_end = p.flag("cancel_at_period_end")
    sub: StripeObject = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": _BILLING_MODE,
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": end if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "feedback_option": None,
            "reason": None,
        },
        "collection_method": "charge_automatically",
        "created": now,
        "currency": first["currency"],
        "customer": customer_id,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": pm_id,
        "default_source": None,
        "default_tax_rates": [],
        "description": p.text("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": _INVOICE_SETTINGS,
        "items": {
            "object": "list",
            "data": [_item(st, sub_id, price, quantity, now, end) for price, quantity in prices],
            "has_more": False,
            "total_count": len(prices),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": p.metadata(),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": _PAYMENT_SETTINGS,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "status_details": None,
        "test_clock": customer["test_clock"],
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": _TRIAL_SETTINGS,
        "trial_start": None,
    }
    st.store.put(sub, ("subscription",), ("subscription", "customer", customer_id))
    st.periods[sub_id] = 1
    invoice = new_invoice(st, sub, customer, "subscription_create", now, end)
    st.emit("customer.subscription.created", sub, created=now)
    if behaviour != "default_incomplete":
        pay(st, invoice, off_session=off_session)
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
    end_subscription(st, sub, _now(st, sub), "cancellation_requested")
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


def run_timers(st: State, clock_id: str | None, until: float) -> None:
    """Run every renewal and payment retry of ``clock_id`` due by ``until``, in time order.

    Each runs in the account that scheduled it (so its events reach that account's endpoints
    only), and that account stays current afterwards: callers answering a request enter the
    request's account after this, and a test clock's timers all belong to the clock's account.
    """
    while True:
        timer = st.pop_timer(clock_id, until)
        if timer is None:
            return
        due, key, kind, object_id = timer
        st.enter(key)
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
                retry_payment(st, st.store.objects[object_id], int(due))
        finally:
            st.at = None


def _renew(st: State, sub: StripeObject, due: int) -> None:
    if sub["status"] == "canceled" or due != _current_end(sub):
        return
    if sub["cancel_at_period_end"]:
        end_subscription(st, sub, due, "cancellation_requested")
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
    invoice = new_invoice(st, sub, customer, "subscription_cycle", due, end)
    st.emit("customer.subscription.updated", sub, previous=previous, created=due)
    pay(st, invoice, off_session=True)
    st.schedule(sub["test_clock"], end, "renew", sub["id"])


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
    given = item.get("quantity", "1")
    quantity = whole_number(given)
    if quantity is None:
        raise invalid_request(f"Invalid integer: {given}", param=f"items[{index}][quantity]")
    return price, quantity


def _item(
    st: State, sub_id: str, price: StripeObject, quantity: int, start: int, end: int
) -> StripeObject:
    """A subscription item billing ``quantity`` x ``price`` for the period ``start``..``end``."""
    return {
        "id": st.ids.new("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": start,
        "current_period_end": end,
        "current_period_start": start,
        "current_trial": None,
        "discounts": [],
        "metadata": {},
        "plan": _plan(price),
        "price": price,
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    }


def _plan(price: StripeObject) -> StripeObject:
    """The legacy ``plan`` Stripe still shows on an item: the recurring price as a Plan."""
    recurring = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": False,
        "metadata": price["metadata"],
        "meter": recurring["meter"],
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": None,
        "trial_period_days": recurring["trial_period_days"],
        "usage_type": recurring["usage_type"],
    }


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


# Nested values shared by every subscription; safe because stored objects are copy-on-write.
_BILLING_MODE: dict[str, Any] = {"flexible": None, "type": "classic", "updated_at": None}
_INVOICE_SETTINGS: dict[str, Any] = {
    "account_tax_ids": None,
    "custom_fields": None,
    "description": None,
    "footer": None,
    "issuer": {"account": None, "type": "self"},
}
_PAYMENT_SETTINGS: dict[str, Any] = {
    "payment_method_options": None,
    "payment_method_types": None,
    "save_default_payment_method": "off",
}
_TRIAL_SETTINGS: dict[str, Any] = {
    "end_behavior": {"billing_cycle_anchor": None, "missing_payment_method": "create_invoice"}
}

ROUTES = (
    Route("post", "/v1/subscriptions", create, "SubscriptionCreateParams"),
    Route("get", "/v1/subscriptions", list_, "SubscriptionListParams"),
    Route("get", "/v1/subscriptions/{id}", retrieve, "SubscriptionRetrieveParams"),
    Route("post", "/v1/subscriptions/{id}", update, "SubscriptionUpdateParams"),
    Route("delete", "/v1/subscriptions/{id}", cancel, "SubscriptionCancelParams"),
)
