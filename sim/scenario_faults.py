"""A scenario's ``[faults]`` and ``[webhooks]`` tables: what fails, when, and how Stripe's
webhook deliveries arrive, read into frozen dataclasses and checked at their keys like the rest of
the file (:mod:`sim.scenario` reads them through :func:`read_faults` and :func:`read_webhooks`).

Outage windows and daily flush hours are unrolled over the run's days when the file is read, which
is why a scenario's length is bounded (``sim.scenario.MAX_DAYS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .tables import HOUR, Table, day_starts

#: Store writes a scenario may fail (``faults.store.operations``): the Store port's methods.
STORE_OPERATIONS = (
    "deduct", "finish_attempt", "start_charge", "hold_lease", "take_over", "settle_topup", "credit",
)  # fmt: skip
#: Store faults on the credit path (``settle_topup``, ``credit``) leave a paid top-up uncredited
#: until its webhook is delivered again or its attempt is recovered, so they are opt-in.
DEFAULT_STORE_OPERATIONS = ("deduct", "finish_attempt")


@dataclass(frozen=True, slots=True)
class GatewayFaults:
    """Stripe 5xx, 429, timeouts and dropped connections: transient errors, retried by billing.

    ``lost_response_rate`` is the hard case: Stripe applied the charge and the answer was lost on
    the way back, so only the retry with the same idempotency key (or the webhook) tells.
    """

    rate: float
    outages: tuple[tuple[float, float], ...]
    slow_rate: float
    slow_seconds: float
    lost_response_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Webhooks:
    """How Stripe's webhook deliveries reach the billing module: after a delay, with jitter,
    sometimes twice or out of order. ``enabled = false`` runs without any (to show what they
    recover)."""

    enabled: bool
    delay_seconds: float
    jitter_seconds: float
    duplicate_rate: float
    reorder_rate: float
    reorder_window_seconds: float


@dataclass(frozen=True, slots=True)
class StoreFaults:
    """Store writes that raise ``StoreUnavailable``, at a rate and in outage windows."""

    rate: float
    outages: tuple[tuple[float, float], ...]
    operations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CacheFaults:
    """Cache flushes (a Redis restart or ``FLUSHALL``): at random, and at given hours."""

    flushes_per_day: float
    flush_at: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class CrashFaults:
    """Workers killed mid-operation (as by SIGKILL): ``rate`` is the chance that a worker dies at
    each write boundary it passes (see ``sim.crashes``)."""

    rate: float


@dataclass(frozen=True, slots=True)
class WebhookFaults:
    """The billing module's webhook endpoint failing as Stripe sees it: a delivery fails with
    probability ``rate`` (answered 500 before the handler runs), and every delivery fails inside
    the ``outages`` windows (the endpoint is down: 503). Stripe redelivers each failed one on its
    own retry schedule (``sim.stripe_emulator``'s ``RETRY_DELAYS``), so the events come late, not
    never. Separate from store faults, which fail the handler's writes."""

    rate: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Faults:
    """Every fault a scenario can inject."""

    gateway: GatewayFaults
    store: StoreFaults
    cache: CacheFaults
    crashes: CrashFaults = CrashFaults(0.0)
    webhooks: WebhookFaults = WebhookFaults()


def read_webhooks(t: Table) -> Webhooks:
    """The ``[webhooks]`` table: Stripe's deliveries as they reach the billing module."""
    webhooks = Webhooks(
        enabled=t.take("enabled", bool, True),
        delay_seconds=t.take("delay_seconds", float, 2.0, low=0),
        jitter_seconds=t.take("jitter_seconds", float, 3.0, low=0),
        duplicate_rate=t.take("duplicate_rate", float, 0.0, low=0, high=1),
        reorder_rate=t.take("reorder_rate", float, 0.0, low=0, high=1),
        reorder_window_seconds=t.take("reorder_window_seconds", float, 30.0, low=0),
    )
    t.done()
    return webhooks


def read_faults(t: Table, days: float) -> Faults:
    """The ``[faults]`` table over a run of ``days``: each kind's rates and outage windows."""
    g = t.table("gateway")
    gateway = GatewayFaults(
        rate=g.take("rate", float, 0.0, low=0, high=1),
        outages=g.outages(days),
        slow_rate=g.take("slow_rate", float, 0.0, low=0, high=1),
        slow_seconds=g.take("slow_seconds", float, 30.0, low=0),
        lost_response_rate=g.take("lost_response_rate", float, 0.0, low=0, high=1),
    )
    g.done()
    s = t.table("store")
    ops = s.data.get("operations", list(DEFAULT_STORE_OPERATIONS))
    s.read.append("operations")
    if not isinstance(ops, list) or any(op not in STORE_OPERATIONS for op in ops):
        raise s.error("operations", f"{ops!r}; allowed: a list of {', '.join(STORE_OPERATIONS)}")
    store = StoreFaults(s.take("rate", float, 0.0, low=0, high=1), s.outages(days), tuple(ops))
    s.done()
    c = t.table("cache")
    cache = CacheFaults(
        flushes_per_day=c.take("flushes_per_day", float, 0.0, low=0),
        flush_at=_flush_times(c, days),
    )
    c.done()
    k = t.table("crashes")
    crashes = CrashFaults(k.take("rate", float, 0.0, low=0, high=1))
    k.done()
    w = t.table("webhooks")
    webhooks = WebhookFaults(w.take("rate", float, 0.0, low=0, high=1), w.outages(days))
    w.done()
    t.done()
    return Faults(gateway, store, cache, crashes, webhooks)


def _flush_times(t: Table, days: float) -> tuple[float, ...]:
    """Cache flushes in seconds from the start: ``flush_at_hours`` (from the start) and
    ``flush_daily_at_hours`` (hours of the day, every day)."""
    once = t.numbers("flush_at_hours")
    daily = t.numbers("flush_daily_at_hours")
    if any(h >= 24 for h in daily):
        raise t.error("flush_daily_at_hours", f"hours of the day are below 24, got {list(daily)}")
    every_day = [day + h * HOUR for day in day_starts(days) for h in daily]
    return tuple(sorted([*(h * HOUR for h in once), *every_day]))
