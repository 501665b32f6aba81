"""How many users a figure rests on, and how sure it is: the caption and intervals every chart
and table of the notebooks carries.

A run is a sample of users, often a small one in the notebooks (tens of users, so that nbval runs
in seconds). A share such as "users who ran dry, per 1,000" moves by 50 per 1,000 with one user
of twenty, so a figure that shows it without its sample size and its 95% interval invites a
reader to read noise as a finding. The intervals come from :mod:`sim.stats` (Wilson for shares,
mean +- 1.96 standard errors for means), the same ones the summary and the threshold review use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..results import quantity
from ..stats import mean_interval, wilson


def sample_size(summary: pd.DataFrame) -> str:
    """What a run's summary (or a sweep's grid) rests on, for a figure's title:
    ``"baseline: 120 users, 10 days"``, or ``"cooldown_stress: 20 users, 3 days per run, 7 runs"``
    for several runs of one size.

    Runs of different sizes have no one caption: each needs its own figure.
    """
    sizes = summary[["scenario", "users", "days"]].drop_duplicates()
    if len(sizes) != 1:
        raise ValueError(f"runs of {len(sizes)} different sizes: caption each on its own")
    scenario, users, days = sizes.iloc[0]
    text = f"{scenario}: {quantity(users, 'users')}, {quantity(days, 'days')}"
    return text if len(summary) == 1 else f"{text} per run, {quantity(len(summary), 'runs')}"


def titled(ax: Axes, title: str, sample: str) -> Axes:
    """Give ``ax`` its title with the sample it rests on on a second line, in brackets."""
    ax.set_title(f"{title}\n({sample})")
    return ax


def with_share(
    frame: pd.DataFrame, column: str, successes: pd.Series, n: pd.Series | int, per: float
) -> pd.DataFrame:
    """``frame`` with ``column`` = ``successes / n * per`` and its 95% Wilson interval in
    ``<column>_ci_low`` and ``<column>_ci_high`` (NaN where ``n`` < 2).

    ``per`` is 100 for a percentage, 1,000 for "per 1,000 users".
    """
    counts = pd.Series(successes, index=frame.index).astype("int64")
    sizes = pd.Series(n, index=frame.index).astype("int64")
    bounds = [wilson(int(k), int(size)) for k, size in zip(counts, sizes, strict=True)]
    out = frame.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out[column] = per * counts / sizes.where(sizes > 0)
    out[f"{column}_ci_low"] = [per * low for low, _ in bounds]
    out[f"{column}_ci_high"] = [per * high for _, high in bounds]
    return out


def with_mean(
    frame: pd.DataFrame, column: str, values: pd.Series, by: pd.Series, scale: float = 1.0
) -> pd.DataFrame:
    """``frame`` (indexed by the groups of ``by``) with ``column`` = the mean of ``values`` per
    group times ``scale``, and its 95% interval (mean +- 1.96 standard errors, across the
    group's users) in ``<column>_ci_low`` and ``<column>_ci_high``."""
    grouped = values.groupby(by)
    bounds = {group: mean_interval(part.to_numpy(dtype="float64")) for group, part in grouped}
    out = frame.copy()
    out[column] = grouped.mean().reindex(out.index) * scale
    out[f"{column}_ci_low"] = [bounds[g][0] * scale for g in out.index]
    out[f"{column}_ci_high"] = [bounds[g][1] * scale for g in out.index]
    return out


def error_bars(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Matplotlib's ``yerr``/``xerr`` for ``column`` from its ``_ci_low``/``_ci_high`` columns:
    distances below and above each value (zero where there is no interval)."""
    value = frame[column].to_numpy(dtype="float64")
    low = frame[f"{column}_ci_low"].to_numpy(dtype="float64")
    high = frame[f"{column}_ci_high"].to_numpy(dtype="float64")
    below = np.nan_to_num(value - low, nan=0.0)
    above = np.nan_to_num(high - value, nan=0.0)
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])
