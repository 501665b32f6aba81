"""Test doubles shipped with the billing module, for anyone testing code built on it.

:class:`ScriptedGateway` is a :class:`~sim.billing.gateway.PaymentGateway` that answers from a
queue of outcomes and replays by idempotency key as Stripe does, so tests can count real money
movements (distinct succeeded keys) apart from calls. The Stripe emulator in ``sim.stripe_emulator``
is the full-fidelity stand-in; this one is for the core's own unit tests and tiny scripts.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

from .errors import TransientGatewayError
from .gateway import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
)

#: Outcomes a script may hold: ``succeeded``, ``authentication_required``, ``transient``, or
#: ``declined:<decline_code>`` (e.g. ``declined:insufficient_funds``). ``lost:<outcome>`` applies
#: the outcome and then loses the answer (raises ``TransientGatewayError``), as a dropped
#: connection after Stripe charged: a retry under the same key gets the outcome.
SUCCEEDED, AUTHENTICATION_REQUIRED, TRANSIENT = "succeeded", "authentication_required", "transient"
_MATCH = ("user_id", "attempt", "purpose")


class ScriptedGateway:
    """Answers each new charge with the next scripted outcome (``succeeded`` when none is left).

    ``cards`` gives fixed outcomes per payment method id (``{"pm_bad": "declined:lost_card"}``),
    which take precedence over the queue.
    """

    def __init__(
        self, *outcomes: str, cards: Mapping[str, str] | None = None, usable: bool = True
    ) -> None:
        self._outcomes: deque[str] = deque(outcomes)
        self._cards = dict(cards or {})
        self._replies: dict[str, ChargeResult] = {}
        #: Every intent made, with its request's metadata (kept when a key is forgotten).
        self._intents: list[tuple[str, dict[str, str], ChargeResult]] = []
        self._lock = threading.Lock()
        self.usable = usable
        #: Every charge call, replays included.
        self.calls: list[ChargeRequest] = []

    def queue(self, *outcomes: str) -> None:
        """Append outcomes to the script."""
        with self._lock:
            self._outcomes.extend(outcomes)

    def payment_method_usable(self, customer_id: str, payment_method_id: str) -> bool:
        """Whatever ``usable`` says."""
        return self.usable

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Answer from the script; a key seen before gets its first answer again."""
        with self._lock:
            self.calls.append(request)
            if request.idempotency_key in self._replies:
                return self._replies[request.idempotency_key]
            outcome = self._cards.get(request.payment_method_id)
            if outcome is None:
                outcome = self._outcomes.popleft() if self._outcomes else SUCCEEDED
            if outcome == TRANSIENT:
                raise TransientGatewayError("scripted transient failure")
            lost = outcome.startswith("lost:")
            outcome = outcome.removeprefix("lost:")
            intent = f"pi_scripted_{len(self._replies) + 1:04d}"
            reply: ChargeResult
            if outcome == SUCCEEDED:
                reply = ChargeSucceeded(intent, request.price, dict(request.metadata))
            elif outcome == AUTHENTICATION_REQUIRED:
                reply = ChargeNeedsAuthentication(intent, "authentication required")
            elif outcome.startswith("declined:"):
                code = outcome.removeprefix("declined:")
                reply = ChargeDeclined(intent, "card_declined", code, "your card was declined")
            else:
                raise ValueError(f"unknown scripted outcome {outcome!r}")
            self._replies[request.idempotency_key] = reply
            self._intents.append((request.customer_id, dict(request.metadata), reply))
            if lost:
                raise TransientGatewayError("scripted lost answer (the charge was applied)")
            return reply

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The intent made for the request's user and attempt (a success first), found by
        metadata as Stripe's list is, whatever became of the key; ``None`` if there is none."""
        wanted = [request.metadata.get(k) for k in ("user_id", "attempt", "purpose")]
        with self._lock:
            found = [r for _, m, r in self._intents if [m.get(k) for k in _MATCH] == wanted]
        paid = [r for r in found if isinstance(r, ChargeSucceeded)]
        return (paid or found or [None])[0]

    def forget(self, idempotency_key: str) -> None:
        """Drop a key as Stripe does after 24 h: sending it again charges anew (the intent it
        made stays, as Stripe's PaymentIntents do)."""
        with self._lock:
            self._replies.pop(idempotency_key, None)

    def succeeded_charges(self, customer_id: str) -> list[ChargeSucceeded]:
        """The customer's charges that moved money, in order (forgotten keys included)."""
        with self._lock:
            return [
                r for c, _, r in self._intents
                if isinstance(r, ChargeSucceeded) and c == customer_id
            ]  # fmt: skip

    @property
    def succeeded_keys(self) -> list[str]:
        """Idempotency keys that moved money, in order: one per real charge."""
        with self._lock:
            return [k for k, r in self._replies.items() if isinstance(r, ChargeSucceeded)]
