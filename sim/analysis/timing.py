"""Trigger timing: from a threshold crossing to the claim, the charge and the credits, and the
requests refused in that gap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .samples import error_bars, titled, with_share
from .scales import plain_symlog


def timing_summary(crossings: pd.DataFrame) -> pd.DataFrame:
    """Seconds from the crossing to each stage: count, median, 90th, 95th and 99th percentile,
    max.

    Percentiles rather than means, because a few crossings that wait out a cooldown or a slow
    payment would drag a mean far from what a typical user sees.
    """
    stages = {"claim": "to_claim_s", "charge": "to_charge_s", "credits land": "to_credit_s"}
    rows = {}
    for stage, column in stages.items():
        values = crossings[column].dropna()
        rows[stage] = {
            "crossings": len(values),
            "median_s": values.median(),
            "p90_s": values.quantile(0.9),
            "p95_s": values.quantile(0.95),
            "p99_s": values.quantile(0.99),
            "max_s": values.max(),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "stage"
    return out


def timing_by(
    crossings: pd.DataFrame, by: str, edges: Sequence[float], value: str = "to_credit_s"
) -> pd.DataFrame:
    """Crossings grouped into bins of column ``by`` (``[lo, hi)`` seconds): how long ``value``
    took, and how many requests were refused in the gap.

    Only crossings that reached ``value`` count: one whose card failed has no end to its gap, and
    its refusals belong to the failure analysis, not to the timing. ``with_refusals`` counts the
    crossings with at least one refused request, and ``with_refusals_pct`` is their share with its
    95% Wilson interval: a bin of a dozen crossings with none refused says little, and the
    interval says how little.

    Works for any timing column, so the same table answers "by payment latency" and "by webhook
    delay" (``<kind>_delay_s`` columns).
    """
    crossings = crossings[crossings[value].notna()]
    labels = [f"{lo:,g}-{hi:,g} s" for lo, hi in pairwise(edges)]
    bins = pd.cut(crossings[by], list(edges), labels=labels, right=False)
    grouped = crossings.groupby(bins, observed=False)
    refused = grouped["refused"].agg(lambda r: int((r > 0).sum()))
    out = pd.DataFrame(
        {
            "crossings": grouped.size(),
            "median_s": grouped[value].median(),
            "p90_s": grouped[value].quantile(0.9),
            "p95_s": grouped[value].quantile(0.95),
            "refused_per_crossing": grouped["refused"].mean(),
            "with_refusals": refused.astype("int64"),
        }
    )
    out = with_share(out, "with_refusals_pct", out["with_refusals"], out["crossings"], per=100)
    out.index = out.index.astype("string")
    out.index.name = by
    return out


def plot_timing(crossings: pd.DataFrame, ax: Axes, *, sample: str) -> Axes:
    """Cumulative share of crossings that reached each stage within t seconds.

    A symmetric-log time axis, so the many crossings claimed at once (0 s) and the few that wait
    hours for a cooldown both show. ``sample`` (:func:`~.samples.sample_size`) and the number of
    crossings go in the title.
    """
    stages = {"claimed": "to_claim_s", "charged": "to_charge_s", "credits landed": "to_credit_s"}
    for label, column in stages.items():
        values = np.sort(crossings[column].dropna().to_numpy())
        share = 100 * np.arange(1, len(values) + 1) / max(len(crossings), 1)
        _ = ax.step(values, share, where="post", label=label)
    longest = float(crossings[list(stages.values())].max().max())
    plain_symlog(ax, "x", linthresh=1.0, top=longest if math.isfinite(longest) else 1.0)
    ax.set_xlabel("time since the threshold crossing (seconds, symmetric log scale)")
    ax.set_ylabel("crossings that reached the stage (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    return titled(
        ax, "Time from threshold crossing to each stage", f"{sample}; {len(crossings):,} crossings"
    )


def plot_refusals(table: pd.DataFrame, ax: Axes, *, sample: str, what: str) -> Axes:
    """The share of crossings with a refused request, per bin of a :func:`timing_by` table, with
    its 95% interval and ``k/n`` crossings written on each bar.

    A bin where none was refused still shows its interval's upper bound, and an empty bin says
    so, so a chart of zeros reads as "none refused in n crossings", never as a blank.
    ``what`` names the binned column with its unit for the x axis.
    """
    labels = [str(i) for i in table.index]
    share = table["with_refusals_pct"].fillna(0).to_numpy(dtype="float64")
    _ = ax.bar(labels, share, yerr=error_bars(table, "with_refusals_pct"), capsize=3,
               color="tab:red", alpha=0.7, ecolor="black")  # fmt: skip
    high = table["with_refusals_pct_ci_high"].fillna(0).to_numpy(dtype="float64")
    tops = np.maximum(share, high)
    for x, (k, n) in enumerate(zip(table["with_refusals"], table["crossings"], strict=True)):
        text = f"{k}/{n}" if n else "no\ncrossings"
        _ = ax.annotate(text, (x, tops[x]), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylim(0, min(100.0, max(float(high.max()), 1.0)) * 1.12)
    ax.set_xlabel(what)
    ax.set_ylabel("crossings with a refused request (%, 95% CI)")
    ax.tick_params(axis="x", labelrotation=30)
    total = int(table["crossings"].sum())
    return titled(
        ax, "Crossings with a request refused before credits landed",
        f"{sample}; {total:,} crossings; bars: refused/crossings",
    )  # fmt: skip
