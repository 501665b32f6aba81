"""Time to recover after each fault window of a run: what the fault hit, and how long after its
end the last of it was made good.

For each outage window of the scenario (``outages`` and ``daily_outages`` of the gateway, the
store and the webhook endpoint, in time order), :func:`fault_recovery` finds what the window
hit and when each was made good:

=========  ==============================================  ====================================
fault      hit (``affected``)                              made good at
=========  ==============================================  ====================================
gateway    users with a transient charge error in it       their next credited top-up
store      users with a failed request in it               their next served request
webhooks   deliveries refused in it (by payment intent)    that intent's next applied delivery
=========  ==============================================  ====================================

``recovered_after_s`` is the time from the window's end to the last of these (0 when nothing was
hit or all was made good inside the window; NaN when something never was: ``unrecovered``
counts those). ``users_dry_at_end`` counts users dry at the window's end (a user is *dry* from a
refused request until their next credited top-up, as in ``sim.results``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import Results

#: Fault tables whose windows are measured, in the order rows are listed for equal windows.
FAULTS = ("gateway", "store", "webhooks")
#: The recovery table's columns.
RECOVERY_COLUMNS = (
    "fault", "start_s", "end_s", "affected", "unrecovered", "recovered_after_s",
    "users_dry_at_end",
)  # fmt: skip
#: Webhook outcomes of a delivery the handler did not apply.
_NOT_APPLIED = ("unreachable", "failed", "crashed", "rejected")


def fault_windows(results: Results) -> pd.DataFrame:
    """Every outage window of the run's scenario that starts before its end: ``fault``,
    ``start_s``, ``end_s`` (seconds from the start; an end past the run is cut to it)."""
    horizon = results.scenario.horizon
    faults = results.scenario.faults
    rows = [
        (name, start, min(end, horizon))
        for name in FAULTS
        for start, end in getattr(faults, name).outages
        if start < horizon
    ]
    frame = pd.DataFrame(rows, columns=["fault", "start_s", "end_s"])
    return frame.sort_values(["start_s", "end_s"], kind="stable").reset_index(drop=True)


def fault_recovery(results: Results) -> pd.DataFrame:
    """One row per fault window: ``fault``, ``start_s``, ``end_s``, ``affected``,
    ``unrecovered``, ``recovered_after_s``, ``users_dry_at_end`` (see the module docstring)."""
    events = results.events
    kind = events["kind"]
    refused = _times(events[kind == "refused"], "user")
    credited = _times(events[kind == "topup_succeeded"], "user")
    served = _times(events[kind == "request"], "user")
    transient = events[(kind == "charge") & (events["outcome"] == "transient")]
    failed = events[kind == "request_failed"]
    webhooks = events[kind == "webhook"]
    unreachable = webhooks[webhooks["outcome"] == "unreachable"]
    applied = _times(webhooks[~webhooks["outcome"].isin(_NOT_APPLIED)], "payment_intent")
    hits = {
        "gateway": (transient, "user", credited),
        "store": (failed, "user", served),
        "webhooks": (unreachable, "payment_intent", applied),
    }
    rows = []
    for window in fault_windows(results).itertuples(index=False):
        start, end = window.start_s, window.end_s
        hit, key, good = hits[window.fault]
        inside = hit[(hit["time"] >= start) & (hit["time"] < end)]
        # Made good after the hit, and no earlier than the window's end counts as 0.
        waits = [
            max(_next(good.get(str(who)), when) - end, 0.0)
            for who, when in inside.groupby(key)["time"].max().items()
        ]
        unrecovered = int(np.isnan(waits).sum())
        recovered = np.nan if unrecovered else max(waits, default=0.0)
        dry = sum(
            _last(times, end) > _last(credited.get(user), end) for user, times in refused.items()
        )
        rows.append((window.fault, start, end, len(waits), unrecovered, recovered, dry))
    return pd.DataFrame(rows, columns=list(RECOVERY_COLUMNS))


def _times(rows: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """Per value of column ``key`` (a user, a payment intent), the sorted times of ``rows``."""
    return {str(k): np.sort(group["time"].to_numpy()) for k, group in rows.groupby(key)}


def _last(times: np.ndarray | None, at: float) -> float:
    """The last time at or before ``at`` (minus infinity when none)."""
    if times is None:
        return -np.inf
    i = np.searchsorted(times, at, side="right")
    return float(times[i - 1]) if i else -np.inf


def _next(times: np.ndarray | None, at: float) -> float:
    """The first time after ``at`` (NaN when none)."""
    if times is None:
        return np.nan
    i = np.searchsorted(times, at, side="right")
    return float(times[i]) if i < len(times) else np.nan
