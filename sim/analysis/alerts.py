"""When the alerting rules of ``deploy/prometheus/alerts.yml`` would have fired during a run.

A run asked for its metrics over time (``run(..., metrics_interval=300)``) holds in
``Results.metrics`` what a Prometheus server would have scraped. This module replays the rules
over those samples, so a scenario such as ``chaos`` shows which alerts its faults would have
raised, when, and which stayed quiet. It is not a PromQL engine: each rule's condition is
written here in Python, beside its name, from :mod:`sim.analysis.monitoring`'s readings
(increases over a window, shares, a histogram's quantile), with the rule's numbers as fields.
``tests/sim/test_analysis_alerts.py`` reads the YAML and checks that every alert in it has its
counterpart here with the same threshold, volume floor, quantile, window and ``for:``, so a rule
changed in one place and not the other fails a test instead of drifting silently.

The rules are evaluated at the sample times, as Prometheus evaluates them at each evaluation
interval: an alert is *pending* from the first sample where its condition holds, *fires* at the
first sample where it has held without a break for its ``for:`` duration, and stops at the next
sample where it does not hold. With samples every 5 minutes, ``for: 10m`` needs three samples in
a row. Times are hours from the run's start (``Results.metrics``'s ``time`` is in seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..scenario import Scenario
from .monitoring import CARD_ANSWERS, FAILED_ANSWERS, histogram_quantile, increase, share, total
from .samples import titled

MINUTE = 60.0
HOUR = 3_600.0

#: A rule's reading at every sample time, from the metrics frame and the rule (for its window
#: and quantile): a Series indexed by the sample times.
Reading = Callable[[pd.DataFrame, "Alert"], pd.Series]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule: it holds when its ``value`` over ``window`` seconds exceeds
    ``threshold`` and, for a rule with a volume ``floor``, its ``volume`` over the same window
    is at least that floor; it fires once it has held for ``hold`` seconds (the rule's ``for:``).
    ``quantile`` is the one a histogram rule reads (None for the others)."""

    name: str
    window: float
    threshold: float
    hold: float
    value: Reading
    floor: float | None = None
    volume: Reading | None = None
    quantile: float | None = None

    def __post_init__(self) -> None:
        """Refuse a floor without the volume it is compared with (or a volume without a floor):
        either would make :meth:`holds` quietly leave the floor out."""
        if (self.floor is None) != (self.volume is None):
            raise ValueError(f"{self.name}: a volume floor needs the volume it counts, and back")

    def holds(self, metrics: pd.DataFrame, *, floors: bool = True) -> pd.Series:
        """At each sample time, whether the rule's condition holds (``floors=False`` leaves the
        volume floor out, to show what it keeps quiet). An undefined value (a share of nothing)
        does not hold, as PromQL's NaN compared to a threshold returns nothing."""
        held = self.value(metrics, self).gt(self.threshold)
        if floors and self.floor is not None and self.volume is not None:  # both or neither
            held &= self.volume(metrics, self).ge(self.floor)
        return held.astype(bool)


def _counted(name: str, by: str | None = None, of: str | None = None) -> Reading:
    """The increase of counter ``name`` over the rule's window (only the series whose label
    ``by`` is ``of`` when given): ``sum(increase(name{by="of"}[window]))``."""
    return lambda metrics, alert: total(
        metrics, name, alert.window, by=by, of=None if of is None else (of,)
    )


def _largest_by(name: str, by: str) -> Reading:
    """``sum by (<by>) (increase(name[window]))``, the largest of its series at each time: one
    of the rule's alerts (one per label value) holds wherever the largest does."""
    return lambda metrics, alert: (
        increase(metrics, name, alert.window, by=by).max(axis=1).fillna(0.0)
    )


def _quantile_of(name: str) -> Reading:
    """``histogram_quantile(<the rule's quantile>, sum by (le) (rate(<name>_bucket[window])))``."""

    def reading(metrics: pd.DataFrame, alert: Alert) -> pd.Series:
        if alert.quantile is None:
            raise ValueError(f"{alert.name} reads a quantile of {name} and names none")
        return histogram_quantile(metrics, name, alert.quantile, alert.window)

    return reading


def _ratio(
    name: str,
    counter: str,
    *,
    by: str,
    part: Sequence[str],
    of: Sequence[str] | None = None,
    window: float,
    threshold: float,
    hold: float,
    floor: float,
) -> Alert:
    """A ratio rule, ``sum(rate(counter{<by> in part}[window])) / sum(rate(counter{<by> in
    of}[window])) > threshold and sum(increase(counter{<by> in of}[window])) >= floor``: its
    floor counts what its ratio divides by, as the rules file's test demands of the YAML."""
    return Alert(
        name,
        window,
        threshold,
        hold,
        value=lambda metrics, alert: share(metrics, counter, alert.window, by=by, part=part, of=of),
        floor=floor,
        volume=lambda metrics, alert: total(metrics, counter, alert.window, by=by, of=of),
    )


DEDUCTIONS = "topup_deductions_total"
CHARGES = "topup_charges_total"
WEBHOOKS = "topup_webhooks_total"

#: The rules of ``deploy/prometheus/alerts.yml``, in the file's order, each written from the
#: readings of :mod:`sim.analysis.monitoring`. ``TopupDeadLetters`` fires one alert per event
#: type; here it is one row, firing while any type's does (exact with its ``for: 0m``).
ALERTS: tuple[Alert, ...] = (
    _ratio(
        "TopupDeductionsFailing", DEDUCTIONS, by="result", part=("failed",),
        window=5 * MINUTE, threshold=0.1, hold=5 * MINUTE, floor=20,
    ),
    _ratio(
        "TopupPaymentFailureRateHigh", CHARGES, by="outcome", part=FAILED_ANSWERS,
        of=CARD_ANSWERS, window=30 * MINUTE, threshold=0.2, hold=15 * MINUTE, floor=20,
    ),
    _ratio(
        "TopupGatewayErrors", CHARGES, by="outcome", part=("transient",),
        window=10 * MINUTE, threshold=0.1, hold=10 * MINUTE, floor=20,
    ),
    Alert(
        "TopupUnknownOutcomes", window=30 * MINUTE, threshold=0, hold=5 * MINUTE,
        value=_counted("topup_unknown_outcomes_total"),
    ),
    Alert(
        "TopupStuckAttempts", window=HOUR, threshold=0, hold=0,
        value=_counted("topup_stuck_attempts_total"),
    ),
    Alert(
        "TopupUncreditedCharges", window=HOUR, threshold=0, hold=0,
        value=_counted("topup_uncredited_charges_total"),
    ),
    _ratio(
        "TopupWebhooksFailing", WEBHOOKS, by="result", part=("failed",),
        window=10 * MINUTE, threshold=0.05, hold=10 * MINUTE, floor=40,
    ),
    Alert(
        "TopupWebhooksRejected", window=15 * MINUTE, threshold=5, hold=5 * MINUTE,
        value=_counted(WEBHOOKS, by="result", of="rejected"),
    ),
    Alert(
        "TopupDeadLetters", window=HOUR, threshold=0, hold=0,
        value=_largest_by("topup_dead_letters_total", "type"),
    ),
    Alert(
        "TopupCreditSlow", window=30 * MINUTE, threshold=300, hold=15 * MINUTE, quantile=0.95,
        value=_quantile_of("topup_credit_delay_seconds"),
    ),
)  # fmt: skip


def spells(held: pd.Series, hold: float) -> list[tuple[float, float]]:
    """The ``(start, end)`` times an alert fired, from whether its condition ``held`` at each
    sample time (indexed by time, sorted): it fires at the first sample at which the condition
    has held since a sample at least ``hold`` seconds earlier, with no sample in between where
    it did not, and stops at the next sample where it does not hold; a spell still going at the
    last sample ends there."""
    times = held.index.to_numpy(dtype=float)
    found: list[tuple[float, float]] = []
    since: float | None = None
    firing: float | None = None
    for time, on in zip(times, held.to_numpy(dtype=bool), strict=True):
        if not on:
            if firing is not None:
                found.append((firing, time))
            since = firing = None
            continue
        since = time if since is None else since
        if firing is None and time - since >= hold:
            firing = time
    if firing is not None:
        found.append((firing, float(times[-1])))
    return found


def firing(
    metrics: pd.DataFrame, alerts: Sequence[Alert] = ALERTS, *, floors: bool = True
) -> pd.DataFrame:
    """When each alert would have fired over a run's metrics: one row per spell, ``alert``
    (string), ``start`` and ``end`` (float, hours from the run's start), in the order of
    ``alerts`` and then of time. ``floors=False`` evaluates the ratio rules without their
    volume floor, to show what the floor keeps quiet."""
    rows = [
        (alert.name, start / HOUR, end / HOUR)
        for alert in alerts
        for start, end in spells(alert.holds(metrics, floors=floors), alert.hold)
    ]
    frame = pd.DataFrame.from_records(rows, columns=["alert", "start", "end"])
    return frame.astype({"alert": "string", "start": "float64", "end": "float64"})


def summary(spelled: pd.DataFrame, alerts: Sequence[Alert] = ALERTS) -> pd.DataFrame:
    """One row per alert, in the order of ``alerts`` (those that never fired included): whether
    it ``fired`` (bool), how many separate ``spells`` it fired, the hour it first fired
    (``first_hour``, NaN if never) and the hours it spent firing (``firing_hours``), from
    :func:`firing`'s frame. Spells tell a steady alert from one that comes and goes."""
    names = pd.Index([alert.name for alert in alerts], dtype="string", name="alert")
    grouped = spelled.assign(hours=spelled["end"] - spelled["start"]).groupby("alert")
    first = grouped["start"].min().reindex(names)
    return pd.DataFrame(
        {
            "fired": names.isin(spelled["alert"]),
            "spells": grouped.size().reindex(names, fill_value=0).astype("int64"),
            "first_hour": first.astype("float64"),
            "firing_hours": grouped["hours"].sum().reindex(names, fill_value=0.0).astype("float64"),
        },
        index=names,
    )


def volumes(metrics: pd.DataFrame, alerts: Sequence[Alert] = ALERTS) -> pd.DataFrame:
    """For each rule with a volume floor, what its window held over a run beside that floor:
    ``window_minutes``, ``floor``, the ``median_volume`` and ``largest_volume`` at the sample
    times, the hour of the largest (``largest_hour``) and ``samples_at_floor``, how many samples'
    windows reached the floor. A ratio rule can only fire at those samples, so they tell how far
    a run (or a deployment of its size) is from ever hearing from the rule, whatever its ratio."""
    rows = []
    for alert in alerts:
        if alert.floor is None or alert.volume is None:
            continue
        counted = alert.volume(metrics, alert)
        rows.append(
            (alert.name, alert.window / MINUTE, alert.floor, counted.median(), counted.max(),
             counted.idxmax() / HOUR, int(counted.ge(alert.floor).sum()))
        )  # fmt: skip
    columns = ["alert", "window_minutes", "floor", "median_volume", "largest_volume"]
    frame = pd.DataFrame.from_records(rows, columns=[*columns, "largest_hour", "samples_at_floor"])
    floats = {name: "float64" for name in [*columns[1:], "largest_hour"]}
    return frame.astype({"alert": "string", **floats, "samples_at_floor": "int64"}).set_index(
        "alert"
    )


def fault_windows(scenario: Scenario) -> pd.DataFrame:
    """The scenario's faults that happen at set times, as ``fault`` (string), ``start`` and
    ``end`` (float, hours from the start): Stripe's, the store's and the webhook endpoint's
    outages, and the cache flushes at given hours (``start == end``). Faults at random times
    (error rates, lost answers, random flushes, crashes) have no window and are not listed."""
    faults = scenario.faults
    windows = [
        *(("Stripe down", a, b) for a, b in faults.gateway.outages),
        *(("store down", a, b) for a, b in faults.store.outages),
        *(("webhook endpoint down", a, b) for a, b in faults.webhooks.outages),
        *(("cache flushed", t, t) for t in faults.cache.flush_at),
    ]
    frame = pd.DataFrame.from_records(
        [(name, a / HOUR, b / HOUR) for name, a, b in windows], columns=["fault", "start", "end"]
    )
    return frame.astype({"fault": "string", "start": "float64", "end": "float64"})


#: Colours of the fault windows in :func:`plot_timeline` (one per kind of fault).
FAULT_COLOURS = {
    "Stripe down": "tab:red",
    "store down": "tab:purple",
    "webhook endpoint down": "tab:orange",
    "cache flushed": "tab:gray",
}
#: The spells' colours: firing as the rules are, and firing only without the volume floors.
FIRING, UNFLOORED = "tab:blue", "silver"


def plot_timeline(
    spelled: pd.DataFrame,
    faults: pd.DataFrame,
    ax: Axes,
    *,
    hours: tuple[float, float],
    sample: str,
    unfloored: pd.DataFrame | None = None,
    alerts: Sequence[Alert] = ALERTS,
) -> Axes:
    """One row per alert (every alert, the quiet ones too, so that silence is visible), a bar
    where it fired, between two ``hours`` of the run (the whole run, or a close-up of a fault);
    given ``unfloored`` (:func:`firing` with ``floors=False``), where it would have fired without
    its volume floor, in grey behind. The scenario's fault windows are shaded (a flush is a
    dotted line), so a reader sees which fault each spell follows. A spell one sample long, or
    a fault window of minutes in a view of days, is drawn as a thin bar, not lost for lack of
    width."""
    names = [alert.name for alert in alerts]
    first, last = hours
    tick = (last - first) / 400
    handles: list[Artist] = []
    for fault, group in faults.groupby("fault", sort=False):
        colour, label = FAULT_COLOURS.get(str(fault), "tab:gray"), str(fault)
        instants = bool((group["end"] == group["start"]).all())
        for start, end in zip(group["start"], group["end"], strict=True):
            if instants:
                ax.axvline(start, color=colour, linestyle=":", zorder=1)
            else:
                ax.axvspan(start, max(end, start + tick), color=colour, alpha=0.3, lw=0, zorder=1)
        handles.append(
            Line2D([], [], color=colour, linestyle=":", label=label)
            if instants
            else Patch(color=colour, alpha=0.3, label=label)
        )
    layers = [(unfloored, UNFLOORED, "fires only without its floor"), (spelled, FIRING, "fires")]
    for frame, colour, label in layers:
        if frame is None:
            continue
        for row, name in enumerate(names):
            mine = frame[frame["alert"] == name]
            spans = [(s, max(e - s, tick)) for s, e in zip(mine["start"], mine["end"], strict=True)]
            ax.broken_barh(spans, (row - 0.35, 0.7), color=colour, zorder=2)
        handles.append(Patch(color=colour, label=label))
    ax.set_yticks(np.arange(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(first, last)
    step = 24 if last - first > 48 else 1
    ax.set_xticks(np.arange(np.ceil(first / step), np.floor(last / step) + 1) * step)
    ax.set_xlabel("hours from the start" + (" (a tick a day)" if step == 24 else ""))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return titled(ax, "When each alert would have fired", sample)
