"""The event log of one run: one row per thing that happened, in the order it happened.

Callers name what they write: a request's outcome through :meth:`EventLog.served`,
:meth:`EventLog.refused` and :meth:`EventLog.failed` (the hot path, one call per request), and
everything else through :meth:`EventLog.add` with the columns as keywords. Each row is kept as a
plain tuple in :data:`COLUMNS` order, the cheapest record Python builds (a request costs about
0.3 µs to log), and the typed DataFrame is built once at the end (``sim.results.events_frame``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The event log's columns, in the order every row holds them. ``time`` is SimPy's integer
#: milliseconds; ``event`` is the Stripe event type of a ``webhook`` row; ``payment_intent`` holds
#: the Stripe object an event is about.
COLUMNS = (
    "time", "user", "kind", "credits", "balance", "trigger", "attempt",
    "outcome", "decline_code", "amount_minor", "currency", "payment_intent", "event",
)  # fmt: skip
Row = tuple[Any, ...]
_FIELDS = {name: index for index, name in enumerate(COLUMNS)}
_NAMED = frozenset(COLUMNS[3:])  # what add() takes as keywords: time, user and kind are its own
_BLANK = (None,) * len(COLUMNS)


class EventLog:
    """Rows in time order; ``now`` gives the current SimPy time for rows written by :meth:`add`."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now
        #: Every row written so far, in :data:`COLUMNS` order.
        self.rows: list[Row] = []

    def served(
        self, time: int, user: str, credits: int, balance: int, trigger: str | None,
        attempt: int | None, outcome: str | None = None,
    ) -> None:  # fmt: skip
        """A request that took its credits (``trigger``: what it did about auto top-up;
        ``outcome`` is ``retry`` for a refused request sent again)."""
        self.rows.append((time, user, "request", credits, balance, trigger, attempt,
                          outcome, None, None, None, None, None))  # fmt: skip

    def refused(
        self, time: int, user: str, credits: int, balance: int, trigger: str | None,
        attempt: int | None, outcome: str | None = None,
    ) -> None:  # fmt: skip
        """A request refused for a balance below its cost (``trigger`` and ``attempt``: what it
        did about auto top-up, as for :meth:`served`; ``outcome`` too)."""
        self.rows.append((time, user, "refused", credits, balance, trigger, attempt,
                          outcome, None, None, None, None, None))  # fmt: skip

    def failed(self, time: int, user: str, credits: int) -> None:
        """A request that failed (the store was unavailable, or its worker died): nothing taken."""
        self.rows.append((time, user, "request_failed", credits, None, None, None,
                          None, None, None, None, None, None))  # fmt: skip

    def add(self, kind: str, user: str | None = None, **columns: Any) -> None:
        """One row of ``kind`` now; the other columns by name, the rest empty."""
        unknown = columns.keys() - _NAMED
        if unknown:
            raise TypeError(f"no event log column {sorted(unknown)[0]!r}; columns: {COLUMNS}")
        row = list(_BLANK)
        row[0], row[1], row[2] = self._now(), user, kind
        for name, value in columns.items():
            row[_FIELDS[name]] = value
        self.rows.append(tuple(row))
