"""The threshold review's explorer: product picks a segment, a setting and a rule and reads, at
once and from the saved grid (:mod:`sim.review_data`), that setting's figures with their 95%
intervals and sample size, a heat map of the segment, and what the rule recommends.

The answers are pure functions of the review table and the controls' values (:class:`Controls`
-> :func:`view`), tested without a browser; :class:`Explorer` only lays out ipywidgets, calls
:func:`view` when a control changes, and re-runs one point on demand (:func:`rerun`) at a size
given in the page, with a bar of simulated days. Notebook 04 shows it in its last cell, and
``make review`` serves that notebook as a page (Voilà).
"""

from __future__ import annotations

import base64
import html
import io
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure

from . import review, review_data
from .runner import run
from .scenario import load_scenario

#: What a rule may minimise (review-table columns with an interval), as a reader names it.
OBJECTIVES: Mapping[str, str] = {
    "dry_per_1000_users": "users who ran dry per 1,000",
    "dry_hours_per_user": "hours dry per user",
}
#: The settings a point has; the heat maps are threshold x amount at one cooldown.
SETTINGS = ("threshold", "amount", "cooldown_hours")


@dataclass(frozen=True)
class Controls:
    """What the reader has chosen: a segment, one setting to look at, and the rule."""

    segment: str
    threshold: int
    amount: int
    cooldown_hours: float
    objective: str = "dry_per_1000_users"
    max_topups_per_month: float = 4.0
    max_failed_per_1000_month: float = math.inf

    @property
    def rule(self) -> review.Rule:
        """The rule these controls state (see :class:`sim.review.Rule`)."""
        return review.Rule(self.objective, self.max_topups_per_month,
                           self.max_failed_per_1000_month)  # fmt: skip


@dataclass(frozen=True)
class View:
    """Everything the explorer shows for one set of controls."""

    #: The chosen setting's figures: ``figure`` (in words) and ``value`` (with its interval).
    figures: pd.DataFrame
    #: Users x days behind each figure of the segment.
    size: str
    #: The rule in words.
    rule: str
    #: What the rule picks at this cooldown, in words.
    recommendation: str
    #: The heat maps: the objective and the top-ups, marked.
    figure: Figure


def choices(table: pd.DataFrame, segment: str) -> dict[str, list[Any]]:
    """The values each setting takes for ``segment`` in the data (a cooldown list of one when
    the segment's sweep did not vary it)."""
    rows = table[table["segment"] == segment]
    return {s: sorted(rows[s].unique().tolist()) for s in SETTINGS}


def fit(table: pd.DataFrame, controls: Controls) -> Controls:
    """``controls`` with each setting the segment lacks replaced by its nearest value there, so
    that switching segment keeps the setting when it can."""
    values = choices(table, controls.segment)
    nearest = {
        s: min(values[s], key=lambda v, s=s: abs(v - getattr(controls, s))) for s in SETTINGS
    }
    return replace(controls, **nearest)


def slice_of(table: pd.DataFrame, controls: Controls) -> pd.DataFrame:
    """The segment's settings at the chosen cooldown: what the heat maps and the rule see."""
    rows = table[(table["segment"] == controls.segment)
                 & (table["cooldown_hours"] == controls.cooldown_hours)]  # fmt: skip
    if rows.empty:
        raise ValueError(f"no data for {controls.segment} at {controls.cooldown_hours:g} h")
    return rows.reset_index(drop=True)


def setting_figures(row: pd.Series, currency: str) -> pd.DataFrame:
    """One setting's figures in words, each with its 95% interval when it has one."""
    text = review.readable(row.to_frame().T, [])
    names = [f"{title} ({unit.format(currency=currency.upper())})"
             for title, unit, _ in review.FIGURES.values()]  # fmt: skip
    return pd.DataFrame({"figure": names, "value": text.iloc[0].tolist()})


def view(table: pd.DataFrame, controls: Controls, currency: str) -> View:
    """What the explorer shows for ``controls`` (pure: the same inputs give the same view)."""
    rows = slice_of(table, controls)
    rule = controls.rule
    picked = (rows["threshold"] == controls.threshold) & (rows["amount"] == controls.amount)
    if not picked.any():
        raise ValueError(f"no point at threshold {controls.threshold}, amount {controls.amount}")
    ranks = review.standing(rows, rule)
    advice = review.recommend(rows, by="segment", rule=rule).iloc[0]
    recommendation = (
        f"{controls.segment}, {controls.cooldown_hours:g} h cooldown: {advice['recommendation']}"
    )
    return View(
        figures=setting_figures(rows[picked].iloc[0], currency),
        size=review.sample_size(rows),
        rule=rule.text(),
        recommendation=recommendation,
        figure=draw(rows, controls, ranks, currency),
    )


def draw(rows: pd.DataFrame, controls: Controls, ranks: pd.DataFrame, currency: str) -> Figure:
    """Two heat maps of the slice: the rule's objective (ties with the rule's choice outlined,
    its choice starred) and the top-ups per user per month; on both, settings over the rule's
    limits are hatched and the setting looked at is framed."""
    figure = Figure(figsize=(12, 4.6), dpi=80)
    left, right = figure.subplots(1, 2)
    chosen = rows.loc[ranks["chosen"]].iloc[0]
    cell = (controls.threshold, controls.amount)

    def mask(column: pd.Series) -> pd.DataFrame:
        return review.pivot(rows.assign(_mark=column), "_mark").astype(bool)

    over = mask(ranks["excess"] > 0)
    for ax, figure_name, extra in (
        (left, controls.objective,
         {"outlined": mask(ranks["tied"]), "starred": (chosen["threshold"], chosen["amount"])}),
        (right, "topups_per_user_month", {}),
    ):  # fmt: skip
        title, unit, fmt = review.FIGURES[figure_name]
        label = unit.format(currency=currency.upper())
        review.heatmap(rows, figure_name, ax, title=title, label=label,
                       fmt=fmt, hatched=over, boxed=cell, **extra)  # fmt: skip
    figure.suptitle(f"{controls.segment}, {controls.cooldown_hours:g} h cooldown")
    _ = figure.text(
        0.5, 0.01, "star: the rule's choice; white frame: tied with it within the 95% intervals; "
        "hatched: over the rule's limits; red dashes: the setting looked at", ha="center",
    )  # fmt: skip
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (the page shows it as an image)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def parse_limit(text: str) -> float:
    """A limit typed by the reader: a number at least 0, or empty for none (infinity)."""
    text = text.strip().replace(",", "")
    if not text:
        return math.inf
    value = float(text)
    if not value >= 0:
        raise ValueError(f"a limit must be a number at least 0, not {text!r}")
    return value


def rerun(
    scenario: Path,
    controls: Controls,
    *,
    users: int,
    days: float,
    seed: int,
    on_day: Callable[[float], None] | None = None,
) -> pd.Series:
    """Run the chosen setting of the chosen segment once more, at ``users`` x ``days``, and
    return its review-table row. At the data's size and seed it gives the saved figures."""
    base = load_scenario(scenario, users=users, days=days)
    point = review_data.point_scenario(base, controls.segment, {
        "auto_topup.threshold": controls.threshold, "auto_topup.amount": controls.amount,
        "billing.cooldown_hours": controls.cooldown_hours,
    })  # fmt: skip
    results = run(point, seed=seed, backend=review_data.BACKEND, gateway=review_data.GATEWAY,
                  on_day=on_day)  # fmt: skip
    return review.review_table(results.summary, review_data.currency(base)).iloc[0]


def figures_html(figures: pd.DataFrame, size: str) -> str:
    """A setting's figures as a small HTML table with the sample size under it."""
    rows = "".join(
        f"<tr><td>{html.escape(f)}</td><td style='text-align:right'>{html.escape(v)}</td></tr>"
        for f, v in zip(figures["figure"], figures["value"], strict=True)
    )
    return (
        f"<table>{rows}</table><p>95% intervals in brackets; {html.escape(size)} per setting.</p>"
    )


class Explorer:
    """The ipywidgets page: controls on top, then the chosen setting's figures, the heat maps and
    the recommendation; a button below re-runs the chosen point at a size typed beside it.

    Display it as the last thing in a cell (its text form is one stable line, for nbval)."""

    def __init__(self, data: review_data.ReviewData, scenario: Path) -> None:
        self.table = data.table()
        self.currency = str(data.meta["currency"])
        self.seed = int(data.meta["seed"])
        self.scenario = scenario
        segment = review_data.GRID_SEGMENT
        base = load_scenario(scenario)
        defaults = base.groups[0].settings  # the scenario's own settings are looked at first
        start = fit(self.table, Controls(segment, defaults.threshold, defaults.amount,
                                         base.billing.cooldown_hours))  # fmt: skip
        values = choices(self.table, segment)
        self.segment = _dropdown("segment", self.table["segment"].unique().tolist(), segment)
        self.threshold = _dropdown("threshold", values["threshold"], start.threshold)
        self.amount = _dropdown("amount", values["amount"], start.amount)
        self.cooldown = _dropdown("cooldown (h)", values["cooldown_hours"], start.cooldown_hours)
        self.objective = _dropdown("minimise", list(OBJECTIVES), start.objective,
                                   labels=OBJECTIVES)  # fmt: skip
        self.max_topups = widgets.BoundedFloatText(
            value=start.max_topups_per_month, min=0, max=10_000, step=0.5,
            description="max top-ups / month", style=_WIDE, continuous_update=False,
        )  # fmt: skip
        self.max_failed = widgets.Text(
            value="", placeholder="no limit", description="max failed / 1,000 / month",
            style=_WIDE, continuous_update=False,
        )  # fmt: skip
        self.figures = widgets.HTML()
        self.image = widgets.HTML()
        self.advice = widgets.HTML()
        self.users = widgets.BoundedIntText(value=20, min=2, max=100_000, description="users")
        self.days = widgets.BoundedFloatText(value=7, min=0.1, max=365, description="days")
        self.button = widgets.Button(description="Re-run this setting", icon="play")
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="days done")
        self.status = widgets.Label("")
        self.fresh = widgets.HTML()
        for name in ("segment", "threshold", "amount", "cooldown", "objective", "max_topups",
                     "max_failed", "figures", "image", "advice", "users", "days", "button",
                     "progress", "status", "fresh"):  # fmt: skip
            getattr(self, name).add_class(f"review-{name.replace('_', '-')}")
        for control in (self.segment, self.threshold, self.amount, self.cooldown, self.objective,
                        self.max_topups, self.max_failed):  # fmt: skip
            control.observe(self._changed, names="value")
        self.button.on_click(self._rerun)
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Explore the saved grid</b> ({html.escape(data.size)} per setting, "
                         f"seed {self.seed}): choose a segment, a setting and the rule."),
            widgets.HBox([self.segment, self.cooldown]),
            widgets.HBox([self.threshold, self.amount]),
            widgets.HBox([self.objective, self.max_topups, self.max_failed]),
            self.figures, self.image, self.advice,
            widgets.HTML("<b>Re-run the setting looked at</b> (a fresh simulation of one point, "
                         f"seed {self.seed}; at {html.escape(data.size)} it gives the saved "
                         "figures):"),
            widgets.HBox([self.users, self.days, self.button]),
            widgets.HBox([self.progress, self.status]),
            self.fresh,
        ])  # fmt: skip
        self._updating = False
        self.update()

    def controls(self) -> Controls:
        """The controls' current values (a limit that is not a number raises ValueError)."""
        return Controls(
            segment=self.segment.value, threshold=self.threshold.value,
            amount=self.amount.value, cooldown_hours=self.cooldown.value,
            objective=self.objective.value, max_topups_per_month=self.max_topups.value,
            max_failed_per_1000_month=parse_limit(self.max_failed.value),
        )  # fmt: skip

    def update(self) -> None:
        """Show the view of the current controls (or say which control is wrong)."""
        try:
            controls = self.controls()
        except ValueError as error:
            self.advice.value = f"<p><b>{html.escape(str(error))}</b></p>"
            return
        shown = view(self.table, controls, self.currency)
        self.figures.value = (
            f"<p><b class='review-setting'>{html.escape(_setting_words(controls))}</b></p>"
            + figures_html(shown.figures, shown.size)
        )
        encoded = base64.b64encode(png(shown.figure)).decode()
        self.image.value = (
            f"<img src='data:image/png;base64,{encoded}' "
            f"alt='{html.escape(shown.recommendation, quote=True)}' style='max-width:100%'>"
        )
        self.advice.value = (
            f"<p><b>Rule.</b> {html.escape(shown.rule)}</p>"
            f"<p><b>Recommendation.</b> <span class='review-recommendation'>"
            f"{html.escape(shown.recommendation)}</span></p>"
        )

    def _changed(self, change: Mapping[str, Any]) -> None:
        """A control moved: fit the settings to the segment's, then show the new view."""
        if self._updating:
            return
        if change["owner"] is self.segment:
            self._updating = True
            try:
                fitted = fit(self.table, replace(self.controls(), segment=self.segment.value))
                values = choices(self.table, fitted.segment)
                for control, key in ((self.threshold, "threshold"), (self.amount, "amount"),
                                     (self.cooldown, "cooldown_hours")):  # fmt: skip
                    control.options = [(_label(v), v) for v in values[key]]
                    control.value = getattr(fitted, key)
                self.cooldown.disabled = len(values["cooldown_hours"]) == 1
            finally:
                self._updating = False
        self.update()

    def _rerun(self, _: widgets.Button) -> None:
        """Run the chosen point in a thread, so the page stays live; progress in days."""
        controls, users, days = self.controls(), self.users.value, self.days.value
        self.button.disabled = True
        self.progress.value, self.progress.max = 0, days
        self.status.value = f"running {users:,} users x {days:g} days..."
        threading.Thread(target=self._run_point, args=(controls, users, days), daemon=True).start()

    def _run_point(self, controls: Controls, users: int, days: float) -> None:
        def on_day(done: float) -> None:
            self.progress.value = done

        try:
            row = rerun(self.scenario, controls, users=users, days=days, seed=self.seed,
                        on_day=on_day)  # fmt: skip
            self.progress.value = days
            self.fresh.value = (
                f"<p><b>Fresh run of {html.escape(_setting_words(controls))}</b></p>"
                + figures_html(setting_figures(row, self.currency), review.sample_size(
                    row.to_frame().T))
            )  # fmt: skip
            self.status.value = f"done: {users:,} users x {days:g} days"
        except Exception as error:  # shown to the reader, who can change the size and retry
            self.status.value = f"failed: {error}"
        finally:
            self.button.disabled = False

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget for a front end; for text, one line that does not change between runs."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"Explorer of {len(self.table)} saved points"
        return bundle


#: Room for the longer descriptions of the rule's limits.
_WIDE = {"description_width": "initial"}


def _dropdown(description: str, values: list[Any], value: Any,
              labels: Mapping[Any, str] | None = None) -> widgets.Dropdown:  # fmt: skip
    options = [((labels or {}).get(v, _label(v)), v) for v in values]
    return widgets.Dropdown(options=options, value=value, description=description, style=_WIDE)


def _label(value: Any) -> str:
    """A dropdown's label for a value: numbers as a reader writes them (10,000; 0.5)."""
    return f"{value:,g}" if isinstance(value, float | int) else str(value)


def _setting_words(controls: Controls) -> str:
    return (
        f"{controls.segment}: top up below {controls.threshold:,} credits, buy "
        f"{controls.amount:,} credits, {controls.cooldown_hours:g} h between charges"
    )
