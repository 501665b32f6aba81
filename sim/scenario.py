"""Scenarios: the TOML files in ``scenarios/``, read into frozen dataclasses and checked.

Every key is validated where it is read, and an error names the file, the dotted key and what
is allowed, so a typo never runs silently with a default (unknown keys are errors too).

A scenario keeps the raw table it came from, so a sweep or the CLI can override any dotted key
(``auto_topup.threshold``, ``groups.heavy.usage.requests_per_day``) and validate the result again.
"""

from __future__ import annotations

import copy
import math
import operator
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sim.billing import (
    CURRENCIES,
    THRESHOLDS,
    TIER_CREDITS,
    AutoTopupSettings,
    BillingConfig,
    InvalidSettings,
    tier_for,
)
from sim.gateways import TEST_CARDS

from .actions import Action, read_actions
from .scenario_faults import Faults, Webhooks, read_faults, read_webhooks
from .tables import (
    DAY,
    HOUR,
    Distribution,
    ScenarioError,
    Table,
    read_declines,
    read_distribution,
)
from .traces import load_trace

ARRIVALS = ("poisson", "constant", "trace")
#: The longest run a scenario may ask for: a year. Daily schedules (outages, cache flushes) are
#: unrolled over every day when the file is read, and a run keeps every event, as Stripe does
#: for 30 days; a longer study is several runs. Past it, ``days`` is an error at its key, not an
#: unbounded allocation (a fuzzed ``days = 1e9`` took all of the machine's memory).
MAX_DAYS = 366
#: The most users a scenario may ask for: a run holds every user's rows in one process, and a
#: month of 1,000 users already holds millions of requests (docs/performance.md).
MAX_USERS = 1_000_000


# --------------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Usage:
    """How one group of users sends requests and what each request costs (credits).

    A world gives each user their own copy: the group's law with the user's draws of
    ``variation`` applied (``requests_per_day`` scaled, ``cost_scale``) and, for constant
    arrivals with ``random_phase``, their ``phase_seconds``.
    """

    arrivals: str
    requests_per_day: float
    diurnal_amplitude: float
    peak_hour: float
    bursts_per_day: float
    burst_minutes: float
    burst_factor: float
    cost: Distribution
    #: Constant arrivals only: each user's first request at a random point of the first
    #: interval (not all at one interval from the start, in lock-step).
    random_phase: bool = False
    #: Constant arrivals: how much earlier than ``k x interval`` this user's requests come.
    phase_seconds: float = 0.0
    #: This user's factor on every drawn cost.
    cost_scale: float = 1.0
    #: ``arrivals = "trace"``: the trace file (resolved; ``sim.traces``).
    trace: str = ""


@dataclass(frozen=True, slots=True)
class Variation:
    """How a group's users differ: per-user factors, each drawn once from its law (``None``:
    every user has the group's own value). ``rate`` scales ``requests_per_day``, ``balance``
    the starting balance, ``cost`` every request's cost."""

    rate: Distribution | None = None
    balance: Distribution | None = None
    cost: Distribution | None = None


def _variation(t: Table) -> Variation:
    factors = {
        name: read_distribution(t.table(name)) if t.has(name) else None
        for name in ("rate", "balance", "cost")
    }
    t.done()
    return Variation(**factors)


def _trace_usage(t: Table, start: float) -> Usage:
    """A usage replayed from a trace file (``sim.traces``), checked now: its mean rate and cost
    stand in for the profile's (the replay uses the trace itself)."""
    name = t.take("trace", str)
    path = Path(t.source).parent / name
    if not path.is_file():
        raise t.error("trace", f"no such file: {path}")
    trace = load_trace(path, start)
    t.done()
    return Usage(
        "trace", trace.requests_per_user_day, 0.0, 14.0, 0.0, 30.0, 1.0,
        Distribution("fixed", value=float(np.concatenate(trace.credits).mean())), trace=trace.path,
    )  # fmt: skip


def _usage(t: Table, start: float) -> Usage:
    arrivals = t.take("arrivals", str, "poisson", allowed=ARRIVALS)
    if arrivals == "trace":
        return _trace_usage(t, start)
    usage = Usage(
        arrivals=arrivals,
        requests_per_day=t.take("requests_per_day", float, low=0),
        diurnal_amplitude=t.take("diurnal_amplitude", float, 0.0, low=0, below=1),
        peak_hour=t.take("peak_hour", float, 14.0, low=0, below=24),
        bursts_per_day=t.take("bursts_per_day", float, 0.0, low=0),
        burst_minutes=t.take("burst_minutes", float, 30.0, low=0),
        burst_factor=t.take("burst_factor", float, 1.0, low=1),
        cost=read_distribution(t.table("cost")),
        random_phase=t.take("random_phase", bool, False),
    )
    if usage.random_phase and arrivals != "constant":
        raise t.error("random_phase", "applies only to arrivals = 'constant'")
    if arrivals == "constant":
        for name in ("diurnal_amplitude", "bursts_per_day"):
            if t.has(name) and getattr(usage, name):
                raise t.error(name, "applies only to arrivals = 'poisson'; allowed: 0")
        if usage.requests_per_day <= 0:
            raise t.error("requests_per_day", "must be > 0 for constant arrivals")
    t.done()
    return usage


@dataclass(frozen=True, slots=True)
class Reactions:
    """What a group's users do when things go wrong for them.

    When auto top-up stops (paused for 3-D Secure or a missing card, or suspended after
    declines): with chance ``fix_card_rate`` a user saves a working card (``fix_card``)
    ``fix_card_after_hours`` after the notice, as someone who completes authentication or
    replaces a failing card would. Saving a card lifts the pause or suspension.

    When a request is refused (balance too low): it is sent again up to ``retries`` times, each
    ``retry_after_seconds`` later; after ``give_up_after`` refusals in a row (0: never) the user
    sends nothing more that day; and while refused, the user leaves for good with chance
    ``churn_per_dry_hour`` per hour since the first refusal of the streak (a served request
    ends a streak). Without these a refused request simply vanishes and running dry costs
    nothing.
    """

    fix_card_rate: float = 0.0
    fix_card_after_hours: Distribution = Distribution("fixed", value=1.0)
    fix_card: str = "pm_card_visa"
    retries: int = 0
    retry_after_seconds: Distribution = Distribution("fixed", value=60.0)
    give_up_after: int = 0
    churn_per_dry_hour: float = 0.0

    @property
    def on_refusal(self) -> bool:
        """Whether a refusal makes these users do anything."""
        return bool(self.retries or self.give_up_after or self.churn_per_dry_hour)


def _reactions(t: Table) -> Reactions:
    defaults = Reactions()

    def law(name: str) -> Distribution:
        return read_distribution(t.table(name)) if t.has(name) else getattr(defaults, name)

    reactions = Reactions(
        fix_card_rate=t.take("fix_card_rate", float, 0.0, low=0, high=1),
        fix_card_after_hours=law("fix_card_after_hours"),
        fix_card=t.take("fix_card", str, "pm_card_visa", allowed=tuple(TEST_CARDS)),
        retries=t.take("retries", int, 0, low=0),
        retry_after_seconds=law("retry_after_seconds"),
        give_up_after=t.take("give_up_after", int, 0, low=0),
        churn_per_dry_hour=t.take("churn_per_dry_hour", float, 0.0, low=0, below=1),
    )
    t.done()
    return reactions


@dataclass(frozen=True, slots=True)
class Group:
    """A population group: a share of the users with one usage profile, settings and cards.

    ``subscription`` is the tier (credits) of a monthly top-up each user takes out at the start,
    or 0 for none.
    """

    name: str
    share: float
    balance: int
    cards: tuple[tuple[str, float], ...]
    settings: AutoTopupSettings
    usage: Usage
    subscription: int = 0
    #: Per-charge declines of the group's cards (decline code, chance per charge), drawn by the
    #: card's issuer in the emulator on top of what the test card itself does.
    declines: tuple[tuple[str, float], ...] = ()
    reactions: Reactions = Reactions()
    variation: Variation = Variation()


def _settings(t: Table, defaults: Mapping[str, Any]) -> AutoTopupSettings:
    """An ``[auto_topup]`` table (the scenario's, or a group's over the scenario's).

    ``monthly_limit`` is in credits; TOML has no null, so 0 (the default) means no limit, which
    also lets a sweep put "no limit" beside its limits. A limit the settings refuse (under the
    amount, say) is an error naming the key, with what it allows.
    """

    def pick(name: str, kind: type, **checks: Any) -> Any:
        return t.take(name, kind, defaults[name], **checks)

    try:
        settings = AutoTopupSettings(
            enabled=pick("enabled", bool),
            threshold=pick("threshold", int, allowed=THRESHOLDS),
            amount=pick("amount", int, allowed=TIER_CREDITS),
            currency=pick("currency", str, allowed=CURRENCIES),
            monthly_limit=pick("monthly_limit", int, low=0) or None,
        )
    except InvalidSettings as exc:
        listing = ", ".join("0 (no limit)" if a is None else str(a) for a in exc.allowed)
        message = f"{exc.value!r} is not allowed; allowed: {listing}"
        if not t.has(exc.field):  # a group's amount under the scenario's own limit
            message += " (inherited from [auto_topup]; give the group its own)"
        raise t.error(exc.field, message) from None
    t.done()
    return settings


def _cards(t: Table) -> tuple[tuple[str, float], ...]:
    t.read += ["card", "cards"]
    if t.has("card") and t.has("cards"):
        raise t.error("cards", "give either card or cards, not both")
    allowed = tuple(TEST_CARDS)
    if t.has("cards"):
        mix = t.table("cards")
        cards = tuple((name, float(mix.take(name, float, low=0))) for name in mix.data)
        for name, _ in cards:
            if name not in TEST_CARDS:
                raise mix.error(name, f"unknown test card; allowed: {', '.join(allowed)}")
        if not cards or not math.isclose(sum(w for _, w in cards), 1.0):
            raise t.error("cards", "the rates must sum to 1")
        return cards
    return ((t.take("card", str, "pm_card_visa", allowed=allowed), 1.0),)


@dataclass(frozen=True, slots=True)
class BillingRules:
    """The billing module's service-wide configuration, as a scenario writes it. Every default
    is :class:`~sim.billing.BillingConfig`'s own (one default per rule, in one place); the
    cooldown is written in hours here because scenarios and sweeps speak of it that way."""

    cooldown_hours: float
    charge_tries: int
    failures_before_suspension: int
    attempt_lease_seconds: float
    retry_backoff_seconds: float
    idempotency_window_seconds: float

    def config(self) -> BillingConfig:
        """The billing module's configuration these rules stand for."""
        return BillingConfig(
            cooldown_seconds=self.cooldown_hours * HOUR,
            charge_tries=self.charge_tries,
            failures_before_suspension=self.failures_before_suspension,
            attempt_lease_seconds=self.attempt_lease_seconds,
            retry_backoff_seconds=self.retry_backoff_seconds,
            idempotency_window_seconds=self.idempotency_window_seconds,
        )


@dataclass(frozen=True, slots=True)
class Payments:
    """How long a top-up takes from claim to the gateway's answer (seconds)."""

    latency: Distribution


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: population, usage, settings, billing rules, payments, faults, sweep."""

    name: str
    description: str
    users: int
    days: float
    start: float
    seed: int
    billing: BillingRules
    payments: Payments
    groups: tuple[Group, ...]
    faults: Faults
    webhooks: Webhooks
    #: Dotted key -> values to sweep over (empty for a plain scenario).
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str = "<scenario>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Timed actions (``[[actions]]``): cards that expire or decline, new cards, new settings.
    actions: tuple[Action, ...] = ()

    @property
    def horizon(self) -> float:
        """Simulated seconds."""
        return self.days * DAY

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with dotted keys replaced, validated again (errors name the key)."""
        raw = copy.deepcopy(dict(self.raw))
        for dotted, value in overrides.items():
            node = raw
            *parents, leaf = dotted.split(".")
            for part in parents:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ScenarioError(self.source, dotted, f"{part!r} is not a table")
                node = child
            node[leaf] = value
        return parse_scenario(raw, self.source)

    def seeded(self, seed: int | None) -> Scenario:
        """This scenario with ``seed`` in place of its own (``None``: as it is), checked as the
        file's ``seed`` is: a caller's seed meets the same rule, and the same one-line error.
        NumPy's integers count as whole numbers (a seed read from a frame is one)."""
        if seed is None:
            return self
        if not isinstance(seed, bool | int) and hasattr(seed, "__index__"):
            seed = operator.index(seed)
        if type(seed) is int and seed == self.seed:
            return self
        return self.with_overrides({"seed": seed})

    def grid_point(self, overrides: Mapping[str, Any]) -> Scenario:
        """The scenario of one sweep point: overrides applied, the ``[sweep]`` table dropped."""
        base = {k: v for k, v in self.raw.items() if k != "sweep"}
        return replace(self, raw=base, sweep={}).with_overrides(overrides)

    def counts(self) -> list[int]:
        """Users per group: shares of ``users`` rounded by largest remainder (deterministic)."""
        exact = [g.share * self.users for g in self.groups]
        counts = [math.floor(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
        for i in order[: self.users - sum(counts)]:
            counts[i] += 1
        return counts


DEFAULT_SETTINGS = {
    "enabled": True, "threshold": 1_000, "amount": 10_000, "currency": "eur", "monthly_limit": 0,
}  # fmt: skip


def parse_scenario(raw: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a scenario table (as read from TOML) and build the :class:`Scenario`."""
    t = Table(raw, "", source)
    name = t.take("name", str, Path(source).stem)
    description = t.take("description", str, "")
    users = t.take("users", int, low=1, high=MAX_USERS)
    days = t.take("days", float, low=1 / 24, high=MAX_DAYS)
    start = _start(t)
    seed = t.take("seed", int, 0, low=0)
    b = t.table("billing")
    rules = BillingConfig()
    billing = BillingRules(
        cooldown_hours=b.take("cooldown_hours", float, rules.cooldown_seconds / HOUR, low=0),
        charge_tries=b.take("charge_tries", int, rules.charge_tries, low=1),
        failures_before_suspension=b.take(
            "failures_before_suspension", int, rules.failures_before_suspension, low=1
        ),
        attempt_lease_seconds=b.take(
            "attempt_lease_seconds", float, rules.attempt_lease_seconds, low=1
        ),
        retry_backoff_seconds=b.take(
            "retry_backoff_seconds", float, rules.retry_backoff_seconds, low=0
        ),
        idempotency_window_seconds=b.take(
            "idempotency_window_seconds", float, rules.idempotency_window_seconds, low=1
        ),
    )
    b.done()
    p = t.table("payments")
    payments = Payments(read_distribution(p.table("latency", {"dist": "fixed", "value": 2.0})))
    p.done()
    d = t.table("auto_topup")
    defaults = asdict(_settings(d, DEFAULT_SETTINGS))
    groups = tuple(_groups(t.table("groups"), defaults, start))
    faults = read_faults(t.table("faults"), days)
    webhooks = read_webhooks(t.table("webhooks"))
    sweep = _sweep(t.table("sweep"))
    actions = read_actions(t, [g.name for g in groups])
    t.done()
    scenario = Scenario(
        name, description, users, days, start, seed, billing, payments, groups, faults,
        webhooks, sweep, source, raw, actions,
    )  # fmt: skip
    for key, values in sweep.items():
        # Each swept value must be one this scenario accepts: find out now, not mid-sweep.
        for value in values:
            scenario.grid_point({key: value})
    return scenario


def _start(t: Table) -> float:
    """The start epoch: an ISO 8601 time with its zone (a local time would differ per machine)."""
    t.read.append("start")
    value = t.data.get("start", "2026-01-01T00:00:00Z")
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise t.error("start", f"{value!r}: allowed: an ISO 8601 time with a zone, e.g. "
                      "2026-01-01T00:00:00Z")  # fmt: skip
    return when.timestamp()


def _groups(t: Table, defaults: Mapping[str, Any], start: float) -> Iterator[Group]:
    if not t.data:
        raise ScenarioError(t.source, "groups", "needs at least one group ([groups.<name>])")
    total = 0.0
    for name in list(t.data):
        g = t.table(name)
        share = g.take("share", float, low=0, high=1)
        total += share
        group = Group(
            name=name,
            share=share,
            balance=g.take("balance", int, low=0),
            cards=_cards(g),
            settings=_settings(g.table("auto_topup"), defaults),
            usage=_usage(g.table("usage"), start),
            subscription=_subscription(g),
            declines=read_declines(g.table("declines")),
            reactions=_reactions(g.table("reactions")),
            variation=_variation(g.table("variation")),
        )
        if group.usage.arrivals == "trace" and (group.variation.rate or group.variation.cost):
            raise g.error("variation", "rate and cost vary drawn usage, not a replayed trace")
        g.done()
        yield group
    if not math.isclose(total, 1.0):
        raise ScenarioError(t.source, "groups", f"shares must sum to 1, got {total:g}")


def _subscription(t: Table) -> int:
    """A tier with a monthly bonus, or 0 for no subscription."""
    allowed = (0, *(c for c in TIER_CREDITS if tier_for(c).subscribable))
    return int(t.take("subscription", int, 0, allowed=allowed))


def _sweep(t: Table) -> dict[str, tuple[Any, ...]]:
    grid: dict[str, tuple[Any, ...]] = {}
    for key, values in t.data.items():
        t.read.append(key)
        if not isinstance(values, list) or not values:
            raise t.error(key, "must be a non-empty list of values to sweep over")
        grid[key] = tuple(values)
    return grid


def load_scenario(path: str | Path, **overrides: Any) -> Scenario:
    """Read and validate a scenario file; keyword overrides replace top-level keys."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "<syntax>", str(exc)) from None
    scenario = parse_scenario(raw, str(path))
    return scenario.with_overrides(overrides) if overrides else scenario
