"""A run's results: three tidy DataFrames, built once from the world's rows at the end of a run.

- ``events``: one row per thing that happened, in the order it happened (``sim.eventlog``):
  ``request``/``refused``/``request_failed`` per request, ``charge`` per gateway call, one row per
  notification (``topup_succeeded``, ``topup_declined``, ``topup_action_required``,
  ``topup_limit_reached``, ``subscription_renewed``, ...), ``webhook`` per delivery to the
  handler (``event`` holds its type, ``outcome`` the handler's answer, or ``unreachable`` when
  an injected endpoint fault answered instead), ``subscription_created``, ``card_saved`` (a
  user's reaction to a stop), and the injected faults (``store_fault``, ``cache_flush``;
  gateway faults are ``transient`` charges).
- ``users``: one row per user with their set-up and totals.
- ``summary``: one row for the run, the figures product compares across settings.
- ``groups``: the same figures per group of users, one row each (``group`` first).

``Results.report()`` is the summary for a person (what ``python -m sim run`` prints): the run's
real size in a header, then the figures in sections with plain labels, units and thousands
separators. ``Results.table()`` is the summary's columns by name, for notebooks.

Money figures (credits bought, spend, revenue) come from Stripe's records of the run
(``sim.gateways.payments_made``), so a payment whose answer was lost still counts.

A user is *dry* from a refused request until their next credited top-up (or the end of the run).
A request is *held by the limit* when its trigger is ``limited``: a top-up was due (threshold
crossed, cooldown over, nothing in flight) but would have taken the user's auto top-up credits of
the calendar month past their monthly limit.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow as pa

from sim.billing import CURRENCIES, Store
from sim.billing.pricing import CURRENCY_EXPONENTS

from .eventlog import COLUMNS, EventLog, Row
from .gateways import Payment
from .scenario import Scenario
from .stats import INTERVALS, mean_interval, wilson
from .usage import TICKS
from .world import Profile

_INT_COLUMNS = ("credits", "balance", "attempt", "amount_minor")
#: Each event log column as Arrow reads it: ``time`` (ticks) and the counts as int64, the rest
#: text (``large_string``, what pandas' ``string`` dtype holds).
_ARROW_TYPES = {
    name: pa.int64() if name in ("time", *_INT_COLUMNS) else pa.large_string() for name in COLUMNS
}
_FAILED = (
    "topup_declined",
    "topup_action_required",
    "topup_failed",
    "topup_payment_method_missing",
)


class ReportLine(NamedTuple):
    """One line of the printed summary: a summary column, what it counts in plain words, and its
    unit when it is a measure (a regular plural: the ``s`` goes for a value of 1)."""

    column: str
    label: str
    unit: str = ""
    #: Decimal places, for money (its currency's minor unit); ``None``: whole numbers exactly,
    #: fractions to at most three places.
    decimals: int | None = None


#: The printed summary's sections, in order. Every summary column is on one line here or in the
#: header (``REPORT_HEADER``), an interval (``<figure>_ci_low``/``_ci_high``) on its figure's
#: line; a test checks that, so no new figure is silently left out.
REPORT_SECTIONS: tuple[tuple[str, tuple[ReportLine, ...]], ...] = (
    ("Requests", (
        ReportLine("requests", "served"),
        ReportLine("refused", "refused: balance too low"),
        ReportLine("request_failures", "failed: store unavailable"),
        ReportLine("users_ran_dry", "users who ran dry"),
        ReportLine("dry_per_1000_users", "users who ran dry, per 1,000 users"),
        ReportLine("dry_hours_per_user", "time dry, mean per user", "hours"),
        ReportLine("users_churned", "users who left after running dry"),
        ReportLine("credits_used", "used by requests", "credits"),
    )),
    ("Top-ups", (
        ReportLine("topups", "succeeded"),
        ReportLine("topups_per_user_month", "succeeded, per user per 30 days"),
        ReportLine("requests_held_by_limit", "requests whose top-up the limit held"),
        ReportLine("users_held_by_limit", "users held by their monthly limit"),
        ReportLine("charge_calls", "charge calls to Stripe, retries included"),
        ReportLine("subscription_invoices", "subscription invoices paid"),
        ReportLine("webhook_deliveries", "webhook deliveries, every try"),
    )),
    ("Failures", (
        ReportLine("failed_topups", "failed top-ups, every cause"),
        ReportLine("declines", "declined by the card"),
        ReportLine("action_required", "needed the customer to authenticate"),
        ReportLine("topup_errors", "not charged: Stripe unreachable"),
        ReportLine("suspensions", "auto top-ups suspended"),
        ReportLine("transient_errors", "charge calls that failed transiently"),
        ReportLine("webhook_duplicates", "duplicate webhook deliveries"),
        ReportLine("webhook_failures", "webhook deliveries that failed"),
        ReportLine("webhook_unreachable", "deliveries to a down webhook endpoint"),
        ReportLine("cache_flushes", "cache flushes injected"),
        ReportLine("store_faults", "store faults injected"),
    )),
    ("Money", (
        ReportLine("credits_bought", "bought with top-ups", "credits"),
        ReportLine("subscription_credits", "granted by subscriptions", "credits"),
        *(
            ReportLine(f"revenue_{c}", "revenue", c.upper(), CURRENCY_EXPONENTS[c])
            for c in CURRENCIES
        ),
    )),
)  # fmt: skip
#: Summary columns the printed summary's header shows (``user_days`` is users times days).
REPORT_HEADER = ("scenario", "seed", "users", "days", "user_days")


@dataclass(frozen=True)
class Results:
    """The frames of one run, and what produced them."""

    scenario: Scenario
    seed: int
    backend: str
    events: pd.DataFrame
    users: pd.DataFrame
    summary: pd.DataFrame
    #: The summary's figures per group of users: one row per group, ``group`` first.
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The billing's Prometheus metrics at the end of the run, and over time when the run was
    #: asked for them (``run(..., metrics_interval=300)``: what a scrape would have read, what
    #: the alerting rules would have seen), as :func:`metrics_frame` lays them out.
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)

    def write(self, out_dir: str | Path, *, csv: bool = False) -> list[Path]:
        """Write ``events``, ``users``, ``summary`` and ``groups`` as Parquet (and CSV); return
        the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in ("events", "users", "summary", "groups"):
            frame: pd.DataFrame = getattr(self, name)
            path = out / f"{name}.parquet"
            frame.to_parquet(path, index=False)
            written.append(path)
            if csv:
                written.append(out / f"{name}.csv")
                frame.to_csv(written[-1], index=False)
        return written

    def table(self) -> str:
        """The summary as an aligned two-column table of column names and values, for notebooks
        that go on to read those columns (a person reads :meth:`report`)."""
        row = self.summary.iloc[0]
        width = max(len(str(k)) for k in row.index)
        lines = []
        for key, value in row.items():
            text = _number(value) if isinstance(value, float) else value
            lines.append(f"{key:<{width}}  {text}")
        return "\n".join(lines)

    def report(self, *, description: bool = True) -> str:
        """The summary for a person: a header with the run's real size (users, days, requests
        made) and what produced it (the seed as given: an identifier, not a quantity; the
        backend), then the figures in the sections of :data:`REPORT_SECTIONS`.

        ``description`` adds the scenario's description under the header. Leave it out when the
        size was overridden: a description usually states its file's size, which this run lacks.
        """
        row = self.summary.iloc[0]
        made = row["requests"] + row["refused"] + row["request_failures"]
        size = ", ".join(
            [quantity(row["users"], "users"), quantity(row["days"], "days"),
             quantity(made, "requests")]
        )  # fmt: skip
        lines = [f"{row['scenario']}: {size} (seed {row['seed']}, {self.backend} backend)"]
        if description and self.scenario.description:
            lines.append(self.scenario.description)
        shown = {
            line.column: _number(row[line.column], line.decimals)
            for _, group in REPORT_SECTIONS
            for line in group
        }
        label_width = max(len(line.label) for _, group in REPORT_SECTIONS for line in group)
        value_width = max(map(len, shown.values()))
        for title, group in REPORT_SECTIONS:
            lines += ["", title]
            for line in group:
                text = f"  {line.label:<{label_width}}  {shown[line.column]:>{value_width}}"
                unit = _unit(line.unit, row[line.column])
                text = f"{text} {unit}" if unit else text
                if f"{line.column}_ci_low" in row.index:
                    text += _interval(row[f"{line.column}_ci_low"], row[f"{line.column}_ci_high"])
                lines.append(text)
        return "\n".join(lines)


def _number(value: float, decimals: int | None = None) -> str:
    """A figure with thousands separators: to ``decimals`` places when given; else a whole
    number exactly and a fraction to at most three places, trailing zeros dropped (a float that
    is whole, such as ``days``, reads as a whole number)."""
    if decimals is not None:
        return f"{float(value):,.{decimals}f}"
    if isinstance(value, numbers.Integral):  # numpy's integers too
        return f"{int(value):,}"
    return f"{float(value):,.3f}".rstrip("0").rstrip(".")


def _interval(low: float, high: float) -> str:
    """`` (95% CI 1.2 to 3.4)``, or nothing when there is no interval (fewer than 2 users)."""
    if pd.isna(low) or pd.isna(high):
        return ""
    return f"  (95% CI {_number(float(low))} to {_number(float(high))})"


def _unit(unit: str, value: float) -> str:
    """``unit`` (a regular plural) for ``value``: singular for exactly 1."""
    return unit.removesuffix("s") if value == 1 else unit


def quantity(value: float, unit: str) -> str:
    """``1,234 users``, ``1 day``: a figure and its unit, for the header and for the sample size
    every figure of the notebooks states (``sim.analysis.samples``)."""
    return f"{_number(value)} {_unit(unit, value)}"


def metrics_frame(samples: Sequence[tuple[float, str, str, float]]) -> pd.DataFrame:
    """The metrics read during a run: ``time`` (seconds from the start), ``name`` (the series,
    e.g. ``topup_charges_total``), ``labels`` (``outcome="declined",decline_code="..."``) and
    ``value`` (cumulative, as Prometheus stores it: a rate is a difference over time)."""
    frame = pd.DataFrame.from_records(samples, columns=["time", "name", "labels", "value"])
    for column in ("name", "labels"):
        frame[column] = frame[column].astype("category")
    return frame


def events_frame(rows: EventLog | Sequence[Row], start: float | None = None) -> pd.DataFrame:
    """The event log (an :class:`~sim.eventlog.EventLog`, or its rows), with ``time`` in seconds
    from the scenario's start and, given the start (epoch seconds), ``timestamp`` beside it: the
    same instant in UTC, to the millisecond.

    Built column-wise: Arrow reads each column once, in C, into a typed array
    (:data:`_ARROW_TYPES`), and pandas wraps those without parsing each value again. Pandas' own
    record parsing with object columns converted afterwards took 2.2 s of a month's 886,134
    rows; this takes about 0.4 s. Each value of a count column is a whole number and of a text
    column a str, as :class:`~sim.eventlog.EventLog` writes them, or empty: ``None``, or
    pandas' ``NA`` or NaN in rows read back from a frame; anything else raises.
    """
    columns = rows.columns() if isinstance(rows, EventLog) else _columns_of(rows)
    fields = {
        name: pa.array(values, type=_ARROW_TYPES[name], from_pandas=True)
        for name, values in columns.items()
    }
    ticks = fields.pop("time").to_numpy()
    data: dict[str, object] = {"time": ticks / TICKS}
    if start is not None:
        epoch_ms = round(start * TICKS) + ticks
        data["timestamp"] = pd.to_datetime(epoch_ms, unit="ms", utc=True)
    for name, values in fields.items():
        data[name] = _counts(values) if name in _INT_COLUMNS else pd.arrays.ArrowStringArray(values)
    return pd.DataFrame(data)


def _columns_of(rows: Sequence[Row]) -> dict[str, Sequence[object]]:
    """Rows (each in :data:`~sim.eventlog.COLUMNS` order) as columns by name."""
    if not rows:
        return {name: [] for name in COLUMNS}
    return dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))


def _counts(values: pa.Array) -> pd.arrays.IntegerArray:
    """An Arrow int64 column as pandas' ``Int64`` (a null becomes ``<NA>``)."""
    mask = values.is_null().to_numpy(zero_copy_only=False)
    return pd.arrays.IntegerArray(values.fill_null(0).to_numpy(), mask)


def users_frame(
    events: pd.DataFrame,
    profiles: list[Profile],
    store: Store,
    payments: Sequence[Payment],
    horizon: float,
) -> pd.DataFrame:
    """Per-user set-up and totals: requests, refusals, time dry, top-ups, failures, spend."""
    users = pd.DataFrame(
        {
            "user": [p.user_id for p in profiles],
            "group": [p.group for p in profiles],
            "card": [p.card for p in profiles],
            "starting_balance": [p.balance for p in profiles],
            "enabled": [p.enabled for p in profiles],
            "threshold": [p.threshold for p in profiles],
            "amount": [p.amount for p in profiles],
            "currency": [p.currency for p in profiles],
            "monthly_limit": pd.array([p.monthly_limit for p in profiles], dtype="Int64"),
            "subscription": [p.subscription for p in profiles],
        }
    ).set_index("user")
    kind = events["kind"]
    # Rows and credits per user and kind in one grouping: a month's rows are grouped once.
    per_kind = events.groupby(["user", "kind"])["credits"].agg(["size", "sum"])
    counts = per_kind["size"].unstack(fill_value=0)
    credits = per_kind["sum"].unstack(fill_value=0)

    def count(*kinds: str) -> pd.Series:
        present = [k for k in kinds if k in counts.columns]
        return counts[present].sum(axis=1).reindex(users.index, fill_value=0).astype("int64")

    users["requests"] = count("request")
    users["credits_used"] = _per_user(credits.get("request", pd.Series(dtype="int64")), users.index)
    users["refused"] = count("refused")
    users["request_failures"] = count("request_failed")
    users["dry_seconds"] = _dry_seconds(events, horizon).reindex(users.index, fill_value=0.0)
    first_dry = events.loc[kind == "refused", ["user", "time"]].groupby("user")["time"].min()
    users["first_dry_at_s"] = first_dry.reindex(users.index)
    users["topups"] = count("topup_succeeded")
    users["failed_topups"] = count(*_FAILED)
    users["suspensions"] = count("topup_suspended")
    money = _payments_frame(payments)
    topups = money[money["kind"] == "topup"].groupby("user")
    subscriptions = money[money["kind"] == "subscription"].groupby("user")
    users["credits_bought"] = _per_user(topups["credits"].sum(), users.index)
    users["subscription_credits"] = _per_user(subscriptions["credits"].sum(), users.index)
    users["spend_minor"] = _per_user(money.groupby("user")["amount_minor"].sum(), users.index)
    records = [store.get_user(u) for u in users.index]
    users["final_balance"] = [r.balance for r in records]
    users["final_state"] = pd.array([r.state for r in records], dtype="string")
    return users.reset_index()


def _payments_frame(payments: Sequence[Payment]) -> pd.DataFrame:
    """One row per payment: user, kind, credits granted for it, amount and currency."""
    return pd.DataFrame(
        [(p.user_id, p.kind, p.credits, p.price.amount_minor, p.price.currency) for p in payments],
        columns=["user", "kind", "credits", "amount_minor", "currency"],
    ).astype({"credits": "int64", "amount_minor": "int64"})


def _per_user(values: pd.Series, index: pd.Index) -> pd.Series:
    return values.reindex(index, fill_value=0).astype("int64")


def _dry_seconds(events: pd.DataFrame, horizon: float) -> pd.Series:
    """Seconds each user spent between a refused request and their next credited top-up."""
    e = events.loc[events["kind"].isin(["refused", "topup_succeeded"]), ["user", "time", "kind"]]
    refused = e["kind"] == "refused"
    before = refused.groupby(e["user"]).shift(fill_value=False).astype(bool)
    starts = e[refused & ~before].groupby("user")["time"]
    ends = e[~refused & before].groupby("user")["time"]
    total = ends.sum().sub(starts.sum(), fill_value=0.0)
    open_ = starts.count().sub(ends.count(), fill_value=0)
    return total.add(open_ * horizon, fill_value=0.0)


def groups_frame(
    scenario: Scenario,
    seed: int,
    events: pd.DataFrame,
    users: pd.DataFrame,
    payments: Sequence[Payment],
) -> pd.DataFrame:
    """The summary's figures for each group of users on its own (``group`` first, groups in the
    scenario's order): the group's users, their events and their payments. Run-wide rows with
    no user (a cache flush) belong to no group."""
    rows = []
    read = events[list(_SUMMARY_READS)]
    for group in scenario.groups:
        members = users[users["group"] == group.name]
        ids = set(members["user"])
        mine = read[read["user"].isin(ids).fillna(False)]
        paid = [p for p in payments if p.user_id in ids]
        row = summary_frame(scenario, seed, mine, members.reset_index(drop=True), paid)
        row.insert(0, "group", group.name)
        rows.append(row)
    return pd.concat(rows, ignore_index=True)


#: The event columns :func:`summary_frame` reads: a group's rows are taken of these alone (the
#: other ten columns of a month's rows cost three times as much to copy).
_SUMMARY_READS = ("user", "kind", "trigger", "outcome")


def summary_frame(
    scenario: Scenario,
    seed: int,
    events: pd.DataFrame,
    users: pd.DataFrame,
    payments: Sequence[Payment],
) -> pd.DataFrame:
    """One row of run-level figures (rates per 1,000 users and per user-month included)."""
    n, days = len(users), scenario.days
    kind = events["kind"]
    charges = events[kind == "charge"]
    webhooks = events[kind == "webhook"]
    # Requests (served or refused) whose due top-up the user's monthly limit held.
    held = events.loc[(events["trigger"] == "limited").fillna(False), "user"]
    money = _payments_frame(payments)
    row: dict[str, object] = {
        "scenario": scenario.name,
        "seed": seed,
        "users": n,
        "days": days,
        "requests": int(users["requests"].sum()),
        "refused": int(users["refused"].sum()),
        "request_failures": int(users["request_failures"].sum()),
        "users_ran_dry": int((users["refused"] > 0).sum()),
        "dry_per_1000_users": 1000 * float((users["refused"] > 0).mean()),
        "dry_hours_per_user": float(users["dry_seconds"].mean()) / 3600,
        "users_churned": int((kind == "churned").sum()),
        "topups": int(users["topups"].sum()),
        # A group with no users (a small run's rounding) has no rate: NaN, not an error.
        "topups_per_user_month": (
            float(users["topups"].sum()) / n / (days / 30) if n else float("nan")
        ),
        "requests_held_by_limit": len(held),
        "users_held_by_limit": int(held.nunique()),
        "failed_topups": int(users["failed_topups"].sum()),
        "declines": int((kind == "topup_declined").sum()),
        "action_required": int((kind == "topup_action_required").sum()),
        "topup_errors": int((kind == "topup_failed").sum()),
        "suspensions": int(users["suspensions"].sum()),
        "charge_calls": len(charges),
        "transient_errors": int((charges["outcome"] == "transient").sum()),
        "credits_used": int(users["credits_used"].sum()),
        "credits_bought": int(users["credits_bought"].sum()),
        "subscription_invoices": int((money["kind"] == "subscription").sum()),
        "subscription_credits": int(users["subscription_credits"].sum()),
        "webhook_deliveries": len(webhooks),
        "webhook_duplicates": int((webhooks["outcome"] == "duplicate").sum()),
        "webhook_failures": int((webhooks["outcome"] == "failed").sum()),
        "webhook_unreachable": int((webhooks["outcome"] == "unreachable").sum()),
        "cache_flushes": int((kind == "cache_flush").sum()),
        "store_faults": int((kind == "store_fault").sum()),
    }
    for currency in CURRENCIES:
        minor = money.loc[money["currency"] == currency, "amount_minor"].sum()
        row[f"revenue_{currency}"] = float(minor) / 10 ** CURRENCY_EXPONENTS[currency]
    row["user_days"] = n * days
    return pd.DataFrame([_with_intervals(row, users, days)])


def _with_intervals(row: dict[str, object], users: pd.DataFrame, days: float) -> dict[str, object]:
    """``row`` with each headline figure followed by its 95% interval across users
    (``<figure>_ci_low``, ``<figure>_ci_high``; ``sim.stats``)."""
    n = len(users)
    dry_low, dry_high = wilson(int((users["refused"] > 0).sum()), n)
    bounds = {
        "dry_per_1000_users": (1000 * dry_low, 1000 * dry_high),
        "dry_hours_per_user": mean_interval(users["dry_seconds"].to_numpy(float) / 3600),
        "topups_per_user_month": mean_interval(users["topups"].to_numpy(float) * 30 / days),
    }
    assert tuple(bounds) == INTERVALS
    out: dict[str, object] = {}
    for column, value in row.items():
        out[column] = value
        if column in bounds:
            out[f"{column}_ci_low"], out[f"{column}_ci_high"] = bounds[column]
    return out
