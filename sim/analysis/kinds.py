"""The event kinds the analysis reads, named once for every module of :mod:`sim.analysis`."""

from __future__ import annotations

import pandas as pd

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
#: Seconds in an hour: event times are seconds from the start, figures read in hours.
HOUR = 3_600.0
#: The columns that name one attempt: attempts are numbered per user.
ATTEMPT = ["user", "attempt"]


def of_kinds(events: pd.DataFrame, *kinds: str) -> pd.DataFrame:
    """The rows of the given kinds (``isin`` gives plain booleans, never ``NA``)."""
    return events[events["kind"].isin(kinds)]
