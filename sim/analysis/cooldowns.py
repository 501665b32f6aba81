"""The cooldown: the triggers it blocks, who runs dry and why, and what its length does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..stats import INTERVALS
from .kinds import HOUR, of_kinds
from .samples import error_bars, with_mean, with_share
from .topups import attempts


def triggers(events: pd.DataFrame) -> pd.DataFrame:
    """Served requests by what they did about auto top-up (``claimed``, ``cooling``, ...).

    ``cooling`` rows are triggers the cooldown blocked: the balance was at or below the threshold
    but a top-up had been claimed less than one cooldown before.
    """
    served = of_kinds(events, "request")
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
    refused = of_kinds(events, "refused")[["time", "user", "credits", "balance"]]
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
    """Refused requests and the users who had one, per reason, with users per 1,000 and its 95%
    Wilson interval over the run's ``users``."""
    grouped = reasons.groupby("reason")
    out = pd.DataFrame({"refused": grouped.size(), "users": grouped["user"].nunique()})
    out = with_share(out, "users_per_1000", out["users"], users, per=1000)
    return out.sort_index()


def who_ran_dry(
    reasons: pd.DataFrame, users: pd.DataFrame, days: float, reason: str = "cooldown"
) -> pd.DataFrame:
    """Users who had a request refused for ``reason`` against those who did not: how much they
    used and how often they topped up, per day, so the table says who runs dry.

    The hours dry per user carry their 95% interval (mean +- 1.96 standard errors across the
    row's ``users``): two groups of a handful of users each differ by chance.
    """
    hit = users["user"].isin(reasons.loc[reasons["reason"] == reason, "user"]).to_numpy()
    label = pd.Series(
        np.where(hit, f"refused in {reason}", f"never refused in {reason}"), index=users.index
    )
    grouped = users.groupby(label)
    out = pd.DataFrame(
        {
            "users": grouped.size(),
            "requests_per_day": grouped["requests"].mean() / days,
            "credits_used_per_day": grouped["credits_used"].mean() / days,
            "topups_per_day": grouped["topups"].mean() / days,
        }
    )
    out = with_mean(out, "dry_hours_per_user", users["dry_seconds"], label, scale=1 / HOUR)
    out.index.name = None
    return out


def cooldown_effect(grid: pd.DataFrame) -> pd.DataFrame:
    """Per cooldown of a sweep (``billing.cooldown_hours``): the users each point rests on, and
    its headline figures (:data:`sim.stats.INTERVALS`: the share of users who ran dry, hours dry
    per user, top-ups per user-month), each with its 95% interval.

    The trade-off a cooldown sets: shorter ones charge more often, longer ones leave bursty users
    without credits until they end. Figures without an interval are left out: a sweep of tens of
    users per point cannot tell a trend from chance without one.
    """
    columns = [f"{f}{end}" for f in INTERVALS for end in ("", "_ci_low", "_ci_high")]
    out = grid[["users", *columns]].copy()
    out.insert(0, "cooldown_h", grid["billing.cooldown_hours"].astype("float64"))
    return out.sort_values("cooldown_h").set_index("cooldown_h")


#: The panels of :func:`plot_cooldown_effect`: figure, panel title and y axis label.
EFFECT_PANELS = (
    ("dry_per_1000_users", "Users who ran dry", "users per 1,000"),
    ("dry_hours_per_user", "Hours without credits", "hours per user (mean)"),
    ("topups_per_user_month", "Top-ups charged", "top-ups per user per 30 days (mean)"),
)


def plot_cooldown_effect(
    effect: pd.DataFrame, axes: Sequence[Axes], *, sample: str
) -> Sequence[Axes]:
    """The figures of :func:`cooldown_effect` against the cooldown on a log hour axis, one panel
    each, every point with its 95% interval; ``sample`` (:func:`~.samples.sample_size`) goes in
    the figure's title.

    The share of users who ran dry is drawn on its whole range (0 to 1,000 per 1,000), so a jump
    made by a few users of a small sample looks no bigger than it is.
    """
    hours = effect.index.to_numpy()
    for ax, (column, title, label) in zip(axes, EFFECT_PANELS, strict=True):
        _ = ax.errorbar(hours, effect[column], yerr=error_bars(effect, column), marker="o",
                        capsize=3)  # fmt: skip
        ax.set_title(title)
        ax.set_ylabel(f"{label}, 95% CI")
        ax.set_xscale("log")
        ax.set_xticks(hours, [f"{h:g}" for h in hours])
        ax.minorticks_off()
        ax.set_xlabel("cooldown (hours, log scale)")
        ax.set_ylim(bottom=0)
    axes[0].set_ylim(0, 1050)  # the whole range, with room for a point at 1,000
    axes[0].figure.suptitle(f"What the cooldown's length does\n({sample})")
    return axes
