"""The SimPy world: a virtual clock, virtual users and the real billing module between them.

SimPy time is integer milliseconds from the scenario's start (exact arithmetic, no drift); the
billing module reads it through :class:`SimClock` as epoch seconds. Top-ups run fire-and-forget as
SimPy processes (:class:`ProcessRunner`) after a payment latency drawn from the scenario.

Everything that happens is written by name to the run's :class:`~sim.eventlog.EventLog`
(``World.events``); the DataFrames are built once, at the end (``sim.results``). Ports are wrapped,
never patched: the gateway and the notifier report what they see, the fault wrappers fail on
schedule.

Payments go to Stripe test mode, offline (``sim.gateways``): the billing module's Stripe gateway
on a per-run emulator that shares the run's clock. Stripe's webhook deliveries come back through
:class:`~sim.postman.Postman`: it wakes when the emulator says the next delivery (or
subscription renewal) is due, hands each delivery to the billing module's real webhook handler,
and reports the answer, so a failed delivery is retried with Stripe's back-off. Delays,
duplicates and reordering are the emulator's webhook faults, set from the scenario.

When the traffic ends every injected fault stops, in-flight top-ups finish and pending deliveries
(retries included) have :data:`SETTLE_SECONDS` to land before the books are checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import simpy

from sim.billing import (
    BillingService,
    Clock,
    InsufficientCredits,
    StoreUnavailable,
    SubscriptionError,
    Subscriptions,
    Vault,
    WebhookHandler,
)
from sim.billing.metrics import PrometheusMetrics
from sim.billing.payments import WebhookVerifier
from sim.billing.reconcile import reconcile_all
from sim.stripe_emulator import Faults as EmulatorFaults

from . import draws
from .actions import Behaviour
from .backends import OpenBackend
from .crashes import Boundaries, Crash, CrashPlan
from .environment import Environment
from .eventlog import EventLog
from .faults import FaultSchedule, FlakyGateway, FlakyStore
from .gateways import stripe_test_mode
from .observers import LogNotifier, ObservedGateway
from .postman import Postman
from .scenario import DAY, HOUR, Group, Scenario, Usage
from .traces import Trace, load_trace
from .usage import TICKS, requests_between

#: What :meth:`World.operation` gives when no worker can die: a context that does nothing.
_NOTHING_TO_CRASH: AbstractContextManager[None] = nullcontext()

#: After the traffic: time for in-flight top-ups and webhook retries (60 s .. 12 h back-off).
SETTLE_SECONDS = DAY

#: How often a run asked for the metrics over time reads them (simulated seconds), as Prometheus
#: would scrape them: often enough for the alerting rules' shortest window (10 minutes) to hold
#: two samples.
METRICS_INTERVAL_SECONDS = 300.0

# The billing module logs each transient gateway error and failed top-up; in a run those are
# expected outcomes, already rows of the event log. A NullHandler keeps Python's last-resort
# handler from printing them to stderr; an application that configures logging still sees them.
logging.getLogger("sim.billing").addHandler(logging.NullHandler())


class _ServedUnanswered(Exception):
    """A request whose deduction committed before its worker died: served, never answered."""

    def __init__(self, balance: int) -> None:
        super().__init__(f"served (balance {balance}), but the worker died before answering")
        self.balance = balance


class SimClock:
    """The billing module's clock: the scenario's start epoch plus SimPy's milliseconds."""

    def __init__(self, env: Environment, start: float) -> None:
        self._env, self._start = env, start

    def now(self) -> float:
        """Epoch seconds of the current simulated instant. Read on every deduction, so it reads
        the attribute behind SimPy's ``now`` property (``Environment.skip_to`` writes it too)
        rather than calling the property."""
        return self._start + self._env._now / TICKS


class ProcessRunner:
    """The billing module's task runner: each task becomes a SimPy process that waits the delay
    it asked for (a retry's back-off) and a payment latency, so a top-up lands while later
    requests keep arriving. ``operation`` wraps each task (the world names it ``topup`` for the
    crash plan and logs a crash that ends it, as its worker would end)."""

    def __init__(
        self,
        env: simpy.Environment,
        latency: Callable[[], int],
        operation: Callable[[str], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._env, self._latency, self._operation = env, latency, operation

    def submit(self, task: Callable[[], object], delay: float = 0.0) -> None:
        """Start ``task`` after ``delay`` seconds and a latency drawn now (so draws follow
        submission order)."""
        self._env.process(self._later(task, round(delay * TICKS) + self._latency()))

    def _later(self, task: Callable[[], object], delay: int) -> Generator[simpy.Event]:
        yield self._env.timeout(delay)
        if self._operation is None:
            task()
            return
        with self._operation("topup"):
            task()


def _own_usage(group: Group, rng: np.random.Generator) -> tuple[Usage, int]:
    """One user's usage and starting balance: the group's, with the user's draws of its
    ``variation`` (rate, balance, cost factors, in that order) and of a random phase. Nothing is
    drawn for what the group does not vary, so other scenarios keep their random streams."""
    usage, balance, variation = group.usage, group.balance, group.variation
    if variation.rate is not None:
        factor = float(variation.rate.sample(rng, 1)[0])
        usage = replace(usage, requests_per_day=usage.requests_per_day * factor)
    if variation.balance is not None:
        balance = round(balance * float(variation.balance.sample(rng, 1)[0]))
    if variation.cost is not None:
        usage = replace(usage, cost_scale=float(variation.cost.sample(rng, 1)[0]))
    if usage.random_phase and usage.requests_per_day > 0:
        interval = DAY / usage.requests_per_day
        usage = replace(usage, phase_seconds=float(rng.uniform(0, interval)))
    return usage, balance


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
    subscription: int
    #: Credits auto top-up may buy a calendar month, or ``None`` for no limit.
    monthly_limit: int | None = None


class World:
    """One run: the environment, the billing service on the chosen backend, and the users."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        backend: OpenBackend,
        crash: CrashPlan | None = None,
        gateway: str = "stripe",
        metrics_interval: float | None = None,
    ) -> None:
        """``gateway``: how payments reach the emulator, ``stripe`` or ``direct``
        (``sim.gateways``). ``metrics_interval``: read the billing's metrics every so many
        simulated seconds as well as at the end (``None``: at the end only; each read costs
        about a millisecond, a third of a month's run at 5 minutes)."""
        self._metrics_interval = metrics_interval
        self.scenario, self.seed, self.backend = scenario, seed, backend
        self.env = Environment()
        self.clock: Clock = SimClock(self.env, scenario.start)
        #: The event log, written as things happen.
        self.events = EventLog(lambda: self.env.now)
        root = np.random.SeedSequence(seed)
        # One stream per source of randomness; a new source takes the next child (spawning more
        # children leaves the first ones as they were, so older scenarios keep their events).
        seqs = root.spawn(11)
        users_seq, latency_seq, gateway_seq, store_seq, cache_seq, vault_seq, stripe_seq = seqs[:7]
        webhook_seq, reaction_seq, action_seq = seqs[8], seqs[9], seqs[10]
        if crash is None and scenario.faults.crashes.rate:
            crash = CrashPlan(rate=scenario.faults.crashes.rate, rng=np.random.default_rng(seqs[7]))
        #: Where workers die, if anywhere (a scenario's crash rate, or a test's named boundary).
        self.crash = crash
        self._latency_rng = np.random.default_rng(latency_seq)
        self._cache_rng = np.random.default_rng(cache_seq)
        faults, hooks = scenario.faults, scenario.webhooks
        self._until = scenario.start + scenario.horizon

        # Stripe's own faults: webhook delays and copies always; lost answers only while the
        # traffic runs (set-up and settling are clean, like every other injected fault).
        self._settle_faults = EmulatorFaults(
            webhook_delay=hooks.delay_seconds,
            webhook_jitter=hooks.jitter_seconds,
            webhook_duplicate_rate=hooks.duplicate_rate,
            webhook_reorder_rate=hooks.reorder_rate,
            webhook_reorder_window=hooks.reorder_window_seconds,
        )
        self._run_faults = replace(
            self._settle_faults, drop_response_rate=faults.gateway.lost_response_rate
        )
        stripe = stripe_test_mode(
            self.clock, int(stripe_seq.generate_state(1)[0]), self._settle_faults, hooks.enabled,
            gateway,
        )  # fmt: skip
        self.emulator, self.stripe = stripe.emulator, stripe.gateway
        self.gateway = ObservedGateway(
            FlakyGateway(
                self.stripe,
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
        store: Any = self._flaky_store
        cache: Any = backend.cache
        gateway: Any = self.gateway
        notifier: Any = self.notifier
        if crash is not None:  # each write passes its boundaries, where a worker may die
            store = Boundaries(store, "store", crash)
            cache = Boundaries(cache, "cache", crash)
            gateway = Boundaries(gateway, "gateway", crash)
            notifier = Boundaries(notifier, "notifier", crash)
        self.billing = BillingService(
            clock=self.clock,
            cache=cache,
            store=store,
            gateway=gateway,
            notifier=notifier,
            tasks=ProcessRunner(self.env, self._latency, self.operation),
            vault=Vault(np.random.default_rng(vault_seq).bytes(32)),
            config=scenario.billing.config(),
            metrics=PrometheusMetrics(),
        )
        #: The billing's metrics as read every :data:`METRICS_INTERVAL_SECONDS` and at the end:
        #: (seconds from the start, series name, labels as ``k="v",...``, value).
        self.metric_samples: list[tuple[float, str, str, float]] = []
        self.subscriptions = Subscriptions(billing=self.billing, gateway=self.gateway)
        handler = None
        if hooks.enabled:
            verifier = WebhookVerifier(self.emulator.webhook_secret, self.clock)
            handler = WebhookHandler(
                billing=self.billing, subscriptions=self.subscriptions, verifier=verifier
            )
        self.postman = Postman(
            self, self.emulator, handler, self._until + SETTLE_SECONDS,
            self._schedule(webhook_seq, faults.webhooks.rate, faults.webhooks.outages),
        )  # fmt: skip
        #: What users do besides sending requests: timed actions, reactions to a stop.
        self.behaviour = Behaviour(
            self.env, HOUR * TICKS, round(scenario.horizon * TICKS), self.billing, self.store,
            self.stripe, self.emulator, self.events, (reaction_seq, action_seq),
        )  # fmt: skip
        self.profiles: list[Profile] = []
        #: Users who replay a trace: their requests inside the run (ticks, credits); and how
        #: many users of each group replay one so far (``_replay``).
        self._replays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._replayed: dict[str, int] = {}
        self._traces: dict[str, Trace] = {}
        self._user_rngs = [np.random.default_rng(s) for s in users_seq.spawn(scenario.users)]
        self._usage = []
        for group, count in zip(scenario.groups, scenario.counts(), strict=True):
            for _ in range(count):
                self._add_user(group, len(self.profiles))
        #: Under which key this run's request draws are shared with other runs of this process
        #: (a sweep's worker: ``sim.draws``), or ``None``.
        self._draw_key: draws.DrawKey | None = None
        if draws.sharing() and not self._replays:
            streams = tuple(draws.stream_state(rng) for rng in self._user_rngs)
            self._draw_key = draws.DrawKey(tuple(self._usage), streams, scenario.horizon)
        self.behaviour.schedule(scenario.actions, [(p.user_id, p.group) for p in self.profiles])
        self._deduct: Callable[[str, int], Any] = self.billing.deduct_credits
        if crash is not None:
            self._deduct = self._crashable(self._deduct)
        self._request = self._requester()
        self.behaviour.bind(self._request)
        self._flaky_store.armed = True
        if crash is not None:
            crash.armed = True
        self.emulator.faults = self._run_faults
        self.postman.wake()

    def _schedule(
        self, seq: np.random.SeedSequence, rate: float, outages: tuple[tuple[float, float], ...]
    ) -> FaultSchedule:
        return FaultSchedule(
            np.random.default_rng(seq), rate, outages, self.clock, self.scenario.start, self._until
        )

    def _add_user(self, group: Group, index: int) -> None:
        user_id = f"u{index + 1:06d}"
        rng = self._user_rngs[index]
        names = [name for name, _ in group.cards]
        card = (
            names[0] if len(names) == 1 else str(rng.choice(names, p=[w for _, w in group.cards]))
        )
        usage, balance = _own_usage(group, rng)
        if usage.arrivals == "trace":
            self._replay(usage, index, group.name)
        self._usage.append(usage)
        s = group.settings
        self.profiles.append(
            Profile(user_id, group.name, card, balance, s.threshold, s.amount, s.currency,
                    s.enabled, group.subscription, s.monthly_limit)
        )  # fmt: skip
        self.billing.create_user(user_id, balance=balance)
        customer = self.stripe.ensure_customer(user_id)
        payment_method = self.stripe.attach_card(customer, card)
        if group.declines:  # the issuer declines this card now and then, per charge
            self.emulator.set_decline_law(payment_method, dict(group.declines))
        self.behaviour.add_user(user_id, customer, payment_method, group.reactions)
        self.billing.save_payment_method(user_id, customer, payment_method)
        self.billing.update_settings(user_id, s)
        if group.subscription:
            try:
                self.subscriptions.create(user_id, group.subscription, s.currency)
                kind = "subscription_created"
            except SubscriptionError:
                kind = "subscription_failed"
            self.events.add(kind, user_id, credits=group.subscription, currency=s.currency)

    # ------------------------------------------------------------------ logging and faults

    def _fault(self, kind: str, user_id: str, operation: str) -> None:
        self.events.add(kind, user_id, event=operation)

    def operation(self, name: str, user_id: str | None = None) -> AbstractContextManager[None]:
        """Run one operation of a worker: name it for the crash plan, and if the worker dies
        in it, log a ``crash`` row (``outcome`` = the boundary) and go on with the world.

        Without a crash plan there is nothing to name or catch: the same do-nothing context
        every time, not a generator-based one built per top-up and per webhook delivery (about
        4% of a sweep point that tops up every 16 requests)."""
        if self.crash is None:
            return _NOTHING_TO_CRASH
        return self._crashable_operation(self.crash, name, user_id)

    @contextmanager
    def _crashable_operation(
        self, crash: CrashPlan, name: str, user_id: str | None
    ) -> Iterator[None]:
        crash.begin(name)
        try:
            yield
        except Crash as died:
            self.events.add("crash", user_id, outcome=died.boundary, event=name)

    def _latency(self) -> int:
        latency = self.scenario.payments.latency
        seconds = float(latency.sample(self._latency_rng, 1)[0])
        slow = self.scenario.faults.gateway
        if slow.slow_rate and self._latency_rng.random() < slow.slow_rate:
            seconds += slow.slow_seconds
        return round(seconds * TICKS)

    # ------------------------------------------------------------------ processes

    def run(self, on_day: Callable[[float], None] | None = None) -> None:
        """Run the traffic to the horizon, then let in-flight top-ups and webhooks settle."""
        self.env.process(self._traffic(on_day))
        self.env.process(self._end_of_traffic())
        flushes = self._flush_times()
        if flushes:
            self.env.process(self._flusher(flushes))
        if self._metrics_interval is not None:
            self.env.process(self._metrics_reader(self._metrics_interval))
        self.env.run()
        self._read_metrics()

    def close(self) -> None:
        """Let go of the run's bulk at once: the emulator's objects and the event log's rows
        (the store is the backend's, closed by whoever opened it).

        A world is a web of reference cycles (SimPy's processes are generators whose frames
        hold the world's parts, and those parts hold the world), so nothing it holds is freed
        by reference counting when it is dropped: the cyclic collector must first walk all of
        it, and until then the memory stays taken. A 1,000-credit point of the decision grid
        held 2.2 GB that way and cost 7.8 s to collect; emptied here, it is freed as it is let
        go, and the collector walks only the world's skeleton (docs/performance.md)."""
        self.emulator.reset()
        self.events.clear()

    def _metrics_reader(self, interval: float) -> Generator[simpy.Event]:
        """Read the metrics every interval until the settling's reconcile (the last thing a run
        does), as a scrape would. It only reads: the billing and every other process run exactly
        as without it (SimPy keeps the order of their events; ``skip_to`` waits with a timeout
        instead when one of these reads is due first, which changes no order)."""
        step = round(interval * TICKS)
        end = round((self.scenario.horizon + SETTLE_SECONDS - HOUR) * TICKS)
        while self.env.now + step < end:
            yield self.env.timeout(step)
            self._read_metrics()

    def _read_metrics(self) -> None:
        """Append every series' current value, stamped with the simulated time."""
        metrics = self.billing.metrics
        assert isinstance(metrics, PrometheusMetrics)
        now = self.env.now / TICKS
        rows = self.metric_samples
        for sample in metrics.samples():
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels)
            rows.append((now, sample.name, labels, sample.value))

    def _traffic(self, on_day: Callable[[float], None] | None) -> Generator[simpy.Event]:
        """Every user's requests, a day at a time, merged into one time-ordered stream.

        One process for all users: per request at most one timeout (none when two requests share
        a millisecond, or when nothing else is due before the next one: ``Environment.skip_to``),
        no per-user process, no Resource. A user whose reactions stopped them
        (gave up for the day, or left) sends nothing until ``behaviour.blocked`` says so.
        """
        env, request, blocked = self.env, self._request, self.behaviour.blocked
        skip_to = env.skip_to
        ids = [p.user_id for p in self.profiles]
        horizon = self.scenario.horizon
        day = 0.0
        now = env.now  # only this process's timeouts move time while it runs
        key = self._draw_key
        shared = None if key is None else draws.lookup(key)  # drawn by an earlier point
        drawn: list[draws.Batch] = []  # kept for the next point once every day is drawn
        days = 0
        while day < horizon:
            end = min(day + DAY, horizon)
            batch = self._batch(day, end) if shared is None else shared[days]
            days += 1
            if key is not None and shared is None:
                drawn.append(batch)
            times, users, costs = batch
            for t, u, cost in zip(times.tolist(), users.tolist(), costs.tolist(), strict=True):
                user = ids[u]
                if blocked and blocked.get(user, -1) > t:
                    continue
                if t > now:
                    if not skip_to(t):
                        yield env.timeout(t - now)
                    now = t
                request(t, user, cost)
            day = end
            if on_day is not None:
                on_day(end / DAY)
        if key is not None and shared is None:  # every day was drawn: kept for the next point
            draws.keep(key, drawn)

    def _requester(self) -> Callable[[int, str, int, int], None]:
        """``request(t, user, cost, tries=0)``: one request of ``user`` at tick ``t``
        (``tries``: how many times it was refused and sent again), logged; a refusal goes to the
        user's reactions when a group has any. A closure over what it uses, as it runs once per
        request."""
        deduct, events, behaviour = self._deduct, self.events, self.behaviour
        served, refused, failed = events.served, events.refused, events.failed
        reacting = any(g.reactions.on_refusal for g in self.scenario.groups)

        def request(t: int, user: str, cost: int, tries: int = 0) -> None:
            retried = "retry" if tries else None
            try:
                done = deduct(user, cost)
            except InsufficientCredits as exc:
                refused(t, user, cost, exc.balance, exc.trigger, exc.attempt, retried)
                if reacting:
                    behaviour.refused(t, user, cost, tries)
            except StoreUnavailable:
                failed(t, user, cost)
            except _ServedUnanswered as lost:  # its worker died after the deduction
                served(t, user, cost, lost.balance, None, None, retried)
            else:
                # ``_value_`` is the member's own attribute: ``.value`` is a property and a
                # dict keyed by members hashes through ``Enum.__hash__``, both Python calls.
                served(t, user, cost, done.balance, done.trigger._value_, done.attempt, retried)
                if reacting:
                    behaviour.served(user)

        return request

    def _crashable(self, deduct: Callable[[str, int], Any]) -> Callable[[str, int], Any]:
        """``deduct`` as a worker that may die: a crash is logged and the request has no answer
        (the client sees a dropped connection), like ``request_failed``."""

        def call(user: str, cost: int) -> Any:
            before = self.store.get_user(user).balance
            with self.operation("deduct", user):
                return deduct(user, cost)
            # Reached only after a crash. Past its commit the request was served (or refused),
            # unanswered; nothing else runs in between, so the balance tells which.
            assert self.crash is not None
            after = self.store.get_user(user).balance
            if "store.deduct:after" in self.crash.passed and after == before - cost:
                raise _ServedUnanswered(after)
            raise StoreUnavailable("the worker died mid-request")

        return call

    def _end_of_traffic(self) -> Generator[simpy.Event]:
        """At the horizon Stripe stops losing answers and workers stop dying (store and gateway
        faults stop by their schedules), so what is pending can settle. An hour before the end
        of the settling day the reconcile job runs once over every user, as a deployment's
        periodic job would: it repairs caches, recovers attempts past their lease and credits
        any charge without a credit."""
        yield self.env.timeout(round(self.scenario.horizon * TICKS))
        self.emulator.faults = self._settle_faults
        if self.crash is not None:
            self.crash.armed = False
        yield self.env.timeout(round((SETTLE_SECONDS - HOUR) * TICKS))
        for found in reconcile_all(self.billing, subscriptions=self.subscriptions):
            user, add = found.user_id, self.events.add
            if found.cache_repaired:
                add("reconciled", user, outcome="cache_repaired")
            if found.attempt_recovered is not None:
                add(
                    "reconciled", user, attempt=found.attempt_recovered, outcome="attempt_recovered"
                )
            if found.notices_sent:
                add("reconciled", user, credits=found.notices_sent, outcome="notices_sent")
            for intent in found.uncredited_charges:
                add("reconciled", user, outcome="credited", payment_intent=intent)
            for invoice in found.uncredited_invoices:
                add("reconciled", user, outcome="invoice_credited", payment_intent=invoice)

    def _replay(self, usage: Usage, index: int, group: str) -> None:
        """User ``index`` replays the next user of its group's trace (in turn, ids sorted): its
        requests inside the run, as ticks and costs, kept for :meth:`_batch`. The trace is read
        once per world, not once per user."""
        trace = self._traces.get(usage.trace)
        if trace is None:
            trace = self._traces[usage.trace] = load_trace(usage.trace, self.scenario.start)
        seen = self._replayed.get(group, 0)
        self._replayed[group] = seen + 1
        k = seen % len(trace.users)
        ticks = np.rint(trace.times[k] * TICKS).astype(np.int64)
        inside = (ticks >= 0) & (ticks < round(self.scenario.horizon * TICKS))
        self._replays[index] = (ticks[inside], trace.credits[k][inside])

    def _batch(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All users' requests in ``[start, end)``: times, user indices, costs, in time order
        (ties broken by user index, so the order never depends on anything but the seed)."""
        times, users, costs = [], [], []
        drawing: list[int] = []  # the users who draw their requests (the rest replay a trace)
        for index in range(len(self._usage)):
            replay = self._replays.get(index) if self._replays else None
            if replay is None:
                drawing.append(index)
                continue
            ticks, credits = replay
            lo, hi = np.searchsorted(ticks, [round(start * TICKS), round(end * TICKS)])
            times.append(ticks[lo:hi])
            users.append(np.full(hi - lo, index, dtype=np.int64))
            costs.append(credits[lo:hi])
        if drawing:
            t, position, c = requests_between(
                [self._usage[i] for i in drawing], [self._user_rngs[i] for i in drawing],
                start, end,
            )  # fmt: skip
            times.append(t)
            users.append(np.asarray(drawing, dtype=np.int64)[position])
            costs.append(c)
        all_times, all_users = np.concatenate(times), np.concatenate(users)
        order = np.lexsort((all_users, all_times))
        return all_times[order], all_users[order], np.concatenate(costs)[order]

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
            self.events.add("cache_flush")
