"""What the world sees of the billing module's ports: every charge call the gateway makes and
every notification the notifier sends, written as event-log rows as they happen.

The billing module is not patched: these wrap its ports (:class:`ObservedGateway` around the
gateway, :class:`LogNotifier` as the notifier) and hand everything through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.billing import (
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    Notification,
    TransientGatewayError,
)
from sim.billing.store import FINAL_NOTICES

from .faults import FlakyGateway

if TYPE_CHECKING:
    from .world import World

#: The notices that end an attempt (one per attempt, matching its final status).
_FINAL_KINDS = frozenset(kind for kind in FINAL_NOTICES.values() if kind is not None)


class ObservedGateway:
    """Logs every charge call (replays and transient failures too) and wakes the postman, since a
    charge queues webhook events."""

    def __init__(self, inner: FlakyGateway, world: World) -> None:
        self._inner, self._world = inner, world
        #: Idempotency key -> user, for every key ever charged.
        self.keys: dict[str, str] = {}

    def payment_method_usable(self, customer_id: str, payment_method_id: str) -> bool:
        """Delegated."""
        return self._inner.payment_method_usable(customer_id, payment_method_id)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge through the inner gateway and log what came back."""
        user = request.metadata.get("user_id", "")
        self.keys[request.idempotency_key] = user
        try:
            result = self._inner.charge(request)
        except TransientGatewayError:
            self._log(request, "transient", None, None)
            raise
        finally:
            self._world.postman.wake()
        code = None
        if isinstance(result, ChargeSucceeded):
            outcome = "succeeded"
        elif isinstance(result, ChargeNeedsAuthentication):
            outcome = "requires_action"
        else:
            outcome, code = "declined", result.decline_code or result.code
        self._log(request, outcome, code, result.payment_intent_id)
        return result

    def _log(
        self, request: ChargeRequest, outcome: str, code: str | None, intent: str | None
    ) -> None:
        meta = request.metadata
        self._world.events.add(
            "charge", meta.get("user_id", ""), credits=int(meta.get("credits", 0)),
            attempt=int(meta.get("attempt", 0)), outcome=outcome, decline_code=code,
            amount_minor=request.price.amount_minor, currency=request.price.currency,
            payment_intent=intent,
        )  # fmt: skip

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class LogNotifier:
    """Logs every notification with the user's balance in the store at that instant."""

    def __init__(self, world: World) -> None:
        self._world = world
        #: (user, attempt) -> how many success notifications that top-up produced.
        self.successes: dict[tuple[str, int], int] = {}
        #: (user, attempt) -> the final notices that attempt sent, in order.
        self.finals: dict[tuple[str, int], list[str]] = {}
        self._seen: set[str] = set()

    def notify(self, notification: Notification) -> None:
        """Append a row named after the notification's kind."""
        if notification.notice_id is not None:
            # A receiver that drops re-sent copies, as the outbox's contract asks.
            if notification.notice_id in self._seen:
                return
            self._seen.add(notification.notice_id)
        detail = notification.detail
        attempt = detail.get("attempt")
        if attempt is not None and notification.kind in _FINAL_KINDS:
            key = (notification.user_id, int(attempt))
            self.finals.setdefault(key, []).append(notification.kind)
            if notification.kind == "topup_succeeded":
                self.successes[key] = self.successes.get(key, 0) + 1
        balance = self._world.store.get_user(notification.user_id).balance
        self._world.events.add(
            notification.kind, notification.user_id, balance=balance,
            attempt=None if attempt is None else int(attempt), outcome=detail.get("status"),
            decline_code=detail.get("decline_code"), payment_intent=detail.get("payment_intent"),
        )  # fmt: skip
        self._world.behaviour.react(notification.kind, notification.user_id)
