"""The event log joined into one row per top-up attempt and one per threshold crossing.

Timing, cooldowns and the books all start from these two frames (terms in :mod:`sim.analysis`),
so they are built once, here, and linked only by ``(user, attempt)`` and equal ``payment_intent``
values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .kinds import ATTEMPT, DEDUCTIONS, NOTIFICATIONS, OUTCOMES, of_kinds


def attempts(events: pd.DataFrame) -> pd.DataFrame:
    """One row per claimed top-up attempt: when it was claimed, charged and ended, and how.

    Columns: ``user``, ``attempt``, ``claimed_at``, ``charged_at`` (first gateway call),
    ``answered_at`` (last call), ``calls``, ``transient`` (calls that hit a transient error),
    ``outcome`` (of the last call), ``decline_code``, ``payment_intent`` (of the last call, for
    linking only), ``ended_at`` and ``result`` (the notification that ended it; ``"none"`` when an
    attempt was skipped or broke without one).
    """
    claims = events[events["kind"].isin(DEDUCTIONS) & events["attempt"].notna()]
    claimed = claims.groupby(ATTEMPT)["time"].min().rename("claimed_at")
    charges = of_kinds(events, "charge").assign(
        transient=lambda c: c["outcome"].isin(["transient"]).astype("int64")
    )
    calls = charges.groupby(ATTEMPT).agg(
        charged_at=("time", "min"),
        answered_at=("time", "max"),
        calls=("time", "size"),
        transient=("transient", "sum"),
    )
    # The last call's own fields (groupby's "last" would skip missing values across rows).
    last = charges.groupby(ATTEMPT).tail(1).set_index(ATTEMPT)
    calls = calls.join(last[["outcome", "decline_code", "payment_intent"]])
    ends = (
        of_kinds(events, *OUTCOMES)
        .groupby(ATTEMPT)
        .agg(ended_at=("time", "min"), result=("kind", "first"))
    )
    out = pd.concat([claimed, calls, ends], axis=1).sort_index().reset_index()
    out["attempt"] = out["attempt"].astype("int64")
    out["calls"] = out["calls"].fillna(0).astype("int64")
    out["transient"] = out["transient"].fillna(0).astype("int64")
    out["result"] = out["result"].astype("string").fillna("none")
    return out


def linked_kinds(events: pd.DataFrame) -> list[str]:
    """Kinds whose rows name a PaymentIntent and reach the billing after the gateway's answer
    (webhook deliveries, say): every such kind but the charge itself and the billing's own
    notices (:data:`~.kinds.NOTIFICATIONS`), which name the payment they report but are written
    with its credit, so their delay is always zero.

    Found from the data, not from a list of names, so a new kind that carries the intent gets its
    delay measured as soon as the simulation logs it.
    """
    carrying = events.loc[events["payment_intent"].notna(), "kind"]
    return sorted(set(carrying.tolist()) - {"charge", *NOTIFICATIONS})


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
    claims = inside[deduction[is_crossing] & inside["attempt"].notna()][["segment", *ATTEMPT]]
    # A request that took over an attempt past its lease names that same attempt again.
    claims = claims.drop_duplicates(ATTEMPT).astype({"attempt": "int64"})
    claims = claims.merge(attempts(events), on=ATTEMPT, how="left")
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
        first_seen = of_kinds(events, linked).groupby("payment_intent")["time"].min()
        arrived = paying["payment_intent"].map(first_seen)
        out[f"{linked}_delay_s"] = (arrived - paying["answered_at"]).astype("float64")
    return out.reset_index(drop=True)


def _empty_crossings() -> pd.DataFrame:
    """The frame :func:`crossings` returns when there is none: the same columns and types, so
    that callers never test for emptiness before selecting a column."""
    columns = {"user": "string", "time": "float64", "requests": "int64", "refused": "int64",
               "claims": "int64", "paid": "int64"}  # fmt: skip
    timings = ["claimed_at", "charged_at", "credited_at", "to_claim_s", "to_charge_s",
               "to_credit_s", "latency_s"]  # fmt: skip
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()} | {
        c: pd.Series(dtype="float64") for c in timings
    })  # fmt: skip
