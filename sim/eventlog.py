"""The event log of one run: one row per thing that happened, in the order it happened.

Callers name what they write: a request's outcome through :meth:`EventLog.served`,
:meth:`EventLog.refused` and :meth:`EventLog.failed` (the hot path, one call per request), and
everything else through :meth:`EventLog.add` with the columns as keywords. The rows are kept
end to end in one flat list, :data:`COLUMNS` values a row, and the typed DataFrame is built
once at the end from its columns (``sim.results.events_frame``). A row is thus no object of its
own: a tuple a row cost a month at decision scale about 150 MB more and one more object a
request for the cyclic garbage collector to walk, which is what made two sweep workers on two
cores slow each other down (docs/performance.md).
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
_WIDTH = len(COLUMNS)
_BLANK = (None,) * _WIDTH


class EventLog:
    """Rows in time order; ``now`` gives the current SimPy time for rows written by :meth:`add`."""

    __slots__ = ("_extend", "_now", "_values")

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now
        #: Every value written so far, row after row, each row in :data:`COLUMNS` order.
        self._values: list[Any] = []
        self._extend = self._values.extend

    def __len__(self) -> int:
        return len(self._values) // _WIDTH

    @property
    def rows(self) -> list[Row]:
        """Every row written so far, as tuples in :data:`COLUMNS` order (built on each read)."""
        return list(zip(*[iter(self._values)] * _WIDTH, strict=True))

    def clear(self) -> None:
        """Forget every row (a run's log is let go once its frame is built: ``World.close``)."""
        self._values.clear()

    def columns(self) -> dict[str, list[Any]]:
        """Every column's values, row after row, by name."""
        values = self._values
        return {name: values[index::_WIDTH] for index, name in enumerate(COLUMNS)}

    def served(
        self, time: int, user: str, credits: int, balance: int, trigger: str | None,
        attempt: int | None, outcome: str | None = None,
    ) -> None:  # fmt: skip
        """A request that took its credits (``trigger``: what it did about auto top-up;
        ``outcome`` is ``retry`` for a refused request sent again)."""
        self._extend((time, user, "request", credits, balance, trigger, attempt,
                      outcome, None, None, None, None, None))  # fmt: skip

    def refused(
        self, time: int, user: str, credits: int, balance: int, trigger: str | None,
        attempt: int | None, outcome: str | None = None,
    ) -> None:  # fmt: skip
        """A request refused for a balance below its cost (``trigger`` and ``attempt``: what it
        did about auto top-up, as for :meth:`served`; ``outcome`` too)."""
        self._extend((time, user, "refused", credits, balance, trigger, attempt,
                      outcome, None, None, None, None, None))  # fmt: skip

    def failed(self, time: int, user: str, credits: int) -> None:
        """A request that failed (the store was unavailable, or its worker died): nothing taken."""
        self._extend((time, user, "request_failed", credits, None, None, None,
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
        self._extend(row)
