"""The billing's Prometheus metrics over a run (``Results.metrics``, from
``run(..., metrics_interval=300)``), read the way the alerting rules read them.

Counters are cumulative, so what a rule looks at is an *increase* over a window, PromQL's
``increase(name{...}[window])``: :func:`increase` computes it at every sample time, per label
value or summed, and :func:`failure_rate` the share of card answers that were declines or
authentication requests (``TopupPaymentFailureRateHigh``). With them a notebook shows when the
rules of ``deploy/prometheus/alerts.yml`` would have fired in a scenario such as ``chaos``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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


def failure_rate(metrics: pd.DataFrame, window: float = 1_800.0) -> pd.Series:
    """At each sample time, the share of card answers in the ``window`` before it that were
    declines or authentication requests (transient errors left out, as in the rule); NaN where
    there were none."""
    outcomes = ["succeeded", "declined", "requires_action"]
    answers = increase(metrics, "topup_charges_total", window, by="outcome")
    answers = answers.reindex(columns=outcomes, fill_value=0.0)
    failed = answers["declined"] + answers["requires_action"]
    total = answers.sum(axis=1)
    return (failed / total.where(total > 0)).rename("failure_rate")
