"""Stripe's webhook deliveries, brought to the billing module's real handler on simulated time.

:class:`Postman` wakes when the emulator says the next delivery (or subscription renewal) is due,
hands each delivery to the handler, and reports the answer, so that a failed delivery is retried
with Stripe's back-off. Injected endpoint faults (``[faults.webhooks]``) answer before the
handler sees the delivery.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from sim.billing import BillingError, WebhookHandler, WebhookPayloadError, WebhookSignatureError
from sim.stripe_emulator import Delivery, StripeEmulator

from .faults import FaultSchedule
from .usage import TICKS

if TYPE_CHECKING:
    from .world import World


class Postman:
    """Delivers the emulator's webhook events to the billing module's handler when they are due.

    One wake-up per due time (stored, so asking twice schedules once); each wake-up delivers
    everything due, reports each answer to the emulator (a non-2xx is redelivered later, as by
    Stripe) and schedules the next. Nothing is scheduled past ``limit`` (epoch seconds). While
    ``endpoint_faults`` fails, a delivery never reaches the handler: the endpoint answers 503
    (``unreachable`` in the event log), as a down or overloaded web server would.
    """

    def __init__(
        self,
        world: World,
        emulator: StripeEmulator,
        handler: WebhookHandler | None,
        limit: float,
        endpoint_faults: FaultSchedule | None = None,
    ) -> None:
        self._world, self._emulator, self._handler, self._limit = world, emulator, handler, limit
        self._endpoint_faults = endpoint_faults
        self._wakes: set[int] = set()
        #: Event id -> how many deliveries of it the handler applied (not ``duplicate``).
        self.applied: dict[str, int] = {}

    def wake(self) -> None:
        """Schedule a wake-up for the next due delivery or renewal, if there is one in time."""
        if self._handler is None:
            return
        due = self._emulator.next_due()
        if due is None or due > self._limit:
            return
        env, start = self._world.env, self._world.scenario.start
        tick = max(env.now, math.ceil(round((due - start) * TICKS, 6)))
        if tick not in self._wakes:
            self._wakes.add(tick)
            env.process(self._deliver_at(tick))

    def _deliver_at(self, tick: int) -> Generator[simpy.Event]:
        yield self._world.env.timeout(tick - self._world.env.now)
        self._wakes.discard(tick)
        now = self._world.clock.now()
        for delivery in self._emulator.due_deliveries(now):
            status = self._deliver(delivery, delivery.signed_headers(int(now)))
            self._emulator.report_delivery(delivery, status)
        self.wake()

    def _handle(self, payload: bytes, headers: dict[str, str]) -> tuple[str, int]:
        """The handler's outcome for one delivery, and the HTTP status it answers."""
        assert self._handler is not None
        outcome, status = "crashed", 500  # a worker that dies never answers: Stripe retries
        with self._world.operation("webhook"):
            try:
                outcome = self._handler.handle(payload, headers["Stripe-Signature"])
                status = 200
            except (WebhookSignatureError, WebhookPayloadError):
                outcome, status = "rejected", 400
            except BillingError:  # a processing failure: answered 500, so Stripe delivers again
                outcome, status = "failed", 500
        return outcome, status

    def _deliver(self, delivery: Delivery, headers: dict[str, str]) -> int:
        """Deliver once and log it. What the log names (user, attempt, intent, type) is read
        from the emulator's record of the event, whose text the payload is: parsing every
        payload a second time, beside the handler's own strict parse, cost as much."""
        assert self._handler is not None
        event = self._emulator.object(delivery.event_id)
        assert event is not None  # events are never deleted
        obj = event["data"]["object"]
        meta = obj.get("metadata") or {}
        if event["type"].startswith("invoice."):
            details = (obj.get("parent") or {}).get("subscription_details") or {}
            meta = details.get("metadata") or {}
        if self._endpoint_faults is not None and self._endpoint_faults.fails():
            outcome, status = "unreachable", 503  # the handler never sees it: Stripe retries
        else:
            outcome, status = self._handle(delivery.payload, headers)
        if status == 200 and outcome != "duplicate":
            self.applied[event["id"]] = self.applied.get(event["id"], 0) + 1
        attempt = meta.get("attempt")
        self._world.events.add(
            "webhook", meta.get("user_id"), attempt=None if attempt is None else int(attempt),
            outcome=outcome, payment_intent=obj.get("id"), event=event["type"],
        )  # fmt: skip
        return status
