"""Events (list, retrieve) and webhook endpoints (create, retrieve, update, delete, list).

Endpoints receive deliveries for the event types in ``enabled_events`` (``*`` = all) of the
account that created them. As in Stripe, each endpoint created through the API gets its own
signing ``secret`` (``whsec_...``), shown once in the create response and never again: a receiver
verifies with the secret of *its* endpoint, and a secret leaked from one endpoint signs nothing for
another. The secret is drawn from the emulator's seeded stream, so runs stay reproducible.

Endpoints registered by whoever runs the emulator (``StripeEmulator.add_webhook_endpoint``, the
CLI's ``--webhook-url``) are the operator's: they receive every account's events, signed with the
emulator's ``webhook_secret``, and no API key sees them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ._errors import invalid_request, not_modelled
from ._params import Params
from ._routing import Route
from ._state import State
from ._store import StripeObject


def retrieve(st: State, p: Params, event_id: str) -> StripeObject:
    """``GET /v1/events/{id}``."""
    return st.store.get(event_id, "event")


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/events``, optionally by ``type`` (``payment_intent.*`` wildcards included)."""
    for name in ("created", "types", "delivery_success"):
        if name in p:
            raise not_modelled(name)
    kind = p.text("type")
    key = ("event",) if kind is None else ("event", kind)
    return st.page(p, key, "/v1/events")


def create_endpoint(st: State, p: Params) -> StripeObject:
    """``POST /v1/webhook_endpoints`` with ``url`` and ``enabled_events``: an endpoint of the
    calling account, with a fresh signing secret."""
    endpoint = new_endpoint(st, p, "")
    _check_url(endpoint["url"])
    endpoint["secret"] = "whsec_" + st.ids.token(32)
    st.store.put(endpoint, ("webhook_endpoint",))
    st.endpoints[endpoint["id"]] = endpoint
    return endpoint


def add_operator_endpoint(st: State, url: str, enabled_events: list[str]) -> StripeObject:
    """Register an operator endpoint (every account's events, signed with ``webhook_secret``)."""
    endpoint = new_endpoint(
        st, Params({"url": url, "enabled_events": enabled_events}), st.webhook_secret
    )
    st.operator_endpoints[endpoint["id"]] = endpoint
    return endpoint


def new_endpoint(st: State, p: Params, secret: str) -> StripeObject:
    """A webhook endpoint built from create parameters ``p``, signing with ``secret``."""
    url = p.text("url", required=True)
    events = _event_types(p)
    return {
        "id": st.ids.new("we"),
        "object": "webhook_endpoint",
        "api_version": p.text("api_version"),
        "application": None,
        "created": st.now(),
        "description": p.text("description"),
        "enabled_events": events,
        "livemode": False,
        "metadata": p.metadata(),
        "secret": secret,
        "status": "enabled",
        "url": url,
    }


def retrieve_endpoint(st: State, p: Params, endpoint_id: str) -> StripeObject:
    """``GET /v1/webhook_endpoints/{id}`` (without the secret, as Stripe)."""
    return _public(st.store.get(endpoint_id, "webhook_endpoint"))


def update_endpoint(st: State, p: Params, endpoint_id: str) -> StripeObject:
    """``POST /v1/webhook_endpoints/{id}``: url, events, disabled, description, metadata."""
    endpoint = st.store.get(endpoint_id, "webhook_endpoint")
    if "url" in p:
        endpoint["url"] = _check_url(p.text("url", required=True))  # type: ignore[arg-type]
    if "enabled_events" in p:
        endpoint["enabled_events"] = _event_types(p)
    if "disabled" in p:
        endpoint["status"] = "disabled" if p.flag("disabled") else "enabled"
    if "description" in p:
        endpoint["description"] = p.text("description")
    if "metadata" in p:
        endpoint["metadata"] = p.metadata(endpoint["metadata"])
    return _public(endpoint)


def delete_endpoint(st: State, p: Params, endpoint_id: str) -> StripeObject:
    """``DELETE /v1/webhook_endpoints/{id}``: no further deliveries are queued for it."""
    st.store.get(endpoint_id, "webhook_endpoint")
    st.store.remove_from(("webhook_endpoint",), endpoint_id)
    del st.endpoints[endpoint_id]
    tombstone = {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
    st.store.objects[endpoint_id] = tombstone
    return tombstone


def list_endpoints(st: State, p: Params) -> StripeObject:
    """``GET /v1/webhook_endpoints``."""
    page = st.page(p, ("webhook_endpoint",), "/v1/webhook_endpoints")
    return {**page, "data": [_public(e) for e in page["data"]]}


def _check_url(url: str) -> str:
    """``url`` if Stripe could POST to it (an http or https URL with a host), else its 400."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_request(f"Invalid URL: {url}", param="url", code="url_invalid")
    return url


def _event_types(p: Params) -> list[str]:
    """``enabled_events``: a non-empty list of event type names (or ``*``)."""
    events = p.array("enabled_events")
    if not events:
        raise invalid_request(
            "Missing required param: enabled_events.",
            param="enabled_events",
            code="parameter_missing",
        )
    for i, name in enumerate(events):
        if not isinstance(name, str) or not name:
            raise invalid_request(
                "Invalid enabled_events: each must be an event type name or '*'.",
                param=f"enabled_events[{i}]",
            )
    return events


def _public(endpoint: StripeObject) -> StripeObject:
    return {k: v for k, v in endpoint.items() if k != "secret"}


ROUTES = (
    Route("get", "/v1/events", list_, "EventListParams"),
    Route("get", "/v1/events/{id}", retrieve, "EventRetrieveParams"),
    Route("post", "/v1/webhook_endpoints", create_endpoint, "WebhookEndpointCreateParams"),
    Route("get", "/v1/webhook_endpoints", list_endpoints, "WebhookEndpointListParams"),
    Route("get", "/v1/webhook_endpoints/{id}", retrieve_endpoint, "WebhookEndpointRetrieveParams"),
    Route("post", "/v1/webhook_endpoints/{id}", update_endpoint, "WebhookEndpointUpdateParams"),
    Route("delete", "/v1/webhook_endpoints/{id}", delete_endpoint, "WebhookEndpointDeleteParams"),
)
