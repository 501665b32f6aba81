"""Fault injection: wrappers around the billing module's ports that fail at a rate or a schedule.

Each wrapper draws from its own seeded generator, and only when its rate is non-zero, so a
scenario without faults consumes no randomness here and adding one fault does not move another.
A store failure is reported to ``on_fault`` so the event log shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sim.billing import (
    ChargeRequest,
    ChargeResult,
    Clock,
    PaymentGateway,
    Store,
    StoreUnavailable,
    TransientGatewayError,
)

from .scenario import Scenario

#: ``on_fault(kind, user_id, operation)``: called once per injected failure.
FaultHook = Callable[[str, str, str], None]


class FaultSchedule:
    """Fails with probability ``rate`` per call, and always inside the outage windows; never at
    or after ``until`` (epoch seconds), when a run's traffic is over and it settles up."""

    def __init__(
        self,
        rng: np.random.Generator,
        rate: float,
        outages: Sequence[tuple[float, float]],
        clock: Clock,
        start: float,
        until: float = float("inf"),
    ) -> None:
        self._rng, self._rate, self._clock, self._until = rng, rate, clock, until
        # Windows in the clock's own epoch seconds, so a check is one subtraction-free compare.
        self._outages = [(start + a, start + b) for a, b in outages]

    @property
    def inert(self) -> bool:
        """No rate and no outage: no call ever fails."""
        return not (self._rate or self._outages)

    def fails(self) -> bool:
        """Whether this call fails."""
        if self.inert:
            return False
        now = self._clock.now()
        if now >= self._until:
            return False
        if any(a <= now < b for a, b in self._outages):
            return True
        return bool(self._rate) and self._rng.random() < self._rate


class FlakyGateway:
    """A gateway that raises ``TransientGatewayError`` (Stripe 5xx, 429, dropped connection).

    The failure shows in the event log as a ``charge`` row with outcome ``transient``.
    """

    def __init__(self, inner: PaymentGateway, schedule: FaultSchedule) -> None:
        self._inner, self._schedule = inner, schedule

    def payment_method_usable(self, customer_id: str, payment_method_id: str) -> bool:
        """Delegated: faults hit charges only."""
        return self._inner.payment_method_usable(customer_id, payment_method_id)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Fail before reaching the provider, or delegate."""
        if self._schedule.fails():
            raise TransientGatewayError("injected fault: provider unavailable")
        return self._inner.charge(request)

    def __getattr__(self, name: str) -> Any:
        # Subscriptions and set-up calls go straight to the provider.
        return getattr(self._inner, name)


class FlakyStore:
    """A :class:`~sim.billing.Store` whose chosen write operations raise ``StoreUnavailable``.

    ``operations`` names Store methods (``deduct``, ``settle_topup``, ...). The failure is raised
    before the inner store is touched, as a failed transaction leaves it. Nothing fails until
    :attr:`armed`: a run starts from a known population.
    """

    def __init__(
        self,
        inner: Store,
        schedule: FaultSchedule,
        operations: Sequence[str],
        on_fault: FaultHook,
    ) -> None:
        self._inner, self._schedule, self._on_fault = inner, schedule, on_fault
        self._operations = frozenset(operations)
        #: Off while the population is set up (opening balances are credits too); on for the run.
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        # Everything not named (reads, set-up writes, whatever the Store port grows next) is the
        # inner store's own method: delegated, never failed. So is every method when the
        # schedule can never fail. Each name is resolved once and kept on the instance, so the
        # hot path (a deduction per request) pays one attribute lookup, not a new closure.
        method = getattr(self._inner, name)
        if name in self._operations and not self._schedule.inert:
            method = self._flaky(name, method)
        setattr(self, name, method)
        return method

    def _flaky(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def flaky(user_id: str, *args: Any, **kwargs: Any) -> Any:
            if self.armed and self._schedule.fails():
                self._on_fault("store_fault", user_id, name)
                raise StoreUnavailable(f"injected fault: {name} failed")
            return method(user_id, *args, **kwargs)

        return flaky


#: The faults of a scenario, each as the dotted keys that switch it on (see ``fault_matrix``).
FAULT_KEYS: dict[str, tuple[str, ...]] = {
    "stripe errors": ("faults.gateway.rate", "faults.gateway.outages"),
    "slow payments": ("faults.gateway.slow_rate",),
    "lost answers": ("faults.gateway.lost_response_rate",),
    "store failures": ("faults.store.rate", "faults.store.outages"),
    "cache flushes": ("faults.cache.flushes_per_day", "faults.cache.flush_at_hours"),
    "worker crashes": ("faults.crashes.rate",),
    "webhook copies, reordering": ("webhooks.duplicate_rate", "webhooks.reorder_rate"),
}
_OFF: dict[str, Any] = {
    "faults.gateway.rate": 0.0,
    "faults.gateway.outages": [],
    "faults.gateway.slow_rate": 0.0,
    "faults.gateway.lost_response_rate": 0.0,
    "faults.store.rate": 0.0,
    "faults.store.outages": [],
    "faults.cache.flushes_per_day": 0.0,
    "faults.cache.flush_at_hours": [],
    "faults.crashes.rate": 0.0,
    "webhooks.duplicate_rate": 0.0,
    "webhooks.reorder_rate": 0.0,
}


def fault_matrix(scenario: Scenario) -> dict[str, Scenario]:
    """``none`` (every fault off), each fault of ``scenario`` alone, and ``all`` (as given).

    The same users and requests in every variant, so differences are the faults' own cost.
    """
    calm = scenario.with_overrides(_OFF)
    variants = {"none": calm}
    for name, keys in FAULT_KEYS.items():
        variants[name] = calm.with_overrides({key: _lookup(scenario.raw, key) for key in keys})
    variants["all"] = scenario
    return variants


def _lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    """A dotted key's value in a scenario table, or its off value when the table leaves it out."""
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _OFF[dotted]
        node = node[part]
    return node
