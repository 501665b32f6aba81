"""The event log: rows written by name land in their columns, in the order written."""

from __future__ import annotations

import pytest

from sim.eventlog import COLUMNS, EventLog


def test_rows_hold_each_named_column_in_its_place() -> None:
    """Requests, refusals, failures and named events each fill their own columns, the rest
    empty, in the order written; ``add`` stamps the current time."""
    clock = [5]
    log = EventLog(lambda: clock[0])
    log.served(1, "u1", 30, 970, "claimed", 1)
    log.refused(2, "u2", 50, 40, "claimed", 2)
    log.failed(3, "u3", 7)
    clock[0] = 9
    log.add("charge", "u1", credits=10_000, attempt=1, outcome="succeeded", amount_minor=1_000,
            currency="eur", payment_intent="pi_1")  # fmt: skip
    log.add("cache_flush")
    as_dicts = [dict(zip(COLUMNS, row, strict=True)) for row in log.rows]
    filled = [{k: v for k, v in row.items() if v is not None} for row in as_dicts]
    assert filled == [
        {"time": 1, "user": "u1", "kind": "request", "credits": 30, "balance": 970,
         "trigger": "claimed", "attempt": 1},
        {"time": 2, "user": "u2", "kind": "refused", "credits": 50, "balance": 40,
         "trigger": "claimed", "attempt": 2},
        {"time": 3, "user": "u3", "kind": "request_failed", "credits": 7},
        {"time": 9, "user": "u1", "kind": "charge", "credits": 10_000, "attempt": 1,
         "outcome": "succeeded", "amount_minor": 1_000, "currency": "eur",
         "payment_intent": "pi_1"},
        {"time": 9, "kind": "cache_flush"},
    ]  # fmt: skip
    assert all(len(row) == len(COLUMNS) for row in log.rows)
    assert len(log) == 5
    columns = log.columns()
    assert list(columns) == list(COLUMNS)
    assert [tuple(values) for values in zip(*columns.values(), strict=True)] == log.rows


def test_clear_forgets_every_row_and_writing_goes_on() -> None:
    """A finished run's log is cleared once its frame is built: no row is left, and rows
    written afterwards start a new log."""
    log = EventLog(lambda: 7)
    log.served(1, "u1", 30, 970, None, None)
    log.add("cache_flush")
    log.clear()
    assert (len(log), log.rows, log.columns()["kind"]) == (0, [], [])
    log.add("cache_flush")
    assert [row[:3] for row in log.rows] == [(7, None, "cache_flush")]


@pytest.mark.parametrize("name", ["time", "colour"])
def test_add_refuses_a_column_it_does_not_take(name: str) -> None:
    """The time is ``add``'s to stamp, and an unknown name is no column: a TypeError naming
    it, and nothing is written."""
    log = EventLog(lambda: 0)
    with pytest.raises(TypeError, match=f"no event log column '{name}'"):
        log.add("x", **{name: 1})
    assert log.rows == []
    assert len(log) == 0
