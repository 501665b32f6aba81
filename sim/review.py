"""The threshold review: a sweep's figures as product reads them, and a recommendation that
states its rule.

:func:`review_table` turns a sweep frame into one row per setting with monthly rates, each
headline figure's 95% interval (``sim.stats``) and the number of users it rests on.
:func:`recommend` picks a setting per segment under a :class:`Rule` shown to the reader: an
objective to minimise and constraints to respect. It says whether the constraints were met
(and, when none was, which setting comes closest), by how much the choice beats the next setting
outside its interval, and which settings are tied with it within the 95% intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .stats import INTERVALS


def review_table(grid: pd.DataFrame, currency: str) -> pd.DataFrame:
    """A sweep's summaries as product reads them: one row per grid point, rates per month.

    The grid's dotted columns keep their last part (``auto_topup.threshold`` -> ``threshold``).
    Failed charges and revenue are per 1,000 users per month, so populations and run lengths of
    any size compare; revenue is in major units of ``currency``. Each headline figure keeps its
    95% interval when the sweep has one, and ``users`` says how many users each row rests on.
    """
    keys = [c for c in grid.columns if "." in c]
    out = grid[keys].rename(columns={k: k.rsplit(".", 1)[1] for k in keys})
    per_1000_month = 1000 / grid["users"] / (grid["days"] / 30)
    for figure in INTERVALS:
        out[figure] = grid[figure]
        for end in ("ci_low", "ci_high"):
            if f"{figure}_{end}" in grid.columns:
                out[f"{figure}_{end}"] = grid[f"{figure}_{end}"]
    out["failed_per_1000_month"] = grid["failed_topups"] * per_1000_month
    out["revenue_per_1000_month"] = grid[f"revenue_{currency}"] * per_1000_month
    out["users"] = grid["users"]
    return out


def pivot(table: pd.DataFrame, value: str, rows: str = "threshold", columns: str = "amount"
          ) -> pd.DataFrame:  # fmt: skip
    """``value`` laid out ``rows`` x ``columns`` (each pair must occur once: filter first)."""
    return table.pivot(index=rows, columns=columns, values=value)


def plot_heatmap(grid: pd.DataFrame, ax: Axes, *, title: str, label: str, fmt: str = "{:,.0f}"
                 ) -> Axes:  # fmt: skip
    """Draw a pivot as a heat map with each cell's value written in it and a labelled colour bar."""
    values = grid.to_numpy(dtype="float64")
    image = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_xticks(range(grid.shape[1]), [f"{c:,}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{r:,}" for r in grid.index])
    ax.set_xlabel(f"{grid.columns.name} (credits)")
    ax.set_ylabel(f"{grid.index.name} (credits)")
    ax.set_title(title)
    middle = np.nanmean(values) if np.isfinite(values).any() else 0.0
    for (i, j), v in np.ndenumerate(values):
        _ = ax.text(j, i, fmt.format(v), ha="center", va="center",
                    color="black" if v > middle else "white")  # fmt: skip
    return ax


@dataclass(frozen=True)
class Rule:
    """What a recommendation minimises, and what it must respect.

    ``objective`` (a review-table column) is minimised; a setting is *feasible* when it tops up
    at most ``max_topups_per_month`` times per user and fails at most
    ``max_failed_per_1000_month`` charges per 1,000 users per month. Settings whose objective's
    95% interval overlaps the best one's are *tied*: the data cannot tell them apart. Among tied
    settings the smallest amount wins (the least money asked at once), then the lowest
    threshold.
    """

    objective: str = "dry_per_1000_users"
    max_topups_per_month: float = 4.0
    max_failed_per_1000_month: float = math.inf

    def limits(self) -> str:
        """The constraints in plain words."""
        limits = [f"at most {self.max_topups_per_month:g} top-ups per user per month"]
        if math.isfinite(self.max_failed_per_1000_month):
            limits.append(
                f"at most {self.max_failed_per_1000_month:g} failed charges per 1,000 users a month"
            )
        return " and ".join(limits)

    def text(self) -> str:
        """The rule in plain words, to show above the result."""
        return (
            f"Minimise {self.objective.replace('_', ' ')}, subject to {self.limits()}. "
            "Settings whose 95% intervals overlap the best one's are tied; among them the "
            "smallest amount wins, then the lowest threshold. When no setting meets the limits, "
            "the one that exceeds them least is shown as the closest."
        )

    def excess(self, table: pd.DataFrame) -> pd.Series:
        """How far each row is over the limits, as a sum of relative excesses (0: feasible)."""
        over = (table["topups_per_user_month"] / self.max_topups_per_month - 1).clip(lower=0)
        if math.isfinite(self.max_failed_per_1000_month):
            limit = max(self.max_failed_per_1000_month, 1e-9)
            over = over + (table["failed_per_1000_month"] / limit - 1).clip(lower=0)
        return over


def recommend(
    table: pd.DataFrame,
    by: str,
    settings: Sequence[str] = ("threshold", "amount"),
    rule: Rule | None = None,
) -> pd.DataFrame:
    """The setting ``rule`` picks for each value of ``by`` (a user segment), one row each.

    Columns: the chosen ``settings``; the objective with its interval; top-ups, failed charges
    and revenue; ``constraints_met`` (False: no setting met them, the closest is shown);
    ``tied`` (how many other feasible settings are within the intervals) and ``tied_with``
    (which); ``margin`` (how much lower the objective is than the best setting outside the tie,
    NaN when every setting is tied); ``users`` behind each figure; ``recommendation`` in words.
    """
    rule = rule or Rule()
    rows = []
    for segment, options in table.groupby(by, sort=False):
        rows.append(_choose(options.reset_index(drop=True), settings, rule) | {by: segment})
    return pd.DataFrame(rows).set_index(by)


def _choose(options: pd.DataFrame, settings: Sequence[str], rule: Rule) -> dict[str, object]:
    """One segment's recommendation (see :func:`recommend`)."""
    value = options[rule.objective]
    low = options.get(f"{rule.objective}_ci_low", value)
    high = options.get(f"{rule.objective}_ci_high", value)
    excess = rule.excess(options)
    met = bool((excess == 0).any())
    order = ["amount", *(s for s in settings if s != "amount")]
    if met:
        pool = options[excess == 0]
        best = pool[rule.objective].min()
        best_high = high[pool.index][pool[rule.objective] == best].min()
        tied = pool[low[pool.index] <= best_high]
        chosen = tied.sort_values(order, kind="stable").index[0]
        others = pool.drop(index=tied.index)
        margin = float(others[rule.objective].min() - value[chosen]) if len(others) else math.nan
    else:
        ranked = options.assign(_excess=excess).sort_values(
            ["_excess", rule.objective, *order], kind="stable"
        )  # fmt: skip
        chosen, tied, margin = ranked.index[0], options.loc[[ranked.index[0]]], math.nan
    row = options.loc[chosen]
    tied_with = [_setting(options.loc[i], settings) for i in tied.index if i != chosen]
    result: dict[str, object] = {s: row[s] for s in settings}
    result |= {
        rule.objective: row[rule.objective],
        f"{rule.objective}_ci_low": low[chosen],
        f"{rule.objective}_ci_high": high[chosen],
        "topups_per_user_month": row["topups_per_user_month"],
        "failed_per_1000_month": row["failed_per_1000_month"],
        "revenue_per_1000_month": row["revenue_per_1000_month"],
        "constraints_met": met,
        "tied": len(tied_with),
        "tied_with": "; ".join(tied_with),
        "margin": margin,
        "users": row.get("users", math.nan),
    }
    result["recommendation"] = _describe(result, settings, rule)
    return result


_NAMES: Mapping[str, str] = {
    "threshold": "top up below {:,.0f} credits",
    "amount": "buy {:,.0f} credits",
    "cooldown_hours": "wait {:g} h between charges",
}


def _setting(row: pd.Series | Mapping[str, object], settings: Sequence[str]) -> str:
    return ", ".join(_NAMES[s].format(row[s]) for s in settings if s in _NAMES)


def _describe(result: Mapping[str, object], settings: Sequence[str], rule: Rule) -> str:
    """The recommendation in plain words: the setting, its figures with their interval and
    sample size, whether it met the limits, and what it is tied with."""
    objective = rule.objective
    figure = f"{float(result[objective]):,.0f} {objective.replace('_', ' ')}"  # type: ignore[arg-type]
    low, high = result[f"{objective}_ci_low"], result[f"{objective}_ci_high"]
    if not (pd.isna(low) or pd.isna(high)):
        figure += f" (95% CI {float(low):,.0f} to {float(high):,.0f})"  # type: ignore[arg-type]
    text = (
        f"{_setting(result, settings)}: {figure}, "
        f"{float(result['topups_per_user_month']):.1f} top-ups a month each"  # type: ignore[arg-type]
    )
    if not pd.isna(result["users"]):
        text += f", from {int(result['users']):,} users"  # type: ignore[call-overload]
    if not result["constraints_met"]:
        text += f". No setting meets the limits ({rule.limits()}); this one comes closest"
    if result["tied"]:
        text += f". Tied within the 95% intervals with {result['tied']} other setting(s)"
    elif not pd.isna(result["margin"]):
        text += f". Beats the next setting by {float(result['margin']):,.0f}"  # type: ignore[arg-type]
    return text + "."
