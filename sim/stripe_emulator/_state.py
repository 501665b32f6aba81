"""The emulator's whole mutable state, and the few operations every resource shares.

Everything a snapshot must capture lives on :class:`State` (accounts and their objects, id and
fault random streams, queued deliveries, pending renewals); the injected clock is referenced, never
copied. Handlers in the resource modules take the state and the request's parameters and return the
object to answer with; they read and write the objects of the *current* account
(:meth:`State.enter`), so none of them can reach another key's objects.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from ._accounts import Account
from ._cards import DeclineLaw
from ._clock import Clock
from ._errors import invalid_request
from ._faults import FaultInjector
from ._ids import IdGenerator, sequence_of
from ._params import Params
from ._pretty import pretty_json
from ._store import Store, StripeObject
from ._webhooks import Delivery, DeliveryQueue

#: The API version the emulator answers as (the one stripe-python 16 pins).
API_VERSION = "2026-10-28.endive"

MAX_LIMIT = 100


class State:
    """Accounts, random streams, webhook queue and timers of one emulator.

    ``store`` and ``endpoints`` are those of the current account, set by :meth:`enter` for each
    request and each timer; everything else is emulator-wide.
    """

    #: The current account, and its store and endpoints (plain attributes: read on every access).
    account: Account
    store: Store
    endpoints: dict[str, StripeObject]

    def __init__(self, clock: Clock, seed: int | str, webhook_secret: str, injector: FaultInjector):
        self.clock = clock
        self.ids = IdGenerator(seed)
        self.injector = injector
        self.webhook_secret = webhook_secret
        self.deliveries = DeliveryQueue()
        #: Every account by API key, in order of first use.
        self.accounts: dict[str, Account] = {}
        #: Endpoints registered by whoever runs the emulator (not through the API): they receive
        #: every account's events, signed with ``webhook_secret``.
        self.operator_endpoints: dict[str, StripeObject] = {}
        #: Card number behind each PaymentMethod id (never part of an answer, as in Stripe).
        self.card_numbers: dict[str, str] = {}
        #: Per-charge decline laws set by whoever runs the emulator, by PaymentMethod id, and the
        #: stream they draw from (one draw per charge of such a card, none for any other card).
        self.issuer_laws: dict[str, DeclineLaw] = {}
        self.issuer_rng = random.Random(f"stripe-emulator-issuer:{seed}")
        #: The fixed part of each card PaymentMethod's ``payment_method_details`` on charges,
        #: built once (ids are unique across accounts, so one table serves them all).
        self.charge_details: dict[str, dict[str, Any]] = {}
        #: How many billing periods each subscription has started (periods count from the anchor).
        self.periods: dict[str, int] = {}
        #: While a renewal on the emulator clock runs: the time it was due, used as "now".
        self.at: float | None = None
        #: ``request`` field of events emitted while handling the current API call (replaced per
        #: request, never mutated, so events share it).
        self.request: dict[str, str | None] = {"id": None, "idempotency_key": None}
        #: Per clock (``None`` = the emulator's own, else a test clock id): a heap of
        #: ``(due, seq, account key, kind, object_id)`` -- subscription renewals and invoice
        #: payment retries.
        self.timers: dict[str | None, list[tuple[float, int, str, str, str]]] = {}
        self._timer_seq = 0

    # -- accounts ---------------------------------------------------------------------------------

    def enter(self, key: str) -> Account:
        """Make the account of API key ``key`` current (opening it on first use); return it."""
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = Account(key)
        self.account = account
        self.store = account.store
        self.endpoints = account.endpoints
        return account

    def find_anywhere(self, object_id: str) -> StripeObject | None:
        """The object ``object_id`` in whichever account holds it (for inspection only)."""
        for account in self.accounts.values():
            obj = account.store.objects.get(object_id)
            if obj is not None:
                return obj
        return None

    # -- time -------------------------------------------------------------------------------------

    def now(self) -> int:
        """The emulator clock's time, whole epoch seconds (Stripe timestamps are integers)."""
        return int(self.clock.now() if self.at is None else self.at)

    def now_for(self, customer: StripeObject | None) -> int:
        """The time an object of ``customer`` lives in: its test clock's frozen time, if any."""
        clock_id = customer.get("test_clock") if customer else None
        if clock_id:
            return self.store.objects[clock_id]["frozen_time"]
        return self.now()

    def schedule(self, clock_id: str | None, due: float, kind: str, object_id: str) -> None:
        """Run timer ``kind`` for ``object_id`` (of the current account) once ``clock_id``'s time
        reaches ``due``."""
        self._timer_seq += 1
        heapq.heappush(
            self.timers.setdefault(clock_id, []),
            (due, self._timer_seq, self.account.key, kind, object_id),
        )

    def pop_timer(self, clock_id: str | None, now: float) -> tuple[float, str, str, str] | None:
        """The earliest timer of ``clock_id`` due at ``now``, removed, as ``(due, account key,
        kind, object id)``; ``None`` if none is due."""
        heap = self.timers.get(clock_id)
        if not heap or heap[0][0] > now:
            return None
        due, _, key, kind, object_id = heapq.heappop(heap)
        return due, key, kind, object_id

    # -- events -----------------------------------------------------------------------------------

    def emit(
        self,
        type: str,
        obj: StripeObject,
        *,
        previous: dict[str, Any] | None = None,
        created: int | None = None,
    ) -> StripeObject:
        """Record event ``type`` about ``obj`` (a snapshot of it now) in the current account and
        queue its webhooks: to that account's endpoints and the operator's, never another's."""
        data: dict[str, Any] = {"object": dict(obj)}
        if previous:
            data["previous_attributes"] = previous
        endpoints = self._subscribers(type)
        event_id = self.ids.new("evt")
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now() if created is None else created,
            "data": data,
            "livemode": False,
            "pending_webhooks": len(endpoints),
            "request": self.request,
            "type": type,
        }
        self.store.objects[event_id] = event
        seq = sequence_of(event_id)
        for index in self.account.event_indexes(type):
            index.add(event_id, seq)
        if endpoints:
            self._queue(event, endpoints)
        return event

    def _subscribers(self, type: str) -> list[StripeObject]:
        """The enabled endpoints of the current account and the operator's that take ``type``
        (a plain loop: this runs for every event, and most events go to none or one)."""
        found = []
        for registry in (self.endpoints, self.operator_endpoints):
            for endpoint in registry.values():
                if endpoint["status"] == "enabled":
                    enabled = endpoint["enabled_events"]
                    if "*" in enabled or type in enabled:
                        found.append(endpoint)
        return found

    def _queue(self, event: StripeObject, endpoints: list[StripeObject]) -> None:
        """Queue a delivery of ``event`` (its text written once) to each endpoint, at the delays
        the injected webhook faults draw."""
        payload = pretty_json(event).encode()
        now = self.clock.now() if self.at is None else self.at
        event_id, type = event["id"], event["type"]
        for endpoint in endpoints:
            for delay in self.injector.delivery_delays():
                self.deliveries.push(
                    Delivery(
                        due_at=now + delay,
                        event_id=event_id,
                        event_type=type,
                        endpoint_id=endpoint["id"],
                        url=endpoint["url"],
                        payload=payload,
                        secret=endpoint["secret"],
                    )
                )

    # -- lists ------------------------------------------------------------------------------------

    def page(
        self,
        p: Params,
        key: tuple[str, ...],
        url: str,
        *,
        keep: Callable[[StripeObject], bool] | None = None,
    ) -> StripeObject:
        """One page of the list ``key`` as Stripe's list object, honouring limit and cursors.

        ``keep`` filters objects out of the page (Stripe's default subscription list hides canceled
        ones); it is meant for per-customer lists, where the skipped objects are few.
        """
        limit = p.integer("limit", minimum=1)
        if limit is None:
            limit = 10
        elif limit > MAX_LIMIT:
            raise invalid_request(
                f"This value must be less than or equal to {MAX_LIMIT}.", param="limit"
            )
        ids, has_more = self.store.page(
            key, limit, p.text("starting_after"), p.text("ending_before"), keep
        )
        objects = self.store.objects
        return {
            "object": "list",
            "data": [objects[i] for i in ids],
            "has_more": has_more,
            "url": url,
        }
