"""Hand-built frames for the analysis tests: event logs, users and metrics with known answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from sim.eventlog import COLUMNS
from sim.results import events_frame, metrics_frame
from sim.usage import TICKS


def row(seconds: float, user: str | None, kind: str, **fields: Any) -> tuple[Any, ...]:
    """One event-log row at ``seconds``, every column not given left empty."""
    values = {"time": round(seconds * TICKS), "user": user, "kind": kind, **fields}
    return tuple(values.get(column) for column in COLUMNS)


def frame(*rows: tuple[Any, ...]) -> pd.DataFrame:
    """An events frame with the simulation's own column types."""
    return events_frame(list(rows))


def people(*users: tuple[str, int], card: str = "pm_card_visa") -> pd.DataFrame:
    """A users frame: (user, threshold) pairs of group ``regular``, auto top-up on, for 10,000
    credits in EUR."""
    return pd.DataFrame(
        {
            "user": [u for u, _ in users],
            "group": "regular",
            "enabled": True,
            "threshold": [t for _, t in users],
            "amount": 10_000,
            "currency": "eur",
            "card": card,
            "final_state": "active",
        }
    )


def paid_topup(at: float, user: str, attempt: int, balance: int, intent: str) -> list[tuple]:
    """The rows of a successful charge: the gateway call, then the credit notification (which
    names the PaymentIntent it reports, as the simulation's notices do)."""
    return [
        row(at, user, "charge", credits=10_000, attempt=attempt, outcome="succeeded",
            amount_minor=1_000, currency="eur", payment_intent=intent),
        row(at, user, "topup_succeeded", balance=balance, attempt=attempt, outcome="succeeded",
            payment_intent=intent),
    ]  # fmt: skip


# One user, threshold 1,000: a crossing at t=10 claims attempt 1, which lands at t=12; a second
# crossing at t=100 is blocked by the cooldown, then refused, and claims attempt 2 at t=4000.
STORY = frame(
    row(0, "u1", "request", credits=400, balance=1_100, trigger="none"),
    row(10, "u1", "request", credits=200, balance=900, trigger="claimed", attempt=1),
    row(11, "u1", "request", credits=100, balance=800, trigger="pending"),
    *paid_topup(12, "u1", 1, 10_800, "pi_a"),
    row(17, "u1", "webhook", attempt=1, outcome="unchanged", payment_intent="pi_a"),
    row(50, "u1", "request", credits=9_850, balance=950, trigger="cooling"),
    row(60, "u1", "refused", credits=1_000, balance=950),
    row(4000, "u1", "refused", credits=1_000, balance=950, attempt=2),
    *paid_topup(4002, "u1", 2, 10_950, "pi_b"),
)
USERS = people(("u1", 1_000))

# Three users' attempts: u1 retried a transient error and was credited; u2 was declined twice
# (insufficient funds) and suspended; u3 was declined once (expired card), with no notice yet.
FAILURES = frame(
    row(0, "u1", "charge", attempt=1, outcome="transient"),
    row(0, "u1", "charge", attempt=1, outcome="succeeded", payment_intent="pi_a"),
    row(0, "u1", "topup_succeeded", balance=10_000, attempt=1),
    row(5, "u2", "charge", attempt=1, outcome="declined", decline_code="insufficient_funds"),
    row(5, "u2", "topup_declined", balance=0, attempt=1),
    row(9, "u2", "charge", attempt=2, outcome="declined", decline_code="insufficient_funds"),
    row(9, "u2", "topup_declined", balance=0, attempt=2),
    row(9, "u2", "topup_suspended", balance=0),
    row(9, "u3", "charge", attempt=1, outcome="declined", decline_code="expired_card"),
    row(9, "u3", "webhook", attempt=1, payment_intent="pi_c"),
)


def scraped(
    grows: Mapping[tuple[str, str], Mapping[float, float]], *, until: float, every: float = 300.0
) -> pd.DataFrame:
    """A metrics frame as ``Results.metrics`` lays it out, read every ``every`` seconds from 0
    to ``until``: each ``(name, labels)`` series is a counter that grows by ``grows[t]`` at
    sample time ``t`` (and not in between), stored cumulative as Prometheus stores it."""
    times = [every * k for k in range(round(until / every) + 1)]
    rows = []
    for (name, labels), steps in grows.items():
        value = 0.0
        for time in times:
            value += steps.get(time, 0.0)
            rows.append((time, name, labels, value))
    return metrics_frame(rows)
