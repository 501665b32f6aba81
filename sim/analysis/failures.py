"""Failures: what the gateway answered, how each top-up attempt ended, declines by code,
retries of transient errors, the notifications sent and the states cards left users in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .kinds import ATTEMPT, NOTIFICATIONS, of_kinds
from .samples import error_bars, with_share
from .scales import plain_symlog
from .topups import attempts


def charge_outcomes(events: pd.DataFrame) -> pd.DataFrame:
    """Gateway calls by outcome, with the attempts and users they belong to."""
    charges = of_kinds(events, "charge")
    grouped = charges.groupby("outcome")
    out = pd.DataFrame(
        {
            "calls": grouped.size(),
            "attempts": charges.drop_duplicates(["outcome", *ATTEMPT]).groupby("outcome").size(),
            "users": grouped["user"].nunique(),
        }
    ).astype("int64")
    out.index = out.index.astype("string")
    return out.sort_index()


#: How an attempt can end, by the notification that ended it, in the order shown.
#: ``topup_declined`` is split by decline code (see :func:`attempt_outcomes`).
ENDINGS = {
    "topup_succeeded": "credited",
    "topup_declined": "declined",
    "topup_action_required": "needs authentication (SCA)",
    "topup_failed": "failed after retries",
    "topup_payment_method_missing": "no card saved",
    "none": "no notice (open at the end, skipped or broken)",
}
#: A credited attempt whose last gateway call got no answer: the charge went through but the
#: answer was lost, and the webhook or the attempt's recovery credited it.
UNANSWERED = "credited, last call unanswered"


def attempt_outcomes(events: pd.DataFrame, users: int) -> pd.DataFrame:
    """How each claimed attempt ended, one row per ending (every ending listed, zeros included):
    the attempts and their share of all attempts, the users who had one and their share of the
    run's ``users`` (per 1,000), each share with its 95% Wilson interval.

    Declines are split by the card's decline code, and credited attempts whose last call got no
    answer (:data:`UNANSWERED`) are told apart, so that one row is one thing a reader can act on.
    """
    tried = attempts(events)
    ending = tried["result"].map(ENDINGS).fillna(tried["result"]).astype(object)
    declined = tried["result"].eq("topup_declined").to_numpy()
    codes = tried["decline_code"].astype(object).fillna("no code")
    ending = ending.mask(declined, "declined: " + codes)
    unanswered = tried["result"].eq("topup_succeeded") & ~tried["outcome"].isin(["succeeded"])
    ending = ending.mask(unanswered.to_numpy(), UNANSWERED)
    order = [ENDINGS["topup_succeeded"], UNANSWERED]
    order += sorted(set(ending[declined])) or [ENDINGS["topup_declined"]]
    order += [label for kind, label in ENDINGS.items() if kind not in
              ("topup_succeeded", "topup_declined")]  # fmt: skip
    order += sorted(set(ending) - set(order))
    grouped = tried.groupby(ending)
    out = pd.DataFrame(
        {"attempts": grouped.size(), "users": grouped["user"].nunique()}, index=order
    )
    out = out.fillna(0).astype("int64")
    out = with_share(out, "attempts_pct", out["attempts"], len(tried), per=100)
    out = with_share(out, "users_per_1000", out["users"], users, per=1000)
    out.index.name = "ending"
    return out


def plot_attempt_outcomes(
    outcomes: pd.DataFrame, axes: Sequence[Axes], *, sample: str
) -> Sequence[Axes]:
    """Two panels of :func:`attempt_outcomes`: the share of attempts that ended each way (left)
    and the users who had such an ending, per 1,000 users (right), each bar with its 95%
    interval and its count written beside it. Horizontal bars, so every ending's name reads in
    full, on a symmetric-log scale, so a handful of declines shows beside hundreds of credited
    attempts; ``sample`` (:func:`~.samples.sample_size`) goes in the figure's title.
    """
    names = list(outcomes.index)[::-1]  # the first ending at the top
    shown = outcomes.loc[names]
    panels = (
        ("attempts_pct", "attempts", 1.0, "Attempts", "% of attempts"),
        ("users_per_1000", "users", 10.0, "Users who had one", "per 1,000 users"),
    )
    for ax, (column, count, linthresh, title, label) in zip(axes, panels, strict=True):
        values = shown[column].fillna(0).to_numpy(dtype="float64")
        _ = ax.barh(names, values, xerr=error_bars(shown, column), capsize=3, alpha=0.8,
                    color="tab:blue", ecolor="black")  # fmt: skip
        high = shown[f"{column}_ci_high"].fillna(0).to_numpy(dtype="float64")
        for y, (k, x) in enumerate(zip(shown[count], np.maximum(values, high), strict=True)):
            _ = ax.annotate(f"{k:,}", (x, y), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=8)  # fmt: skip
        plain_symlog(ax, "x", linthresh=linthresh, top=float(high.max()), room=1.6)
        ax.set_title(title)
        ax.set_xlabel(f"{label} (95% CI; log scale above {linthresh:g})")
    axes[1].tick_params(axis="y", labelleft=False)
    attempts_n = int(outcomes["attempts"].sum())
    axes[0].figure.suptitle(
        f"How top-up attempts ended\n({sample}; {attempts_n:,} attempts; counts beside the bars)"
    )
    return axes


def declines_by_code(events: pd.DataFrame) -> pd.DataFrame:
    """Declined charges by the card's decline code, with the users who hit each code."""
    declined = of_kinds(events, "charge")
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
    sent = of_kinds(events, *NOTIFICATIONS)
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
