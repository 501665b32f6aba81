"""The billing's Prometheus metrics over a run (``Results.metrics``, from
``run(..., metrics_interval=300)``), read the way the alerting rules read them.

Counters are cumulative, so what a rule looks at is an *increase* over a window, PromQL's
``increase(name{...}[window])``: :func:`increase` computes it at every sample time, per label
value or summed; :func:`total` sums it over some label values (a rule's volume floor);
:func:`share` divides one part of it by the whole (two ``rate()`` calls over one window divide
as their increases do); :func:`failure_rate` is the share of card answers that were declines or
authentication requests (``TopupPaymentFailureRateHigh``); and :func:`histogram_quantile` reads
a histogram's buckets as PromQL's function of that name does. :mod:`sim.analysis.alerts` builds
the rules of ``deploy/prometheus/alerts.yml`` from these, to show when they would have fired in
a scenario such as ``chaos``.

Each is the difference between two samples, without the extrapolation to the window's edges
that Prometheus adds to ``increase``: near a threshold the two can disagree by a sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def labels_of(text: str) -> dict[str, str]:
    """``outcome="declined",decline_code="x"`` as a dict."""
    return dict(_LABEL.findall(text))


def increase(
    metrics: pd.DataFrame,
    name: str,
    window: float,
    *,
    by: str | None = None,
    where: Mapping[str, str] | None = None,
) -> pd.DataFrame | pd.Series:
    """How much counter ``name`` grew over the ``window`` seconds before each sample time, of
    the series whose labels match ``where`` (exact values): summed over them (a Series by
    time), or per value of label ``by`` (a DataFrame, one column each). A series not counted yet
    counts 0, as a counter Prometheus has not seen."""
    rows = metrics[metrics["name"] == name]
    times = pd.Index(sorted(metrics["time"].unique()), name="time")
    parsed = [labels_of(str(text)) for text in rows["labels"]]
    keep = [all(found.get(k) == v for k, v in (where or {}).items()) for found in parsed]
    rows = rows[keep]
    keys = [str(p.get(by, "")) if by else "" for p, k in zip(parsed, keep, strict=True) if k]
    if rows.empty:
        return pd.Series(0.0, index=times) if by is None else pd.DataFrame(index=times)
    values = (
        rows.assign(series=rows["labels"].astype(str), key=keys)
        .pivot_table(index="time", columns=["key", "series"], values="value", aggfunc="sum")
        .reindex(times)
        .ffill()
        .fillna(0.0)
    )
    before = values.reindex(times - window, method="ffill").fillna(0.0).set_axis(times)
    grown = (values - before).T.groupby(level="key").sum().T
    grown.columns.name = by
    return grown.sum(axis=1) if by is None else grown


#: The gateway's answers to a charge that say something about the card (``transient`` is an
#: error or a lost answer, not an answer), and those of them that failed.
CARD_ANSWERS = ("succeeded", "declined", "requires_action")
FAILED_ANSWERS = ("declined", "requires_action")


def total(
    metrics: pd.DataFrame,
    name: str,
    window: float,
    *,
    by: str | None = None,
    of: Sequence[str] | None = None,
) -> pd.Series:
    """How much counter ``name`` grew over the ``window`` seconds before each sample time, summed
    over its series whose label ``by`` is one of ``of`` (every series when ``of`` is None): the
    volume a rule's ``sum(increase(...)) >= floor`` clause counts."""
    if of is None:
        return increase(metrics, name, window)
    grown = increase(metrics, name, window, by=by)
    return grown.reindex(columns=list(of), fill_value=0.0).sum(axis=1)


def share(
    metrics: pd.DataFrame,
    name: str,
    window: float,
    *,
    by: str,
    part: Sequence[str],
    of: Sequence[str] | None = None,
) -> pd.Series:
    """At each sample time, the share of counter ``name``'s growth over the ``window`` before it
    that went to series whose label ``by`` is in ``part``, out of the growth of those whose
    label is in ``of`` (every series when None); NaN where nothing grew, as PromQL's 0 / 0 is."""
    whole = total(metrics, name, window, by=by, of=of)
    failed = total(metrics, name, window, by=by, of=part)
    return failed / whole.where(whole > 0)


def failure_rate(metrics: pd.DataFrame, window: float = 1_800.0) -> pd.Series:
    """At each sample time, the share of card answers in the ``window`` before it that were
    declines or authentication requests (transient errors left out, as in the rule); NaN where
    there were none."""
    rate = share(
        metrics, "topup_charges_total", window, by="outcome", part=FAILED_ANSWERS, of=CARD_ANSWERS
    )
    return rate.rename("failure_rate")


def histogram_quantile(metrics: pd.DataFrame, name: str, q: float, window: float) -> pd.Series:
    """PromQL's ``histogram_quantile(q, sum by (le) (rate(<name>_bucket[window])))`` at each
    sample time: the bucket holding the ``q``-quantile of what was observed in the window, and a
    straight line between its bounds (the first bucket starts at 0); the largest finite bound when
    the quantile falls past it; NaN where nothing was observed. A rate and an increase over one
    window differ by a constant factor, which a quantile does not see."""
    buckets = increase(metrics, f"{name}_bucket", window, by="le")
    if buckets.empty:
        return pd.Series(np.nan, index=buckets.index)
    bounds = np.array([float(le) for le in buckets.columns])  # "+Inf" reads as inf
    order = np.argsort(bounds)
    bounds, counts = bounds[order], buckets.to_numpy()[:, order]
    observed = counts[:, -1]
    rank = q * observed
    found = np.minimum((counts < rank[:, None]).sum(axis=1), len(bounds) - 1)
    rows = np.arange(len(counts))
    below = np.where(found > 0, counts[rows, found - 1], 0.0)
    lower = np.where(found > 0, bounds[found - 1], 0.0)
    upper = bounds[found]
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = lower + (upper - lower) * (rank - below) / (counts[rows, found] - below)
    value = np.where(np.isinf(upper), bounds[-2] if len(bounds) > 1 else np.nan, inside)
    return pd.Series(np.where(observed > 0, value, np.nan), index=buckets.index)
