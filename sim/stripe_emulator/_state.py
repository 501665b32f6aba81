"""The emulator's whole mutable state, and the few operations every resource shares.

Everything a snapshot must capture lives on :class:`State` (objects, indexes, id and fault random
streams, queued deliveries, pending renewals); the injected clock is referenced, never copied.
Handlers in the resource modules take the state and the request's parameters and return the object
to answer with.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from sim.billing.clock import Clock

from ._errors import invalid_request
from ._faults import FaultInjector
from ._ids import IdGenerator, sequence_of
from ._params import Params
from ._store import OrderedIndex, Store, StripeObject
from ._webhooks import Delivery, DeliveryQueue

#: The API version the emulator answers as (the one stripe-python 16 pins).
API_VERSION = "2026-10-28.endive"

MAX_LIMIT = 100


class State:
    """Objects, indexes, random streams, webhook queue and timers of one emulator."""

    def __init__(self, clock: Clock, seed: int | str, webhook_secret: str, injector: FaultInjector):
        self.clock = clock
        self.ids = IdGenerator(seed)
        self.store = Store()
        self.injector = injector
        self.webhook_secret = webhook_secret
        self.deliveries = DeliveryQueue()
        self.endpoints: dict[str, StripeObject] = {}
        #: Card number behind each PaymentMethod id (never part of an answer, as in Stripe).
        self.card_numbers: dict[str, str] = {}
        #: Each card PaymentMethod's ``payment_method_details`` for charges, built once.
        self.charge_details: dict[str, dict[str, Any]] = {}
        #: How many billing periods each subscription has started (periods count from the anchor).
        self.periods: dict[str, int] = {}
        #: While a renewal on the emulator clock runs: the time it was due, used as "now".
        self.at: float | None = None
        #: ``request`` field of events emitted while handling the current API call (replaced per
        #: request, never mutated, so events share it).
        self.request: dict[str, str | None] = {"id": None, "idempotency_key": None}
        #: Per clock (``None`` = the emulator's own, else a test clock id): a heap of
        #: ``(due, seq, kind, object_id)`` -- subscription renewals and invoice payment retries.
        self.timers: dict[str | None, list[tuple[float, int, str, str]]] = {}
        self._timer_seq = 0
        #: The list indexes each event type goes to, resolved once per type (events are the most
        #: frequent objects: three per confirmed PaymentIntent).
        self._event_indexes: dict[str, tuple[OrderedIndex, ...]] = {}

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
        """Run timer ``kind`` for ``object_id`` once ``clock_id``'s time reaches ``due``."""
        self._timer_seq += 1
        heapq.heappush(
            self.timers.setdefault(clock_id, []), (due, self._timer_seq, kind, object_id)
        )

    def pop_timer(self, clock_id: str | None, now: float) -> tuple[float, str, str] | None:
        """The earliest timer of ``clock_id`` due at ``now``, removed; ``None`` if none is due."""
        heap = self.timers.get(clock_id)
        if not heap or heap[0][0] > now:
            return None
        due, _, kind, object_id = heapq.heappop(heap)
        return due, kind, object_id

    # -- events -----------------------------------------------------------------------------------

    def emit(
        self,
        type: str,
        obj: StripeObject,
        *,
        previous: dict[str, Any] | None = None,
        created: int | None = None,
    ) -> StripeObject:
        """Record event ``type`` about ``obj`` (a snapshot of it now) and queue its webhooks."""
        data: dict[str, Any] = {"object": dict(obj)}
        if previous:
            data["previous_attributes"] = previous
        endpoints = (
            [e for e in self.endpoints.values() if _subscribed(e, type)] if self.endpoints else ()
        )
        event = {
            "id": self.ids.new("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now() if created is None else created,
            "data": data,
            "livemode": False,
            "pending_webhooks": len(endpoints),
            "request": self.request,
            "type": type,
        }
        event_id = event["id"]
        self.store.objects[event_id] = event
        indexes = self._event_indexes.get(type)
        if indexes is None:
            indexes = self._event_indexes[type] = tuple(
                self.store.index(key) for key in _event_lists(type)
            )
        seq = sequence_of(event_id)
        for index in indexes:
            index.add(event_id, seq)
        if endpoints:
            payload = json.dumps(event, indent=2).encode()
            now = self.clock.now() if self.at is None else self.at
            for endpoint in endpoints:
                for delay in self.injector.delivery_delays():
                    self.deliveries.push(
                        Delivery(
                            due_at=now + delay,
                            event_id=event["id"],
                            event_type=type,
                            endpoint_id=endpoint["id"],
                            url=endpoint["url"],
                            payload=payload,
                            secret=endpoint["secret"],
                        )
                    )
        return event

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


@cache
def _event_lists(type: str) -> tuple[tuple[str, ...], ...]:
    """The lists an event of ``type`` belongs to: all, its type, and its ``prefix.*`` group."""
    return ("event",), ("event", type), ("event", type.rsplit(".", 1)[0] + ".*")


def _subscribed(endpoint: StripeObject, type: str) -> bool:
    if endpoint["status"] != "enabled":
        return False
    enabled = endpoint["enabled_events"]
    return "*" in enabled or type in enabled
