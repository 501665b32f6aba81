"""The emulator: one state machine behind both the in-process transport and the HTTP server.

:meth:`StripeEmulator.handle` is the single way in for API calls: it decides the request's injected
fault, runs renewals that fell due, checks the API key, applies idempotency, routes to the resource
handler, expands and serialises the answer. Everything happens under one lock, so the threaded
server and several in-process clients see a consistent, serial history.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar
from urllib.parse import urlsplit

from . import (
    _catalog,
    _charges,
    _customers,
    _events,
    _invoices,
    _payment_intents,
    _payment_methods,
    _setup_intents,
    _subscriptions,
    _test_clocks,
)
from ._cards import decline_law
from ._clock import Clock, SystemClock
from ._errors import StripeAPIError, invalid_request
from ._faults import Fault, FaultInjector, Faults
from ._form import decode
from ._idempotency import IdempotencyCache, Saved
from ._params import Params
from ._render import expand, json_values
from ._routing import Router, dispatch
from ._state import API_VERSION, State
from ._subscriptions import run_timers
from ._webhooks import RETRY_DELAYS, Delivery

if TYPE_CHECKING:
    import stripe

    from ._transport import EmulatorHTTPClient, LatencyCallback

_ROUTER = Router(
    (
        *_customers.ROUTES,
        *_payment_methods.ROUTES,
        *_payment_intents.ROUTES,
        *_setup_intents.ROUTES,
        *_charges.ROUTES,
        *_catalog.ROUTES,
        *_subscriptions.ROUTES,
        *_invoices.ROUTES,
        *_test_clocks.ROUTES,
        *_events.ROUTES,
    )
)

#: The largest request body read, in bytes. Stripe refuses bodies past a few megabytes; the
#: emulator's bound is 1 MiB, a hundred times more than any request the API subset needs (an
#: intent with all 50 metadata keys at full length is about 30 KB).
MAX_BODY_BYTES = 1 << 20
BODY_TOO_LARGE = f"Request body too large: the emulator reads at most {MAX_BODY_BYTES} bytes."

#: The body encoding Stripe's v1 API reads (``charset`` parameters aside).
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Objects are built by the emulator itself and never cyclic: skip the encoder's cycle check.
_ENCODER = json.JSONEncoder(check_circular=False)

_SERVER_ERROR = json.dumps(
    {"error": {"type": "api_error", "message": "An unknown error occurred (injected fault)."}}
).encode()
_RATE_LIMITED = json.dumps(
    {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Too many requests hit the API too quickly (injected fault).",
        }
    }
).encode()


class EmulatorResponse(NamedTuple):
    """One answer: HTTP status, JSON body, headers, injected latency, and whether it was dropped.

    A dropped response means the connection broke: the client sees no answer at all (for
    ``drop_response`` faults, the request was nevertheless applied). A named tuple rather than a
    frozen dataclass because one is built per request and tuples are several times cheaper.
    """

    status: int
    body: bytes
    headers: dict[str, str]
    latency: float = 0.0
    dropped: bool = False


class ParsedResponse(NamedTuple):
    """One answer as an in-process client's JSON parser reads it (:meth:`StripeEmulator.
    handle_parsed`): ``data`` is the body's JSON value, the client's own copy (``None`` when
    dropped); the rest is as in :class:`EmulatorResponse`."""

    status: int
    data: Any
    headers: dict[str, str]
    latency: float = 0.0
    dropped: bool = False


Response = TypeVar("Response", EmulatorResponse, ParsedResponse)


class _Reading(Generic[Response]):
    """How a caller reads answers: as JSON text, or as the values its parser would make of it.

    The answer is made once, in the representation its caller reads, and is a snapshot the
    store can no longer change: text is immutable, values are a private copy. What is saved for
    replays is always the text: it holds no objects for the garbage collector to walk over and
    over while its key lives (a day of emulator time), which cost more than writing it."""

    def __init__(self, response: type[Response], as_text: bool) -> None:
        self.response, self.as_text = response, as_text

    def answer(self, value: Any) -> Any:
        """The answer to send for ``value`` (a stored object or an envelope, maybe live)."""
        return _ENCODER.encode(value).encode() if self.as_text else json_values(value)

    def kept(self, value: Any, sent: Any) -> bytes:
        """The text to save for replays: the one sent, or written now for a values answer."""
        return sent if self.as_text else _ENCODER.encode(value).encode()

    def replayed(self, saved: bytes) -> Any:
        """A saved answer's text in this caller's representation."""
        return saved if self.as_text else json.loads(saved)

    def dropped(self, latency: float) -> Response:
        """No answer: the connection broke."""
        return self.response(0, b"" if self.as_text else None, {}, latency, True)


_AS_TEXT = _Reading(EmulatorResponse, as_text=True)
_AS_VALUES = _Reading(ParsedResponse, as_text=False)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An opaque copy of an emulator's state, for :meth:`StripeEmulator.restore`."""

    _state: State = field(repr=False)
    _idempotency: IdempotencyCache = field(repr=False)


class StripeEmulator:
    """A stateful, offline Stripe test mode.

    ``clock`` is anything with ``now() -> float`` (epoch seconds; the wall clock by default).
    ``seed`` fixes every id, endpoint secret and random fault, so the same seed and the same calls
    give the same responses. Each API key is its own account: objects, lists, events, idempotency
    keys and webhook endpoints of one key are invisible to another. ``webhook_secret`` signs the
    deliveries of operator endpoints (:meth:`add_webhook_endpoint`); endpoints created through
    the API sign with their own secret. ``faults`` injects network and webhook faults.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int | str = 0,
        webhook_secret: str = "whsec_test_emulator",
        faults: Faults | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.seed = seed
        self.webhook_secret = webhook_secret
        self._initial_faults = faults or Faults()
        self._lock = threading.RLock()
        self._state, self._idempotency = self._fresh(self._initial_faults)

    # -- configuration ----------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults currently injected."""
        return self._state.injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._state.injector.faults = faults

    @property
    def request_count(self) -> int:
        """How many requests reached the emulator so far (what ``Faults.schedule`` counts)."""
        return self._state.injector.requests

    # -- clients ----------------------------------------------------------------------------------

    def http_client(self, on_latency: LatencyCallback | None = None) -> EmulatorHTTPClient:
        """A ``stripe.HTTPClient`` answering from this emulator without any socket."""
        from ._transport import EmulatorHTTPClient

        return EmulatorHTTPClient(self, on_latency=on_latency)

    def stripe_client(
        self,
        api_key: str = "sk_test_emulator",
        *,
        on_latency: LatencyCallback | None = None,
        max_network_retries: int | None = None,
    ) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` wired to this emulator in-process."""
        import stripe

        return stripe.StripeClient(
            api_key,
            http_client=self.http_client(on_latency),
            max_network_retries=max_network_retries,
        )

    # -- the API ----------------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        *,
        form: dict[str, Any] | None = None,
    ) -> EmulatorResponse:
        """Answer one Stripe API request (``url`` may be a full URL or a path with a query).

        ``form``, for a client in this process, is the request's parameters already read (what
        :func:`~sim.stripe_emulator._form.decode` makes of a body or query, e.g. from
        :func:`~sim.stripe_emulator._form.form_values`), given instead of ``body`` or a query:
        the request is then answered exactly as its text would be, without writing and parsing
        that text.
        """
        return self._respond(_AS_TEXT, method, url, headers, body, form)

    def handle_parsed(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        form: dict[str, Any],
    ) -> ParsedResponse:
        """:meth:`handle` for a client in this process that reads the answer as JSON values:
        the same request, state change and answer, with the body's JSON value (a private copy,
        :func:`~sim.stripe_emulator._render.json_values`) in place of its text. Such a client
        would only parse the text back; skipping the text on both sides is most of the cost of
        answering it."""
        return self._respond(_AS_VALUES, method, url, headers, None, form)

    def _respond(
        self,
        reading: _Reading[Response],
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: str | bytes | None,
        form: dict[str, Any] | None,
    ) -> Response:
        with self._lock:
            st = self._state
            fault, latency = st.injector.next_request()
            if fault is Fault.DROP_REQUEST:
                return reading.dropped(latency)
            self._run_timers()
            request_id = "req_" + st.ids.token(14)
            if fault is Fault.SERVER_ERROR:
                answer = reading.replayed(_SERVER_ERROR)
                return reading.response(500, answer, _headers(request_id), latency)
            if fault is Fault.RATE_LIMIT:
                answer = reading.replayed(_RATE_LIMITED)
                return reading.response(429, answer, _headers(request_id), latency)
            response = self._answer(
                reading, method.lower(), url, headers or {}, body, request_id, form
            )
            if fault is Fault.DROP_RESPONSE:
                return reading.dropped(latency)
            return response._replace(latency=latency) if latency else response

    def _answer(
        self,
        reading: _Reading[Response],
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: str | bytes | None,
        request_id: str,
        form: dict[str, Any] | None = None,
    ) -> Response:
        st = self._state
        out = _headers(request_id)
        parts = urlsplit(url)
        key: str | None = None
        api_key = ""
        fingerprint: tuple[str, str, dict[str, Any]] = (method, parts.path, {})
        now = 0.0
        try:
            api_key = _api_key(_header(headers, "Authorization"))
            st.enter(api_key)
            if form is not None:
                raw = form
            else:
                raw = decode(_form_text(headers, body) if method == "post" else parts.query)
            key = _header(headers, "Idempotency-Key") if method == "post" else None
            if key is not None:
                out["Idempotency-Key"] = key
                fingerprint = (method, parts.path, raw)
                now = self.clock.now()
                saved = self._idempotency.lookup((api_key, key), now)
                if saved is not None:
                    if saved.fingerprint != fingerprint:
                        raise _idempotency_error(key)
                    out["Idempotent-Replayed"] = "true"
                    return reading.response(saved.status, reading.replayed(saved.body), out)
                out["Idempotent-Replayed"] = "false"
            st.request = {"id": request_id, "idempotency_key": key}
            route, ids = _ROUTER.resolve(method, parts.path)
            params = Params(raw)
            result = dispatch(st, route, params, ids)
            paths = params.array("expand")
            if paths:
                result = expand(st.store, result, paths)
            status, payload = 200, reading.answer(result)
            if key is not None:
                kept = Saved(fingerprint, status, reading.kept(result, payload))
                self._idempotency.save((api_key, key), kept, now)
        except StripeAPIError as error:
            envelope = error.envelope()
            status, payload = error.status, reading.answer(envelope)
            if key is not None and error.saved:
                kept = Saved(fingerprint, status, reading.kept(envelope, payload))
                self._idempotency.save((api_key, key), kept, now)
        finally:
            st.request = {"id": None, "idempotency_key": None}
        return reading.response(status, payload, out)

    def malformed(self, message: str) -> EmulatorResponse:
        """The 400 for a request the transport could not even read (a bad ``Content-Length``, an
        oversized body): Stripe's envelope and headers, no object touched and no fault drawn
        (only its request id comes from the seeded stream, as every answer's does)."""
        with self._lock:
            request_id = "req_" + self._state.ids.token(14)
        body = _ENCODER.encode(invalid_request(message).envelope()).encode()
        return EmulatorResponse(400, body, _headers(request_id))

    # -- time and webhooks ------------------------------------------------------------------------

    def run_due(self) -> None:
        """Bill every renewal and payment retry that fell due on the emulator clock by now.

        Requests and :meth:`due_deliveries` do this on their own; call it when time passes without
        them.
        """
        with self._lock:
            self._run_timers()

    def next_due(self) -> float | None:
        """When something is next due on the emulator clock: a webhook delivery or a renewal."""
        with self._lock:
            st = self._state
            times = [st.deliveries.next_due()]
            heap = st.timers.get(None)
            if heap:
                times.append(heap[0][0])
            known = [t for t in times if t is not None]
            return min(known) if known else None

    def due_deliveries(self, now: float | None = None) -> list[Delivery]:
        """Remove and return the webhook deliveries due by ``now`` (the emulator clock by default).

        Renewals due by then are billed first, so their events are included.
        """
        with self._lock:
            self._run_timers()
            when = self.clock.now() if now is None else now
            return self._state.deliveries.pop_due(when)

    def report_delivery(self, delivery: Delivery, status: int) -> Delivery | None:
        """Tell the emulator how the endpoint answered; a non-2xx is retried later, like Stripe.

        Returns the queued retry, or ``None`` when the delivery succeeded or retries are exhausted.
        """
        if 200 <= status < 300 or delivery.attempt > len(RETRY_DELAYS):
            return None
        retry = replace(
            delivery,
            due_at=max(delivery.due_at, self.clock.now()) + RETRY_DELAYS[delivery.attempt - 1],
            attempt=delivery.attempt + 1,
        )
        with self._lock:
            self._state.deliveries.push(retry)
        return retry

    def add_webhook_endpoint(self, url: str, enabled_events: tuple[str, ...] = ("*",)) -> str:
        """Register an operator webhook endpoint without an API call; returns its id (``we_...``).

        It receives the events of every account (every API key), signed with
        :attr:`webhook_secret`, and is not visible through the API: it is the tap of whoever runs
        the emulator, where an endpoint created with ``POST /v1/webhook_endpoints`` belongs to the
        calling account and signs with its own secret.
        """
        with self._lock:
            return _events.add_operator_endpoint(self._state, url, list(enabled_events))["id"]

    def set_decline_law(self, payment_method_id: str, rates: Mapping[str, float]) -> None:
        """Make the issuer of card PaymentMethod ``payment_method_id`` decline each charge at
        random: ``rates`` maps a decline code (``insufficient_funds``, ``expired_card``, ...; the
        codes of Stripe's declining test cards) to its chance per charge, and the card is charged
        the rest of the time. An empty ``rates`` clears the law.

        Real issuers decline a good card now and then; Stripe's test cards decline always or
        never, so consecutive-failure rules are never exercised without this. It applies to a
        card whose own outcome is success (a declining test card still always declines, a
        3-D Secure one still asks), draws once per such charge from a seeded stream of its own,
        and like :meth:`add_webhook_endpoint` is not part of the API. Raises ``ValueError`` for
        an unknown PaymentMethod or decline code, or chances outside [0, 1] or above 1 in all.
        """
        law = decline_law(dict(rates))
        with self._lock:
            if payment_method_id not in self._state.card_numbers:
                raise ValueError(f"no card PaymentMethod {payment_method_id!r}")
            if law:
                self._state.issuer_laws[payment_method_id] = law
            else:
                self._state.issuer_laws.pop(payment_method_id, None)

    # -- state ------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A copy of the whole state (objects, ids, random streams, queues), to restore later."""
        with self._lock:
            return Snapshot(*self._copy(self._state, self._idempotency))

    def restore(self, snapshot: Snapshot) -> None:
        """Return to ``snapshot``'s state; the snapshot stays reusable."""
        with self._lock:
            self._state, self._idempotency = self._copy(snapshot._state, snapshot._idempotency)

    def reset(self) -> None:
        """Forget everything: as freshly constructed with the same seed and initial faults."""
        with self._lock:
            self._state, self._idempotency = self._fresh(self._initial_faults)

    def object(self, object_id: str) -> dict[str, Any] | None:
        """The stored object ``object_id`` as the API would show it, for inspection (not a copy),
        whichever account holds it."""
        with self._lock:
            return self._state.find_anywhere(object_id)

    def objects_of(self, object_type: str) -> list[dict[str, Any]]:
        """Every stored object whose ``object`` is ``object_type`` (``payment_intent``,
        ``invoice``, ...), in every account, as the API would show them, for inspection (not
        copies): an account's objects in the order they were created, accounts in the order they
        first made a request."""
        with self._lock:
            return [
                obj
                for account in self._state.accounts.values()
                for obj in account.store.objects.values()
                if obj.get("object") == object_type
            ]

    def _fresh(self, faults: Faults) -> tuple[State, IdempotencyCache]:
        injector = FaultInjector(faults, self.seed)
        return State(self.clock, self.seed, self.webhook_secret, injector), IdempotencyCache()

    def _copy(self, state: State, cache: IdempotencyCache) -> tuple[State, IdempotencyCache]:
        memo: dict[int, Any] = {id(self.clock): self.clock}
        return copy.deepcopy(state, memo), copy.deepcopy(cache, memo)

    def _run_timers(self) -> None:
        st = self._state
        heap = st.timers.get(None)
        if heap and heap[0][0] <= self.clock.now():
            run_timers(st, None, self.clock.now())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` whatever its case (exact spelling first: that is what clients send)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _form_text(headers: Mapping[str, str], body: str | bytes | None) -> str:
    """A POST body as the text of a form, or Stripe's 400 when it cannot be one."""
    if not body:
        return ""
    # A text body is measured in UTF-8 bytes only when its length alone cannot settle it.
    size = len(body)
    if isinstance(body, str) and size * 4 > MAX_BODY_BYTES:
        size = len(body.encode())
    if size > MAX_BODY_BYTES:
        raise invalid_request(BODY_TOO_LARGE)
    content_type = _header(headers, "Content-Type")
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != FORM_CONTENT_TYPE:
            raise invalid_request(
                f"Invalid request: unsupported Content-Type {content_type}. Stripe's API takes "
                f"{FORM_CONTENT_TYPE} bodies."
            )
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("Invalid request: the request body is not valid UTF-8.") from None


def _headers(request_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Request-Id": request_id,
        "Stripe-Version": API_VERSION,
    }


def _api_key(authorization: str | None) -> str:
    key = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
    if key.startswith(("sk_test_", "rk_test_")):
        return key
    if key.startswith(("sk_live_", "rk_live_")):
        message = "The Stripe emulator is test mode only: live API keys are refused."
    else:
        message = "Invalid API Key provided: an emulator key starts with sk_test_."
    raise StripeAPIError(401, "invalid_request_error", message, code="api_key_invalid")


def _idempotency_error(key: str) -> StripeAPIError:
    return StripeAPIError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different "
        "request.",
    )
