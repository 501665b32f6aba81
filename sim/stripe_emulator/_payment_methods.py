"""PaymentMethods (cards only): create from a raw test number or a ``pm_card_*`` alias, attach,
detach, list.

As in Stripe test mode, an alias such as ``pm_card_visa`` may stand wherever a PaymentMethod id is
expected: each use mints a fresh ``pm_...`` object for that card. Attaching never asks the issuer.
"""

from __future__ import annotations

from ._cards import ALIASES, TestCard, card_for, luhn_valid
from ._errors import StripeAPIError, invalid_request
from ._params import Params
from ._routing import Route
from ._state import State
from ._store import StripeObject

_CARD_KEYS = frozenset({"number", "exp_month", "exp_year", "cvc", "networks", "token"})


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/payment_methods`` with ``type=card`` and ``card[number]``..."""
    kind = p.text("type", required=True)
    if kind != "card":
        raise invalid_request(
            f"The emulator only models card payment methods, not '{kind}'.", param="type"
        )
    card_params = p.hash("card")
    if not card_params:
        raise invalid_request(
            "Missing required param: card.", param="card", code="parameter_missing"
        )
    unknown = set(card_params) - _CARD_KEYS
    if unknown:
        name = f"card[{sorted(unknown)[0]}]"
        raise invalid_request(
            f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
        )
    number = str(card_params.get("number", "")).replace(" ", "")
    if not number:
        raise invalid_request(
            "Missing required param: card[number].", param="card[number]", code="parameter_missing"
        )
    if not luhn_valid(number):
        raise StripeAPIError(
            402,
            "card_error",
            "Your card number is incorrect.",
            code="incorrect_number",
            param="card[number]",
        )
    exp_month = _expiry(card_params, "exp_month", 12)
    exp_year = _expiry(card_params, "exp_year", 2030)
    if not 1 <= exp_month <= 12:
        raise StripeAPIError(
            402,
            "card_error",
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    if exp_year < _year(st.now()):
        raise StripeAPIError(
            402,
            "card_error",
            "Your card's expiration year is invalid.",
            code="invalid_expiry_year",
            param="card[exp_year]",
        )
    pm = new_card(st, card_for(number), exp_month, exp_year)
    pm["metadata"] = p.metadata()
    if "billing_details" in p:
        pm["billing_details"] = {**pm["billing_details"], **(p.hash("billing_details") or {})}
    return pm


def new_card(st: State, card: TestCard, exp_month: int = 12, exp_year: int = 2034) -> StripeObject:
    """Store a fresh, unattached card PaymentMethod for ``card``."""
    pm: StripeObject = {
        "id": st.ids.new("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
        },
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "unchecked",
            },
            "country": card.country,
            "display_brand": card.brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": _fingerprint(card.number),
            "funding": card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": st.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }
    st.card_numbers[pm["id"]] = card.number
    return st.store.put(pm, ("payment_method",))


def resolve(st: State, pm_id: str, *, param: str) -> StripeObject:
    """The PaymentMethod ``pm_id``, minting a fresh one when it is a ``pm_card_*`` alias."""
    number = ALIASES.get(pm_id)
    if number is not None:
        return new_card(st, card_for(number))
    return st.store.get(pm_id, "payment_method", param=param)


def test_card(st: State, pm: StripeObject) -> TestCard:
    """The test card behind a card PaymentMethod."""
    return card_for(st.card_numbers[pm["id"]])


def retrieve(st: State, p: Params, pm_id: str) -> StripeObject:
    """``GET /v1/payment_methods/{id}``."""
    return st.store.get(pm_id, "payment_method")


def update(st: State, p: Params, pm_id: str) -> StripeObject:
    """``POST /v1/payment_methods/{id}``: metadata and billing details."""
    pm = st.store.get(pm_id, "payment_method")
    if "metadata" in p:
        pm["metadata"] = p.metadata(pm["metadata"])
    if "billing_details" in p:
        pm["billing_details"] = {**pm["billing_details"], **(p.hash("billing_details") or {})}
    st.emit("payment_method.updated", pm)
    return pm


def attach(st: State, p: Params, pm_id: str) -> StripeObject:
    """``POST /v1/payment_methods/{id}/attach``: always succeeds for a valid card, as in Stripe."""
    customer_id = p.text("customer", required=True)
    customer = st.store.get(customer_id, "customer", param="customer")  # type: ignore[arg-type]
    return attach_to(st, pm_id, customer, param=None)


def attach_to(st: State, pm_id: str, customer: StripeObject, *, param: str | None) -> StripeObject:
    """Attach ``pm_id`` (or a fresh card for an alias) to ``customer``."""
    pm = resolve(st, pm_id, param=param) if param else _path_pm(st, pm_id)
    if pm["customer"] == customer["id"]:
        return pm
    if pm["customer"] is not None:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer.",
            param=param,
        )
    pm["customer"] = customer["id"]
    st.store.add_to(("payment_method", "customer", customer["id"]), pm["id"])
    st.emit("payment_method.attached", pm)
    return pm


def detach(st: State, p: Params, pm_id: str) -> StripeObject:
    """``POST /v1/payment_methods/{id}/detach``; a detached default card stops being the default."""
    pm = st.store.get(pm_id, "payment_method")
    customer_id = pm["customer"]
    if customer_id is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            code="payment_method_unexpected_state",
        )
    pm["customer"] = None
    st.store.remove_from(("payment_method", "customer", customer_id), pm_id)
    customer = st.store.find(customer_id, "customer")
    if customer is not None and customer["invoice_settings"]["default_payment_method"] == pm_id:
        customer["invoice_settings"] = {
            **customer["invoice_settings"],
            "default_payment_method": None,
        }
    st.emit("payment_method.detached", pm, previous={"customer": customer_id})
    return pm


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/payment_methods?customer=...``."""
    customer_id = p.text("customer")
    _check_type(p)
    if customer_id is None:
        return st.page(p, ("payment_method",), "/v1/payment_methods")
    st.store.get(customer_id, "customer", param="customer")
    return st.page(p, ("payment_method", "customer", customer_id), "/v1/payment_methods")


def list_for_customer(st: State, p: Params, customer_id: str) -> StripeObject:
    """``GET /v1/customers/{id}/payment_methods``."""
    st.store.get(customer_id, "customer")
    _check_type(p)
    return st.page(
        p,
        ("payment_method", "customer", customer_id),
        f"/v1/customers/{customer_id}/payment_methods",
    )


def _check_type(p: Params) -> None:
    kind = p.text("type")
    if kind not in (None, "card"):
        raise invalid_request(
            f"The emulator only models card payment methods, not '{kind}'.", param="type"
        )


def _path_pm(st: State, pm_id: str) -> StripeObject:
    number = ALIASES.get(pm_id)
    if number is not None:
        return new_card(st, card_for(number))
    return st.store.get(pm_id, "payment_method")


def _expiry(card: dict, name: str, default: int) -> int:
    value = card.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_request(
            f"Invalid integer: {value}", param=f"card[{name}]", code="parameter_invalid_integer"
        ) from None


def _year(epoch: int) -> int:
    return 1970 + int(epoch // 31_556_952)


def _fingerprint(number: str) -> str:
    """A stable per-number fingerprint, as Stripe gives the same card the same one."""
    digits = int(number)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    out = []
    for _ in range(16):
        digits, r = divmod(digits * 2654435761 + 97, 62)
        out.append(alphabet[r])
    return "".join(out)


ROUTES = (
    Route("post", "/v1/payment_methods", create, "PaymentMethodCreateParams"),
    Route("get", "/v1/payment_methods", list_, "PaymentMethodListParams"),
    Route("get", "/v1/payment_methods/{id}", retrieve, "PaymentMethodRetrieveParams"),
    Route("post", "/v1/payment_methods/{id}", update, "PaymentMethodUpdateParams"),
    Route("post", "/v1/payment_methods/{id}/attach", attach, "PaymentMethodAttachParams"),
    Route("post", "/v1/payment_methods/{id}/detach", detach, "PaymentMethodDetachParams"),
    Route(
        "get",
        "/v1/customers/{id}/payment_methods",
        list_for_customer,
        "CustomerListPaymentMethodsParams",
    ),
)
