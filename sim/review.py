"""The threshold review: a sweep's figures as product reads them, and a recommendation that
states its rule.

:func:`review_table` turns a sweep frame into one row per setting with monthly rates, each
headline figure's 95% interval (``sim.stats``) and the number of users it rests on.
:func:`recommend` picks a setting per segment under a :class:`Rule` shown to the reader: an
objective to minimise and constraints to respect. It says whether the constraints were met
(and, when none was, which setting comes closest), by how much the choice beats the next setting
outside its interval, and which settings are tied with it within the 95% intervals.
:func:`heatmap` draws a figure of the table with each cell's interval written in it, ties with
the best outlined and the sample size in the title: a heat map without its uncertainty invites
reading noise as a difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from .stats import INTERVALS, wilson

#: The review table's figures for a reader: column -> (what it counts, its unit, its format).
#: Revenue's unit names the currency with ``{currency}``.
FIGURES: Mapping[str, tuple[str, str, str]] = {
    "dry_per_1000_users": ("Users who ran dry", "users per 1,000", "{:,.0f}"),
    "dry_hours_per_user": ("Hours dry", "hours per user", "{:,.2f}"),
    "left_per_1000_users": ("Users who left", "users per 1,000", "{:,.0f}"),
    "topups_per_user_month": ("Top-ups", "per user per month", "{:,.1f}"),
    "failed_per_1000_month": ("Failed charges", "per 1,000 users per month", "{:,.0f}"),
    "revenue_per_1000_month": ("Revenue", "{currency} per 1,000 users per month", "{:,.0f}"),
}


#: The review's figures with a 95% interval: the summary's, and users who left.
REVIEW_INTERVALS = (*INTERVALS, "left_per_1000_users")


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
    # Users who left after running dry (a scenario's churn reaction): a share of users, with its
    # Wilson interval like "ran dry" (0 with no churn in the scenario, and an interval still).
    left = [
        wilson(int(c), int(n)) for c, n in zip(grid["users_churned"], grid["users"], strict=True)
    ]
    out["left_per_1000_users"] = 1000 * grid["users_churned"] / grid["users"]
    out["left_per_1000_users_ci_low"] = [1000 * low for low, _ in left]
    out["left_per_1000_users_ci_high"] = [1000 * high for _, high in left]
    out["failed_per_1000_month"] = grid["failed_topups"] * per_1000_month
    out["revenue_per_1000_month"] = grid[f"revenue_{currency}"] * per_1000_month
    out["users"] = grid["users"]
    out["days"] = grid["days"]
    return out


def interval(table: pd.DataFrame, figure: str) -> tuple[pd.Series, pd.Series]:
    """``figure``'s 95% interval per row; the value itself at both ends when the table has none
    (a figure without an interval is compared as exact)."""
    value = table[figure]
    return table.get(f"{figure}_ci_low", value), table.get(f"{figure}_ci_high", value)


def ties(table: pd.DataFrame, figure: str) -> pd.Series:
    """Which rows cannot be told from the lowest ``figure``: their 95% interval reaches below
    the top of the lowest row's (the lowest row included)."""
    value = table[figure]
    low, high = interval(table, figure)
    best_high = high[value == value.min()].min()
    return low <= best_high


def interval_text(table: pd.DataFrame, figure: str, fmt: str = "{:,.0f}", sep: str = " "
                  ) -> pd.Series:  # fmt: skip
    """Each row's ``figure`` with its 95% interval, as read aloud: ``33 (6 to 167)``; the value
    alone when the table has no interval for it. ``sep`` goes between the value and the
    bracket (a newline in a heat map's cell)."""
    value = table[figure]
    if f"{figure}_ci_low" not in table.columns:
        return value.map(fmt.format)
    low, high = interval(table, figure)
    return pd.Series(
        [_with_interval(v, lo, hi, fmt, sep) for v, lo, hi in zip(value, low, high, strict=True)],
        index=table.index,
    )


def _with_interval(value: float, low: float, high: float, fmt: str, sep: str) -> str:
    text = fmt.format(value)
    if pd.isna(low) or pd.isna(high):
        return text
    return f"{text}{sep}({fmt.format(low)} to {fmt.format(high)})"


def readable(table: pd.DataFrame, settings: Sequence[str]) -> pd.DataFrame:
    """The review table as a reader takes it in: ``settings``, then each of :data:`FIGURES` as
    text with its 95% interval (``33 (6 to 167)``) in its own format."""
    out = table[list(settings)].copy()
    for figure, (_, _, fmt) in FIGURES.items():
        out[figure] = interval_text(table, figure, fmt)
    return out


def interval_pivot(
    table: pd.DataFrame,
    figure: str,
    fmt: str = "{:,.0f}",
    rows: str = "threshold",
    columns: str = "amount",
    sep: str = " ",
) -> pd.DataFrame:
    """:func:`interval_text` laid out ``rows`` x ``columns``, as a heat map's cells read."""
    return pivot(table.assign(_text=interval_text(table, figure, fmt, sep)), "_text", rows, columns)


def sample_size(table: pd.DataFrame) -> str:
    """How many users for how long every row rests on (``40 users x 7 days``). A table whose
    rows differ in size is refused: one figure would then claim a precision others lack."""
    sizes = table[["users", "days"]].drop_duplicates()
    if len(sizes) != 1:
        raise ValueError(f"rows of different sizes: {sizes.to_dict('records')}")
    users, days = sizes.iloc[0]
    return f"{int(users):,} users x {float(days):g} days"


def precision(table: pd.DataFrame) -> pd.DataFrame:
    """How precise the table's figures are: for each figure with an interval, half the width of
    its 95% interval (the "+-") in the median row and in the widest, in the figure's unit, beside
    the median value, so that a reader sees which differences the data can resolve."""
    rows = {}
    for figure in REVIEW_INTERVALS:
        if f"{figure}_ci_low" not in table.columns:
            continue
        low, high = interval(table, figure)
        half = (high - low) / 2
        rows[figure] = {
            "median_value": float(table[figure].median()),
            "median_half_width": float(half.median()),
            "widest_half_width": float(half.max()),
            "settings": len(table),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def pivot(table: pd.DataFrame, value: str, rows: str = "threshold", columns: str = "amount"
          ) -> pd.DataFrame:  # fmt: skip
    """``value`` laid out ``rows`` x ``columns`` (each pair must occur once: filter first)."""
    return table.pivot(index=rows, columns=columns, values=value)


def plot_heatmap(
    grid: pd.DataFrame,
    ax: Axes,
    *,
    title: str,
    label: str,
    fmt: str = "{:,.0f}",
    text: pd.DataFrame | None = None,
    outlined: pd.DataFrame | None = None,
    hatched: pd.DataFrame | None = None,
    starred: tuple[object, object] | None = None,
    boxed: tuple[object, object] | None = None,
) -> Axes:
    """Draw a pivot as a heat map with each cell's value written in it and a labelled colour bar;
    a pivot with one value in every cell is drawn flat, without a colour bar, and says so in its
    title (a colour scale would spread noise-sized steps over the whole palette).

    ``text`` (a pivot of strings, same shape) replaces the written values, e.g. with their
    intervals. ``outlined`` and ``hatched`` (pivots of booleans) draw a thick white frame round
    cells (e.g. tied with the best) and a hatch over cells (e.g. over a rule's limits);
    ``starred`` and ``boxed`` (a row and column label) mark one cell with a star (e.g. the
    recommendation) and a dashed frame (e.g. the setting being looked at).
    """
    values = grid.to_numpy(dtype="float64")
    finite = values[np.isfinite(values)]
    constant = finite.size > 0 and bool(finite.min() == finite.max())
    if constant:  # a colour scale would paint noise-sized steps on one value: one flat grey
        _ = ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1, aspect="auto",
                      origin="lower")  # fmt: skip
        title += f"\nthe same in every cell: {fmt.format(finite[0])} {label}"
    else:
        image = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
        ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_xticks(range(grid.shape[1]), [f"{c:,}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{r:,}" for r in grid.index])
    ax.set_xlabel(f"{grid.columns.name} (credits)")
    ax.set_ylabel(f"{grid.index.name} (credits)")
    ax.set_title(title)
    middle = np.nanmean(values) if np.isfinite(values).any() else 0.0
    words = None if text is None else text.to_numpy()
    for (i, j), v in np.ndenumerate(values):
        written = fmt.format(v) if words is None else str(words[i, j])
        _ = ax.text(j, i, written, ha="center", va="center", fontsize=9,
                    color="black" if constant or v > middle else "white")  # fmt: skip
    for mask, style in ((outlined, _OUTLINE), (hatched, _HATCH)):
        if mask is not None:
            for i, j in zip(*np.nonzero(mask.to_numpy(dtype=bool)), strict=True):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, **style))
    if boxed is not None:
        i, j = grid.index.get_loc(boxed[0]), grid.columns.get_loc(boxed[1])
        ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, **_BOX))
    if starred is not None:
        i, j = grid.index.get_loc(starred[0]), grid.columns.get_loc(starred[1])
        _ = ax.plot(j - 0.38, i + 0.3, marker="*", markersize=16, color="orange",
                    markeredgecolor="black")  # fmt: skip
    return ax


#: How :func:`plot_heatmap` draws its marks.
_OUTLINE = {"fill": False, "edgecolor": "white", "linewidth": 3}
_HATCH = {"fill": False, "edgecolor": "grey", "hatch": "//", "linewidth": 0}
_BOX = {"fill": False, "edgecolor": "red", "linewidth": 2, "linestyle": "--"}


def heatmap(
    table: pd.DataFrame,
    figure: str,
    ax: Axes,
    *,
    title: str,
    label: str,
    fmt: str = "{:,.0f}",
    rows: str = "threshold",
    columns: str = "amount",
    outline_ties: bool = False,
    **marks: object,
) -> Axes:
    """``figure`` of a review table as a heat map ``rows`` x ``columns`` (filter first), each
    cell with its 95% interval when the table has one, the sample size under the title.

    A figure without an interval (failed charges and revenue are totals over the users, with
    no spread per user to build one from) says so under the title rather than look exact.
    With ``outline_ties``, cells whose interval overlaps the lowest cell's are outlined: the
    data cannot tell them from the best. Other ``marks`` go to :func:`plot_heatmap`.
    """
    text = interval_pivot(table, figure, fmt, rows, columns, sep="\n")
    subtitle = f"{sample_size(table)} per setting"
    if f"{figure}_ci_low" not in table.columns:
        subtitle += "; no interval for this figure"
    if outline_ties:
        marks["outlined"] = pivot(table.assign(_tied=ties(table, figure)), "_tied", rows, columns)
        subtitle += "; outlined: tied with the lowest"
    return plot_heatmap(
        pivot(table, figure, rows, columns), ax, title=f"{title}\n{subtitle}", label=label,
        fmt=fmt, text=text, **marks,  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """What a recommendation minimises, and what it must respect.

    ``objective`` (a review-table column) is minimised; a setting is *feasible* when it tops up
    at most ``max_topups_per_month`` times per user and fails at most
    ``max_failed_per_1000_month`` charges per 1,000 users per month. The feasible setting with
    the lowest objective is chosen (on equal values the smallest amount, the least money asked at
    once, then the lowest threshold). Settings whose 95% interval overlaps the chosen one's are
    *tied* with it: the data cannot tell them apart, so they are listed beside the choice rather
    than passed over in silence. (A rule that took a secondary criterion among the tied could
    pick a setting whose own figure is clearly worse, 125 dry per 1,000 over 25, on wide
    intervals: the point estimate is the best single guess, and the tie says how sure it is.)
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
            "The setting with the lowest value wins (on equal values the smallest amount, then "
            "the lowest threshold); settings whose 95% intervals overlap its interval are tied "
            "with it and listed. When no setting meets the limits, the one that exceeds them "
            "least is shown as the closest."
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


def standing(options: pd.DataFrame, rule: Rule, settings: Sequence[str] = ("threshold", "amount")
             ) -> pd.DataFrame:  # fmt: skip
    """Each setting of one segment under ``rule``, one row each (``options``' index):
    ``excess`` over the limits (0: feasible), ``tied`` (its objective's interval overlaps the
    best feasible setting's; when none is feasible, only the chosen one), and ``chosen`` (the
    setting the rule picks: the feasible one with the lowest objective, on equal values the
    smallest amount, then the lowest ``settings``; when none is feasible, the one that exceeds
    the limits least)."""
    excess = rule.excess(options)
    feasible = excess == 0
    order = ["amount", *(s for s in settings if s != "amount")]
    if feasible.any():
        tied = ties(options[feasible], rule.objective).reindex(options.index, fill_value=False)
        chosen = options[feasible].sort_values([rule.objective, *order], kind="stable").index[0]
    else:
        ranked = options.assign(_excess=excess).sort_values(
            ["_excess", rule.objective, *order], kind="stable"
        )  # fmt: skip
        chosen = ranked.index[0]
        tied = pd.Series(options.index == chosen, index=options.index)
    return pd.DataFrame(
        {"excess": excess, "tied": tied.astype(bool), "chosen": options.index == chosen},
        index=options.index,
    )


def _choose(options: pd.DataFrame, settings: Sequence[str], rule: Rule) -> dict[str, object]:
    """One segment's recommendation (see :func:`recommend`)."""
    value = options[rule.objective]
    low, high = interval(options, rule.objective)
    ranks = standing(options, rule, settings)
    met = bool((ranks["excess"] == 0).any())
    chosen = ranks.index[ranks["chosen"]][0]
    others = options[(ranks["excess"] == 0) & ~ranks["tied"]]
    margin = float(others[rule.objective].min() - value[chosen]) if len(others) else math.nan
    row = options.loc[chosen]
    tied_with = [
        _setting(options.loc[i], settings) for i in ranks.index[ranks["tied"]] if i != chosen
    ]
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
