"""One user's balance over time: the picture that explains auto top-up."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes

from .kinds import HOUR
from .samples import titled


def busiest_user(users: pd.DataFrame, group: str) -> str:
    """The user of ``group`` with the most top-ups (the first such, by id): the one whose balance
    history shows auto top-up at work most often."""
    mine = users[users["group"] == group]
    return str(mine.loc[mine["topups"].idxmax(), "user"])


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


def plot_balance(
    events: pd.DataFrame, users: pd.DataFrame, user: str, ax: Axes, *, sample: str
) -> Axes:
    """Draw ``user``'s balance as a step line, their threshold, top-ups and refused requests.

    The one picture that explains auto top-up: the balance falls with use, crosses the threshold,
    jumps when credits land, and refusals show where it did not land in time. The legend sits
    outside the axes, right of them, so that it never hides the balance (which can be anywhere,
    a top-up lifting it to the top of the axes). ``sample`` (:func:`~.samples.sample_size`) is
    the run the user was drawn from, stated in the title.
    """
    history = balance_history(events, user)
    mine = users.loc[users["user"] == user].iloc[0]
    threshold = int(mine["threshold"])
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
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    title = f"One {mine['group']} user's balance, with auto top-ups"
    return titled(ax, title, f"one user of {sample}")
