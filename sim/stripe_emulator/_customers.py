"""Customers: create, retrieve, update (including ``invoice_settings.default_payment_method``),
delete, list."""

from __future__ import annotations

from ._errors import invalid_request
from ._params import Params
from ._payment_methods import attach_to
from ._routing import Route
from ._state import State
from ._store import StripeObject

#: Fields Stripe stores as given and the emulator echoes without further meaning.
#: ``business_name`` and ``individual_name`` are absent from a customer until set, as in Stripe.
_ECHOED = (
    "address",
    "business_name",
    "description",
    "email",
    "individual_name",
    "invoice_prefix",
    "name",
    "phone",
    "shipping",
)


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/customers``."""
    clock_id = p.text("test_clock")
    if clock_id is not None:
        st.store.get(clock_id, "test_helpers.test_clock", param="test_clock")
    customer: StripeObject = {
        "id": st.ids.new("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": 0,
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": None,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": p.metadata(),
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": p.array("preferred_locales"),
        "shipping": None,
        "tax_exempt": p.text("tax_exempt") or "none",
        "test_clock": clock_id,
    }
    customer["created"] = st.now_for(customer)
    _echo(customer, p)
    if customer["invoice_prefix"] is None:
        customer["invoice_prefix"] = customer["id"][4:12].upper()
    st.store.put(customer, ("customer",))
    pm_id = p.text("payment_method")
    if pm_id is not None:
        attach_to(st, pm_id, customer, param="payment_method")
    given, pm = _default_payment_method(st, p, customer)
    if given:
        _set_default(customer, pm)
    st.emit("customer.created", customer)
    return customer


def retrieve(st: State, p: Params, customer_id: str) -> StripeObject:
    """``GET /v1/customers/{id}``."""
    return st.store.get(customer_id, "customer")


def update(st: State, p: Params, customer_id: str) -> StripeObject:
    """``POST /v1/customers/{id}``: echoes plain fields, sets metadata and the default card."""
    customer = st.store.get(customer_id, "customer")
    before = dict(customer)
    _echo(customer, p)
    if "metadata" in p:
        customer["metadata"] = p.metadata(customer["metadata"])
    given, pm = _default_payment_method(st, p, customer)
    if given:
        _set_default(customer, pm)
    changed = {k: before[k] for k in customer if customer[k] != before[k]}
    if changed:
        st.emit("customer.updated", customer, previous=changed)
    return customer


def delete(st: State, p: Params, customer_id: str) -> StripeObject:
    """``DELETE /v1/customers/{id}``: the customer is gone; its cards are detached."""
    customer = st.store.get(customer_id, "customer")
    for pm_id in st.store.members(("payment_method", "customer", customer_id)):
        st.store.objects[pm_id]["customer"] = None
    st.store.remove_from(("customer",), customer_id)
    st.emit("customer.deleted", customer)
    tombstone = {"id": customer_id, "object": "customer", "deleted": True}
    st.store.objects[customer_id] = tombstone
    return tombstone


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/customers``."""
    for name in ("created", "email", "test_clock"):
        if name in p:
            raise invalid_request(f"The emulator does not filter customers by {name}.", param=name)
    return st.page(p, ("customer",), "/v1/customers")


def _echo(customer: StripeObject, p: Params) -> None:
    for name in _ECHOED:
        if name in p:
            value = p.get(name)
            customer[name] = None if value == "" else value


def _default_payment_method(
    st: State, p: Params, customer: StripeObject
) -> tuple[bool, StripeObject | None]:
    """Whether the request sets the default card, and the card (``None`` to unset it)."""
    settings = p.hash("invoice_settings")
    if not settings or "default_payment_method" not in settings:
        return False, None
    unknown = set(settings) - {
        "default_payment_method",
        "custom_fields",
        "footer",
        "rendering_options",
    }
    if unknown:
        name = f"invoice_settings[{sorted(unknown)[0]}]"
        raise invalid_request(
            f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
        )
    pm_id = settings["default_payment_method"]
    if not pm_id:
        return True, None
    param = "invoice_settings[default_payment_method]"
    pm = st.store.get(pm_id, "payment_method", param=param)
    if pm["customer"] != customer["id"]:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {pm_id}. The payment method "
            "must be attached to the customer.",
            param=param,
            code="resource_missing",
        )
    return True, pm


def _set_default(customer: StripeObject, pm: StripeObject | None) -> None:
    settings = dict(customer["invoice_settings"])
    settings["default_payment_method"] = pm["id"] if pm is not None else None
    customer["invoice_settings"] = settings


ROUTES = (
    Route("post", "/v1/customers", create, "CustomerCreateParams"),
    Route("get", "/v1/customers", list_, "CustomerListParams"),
    Route("get", "/v1/customers/{id}", retrieve, "CustomerRetrieveParams"),
    Route("post", "/v1/customers/{id}", update, "CustomerUpdateParams"),
    Route("delete", "/v1/customers/{id}", delete, "CustomerDeleteParams"),
)
