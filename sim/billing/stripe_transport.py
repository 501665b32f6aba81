"""How :class:`~sim.billing.payments.StripeGateway` reaches Stripe: one small port, one adapter.

The gateway speaks Stripe's HTTP API as Stripe documents it (a method, a ``/v1/...`` path, the
parameters, an optional idempotency key) and reads Stripe's JSON answers as plain dicts. Who
carries the request is a :class:`StripeRequester`, injected like an httpx transport:

- :class:`LibraryRequester`, the default, sends it through ``stripe-python``'s
  ``StripeClient.raw_request``: the library's authentication, form encoding, headers, HTTP
  client and error classes, to real Stripe test mode or to the emulator (over its in-process
  ``http_client`` or its HTTP server). ``raw_request`` hands back the parsed JSON without building
  the library's typed objects, which cost more than the emulator's whole answer (about a
  millisecond for a confirmed PaymentIntent) and which the gateway would only read back into
  its own result types.
- The simulation's sweeps use a requester that hands the same form body straight to the
  emulator (``sim.gateways.EmulatorRequester``); a test proves that both give every scenario
  the same event log.

The contract is the answer, never an exception per status: the gateway alone decides what a 402,
a 404 or a 429 means (``payments.py``), so both requesters are held to one reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import stripe

from .errors import TransientGatewayError


@dataclass(frozen=True, slots=True)
class StripeAnswer:
    """Stripe's answer to one request: the HTTP status and the JSON body, parsed."""

    status: int
    body: dict[str, Any]


class StripeRequester(Protocol):
    """Carries one request to Stripe and brings back its answer."""

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> StripeAnswer:
        """Send ``method`` (``get``/``post``) to ``path`` with ``params`` (nested dicts and
        lists, as Stripe's API reference writes them) and return the answer, whatever its
        status. Raise :class:`~sim.billing.errors.TransientGatewayError` when no answer came
        back (a refused or dropped connection): the request may or may not have been applied."""
        ...


class LibraryRequester:
    """A :class:`StripeRequester` on ``stripe.StripeClient.raw_request``."""

    def __init__(self, client: stripe.StripeClient) -> None:
        #: The library's client, for calls outside the gateway's port (registering a webhook
        #: endpoint, a test reading Stripe's records).
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> StripeAnswer:
        """Send through the library; its error classes are read back into the answer."""
        options = {} if idempotency_key is None else {"idempotency_key": idempotency_key}
        try:
            response = self.client.raw_request(method, path, **params, **options)
        except stripe.APIConnectionError as exc:
            raise TransientGatewayError(
                f"no answer from Stripe: {exc.user_message or exc}"
            ) from exc
        except stripe.StripeError as exc:
            body = exc.json_body if isinstance(exc.json_body, dict) else {}
            return StripeAnswer(exc.http_status or 500, body)
        return StripeAnswer(response.code, response.data)
