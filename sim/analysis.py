"""Analysis of a run's frames: the tables and figures the notebooks show, computed and tested here.

The notebooks in ``notebooks/`` stay thin (load, call, show) so that every figure nbval checks
comes from a function with a test behind it. Each function takes a run's
:class:`~sim.results.Results` or its DataFrames and returns a DataFrame, a figure's axes or a
plain number; none of them runs a simulation.

The event log grows new kinds as the simulation grows (webhook deliveries, subscription
renewals), and payment-intent ids change format with the gateway behind the run. So every
function here selects the kinds it needs by name, links rows by ``(user, attempt)`` or by equal
``payment_intent`` values only, and never parses an id.

Terms used throughout:

- A *crossing* starts at a request (served or refused) that finds the balance at or below the
  user's threshold when the previous balance seen was above it, or when a top-up was credited
  since. It lasts until credits land or the balance is seen above the threshold again. The
  billing's rule is one crossing, at most one paid charge.
- An *attempt* is one claimed top-up: the request that claimed it, the gateway calls made for it
  (retries of transient errors reuse the attempt) and the notification that ended it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from sim.billing.pricing import CURRENCY_EXPONENTS

if TYPE_CHECKING:
    from .results import Results
    from .scenario import Scenario

#: Kinds of a user's request: served, or refused for want of credits. Either may claim a top-up.
DEDUCTIONS = ("request", "refused")
#: Notifications that end an attempt, one per attempt (the billing sends each exactly once).
OUTCOMES = (
    "topup_succeeded",
    "topup_declined",
    "topup_action_required",
    "topup_failed",
    "topup_payment_method_missing",
)
#: Every notification the billing sends (the simulation logs each as a row of that kind).
NOTIFICATIONS = (
    *OUTCOMES,
    "topup_suspended",
    "subscription_renewed",
    "subscription_payment_failed",
)
HOUR = 3_600.0
#: Stripe's test cards whose off-session charges succeed.
_GOOD_CARDS = ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")

_KEY = ["user", "attempt"]


def _rows(events: pd.DataFrame, *kinds: str) -> pd.DataFrame:
    """The rows of the given kinds (``isin`` gives plain booleans, never ``NA``)."""
    return events[events["kind"].isin(kinds)]


# ------------------------------------------------------------------------- a run at a glance


def groups_table(scenario: Scenario) -> pd.DataFrame:
    """The scenario's population, one row per group: who the users are and what they were given.

    Read before a run's figures, so a reader knows whose behaviour the figures describe.
    """
    rows = {}
    for group, count in zip(scenario.groups, scenario.counts(), strict=True):
        rows[group.name] = {
            "users": count,
            "balance": group.balance,
            "threshold": group.settings.threshold,
            "amount": group.settings.amount,
            "currency": group.settings.currency,
            "requests_per_day": group.usage.requests_per_day,
            "mean_cost": group.usage.cost.expected(),
            "bursts_per_day": group.usage.bursts_per_day,
            "good_card_pct": 100 * sum(w for card, w in group.cards if card in _GOOD_CARDS),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out


def busiest_user(users: pd.DataFrame, group: str) -> str:
    """The user of ``group`` with the most top-ups (the first such, by id): the one whose balance
    history shows auto top-up at work most often."""
    mine = users[users["group"] == group]
    return str(mine.loc[mine["topups"].idxmax(), "user"])


# ------------------------------------------------------------------------- one user's balance


def balance_history(events: pd.DataFrame, user: str) -> pd.DataFrame:
    """Every balance ``user``'s rows report, in hours from the start, with the row's kind.

    Taken from whichever rows carry a balance (requests, refusals, notifications, and any kind
    added later that reports one), so the history never misses a change the log shows.
    """
    rows = events[(events["user"] == user).fillna(False) & events["balance"].notna()]
    return pd.DataFrame(
        {
            "hour": rows["time"].to_numpy() / HOUR,
            "balance": rows["balance"].to_numpy(dtype="int64"),
            "kind": rows["kind"].to_numpy(dtype=object),
        }
    )


def plot_balance(events: pd.DataFrame, users: pd.DataFrame, user: str, ax: Axes) -> Axes:
    """Draw ``user``'s balance as a step line, their threshold, top-ups and refused requests.

    The one picture that explains auto top-up: the balance falls with use, crosses the threshold,
    jumps when credits land, and refusals show where it did not land in time.
    """
    history = balance_history(events, user)
    threshold = int(users.loc[users["user"] == user, "threshold"].iloc[0])
    _ = ax.step(history["hour"], history["balance"], where="post", label="balance", lw=1)
    _ = ax.axhline(threshold, color="tab:orange", ls="--", lw=1, label=f"threshold ({threshold:,})")
    topups = history[history["kind"] == "topup_succeeded"]
    _ = ax.scatter(topups["hour"], topups["balance"], color="tab:green", marker="^", zorder=3,
                   label=f"credits landed ({len(topups)})")  # fmt: skip
    refused = history[history["kind"] == "refused"]
    _ = ax.scatter(refused["hour"], refused["balance"], color="tab:red", marker="x", zorder=3,
                   label=f"refused requests ({len(refused)})")  # fmt: skip
    ax.set_xlabel("time since start (hours)")
    ax.set_ylabel("balance (credits)")
    ax.legend(loc="upper right")
    return ax


# ------------------------------------------------------------------------- attempts and crossings


def attempts(events: pd.DataFrame) -> pd.DataFrame:
    """One row per claimed top-up attempt: when it was claimed, charged and ended, and how.

    Columns: ``user``, ``attempt``, ``claimed_at``, ``charged_at`` (first gateway call),
    ``answered_at`` (last call), ``calls``, ``transient`` (calls that hit a transient error),
    ``outcome`` (of the last call), ``decline_code``, ``payment_intent`` (of the last call, for
    linking only), ``ended_at`` and ``result`` (the notification that ended it; ``"none"`` when an
    attempt was skipped or broke without one).
    """
    claims = events[events["kind"].isin(DEDUCTIONS) & events["attempt"].notna()]
    claimed = claims.groupby(_KEY)["time"].min().rename("claimed_at")
    charges = _rows(events, "charge").assign(
        transient=lambda c: c["outcome"].isin(["transient"]).astype("int64")
    )
    calls = charges.groupby(_KEY).agg(
        charged_at=("time", "min"),
        answered_at=("time", "max"),
        calls=("time", "size"),
        transient=("transient", "sum"),
    )
    # The last call's own fields (groupby's "last" would skip missing values across rows).
    last = charges.groupby(_KEY).tail(1).set_index(_KEY)
    calls = calls.join(last[["outcome", "decline_code", "payment_intent"]])
    ends = (
        _rows(events, *OUTCOMES)
        .groupby(_KEY)
        .agg(ended_at=("time", "min"), result=("kind", "first"))
    )
    out = pd.concat([claimed, calls, ends], axis=1).sort_index().reset_index()
    out["attempt"] = out["attempt"].astype("int64")
    out["calls"] = out["calls"].fillna(0).astype("int64")
    out["transient"] = out["transient"].fillna(0).astype("int64")
    out["result"] = out["result"].astype("string").fillna("none")
    return out


def linked_kinds(events: pd.DataFrame) -> list[str]:
    """Kinds other than ``charge`` whose rows name a PaymentIntent (webhook deliveries, say).

    Found from the data, not from a list of names, so a new kind that carries the intent gets its
    delay measured as soon as the simulation logs it.
    """
    carrying = events.loc[events["payment_intent"].notna(), "kind"]
    return sorted(set(carrying.tolist()) - {"charge"})


def crossings(events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """One row per threshold crossing of a user with auto top-up enabled (see the module doc).

    Columns: ``user``, ``time`` (seconds from the start), ``requests`` and ``refused`` (requests
    made, and refused, from the crossing until credits landed), ``claims`` (attempts claimed),
    ``paid`` (attempts whose charge succeeded or whose credits landed), ``claimed_at`` and
    ``charged_at`` (first attempt), ``credited_at`` (first paid attempt), the stage timings
    ``to_claim_s``, ``to_charge_s``, ``to_credit_s`` from the crossing, ``latency_s`` (claim to
    gateway call: the payment latency) and, for each kind of :func:`linked_kinds`,
    ``<kind>_delay_s``: from the paying gateway answer to that kind's first row for the same
    PaymentIntent.
    """
    settings = users.loc[users["enabled"].astype(bool), ["user", "threshold"]]
    threshold = settings.set_index("user")["threshold"]
    seen = events.loc[
        events["balance"].notna() & events["user"].isin(threshold.index),
        ["time", "user", "kind", "balance", "attempt"],
    ]
    if seen.empty:
        return _empty_crossings()
    seen = seen.sort_values("user", kind="stable")  # per user, still in the log's order
    user = seen["user"].to_numpy(dtype=object)
    kind = seen["kind"]
    deduction = kind.isin(DEDUCTIONS).to_numpy()
    limit = seen["user"].map(threshold).to_numpy(dtype="int64")
    below = seen["balance"].to_numpy(dtype="int64") <= limit
    ends = ~below | kind.isin(["topup_succeeded"]).to_numpy()
    first = np.r_[True, user[1:] != user[:-1]]
    after_end = np.r_[True, ends[:-1]] | first
    starts = deduction & below & after_end
    segment = np.cumsum(starts | ends | first)
    is_crossing = pd.Series(starts).groupby(segment).transform("first").to_numpy()
    inside = seen[is_crossing].assign(segment=segment[is_crossing])
    if inside.empty:
        return _empty_crossings()

    inside = inside.assign(is_refused=inside["kind"].isin(["refused"]))
    out = inside.groupby("segment", sort=True).agg(
        user=("user", "first"),
        time=("time", "first"),
        requests=("time", "size"),
        refused=("is_refused", "sum"),
    )
    out = out.astype({"requests": "int64", "refused": "int64"})
    claims = inside[deduction[is_crossing] & inside["attempt"].notna()][["segment", *_KEY]]
    # A request that took over an attempt past its lease names that same attempt again.
    claims = claims.drop_duplicates(_KEY).astype({"attempt": "int64"})
    claims = claims.merge(attempts(events), on=_KEY, how="left")
    # Paid: the gateway answered "succeeded", or the credits landed anyway (a lost answer,
    # credited by the webhook).
    claims["is_paid"] = claims["outcome"].isin(["succeeded"]) | claims["result"].isin(
        ["topup_succeeded"]
    )
    per = claims.groupby("segment")
    out["claims"] = per.size().reindex(out.index, fill_value=0).astype("int64")
    out["paid"] = per["is_paid"].sum().reindex(out.index, fill_value=0).astype("int64")
    first_claim = claims.groupby("segment").head(1).set_index("segment")
    out["claimed_at"] = first_claim["claimed_at"]
    out["charged_at"] = first_claim["charged_at"]
    paying = claims[claims["is_paid"]].groupby("segment").head(1).set_index("segment")
    out["credited_at"] = paying["ended_at"].where(paying["result"] == "topup_succeeded")
    out["to_claim_s"] = out["claimed_at"] - out["time"]
    out["to_charge_s"] = out["charged_at"] - out["time"]
    out["to_credit_s"] = out["credited_at"] - out["time"]
    out["latency_s"] = out["charged_at"] - out["claimed_at"]
    for linked in linked_kinds(events):
        first_seen = _rows(events, linked).groupby("payment_intent")["time"].min()
        arrived = paying["payment_intent"].map(first_seen)
        out[f"{linked}_delay_s"] = (arrived - paying["answered_at"]).astype("float64")
    return out.reset_index(drop=True)


def _empty_crossings() -> pd.DataFrame:
    columns = {"user": "string", "time": "float64", "requests": "int64", "refused": "int64",
               "claims": "int64", "paid": "int64"}  # fmt: skip
    timings = ["claimed_at", "charged_at", "credited_at", "to_claim_s", "to_charge_s",
               "to_credit_s", "latency_s"]  # fmt: skip
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()} | {
        c: pd.Series(dtype="float64") for c in timings
    })  # fmt: skip


# ------------------------------------------------------------------------- trigger timing


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
    its refusals belong to the failure analysis, not to the timing.

    Works for any timing column, so the same table answers "by payment latency" today and
    "by webhook delay" once webhook rows exist (``<kind>_delay_s`` columns).
    """
    crossings = crossings[crossings[value].notna()]
    labels = [f"{lo:g}-{hi:g} s" for lo, hi in pairwise(edges)]
    bins = pd.cut(crossings[by], list(edges), labels=labels, right=False)
    grouped = crossings.groupby(bins, observed=False)
    out = pd.DataFrame(
        {
            "crossings": grouped.size(),
            "median_s": grouped[value].median(),
            "p90_s": grouped[value].quantile(0.9),
            "p95_s": grouped[value].quantile(0.95),
            "refused_per_crossing": grouped["refused"].mean(),
            "with_refusals_pct": 100 * grouped["refused"].agg(lambda r: (r > 0).mean()),
        }
    )
    out.index = out.index.astype("string")
    out.index.name = by
    return out


def plot_timing(crossings: pd.DataFrame, ax: Axes) -> Axes:
    """Cumulative share of crossings that reached each stage within t seconds.

    A symmetric-log time axis, so the many crossings claimed at once (0 s) and the few that wait
    hours for a cooldown both show.
    """
    stages = {"claimed": "to_claim_s", "charged": "to_charge_s", "credits landed": "to_credit_s"}
    for label, column in stages.items():
        values = np.sort(crossings[column].dropna().to_numpy())
        share = 100 * np.arange(1, len(values) + 1) / max(len(crossings), 1)
        _ = ax.step(values, share, where="post", label=label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("time since the threshold crossing (seconds, symlog)")
    ax.set_ylabel("crossings reached (% of all)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    return ax


# ------------------------------------------------------------------------- cooldown


def triggers(events: pd.DataFrame) -> pd.DataFrame:
    """Served requests by what they did about auto top-up (``claimed``, ``cooling``, ...).

    ``cooling`` rows are triggers the cooldown blocked: the balance was at or below the threshold
    but a top-up had been claimed less than one cooldown before.
    """
    served = _rows(events, "request")
    grouped = served.groupby("trigger")
    out = pd.DataFrame({"requests": grouped.size(), "users": grouped["user"].nunique()}).astype(
        "int64"
    )
    out.index = out.index.astype("string")
    return out.sort_index()


def refusal_reasons(
    events: pd.DataFrame, users: pd.DataFrame, cooldown_hours: float
) -> pd.DataFrame:
    """Every refused request with the reason no credits were there to serve it.

    ``awaiting payment``: a claimed top-up had not ended yet (payment latency); ``cooldown``: the
    last top-up had ended (credited and spent, or failed) and the cooldown was still running;
    ``above threshold``: the request cost more than a balance above the threshold; ``auto top-up
    held``: none of these (auto top-up paused, suspended or off).
    """
    refused = _rows(events, "refused")[["time", "user", "credits", "balance"]]
    claims = attempts(events).dropna(subset=["claimed_at"])[["user", "claimed_at", "ended_at"]]
    joined = pd.merge_asof(
        refused.assign(user=refused["user"].astype(object)).sort_values("time"),
        claims.assign(user=claims["user"].astype(object)).sort_values("claimed_at"),
        left_on="time", right_on="claimed_at", by="user", direction="backward",
    )  # fmt: skip
    threshold = joined["user"].map(users.set_index("user")["threshold"])
    # An attempt that ended without a notification (skipped, or broken by an outage) counts as
    # ended when it was claimed: nothing was in flight for the user to wait for.
    ended = joined["ended_at"].fillna(joined["claimed_at"])
    awaiting = ended > joined["time"]
    cooling = joined["time"] < joined["claimed_at"] + cooldown_hours * HOUR
    reason = np.select(
        [joined["balance"].to_numpy(dtype="int64") > threshold.to_numpy(), awaiting, cooling],
        ["above threshold", "awaiting payment", "cooldown"],
        "auto top-up held",
    )
    return joined.assign(reason=reason)[["time", "user", "credits", "balance", "reason"]]


def refusals_by_reason(reasons: pd.DataFrame, users: int) -> pd.DataFrame:
    """Refused requests and the users who had one, per reason, with users per 1,000."""
    grouped = reasons.groupby("reason")
    out = pd.DataFrame({"refused": grouped.size(), "users": grouped["user"].nunique()})
    out["users_per_1000"] = 1000 * out["users"] / users
    return out.sort_index()


def who_ran_dry(
    reasons: pd.DataFrame, users: pd.DataFrame, days: float, reason: str = "cooldown"
) -> pd.DataFrame:
    """Users who had a request refused for ``reason`` against those who did not: how much they
    used and how often they topped up, per day, so the table says who runs dry."""
    hit = users["user"].isin(reasons.loc[reasons["reason"] == reason, "user"]).to_numpy()
    label = np.where(hit, f"refused in {reason}", f"never refused in {reason}")
    grouped = users.assign(label=label).groupby("label")
    out = pd.DataFrame(
        {
            "users": grouped.size(),
            "requests_per_day": grouped["requests"].mean() / days,
            "credits_used_per_day": grouped["credits_used"].mean() / days,
            "topups_per_day": grouped["topups"].mean() / days,
            "dry_hours_per_user": grouped["dry_seconds"].mean() / HOUR,
        }
    )
    out.index.name = None
    return out


def cooldown_effect(grid: pd.DataFrame) -> pd.DataFrame:
    """Per cooldown of a sweep (``billing.cooldown_hours``): runs dry and charges per user.

    The trade-off a cooldown sets: shorter ones charge more often, longer ones leave bursty users
    without credits until they end.
    """
    users = grid["users"]
    out = pd.DataFrame(
        {
            "cooldown_h": grid["billing.cooldown_hours"].astype("float64"),
            "dry_per_1000_users": grid["dry_per_1000_users"],
            "dry_hours_per_user": grid["dry_hours_per_user"],
            "refused_per_user": grid["refused"] / users,
            "charges_per_user": grid["charge_calls"] / users,
            "topups_per_user_month": grid["topups_per_user_month"],
        }
    )
    return out.sort_values("cooldown_h").set_index("cooldown_h")


def plot_cooldown_effect(effect: pd.DataFrame, axes: Sequence[Axes]) -> Sequence[Axes]:
    """Runs dry (left) and charges per user (right) against the cooldown, on a log hour axis."""
    left, right = axes
    hours = effect.index.to_numpy()
    _ = left.plot(hours, effect["dry_per_1000_users"], marker="o", label="users who ran dry")
    left.set_ylabel("users who ran dry (per 1,000)")
    left.set_title("Running dry")
    _ = right.plot(hours, effect["charges_per_user"], marker="o", label="charges per user")
    right.set_ylabel("charges per user over the run (count)")
    right.set_title("Charging")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(hours, [f"{h:g}" for h in hours])
        ax.set_xlabel("cooldown (hours, log scale)")
        ax.legend(loc="best")
    return axes


# ------------------------------------------------------------------------- failures


def charge_outcomes(events: pd.DataFrame) -> pd.DataFrame:
    """Gateway calls by outcome, with the attempts and users they belong to."""
    charges = _rows(events, "charge")
    grouped = charges.groupby("outcome")
    out = pd.DataFrame(
        {
            "calls": grouped.size(),
            "attempts": charges.drop_duplicates(["outcome", *_KEY]).groupby("outcome").size(),
            "users": grouped["user"].nunique(),
        }
    ).astype("int64")
    out.index = out.index.astype("string")
    return out.sort_index()


def declines_by_code(events: pd.DataFrame) -> pd.DataFrame:
    """Declined charges by the card's decline code, with the users who hit each code."""
    declined = _rows(events, "charge")
    declined = declined[declined["outcome"].isin(["declined"])]
    grouped = declined.groupby("decline_code")
    out = pd.DataFrame({"declines": grouped.size(), "users": grouped["user"].nunique()})
    out = out.astype("int64")
    out.index = out.index.astype("string")
    return out.sort_values(["declines", "users"], ascending=False, kind="stable")


def retries(events: pd.DataFrame) -> pd.DataFrame:
    """Attempts by gateway calls made (1 = no retry) and how they ended.

    Shows that transient errors are retried with the attempt's own idempotency key (more calls,
    still one attempt) and how many attempts ran out of tries.
    """
    charged = attempts(events)
    charged = charged[charged["calls"] > 0]
    out = pd.crosstab(charged["calls"], charged["outcome"].astype(object))
    out.columns.name = "last call"
    return out.astype("int64")


def notifications(events: pd.DataFrame) -> pd.DataFrame:
    """Notifications sent, by kind, with the users who got each."""
    sent = _rows(events, *NOTIFICATIONS)
    grouped = sent.groupby("kind")
    out = pd.DataFrame({"sent": grouped.size(), "users": grouped["user"].nunique()})
    out = out.astype("int64")
    out.index = out.index.astype("string")
    return out.sort_index()


def states_by_card(users: pd.DataFrame) -> pd.DataFrame:
    """Users by test card and the auto top-up state they ended in (active, paused, suspended).

    Read with the cards' documented behaviour: declines suspend after repeated failures, a card
    that needs authentication (SCA) pauses auto top-up at the first try.
    """
    out = pd.crosstab(users["card"].astype(object), users["final_state"].astype(object))
    out.columns.name = "final state"
    return out.astype("int64")


def credits_per_user(results: Results) -> pd.DataFrame:
    """Per user: money charged (minor units), the credits it buys, and the credits granted.

    The money side is Stripe's record of the run (the users frame's ``spend_minor``,
    ``credits_bought`` and, with subscriptions, ``subscription_credits``), so a payment whose
    answer was lost on the way back still counts. The credits side is measured apart from it: the
    final stored balance minus the starting balance plus the credits served requests used. The
    billing promises ``paid_for == granted`` for every user.
    """
    by_user = results.users.set_index("user")
    out = by_user[["currency"]].astype({"currency": object})
    out["charged_minor"] = by_user["spend_minor"].astype("int64")
    paid_for = by_user["credits_bought"]
    if "subscription_credits" in by_user:
        paid_for = paid_for + by_user["subscription_credits"]
    out["paid_for"] = paid_for.astype("int64")
    granted = by_user["final_balance"] - by_user["starting_balance"] + by_user["credits_used"]
    out["granted"] = granted.astype("int64")
    return out


def money_vs_credits(results: Results) -> pd.DataFrame:
    """Per currency: top-ups credited, money charged (major units), the credits that money buys
    at the price table, and the credits granted (see :func:`credits_per_user`)."""
    per_user = credits_per_user(results).assign(topups=results.users.set_index("user")["topups"])
    grouped = per_user.groupby("currency")
    out = pd.DataFrame(
        {
            "users": grouped.size(),
            "topups_credited": grouped["topups"].sum(),
            "charged": grouped["charged_minor"].sum().astype("float64"),
            "credits_paid_for": grouped["paid_for"].sum(),
            "credits_granted": grouped["granted"].sum(),
        }
    )
    out["charged"] /= [10 ** CURRENCY_EXPONENTS[c] for c in out.index]
    return out


#: The one rule of :func:`invariants_table` about what users are told rather than the money.
NOTIFIED_RULE = "paid top-ups notified as succeeded"


def invariants_table(results: Results) -> pd.DataFrame:
    """The billing's rules, re-checked from the frames alone: items checked and breaches.

    ``sim.run`` already checks its invariants against the store and the gateway; this table
    checks the same promises from what the frames show, so a notebook states them in numbers,
    and adds the notification promise (:data:`NOTIFIED_RULE`), which ``sim.run`` does not check.
    """
    events, users = results.events, results.users
    cooldown = results.scenario.billing.cooldown_hours * HOUR
    crossed = crossings(events, users)

    last_seen = events[events["balance"].notna()].groupby("user")["balance"].last()
    final = users.set_index("user")["final_balance"].reindex(last_seen.index)
    money = credits_per_user(results)

    claimed = attempts(events).dropna(subset=["claimed_at"]).sort_values(_KEY)
    gaps = claimed.groupby("user")["claimed_at"].diff().dropna()

    # "Every success produces a notification": top-ups notified as succeeded, at the user's
    # amount, against the top-up credits Stripe was paid for.
    by_user = users.set_index("user")
    notified = by_user["topups"] * by_user["amount"]
    rows = [
        ("last balance logged = stored balance", len(final), int((last_seen != final).sum())),
        ("credits granted = credits paid for", len(money),
         int((money["granted"] != money["paid_for"]).sum())),
        (NOTIFIED_RULE, len(by_user), int((notified != by_user["credits_bought"]).sum())),
        ("at most one paid charge per crossing", len(crossed), int((crossed["paid"] > 1).sum())),
        ("claims at least one cooldown apart", len(gaps), int((gaps < cooldown).sum())),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["rule", "checked", "breaches"]).set_index("rule")


def plot_bars(values: pd.Series, ax: Axes, *, title: str, xlabel: str, ylabel: str) -> Axes:
    """A labelled bar chart of one series (declines by code, refusals by latency, ...)."""
    _ = ax.bar([str(i) for i in values.index], values.to_numpy(), label=values.name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="upper right")
    return ax


# ------------------------------------------------------------------------- threshold review
