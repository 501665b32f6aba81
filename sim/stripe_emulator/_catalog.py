"""Products and Prices (one-time and recurring), as far as subscriptions need them."""

from __future__ import annotations

from . import _currencies
from ._errors import invalid_request, not_modelled
from ._params import Params, whole_number
from ._routing import Route
from ._state import State
from ._store import StripeObject

_INTERVALS = ("day", "week", "month", "year")
#: Stripe's longest billing interval is three years, in whichever unit it is counted.
_MAX_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}


def create_product(st: State, p: Params) -> StripeObject:
    """``POST /v1/products``."""
    product: StripeObject = {
        "id": p.text("id") or st.ids.new("prod"),
        "object": "product",
        "active": p.flag("active", True),
        "created": st.now(),
        "default_price": None,
        "description": p.text("description"),
        "images": p.array("images"),
        "livemode": False,
        "marketing_features": [],
        "metadata": p.metadata(),
        "name": p.text("name", required=True),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": p.text("statement_descriptor"),
        "tax_code": p.text("tax_code"),
        "tax_details": None,
        "type": "service",
        "unit_label": p.text("unit_label"),
        "updated": st.now(),
        "url": p.text("url"),
    }
    if product["id"] in st.store.objects:
        raise invalid_request(
            f"Product already exists: {product['id']}", param="id", code="resource_already_exists"
        )
    if "id" in p:
        st.store.adopt(product["id"], st.ids.next_sequence())
    st.store.put(product, ("product",))
    st.emit("product.created", product)
    if "default_price_data" in p:
        raise not_modelled("default_price_data")
    return product


def retrieve_product(st: State, p: Params, product_id: str) -> StripeObject:
    """``GET /v1/products/{id}``."""
    return st.store.get(product_id, "product")


def update_product(st: State, p: Params, product_id: str) -> StripeObject:
    """``POST /v1/products/{id}``: name, description, active, metadata, default price."""
    product = st.store.get(product_id, "product")
    for name in ("name", "description", "statement_descriptor", "unit_label", "url"):
        if name in p:
            product[name] = p.text(name)
    if "active" in p:
        product["active"] = p.flag("active")
    if "metadata" in p:
        product["metadata"] = p.metadata(product["metadata"])
    if "default_price" in p:
        price_id = p.text("default_price")
        if price_id is not None:
            st.store.get(price_id, "price", param="default_price")
        product["default_price"] = price_id
    product["updated"] = st.now()
    st.emit("product.updated", product)
    return product


def list_products(st: State, p: Params) -> StripeObject:
    """``GET /v1/products``."""
    return st.page(p, ("product",), "/v1/products")


def create_price(st: State, p: Params) -> StripeObject:
    """``POST /v1/prices`` with ``unit_amount``, ``currency``, ``product`` and optional
    ``recurring``."""
    p.refuse_unmodelled("product_data", "currency_options")
    currency = _currencies.read(p, required=True)
    product_id = p.text("product", required=True)
    st.store.get(product_id, "product", param="product")  # type: ignore[arg-type]
    recurring = None
    given = p.hash("recurring")
    if given:
        interval = given.get("interval")
        if interval not in _INTERVALS:
            raise invalid_request(
                f"Invalid recurring[interval]: must be one of {', '.join(_INTERVALS)}",
                param="recurring[interval]",
            )
        given_count = given.get("interval_count", "1")
        count = whole_number(given_count)
        if count is None or count < 1:
            raise invalid_request(
                f"Invalid integer: {given_count}", param="recurring[interval_count]"
            )
        if count > _MAX_COUNT[interval]:
            raise invalid_request(
                "The maximum billing interval is 3 years (3 years, 36 months, 156 weeks or 1095 "
                "days).",
                param="recurring[interval_count]",
            )
        recurring = {
            "interval": interval,
            "interval_count": count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": given.get("usage_type", "licensed"),
        }
    price: StripeObject = {
        "id": st.ids.new("price"),
        "object": "price",
        "active": p.flag("active", True),
        "billing_scheme": "per_unit",
        "created": st.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": p.text("lookup_key"),
        "metadata": p.metadata(),
        "nickname": p.text("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.text("tax_behavior") or "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": p.integer("unit_amount", required=True, minimum=0),
        "unit_amount_decimal": None,
    }
    price["unit_amount_decimal"] = str(price["unit_amount"])
    st.store.put(price, ("price",), ("price", "product", product_id))  # type: ignore[arg-type]
    st.emit("price.created", price)
    return price


def retrieve_price(st: State, p: Params, price_id: str) -> StripeObject:
    """``GET /v1/prices/{id}``."""
    return st.store.get(price_id, "price")


def update_price(st: State, p: Params, price_id: str) -> StripeObject:
    """``POST /v1/prices/{id}``: active, nickname, lookup key, metadata."""
    price = st.store.get(price_id, "price")
    if "active" in p:
        price["active"] = p.flag("active")
    for name in ("nickname", "lookup_key"):
        if name in p:
            price[name] = p.text(name)
    if "metadata" in p:
        price["metadata"] = p.metadata(price["metadata"])
    st.emit("price.updated", price)
    return price


def list_prices(st: State, p: Params) -> StripeObject:
    """``GET /v1/prices``: optionally one product's, filtered by ``lookup_keys``, ``active``,
    ``currency`` and ``type``; other filters are refused rather than ignored."""
    for name in ("created", "recurring"):
        if name in p:
            raise not_modelled(name)
    wanted: dict[str, object] = {}
    if "lookup_keys" in p:
        wanted["lookup_key"] = set(p.array("lookup_keys"))
    if "active" in p:
        wanted["active"] = {p.flag("active")}
    if "currency" in p:
        wanted["currency"] = {_currencies.read(p)}
    if "type" in p:
        wanted["type"] = {p.text("type")}

    def keep(price: StripeObject) -> bool:
        return all(price.get(field) in values for field, values in wanted.items())  # type: ignore[operator]

    product_id = p.text("product")
    key = ("price",) if product_id is None else ("price", "product", product_id)
    return st.page(p, key, "/v1/prices", keep=keep if wanted else None)


ROUTES = (
    Route("post", "/v1/products", create_product, "ProductCreateParams"),
    Route("get", "/v1/products", list_products, "ProductListParams"),
    Route("get", "/v1/products/{id}", retrieve_product, "ProductRetrieveParams"),
    Route("post", "/v1/products/{id}", update_product, "ProductUpdateParams"),
    Route("post", "/v1/prices", create_price, "PriceCreateParams"),
    Route("get", "/v1/prices", list_prices, "PriceListParams"),
    Route("get", "/v1/prices/{id}", retrieve_price, "PriceRetrieveParams"),
    Route("post", "/v1/prices/{id}", update_price, "PriceUpdateParams"),
)
