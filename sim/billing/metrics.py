"""The metrics port: what the billing counts as it works, for dashboards and alerts.

:class:`BillingService` reports to a :class:`Metrics` passed in (as it does to its clock or its
notifier), never to a process-global registry: several services (tests, a sweep's worlds, two
apps in one process) then never mix their counts, and the core does not depend on how a
deployment scrapes them. :class:`PrometheusMetrics`, the default, keeps Prometheus metrics in its
own ``CollectorRegistry``; the API serves them on ``GET /metrics``. :class:`NoMetrics` counts
nothing, for a caller that wants none.

Every label takes a bounded set of values (trigger kinds, outcomes, Stripe decline codes, webhook
results, event types): never a user id or an amount, which would make one series per user and
put account data into the monitoring system.

:func:`log_event` writes the module's structured log lines: ``event=<name> key=value ...``, with
stable event names listed in ``docs/operations.md``, so that a log search or a log-based alert
keeps working when the wording around them changes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from .claims import Trigger

#: Seconds from a top-up's claim to its credit: a card charge answers in about a second, a lost
#: answer waits for the webhook or a recovery (minutes), an old attempt for a reconcile (hours).
CREDIT_DELAY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1_800, 3_600, 21_600, 86_400)

#: Every metric :class:`PrometheusMetrics` exports, by the name a query uses (a counter's
#: ``_total`` included; a histogram's ``_bucket``, ``_sum`` and ``_count`` derive from its name),
#: with its label names. The alerting rules are checked against this list.
METRICS: dict[str, tuple[str, ...]] = {
    "topup_deductions_total": ("result",),
    "topup_triggers_total": ("kind",),
    "topup_charges_total": ("outcome", "decline_code"),
    "topup_attempts_finished_total": ("status",),
    "topup_credit_delay_seconds": (),
    "topup_unknown_outcomes_total": (),
    "topup_suspensions_total": (),
    "topup_stuck_attempts_total": (),
    "topup_uncredited_charges_total": (),
    "topup_webhooks_total": ("result",),
    "topup_dead_letters_total": ("type",),
}
METRIC_NAMES = tuple(METRICS)

#: The content type of :meth:`PrometheusMetrics.exposition`: the classic text format 0.0.4, which
#: every Prometheus server reads (the library's newer default, 1.0.0, is not understood by
#: servers before 3.0, and the metric names here need none of what it adds).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Metrics(Protocol):
    """What the billing reports as it works. Each method must be cheap and must not raise: it is
    called on the request path, after the fact it counts is written."""

    def deduction(self, served: bool) -> None:
        """A deduction was served (credits taken) or refused (``InsufficientCredits``)."""
        ...

    def deduction_failed(self) -> None:
        """A deduction could not be made: the store was unavailable, nothing was taken."""
        ...

    def trigger(self, trigger: Trigger) -> None:
        """A deduction (or a settings change) decided ``trigger`` (never ``Trigger.NONE``)."""
        ...

    def charge(self, outcome: str, decline_code: str | None) -> None:
        """The gateway answered a charge: ``succeeded``, ``declined`` (with its code),
        ``requires_action``, or ``transient`` (an error or a lost answer)."""
        ...

    def attempt_finished(self, status: str) -> None:
        """An attempt ended with ``status`` (``succeeded``, ``declined``, ``failed``, ...)."""
        ...

    def credited(self, delay_seconds: float) -> None:
        """An auto top-up was credited ``delay_seconds`` after its claim."""
        ...

    def unknown_outcome(self) -> None:
        """Every answer to an attempt's charge was lost: its outcome is unknown for now."""
        ...

    def suspension(self) -> None:
        """Consecutive failures suspended a user's auto top-up."""
        ...

    def stuck_attempt(self) -> None:
        """The reconcile took over an attempt whose lease had run out."""
        ...

    def uncredited_charge(self) -> None:
        """The reconcile found a paid top-up, purchase or subscription invoice without a
        credit, and credited it."""
        ...

    def webhook(self, result: str) -> None:
        """A webhook delivery was handled: its result (``credited``, ``duplicate``,
        ``dead_letter``, ``rejected``, ``failed``, ...)."""
        ...

    def dead_letter(self, event_type: str) -> None:
        """A signed webhook event of ``event_type`` that can never apply was dead-lettered."""
        ...


class NoMetrics:
    """Counts nothing."""

    def deduction(self, served: bool) -> None:
        """Nothing."""

    def deduction_failed(self) -> None:
        """Nothing."""

    def trigger(self, trigger: Trigger) -> None:
        """Nothing."""

    def charge(self, outcome: str, decline_code: str | None) -> None:
        """Nothing."""

    def attempt_finished(self, status: str) -> None:
        """Nothing."""

    def credited(self, delay_seconds: float) -> None:
        """Nothing."""

    def unknown_outcome(self) -> None:
        """Nothing."""

    def suspension(self) -> None:
        """Nothing."""

    def stuck_attempt(self) -> None:
        """Nothing."""

    def uncredited_charge(self) -> None:
        """Nothing."""

    def webhook(self, result: str) -> None:
        """Nothing."""

    def dead_letter(self, event_type: str) -> None:
        """Nothing."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series, as :meth:`PrometheusMetrics.samples` lists it."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _counted(tally: itertools.count[int]) -> int:
    """How many ``tally`` counted, read from its ``count(n)`` form (which does not advance it).

    The request path's counts are ``itertools.count`` objects: ``next`` on one is a single C
    call, which the interpreter never interrupts, so it is thread-safe without a lock. Every
    deduction counts one, so it must cost tens of nanoseconds, not the 1.6 µs of a locked
    ``prometheus_client`` counter (5% of a deduction on the in-memory backend, measured).
    """
    return int(repr(tally)[6:-1])


class _TallyCollector:
    """Exports the request path's tallies as Prometheus counters when the registry is read."""

    def __init__(
        self, name: str, documentation: str, label: str, tallies: dict[str, itertools.count[int]]
    ) -> None:
        self._name, self._doc, self._label, self._tallies = name, documentation, label, tallies

    def collect(self) -> Iterable[Metric]:
        """One counter family, a sample per label value."""
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for value, tally in self._tallies.items():
            family.add_metric([value], _counted(tally))
        yield family

    def describe(self) -> Iterable[Metric]:
        """The family's name, for the registry's duplicate check."""
        yield CounterMetricFamily(self._name, self._doc, labels=[self._label])


class PrometheusMetrics:
    """Prometheus counters and a histogram in a registry of their own (``registry``).

    What the request path counts on every deduction (deductions, triggers) is kept in lock-free
    tallies read when the registry is scraped; the rest (one per top-up or webhook at most) in
    ``prometheus_client``'s own counters.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._served, self._refused = itertools.count(), itertools.count()
        self._failed = itertools.count()
        r.register(_TallyCollector(
            "topup_deductions",
            "Deductions, by result (served, refused, failed: the store was unavailable).",
            "result", {"served": self._served, "refused": self._refused, "failed": self._failed},
        ))  # fmt: skip
        self._triggers = {t: itertools.count() for t in Trigger if t is not Trigger.NONE}
        r.register(_TallyCollector(
            "topup_triggers",
            "Auto top-up decisions of deductions at or below the threshold, by kind"
            " (claimed, cooling, pending, held, recover, limited).",
            "kind", {t.value: tally for t, tally in self._triggers.items()},
        ))  # fmt: skip
        self._charges = Counter(
            "topup_charges",
            "Gateway answers to auto top-up charges, by outcome and decline code.",
            ["outcome", "decline_code"],
            registry=r,
        )
        self._finished = Counter(
            "topup_attempts_finished", "Auto top-up attempts ended, by status.", ["status"],
            registry=r,
        )  # fmt: skip
        self._delay = Histogram(
            "topup_credit_delay_seconds",
            "Seconds from an auto top-up's claim to its credit (injected clock).",
            buckets=CREDIT_DELAY_BUCKETS,
            registry=r,
        )
        self._unknown = Counter(
            "topup_unknown_outcomes", "Attempts left unknown: every answer to the charge lost.",
            registry=r,
        )  # fmt: skip
        self._suspensions = Counter(
            "topup_suspensions", "Auto top-ups suspended after consecutive failures.", registry=r
        )
        self._stuck = Counter(
            "topup_stuck_attempts", "Attempts past their lease taken over by the reconcile.",
            registry=r,
        )  # fmt: skip
        self._uncredited = Counter(
            "topup_uncredited_charges",
            "Paid top-ups, purchases and subscription invoices the reconcile found uncredited.",
            registry=r,
        )
        self._webhooks = Counter(
            "topup_webhooks", "Webhook deliveries handled, by result.", ["result"], registry=r
        )
        self._dead_letters = Counter(
            "topup_dead_letters", "Webhook events dead-lettered, by event type.", ["type"],
            registry=r,
        )  # fmt: skip

    def deduction(self, served: bool) -> None:
        """Count a served or refused deduction."""
        next(self._served if served else self._refused)

    def deduction_failed(self) -> None:
        """Count a deduction the store could not make."""
        next(self._failed)

    def trigger(self, trigger: Trigger) -> None:
        """Count a decision by its kind."""
        tally = self._triggers.get(trigger)
        if tally is not None:
            next(tally)

    def charge(self, outcome: str, decline_code: str | None) -> None:
        """Count a gateway answer."""
        self._charges.labels(outcome, decline_code or "").inc()

    def attempt_finished(self, status: str) -> None:
        """Count an attempt's end."""
        self._finished.labels(status).inc()

    def credited(self, delay_seconds: float) -> None:
        """Observe a claim-to-credit delay."""
        self._delay.observe(max(delay_seconds, 0.0))

    def unknown_outcome(self) -> None:
        """Count an attempt left unknown."""
        self._unknown.inc()

    def suspension(self) -> None:
        """Count a suspension."""
        self._suspensions.inc()

    def stuck_attempt(self) -> None:
        """Count a takeover by the reconcile."""
        self._stuck.inc()

    def uncredited_charge(self) -> None:
        """Count a charge the reconcile credited."""
        self._uncredited.inc()

    def webhook(self, result: str) -> None:
        """Count a webhook delivery's result."""
        self._webhooks.labels(result).inc()

    def dead_letter(self, event_type: str) -> None:
        """Count a dead-lettered event."""
        self._dead_letters.labels(event_type).inc()

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def samples(self) -> Iterator[Sample]:
        """Every current sample (``_created`` timestamps left out: they are wall-clock times,
        not counts), in the registry's order."""
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                yield Sample(sample.name, tuple(sorted(sample.labels.items())), sample.value)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when it has not been counted yet); for tests and reports."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    """Log ``event=<event> key=value ...`` (``None`` fields left out), a line a log search can
    match on its stable event name; formatted only when ``level`` is enabled."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={event}"]
    parts += [f"{key}={value}" for key, value in fields.items() if value is not None]
    logger.log(level, " ".join(parts), extra={"event": event}, stacklevel=2)
