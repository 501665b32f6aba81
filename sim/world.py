"""The SimPy world: a virtual clock, virtual users and the real billing module between them.

SimPy time is integer milliseconds from the scenario's start (exact arithmetic, no drift); the
billing module reads it through :class:`SimClock` as epoch seconds. Top-ups run fire-and-forget as
SimPy processes (:class:`ProcessRunner`) after a payment latency drawn from the scenario.

Everything that happens is appended to ``World.rows`` as a plain tuple in :data:`COLUMNS` order;
the DataFrames are built once, at the end (``sim.results``). Ports are wrapped, never patched:
the gateway and the notifier report what they see, the fault wrappers fail on schedule.

Webhooks will plug in beside :class:`ObservedGateway`: a process that pulls the emulator's events,
waits a delivery delay (optionally duplicating or reordering them) and hands each one to the
billing module's webhook handler, logging a row per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from sim.billing import (
    BillingConfig,
    BillingService,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    Clock,
    InsufficientCredits,
    Money,
    Notification,
    PaymentGateway,
    StoreUnavailable,
    TransientGatewayError,
    Vault,
)

from .backends import OpenBackend
from .faults import FaultSchedule, FlakyGateway, FlakyStore
from .gateways import make_gateway
from .scenario import DAY, HOUR, Group, Scenario
from .usage import TICKS, request_costs, request_times

# The billing module logs each transient gateway error and failed top-up; in a run those are
# expected outcomes, already rows of the event log. A NullHandler keeps Python's last-resort
# handler from printing them to stderr; an application that configures logging still sees them.
logging.getLogger("sim.billing").addHandler(logging.NullHandler())

#: The event log's columns, in the order every row tuple holds them.
COLUMNS = (
    "time", "user", "kind", "credits", "balance", "trigger", "attempt",
    "outcome", "decline_code", "amount_minor", "currency", "payment_intent",
)  # fmt: skip
Row = tuple[Any, ...]


class SimClock:
    """The billing module's clock: the scenario's start epoch plus SimPy's milliseconds."""

    def __init__(self, env: simpy.Environment, start: float) -> None:
        self._env, self._start = env, start

    def now(self) -> float:
        """Epoch seconds of the current simulated instant."""
        return self._start + self._env.now / TICKS


class ProcessRunner:
    """The billing module's task runner: each task becomes a SimPy process that first waits a
    payment latency, so a top-up lands while later requests keep arriving."""

    def __init__(self, env: simpy.Environment, latency: Callable[[], int]) -> None:
        self._env, self._latency = env, latency

    def submit(self, task: Callable[[], object]) -> None:
        """Start ``task`` after a latency drawn now (so draws follow submission order)."""
        self._env.process(self._later(task, self._latency()))

    def _later(self, task: Callable[[], object], delay: int) -> Generator[simpy.Event]:
        yield self._env.timeout(delay)
        task()


@dataclass(frozen=True, slots=True)
class Payment:
    """Money that moved: one succeeded PaymentIntent."""

    user_id: str
    idempotency_key: str
    price: Money


class ObservedGateway:
    """Logs every charge call (replays and transient failures too) and keeps the money moved."""

    def __init__(self, inner: PaymentGateway, world: World) -> None:
        self._inner, self._world = inner, world
        #: PaymentIntent id -> the payment, once per intent however often it is replayed.
        self.paid: dict[str, Payment] = {}
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
        code = None
        if isinstance(result, ChargeSucceeded):
            outcome = "succeeded"
            payment = Payment(user, request.idempotency_key, result.price)
            self.paid.setdefault(result.payment_intent_id, payment)
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
        self._world.log(
            meta.get("user_id", ""), "charge", int(meta.get("credits", 0)), None, None,
            int(meta.get("attempt", 0)), outcome, code,
            request.price.amount_minor, request.price.currency, intent,
        )  # fmt: skip


class LogNotifier:
    """Logs every notification with the user's balance in the store at that instant."""

    def __init__(self, world: World) -> None:
        self._world = world

    def notify(self, notification: Notification) -> None:
        """Append a row named after the notification's kind."""
        detail = notification.detail
        attempt = detail.get("attempt")
        balance = self._world.store.get_user(notification.user_id).balance
        self._world.log(
            notification.user_id, notification.kind, None, balance, None,
            None if attempt is None else int(attempt), detail.get("status"),
            detail.get("decline_code"), None, None, None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Profile:
    """One virtual user as set up: who they are and what they were given."""

    user_id: str
    group: str
    card: str
    balance: int
    threshold: int
    amount: int
    currency: str
    enabled: bool


class World:
    """One run: the environment, the billing service on the chosen backend, and the users."""

    def __init__(self, scenario: Scenario, seed: int, backend: OpenBackend) -> None:
        self.scenario, self.seed, self.backend = scenario, seed, backend
        self.env = simpy.Environment()
        self.clock: Clock = SimClock(self.env, scenario.start)
        self.rows: list[Row] = []
        root = np.random.SeedSequence(seed)
        users_seq, latency_seq, gateway_seq, store_seq, cache_seq, vault_seq = root.spawn(6)
        self._latency_rng = np.random.default_rng(latency_seq)
        self._cache_rng = np.random.default_rng(cache_seq)
        faults = scenario.faults

        self.gateway = ObservedGateway(
            FlakyGateway(
                make_gateway(),
                self._schedule(gateway_seq, faults.gateway.rate, faults.gateway.outages),
            ),
            self,
        )
        self.store = backend.store
        self._flaky_store = FlakyStore(
            backend.store,
            self._schedule(store_seq, faults.store.rate, faults.store.outages),
            faults.store.operations,
            self._fault,
        )
        self.notifier = LogNotifier(self)
        self.billing = BillingService(
            clock=self.clock,
            cache=backend.cache,
            store=self._flaky_store,
            gateway=self.gateway,
            notifier=self.notifier,
            tasks=ProcessRunner(self.env, self._latency),
            vault=Vault(np.random.default_rng(vault_seq).bytes(32)),
            config=BillingConfig(
                cooldown_seconds=scenario.billing.cooldown_hours * HOUR,
                charge_tries=scenario.billing.charge_tries,
                failures_before_suspension=scenario.billing.failures_before_suspension,
            ),
        )
        self.profiles: list[Profile] = []
        self._user_rngs = [np.random.default_rng(s) for s in users_seq.spawn(scenario.users)]
        self._usage = []
        for group, count in zip(scenario.groups, scenario.counts(), strict=True):
            for _ in range(count):
                self._usage.append(group.usage)
                self._add_user(group, len(self.profiles))
        self._flaky_store.armed = True

    def _schedule(
        self, seq: np.random.SeedSequence, rate: float, outages: tuple[tuple[float, float], ...]
    ) -> FaultSchedule:
        return FaultSchedule(
            np.random.default_rng(seq), rate, outages, self.clock, self.scenario.start
        )

    def _add_user(self, group: Group, index: int) -> None:
        user_id = f"u{index + 1:06d}"
        rng = self._user_rngs[index]
        names = [name for name, _ in group.cards]
        card = (
            names[0] if len(names) == 1 else str(rng.choice(names, p=[w for _, w in group.cards]))
        )
        s = group.settings
        self.profiles.append(
            Profile(user_id, group.name, card, group.balance, s.threshold, s.amount, s.currency,
                    s.enabled)
        )  # fmt: skip
        self.billing.create_user(user_id, balance=group.balance)
        self.billing.save_payment_method(user_id, f"cus_{user_id}", card)
        self.billing.update_settings(user_id, s)

    # ------------------------------------------------------------------ logging and faults

    def log(self, user: str | None, kind: str, *rest: Any) -> None:
        """Append one row at the current instant (``rest`` = the columns after ``kind``)."""
        self.rows.append((self.env.now, user, kind, *rest))

    def _fault(self, kind: str, user_id: str) -> None:
        self.log(user_id, kind, None, None, None, None, None, None, None, None, None)

    def _latency(self) -> int:
        latency = self.scenario.payments.latency
        seconds = float(latency.sample(self._latency_rng, 1)[0])
        slow = self.scenario.faults.gateway
        if slow.slow_rate and self._latency_rng.random() < slow.slow_rate:
            seconds += slow.slow_seconds
        return round(seconds * TICKS)

    # ------------------------------------------------------------------ processes

    def run(self, on_day: Callable[[float], None] | None = None) -> None:
        """Run the traffic to the horizon, then let in-flight top-ups finish."""
        self.env.process(self._traffic(on_day))
        flushes = self._flush_times()
        if flushes:
            self.env.process(self._flusher(flushes))
        self.env.run()

    def _traffic(self, on_day: Callable[[float], None] | None) -> Generator[simpy.Event]:
        """Every user's requests, a day at a time, merged into one time-ordered stream.

        One process for all users: per request it costs one timeout (none when two requests share
        a millisecond), no per-user process, no Resource.
        """
        env, rows, deduct = self.env, self.rows, self.billing.deduct_credits
        ids = [p.user_id for p in self.profiles]
        horizon = self.scenario.horizon
        day = 0.0
        while day < horizon:
            end = min(day + DAY, horizon)
            times, users, costs = self._batch(day, end)
            for t, u, cost in zip(times.tolist(), users.tolist(), costs.tolist(), strict=True):
                if t > env.now:
                    yield env.timeout(t - env.now)
                user = ids[u]
                try:
                    done = deduct(user, cost)
                except InsufficientCredits as exc:
                    rows.append((t, user, "refused", cost, exc.balance, None, exc.attempt,
                                 None, None, None, None, None))  # fmt: skip
                except StoreUnavailable:
                    rows.append((t, user, "request_failed", cost, None, None, None,
                                 None, None, None, None, None))  # fmt: skip
                else:
                    rows.append((t, user, "request", cost, done.balance, done.trigger.value,
                                 done.attempt, None, None, None, None, None))  # fmt: skip
            day = end
            if on_day is not None:
                on_day(end / DAY)

    def _batch(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All users' requests in ``[start, end)``: times, user indices, costs, in time order
        (ties broken by user index, so the order never depends on anything but the seed)."""
        times, users, costs = [], [], []
        for index, (rng, usage) in enumerate(zip(self._user_rngs, self._usage, strict=True)):
            t = request_times(usage, rng, start, end)
            times.append(t)
            users.append(np.full(len(t), index, dtype=np.int64))
            costs.append(request_costs(usage, rng, len(t)))
        all_times = np.concatenate(times)
        order = np.lexsort((np.concatenate(users), all_times))
        return all_times[order], np.concatenate(users)[order], np.concatenate(costs)[order]

    def _flush_times(self) -> list[int]:
        cache = self.scenario.faults.cache
        horizon = self.scenario.horizon
        n = self._cache_rng.poisson(cache.flushes_per_day * horizon / DAY)
        seconds = [*cache.flush_at, *self._cache_rng.uniform(0, horizon, n).tolist()]
        return sorted(round(s * TICKS) for s in seconds if s < horizon)

    def _flusher(self, times: list[int]) -> Generator[simpy.Event]:
        for t in times:
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            self.backend.flush()
            self.log(None, "cache_flush", None, None, None, None, None, None, None, None, None)
