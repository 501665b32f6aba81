"""Worker crashes at write boundaries: deterministic simulation testing of crash consistency.

A *boundary* is one side of one call from the billing module to a port that writes: a store
transaction, a cache write, a charge sent to Stripe, a notification. ``store.deduct:after`` is the
instant after the deduction's transaction committed and before anything else happened. A crash
there abandons the operation in flight, as a SIGKILL would: a :class:`Crash` (a
``BaseException``, so no ``except Exception`` in the billing module can catch it and go on) unwinds
to the simulation's entry point, an uncommitted transaction is rolled back, and nothing that
operation would have done next happens.

The boundaries are listed by the code, not by hand: every method of the :class:`~sim.billing.Store`
port that is not a read (:data:`STORE_READS`), the cache's writes, the gateway's charge and the
notifier. A new write method is a new boundary without anyone adding it here, and
:meth:`CrashPlan.seen` records which boundaries a run actually passed, per operation, so a test can
crash a run at each of them in turn.

An operation is what the simulation was doing when the boundary was hit: ``deduct`` (a request),
``topup`` (a claimed attempt running), ``webhook`` (a delivery, subscription renewals included),
``settings`` or ``reconcile``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.billing import Store

#: Store methods that only read: a crash beside them is the same as one beside the write before.
STORE_READS = frozenset(
    {
        "get_user", "snapshot", "attempt", "attempts", "ledger", "ledger_sum", "user_ids",
        "event_processed", "dead_letters", "subscription", "subscriptions", "tfa_failures_since",
        "pending_notices",
    }
)  # fmt: skip

#: The writing methods of each port, by port name.
WRITES: dict[str, tuple[str, ...]] = {
    "store": tuple(
        sorted(
            name
            for name, _ in inspect.getmembers(Store, inspect.isfunction)
            if not name.startswith("_") and name not in STORE_READS
        )
    ),
    "cache": ("put", "forget", "clear"),
    "gateway": ("charge",),
    "notifier": ("notify",),
}

SIDES = ("before", "after")


def all_boundaries() -> list[str]:
    """Every boundary name the ports have, ``port.method:side``."""
    return [
        f"{port}.{method}:{side}"
        for port, methods in WRITES.items()
        for method in methods
        for side in SIDES
    ]


class Crash(BaseException):
    """The worker running the operation in flight died at ``boundary``."""

    def __init__(self, boundary: str, operation: str) -> None:
        super().__init__(f"crashed at {boundary} during {operation}")
        self.boundary, self.operation = boundary, operation


@dataclass
class CrashPlan:
    """Where workers die: at the ``occurrence``-th pass of ``at`` (``operation/boundary``, e.g.
    ``topup/gateway.charge:after``), and/or at every boundary with probability ``rate``.

    :attr:`operation` is set by the simulation's entry points; :attr:`armed` is off while the
    population is set up and while the books are checked.
    """

    at: str | None = None
    occurrence: int = 1
    rate: float = 0.0
    rng: np.random.Generator | None = None
    armed: bool = False
    operation: str = "setup"
    #: Every ``operation/boundary`` passed while armed, with how often.
    seen: dict[str, int] = field(default_factory=dict)
    #: Every crash that happened, ``operation/boundary``, in order.
    crashes: list[str] = field(default_factory=list)
    #: The boundaries the operation in flight has passed so far (its crash point last).
    passed: list[str] = field(default_factory=list)

    def begin(self, operation: str) -> None:
        """A worker starts ``operation``."""
        self.operation, self.passed = operation, []

    def passing(self, boundary: str) -> None:
        """Called at each boundary: record it, and raise :class:`Crash` if a worker dies here."""
        if not self.armed:
            return
        name = f"{self.operation}/{boundary}"
        self.passed.append(boundary)
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        die = name == self.at and count == self.occurrence
        if not die and self.rate and self.rng is not None:
            die = bool(self.rng.random() < self.rate)
        if die:
            self.crashes.append(name)
            raise Crash(boundary, self.operation)


class Boundaries:
    """Wraps a port so that each of its writing methods passes its two boundaries."""

    def __init__(self, inner: Any, port: str, plan: CrashPlan) -> None:
        self._inner, self._port, self._plan = inner, port, plan
        self._writes = frozenset(WRITES[port])

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._writes:
            return method
        return _wrapped(method, f"{self._port}.{name}", self._plan)


def _wrapped(method: Callable[..., Any], name: str, plan: CrashPlan) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        plan.passing(f"{name}:before")
        result = method(*args, **kwargs)
        plan.passing(f"{name}:after")
        return result

    return call
