"""The one decision of auto top-up: does this low balance claim a top-up, and which attempt?

A store calls :func:`decide` inside the transaction that takes the credits, so the deduction, the
decision and the claim are one atomic step on the source of truth (no cache, no second writer can
come between them). Two rules make "one crossing = one charge" and "no top-up stuck" hold:

- **Claim before charging.** A claim records the attempt, stamps the cooldown and opens a *lease*
  on the attempt: only the lease holder works on it, fenced by a token that grows with every
  claim or takeover.
- **One attempt in flight per user.** While an attempt is open (claimed, charging, or its outcome
  unknown) no new one is claimed, however long the cooldown has been over: a paid but uncredited
  top-up, or one whose answer was lost, must settle first. When the lease runs out (the worker died,
  or the outcome stayed unknown), the next request *takes over* the attempt: same attempt, same
  idempotency key, a new lease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .settings import ACTIVE


class Trigger(Enum):
    """What a deduction did about auto top-up."""

    NONE = "none"  #: above the threshold, or auto top-up off, and nothing in flight to recover
    CLAIMED = "claimed"  #: at/below threshold, cooldown over: this request claimed the top-up
    COOLING = "cooling"  #: at/below threshold, but a top-up was claimed within the cooldown
    PENDING = "pending"  #: at/below threshold, but the attempt in flight has not settled yet
    HELD = "held"  #: at/below threshold, but auto top-up is paused or suspended
    RECOVER = "recover"  #: the attempt in flight lost its lease: this request took it over


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """The service-wide durations a decision needs, in seconds of the injected clock."""

    cooldown_seconds: float
    lease_seconds: float


@dataclass(slots=True)
class UserTopupState:
    """What the decision reads of a user, after this request's credits were taken.

    Not frozen: one is built on every deduction, and a frozen dataclass costs five times as much
    to build (about 2.4 against 0.5 µs, measured); nothing holds on to it.
    """

    balance: int
    enabled: bool
    threshold: int
    state: str
    open_seq: int | None
    lease_until: float | None


def decide(
    user: UserTopupState, now: float, policy: ClaimPolicy, last_claimed: Callable[[], float | None]
) -> Trigger:
    """The trigger for ``user`` at ``now``. ``last_claimed`` is asked only when it matters.

    An open attempt whose lease ran out is recovered whatever the balance: a dead worker's
    attempt may hold a payment that is not credited yet.
    """
    if user.open_seq is not None:
        if user.lease_until is None or now >= user.lease_until:
            return Trigger.RECOVER
        due = user.enabled and user.balance <= user.threshold
        return Trigger.PENDING if due else Trigger.NONE
    if not (user.enabled and user.balance <= user.threshold):
        return Trigger.NONE
    if user.state != ACTIVE:
        return Trigger.HELD
    last = last_claimed()
    if last is not None and now - last < policy.cooldown_seconds:
        return Trigger.COOLING
    return Trigger.CLAIMED


#: Metadata ``purpose`` of an auto top-up PaymentIntent; other payments are not ours to credit.
TOPUP_PURPOSE = "auto_topup"


def idempotency_key(user_id: str, seq: int) -> str:
    """The key of top-up attempt ``seq``: derived from the claim, so no retry charges twice."""
    return f"auto-topup:{user_id}:{seq}"
