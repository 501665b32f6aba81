"""Result frames: tidy columns, per-user totals that add up, files on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import Results, parse_scenario, run
from sim.backends import get_backend
from sim.eventlog import COLUMNS, EventLog, Row
from sim.results import events_frame
from sim.usage import TICKS
from sim.world import World

from .conftest import constant, one_group, shipped


@pytest.fixture(scope="module")
def results() -> Results:
    """A small card_failures run."""
    return run(shipped("card_failures", users=30, days=5), backend="memory")


def test_events_have_the_documented_columns(results: Results) -> None:
    """The event log has one column per field, with nullable integer and string types."""
    events = results.events
    assert list(events.columns) == [COLUMNS[0], "timestamp", *COLUMNS[1:]]
    assert events["time"].dtype == "float64" and events["balance"].dtype == "Int64"
    # The timestamp is the scenario's start plus the time, in UTC.
    start = pd.Timestamp(results.scenario.start, unit="s", tz="UTC")
    offsets = (events["timestamp"] - start).dt.total_seconds()
    assert (offsets - events["time"]).abs().max() < 1e-6
    assert set(events["kind"]) >= {"request", "charge", "topup_succeeded", "topup_declined"}


def test_user_totals_add_up_to_the_events(results: Results) -> None:
    """Per-user counts sum to the event counts, and the summary to the users."""
    events, users, summary = results.events, results.users, results.summary.iloc[0]
    assert len(users) == 30 and users["user"].is_unique
    assert users["requests"].sum() == (events["kind"] == "request").sum() == summary["requests"]
    served = events[events["kind"] == "request"]
    used = {u: int(served.loc[served["user"] == u, "credits"].sum()) for u in users["user"]}
    assert users.set_index("user")["credits_used"].to_dict() == used
    assert users["topups"].sum() == summary["topups"]
    assert (users["final_balance"] >= 0).all()
    assert len(results.summary) == 1


def test_spend_matches_credits_bought_at_the_price_table(results: Results) -> None:
    """Every top-up is 10,000 credits for EUR 10.00: spend in cents = credits bought / 10."""
    users = results.users
    assert users["credits_bought"].sum() > 0
    assert (users["spend_minor"] * 10 == users["credits_bought"]).all()


def test_dry_time_runs_from_refusal_to_the_next_top_up() -> None:
    """A user who cannot top up is dry from the first refused request to the end."""
    scenario = one_group(constant(60, 100), days=1 / 24, balance=1_000,
                         card="pm_card_chargeDeclined")  # fmt: skip
    users = run(scenario, backend="memory").users
    assert users.loc[0, "first_dry_at_s"] == 660
    assert users.loc[0, "dry_seconds"] == 3600 - 660


def test_write_saves_parquet_and_csv(results: Results, tmp_path: Path) -> None:
    """write() stores each frame as Parquet (and CSV on request) that reads back equal."""
    paths = results.write(tmp_path, csv=True)
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{ext}" for n in ("events", "users", "summary", "groups") for ext in ("parquet", "csv")
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "users.parquet"), results.users)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "groups.parquet"), results.groups)


def test_table_is_one_aligned_line_per_figure(results: Results) -> None:
    """The printable summary has one line per summary column."""
    lines = results.table().splitlines()
    assert len(lines) == len(results.summary.columns)
    assert lines[0].split() == ["scenario", "card_failures"]


def test_rows_say_what_they_are_about() -> None:
    """A refused request says what it did about auto top-up (``trigger``), a credited top-up
    names its PaymentIntent (the one its charge row names), and a store fault names the
    operation that failed (``event``)."""
    raw = {
        "name": "about", "users": 3, "days": 1, "seed": 4,
        "billing": {"cooldown_hours": 1.0},
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"threshold": 1000, "amount": 1000},
        "groups": {"g": {"share": 1.0, "balance": 1_500, "usage": {
            "arrivals": "constant", "requests_per_day": 1_440,
            "cost": {"dist": "fixed", "value": 100}}}},
        "faults": {"store": {"outages": [[5, 6]]}},
    }  # fmt: skip
    events = run(parse_scenario(raw, "t.toml"), seed=4, backend="memory", gateway="direct").events
    refused = events[events["kind"] == "refused"]
    assert set(refused["trigger"].dropna()) == {"claimed", "cooling"}
    assert (refused["attempt"].notna() == (refused["trigger"] == "claimed")).all()
    credited = events[events["kind"] == "topup_succeeded"]
    charges = events[(events["kind"] == "charge") & (events["outcome"] == "succeeded")]
    assert credited["payment_intent"].notna().all()
    assert set(credited["payment_intent"]) == set(charges["payment_intent"])
    faults = events[events["kind"] == "store_fault"]
    assert len(faults) > 0 and set(faults["event"]) == {"deduct"}


def _frame_from_records(rows: list[Row], start: float | None) -> pd.DataFrame:
    """The event log as pandas' record parsing builds it, each column converted afterwards: the
    reference :func:`events_frame` must equal, dtypes and values."""
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    ticks = frame["time"].astype("int64")
    frame["time"] = ticks / TICKS
    if start is not None:
        frame.insert(1, "timestamp", pd.to_datetime(round(start * TICKS) + ticks, unit="ms",
                                                    utc=True))  # fmt: skip
    for column in ("credits", "balance", "attempt", "amount_minor"):
        frame[column] = frame[column].astype("Int64")
    for column in COLUMNS[1:]:
        if frame[column].dtype != "Int64":
            frame[column] = frame[column].astype("string")
    return frame


@pytest.fixture(scope="module")
def chaos_log() -> tuple[EventLog, float]:
    """The event log of a small chaos run (every kind of row: faults, crashes, webhooks,
    declines, reconciles) and its start."""
    scenario = shipped("chaos", users=30, days=2)
    opened = get_backend("memory").open()
    try:
        world = World(scenario, scenario.seed, opened, gateway="direct")
        world.run()
    finally:
        opened.close()
    return world.events, scenario.start


@pytest.mark.parametrize("with_start", [True, False])
def test_events_frame_equals_the_frame_built_from_records(
    chaos_log: tuple[EventLog, float], with_start: bool
) -> None:
    """The column-wise frame has exactly the dtypes and values of pandas' record-built one,
    for a run's log, for its rows and for none."""
    log, start = chaos_log
    rows = log.rows
    when = start if with_start else None
    assert {row[2] for row in rows} >= {"request", "charge", "webhook", "store_fault"}
    expected = _frame_from_records(rows, when)
    for given in (log, rows):
        pd.testing.assert_frame_equal(events_frame(given, when), expected, check_exact=True)
    empty = _frame_from_records([], when)
    for given in (EventLog(lambda: 0), []):
        pd.testing.assert_frame_equal(events_frame(given, when), empty, check_exact=True)


def test_events_frame_keeps_every_column_of_a_full_row() -> None:
    """A row with every column set reads back value for value, nulls as ``<NA>``."""
    full = (1_500, "u1", "charge", 10, 20, "claimed", 3, "declined", "card_declined", 1_000,
            "eur", "pi_1", "payment_intent.succeeded")  # fmt: skip
    blank = (2_000, None, "cache_flush", *(None,) * 10)
    frame = events_frame([full, blank], start=0.0)
    pd.testing.assert_frame_equal(frame, _frame_from_records([full, blank], 0.0), check_exact=True)
    assert frame.loc[0, COLUMNS[1:]].tolist() == list(full[1:])
    assert frame.loc[1, COLUMNS[3:]].isna().all()


def test_events_frame_reads_rows_back_from_a_frame() -> None:
    """Rows taken back out of an events frame (empty cells are pandas' ``NA``) build it again."""
    rows = [
        (1_500, "u1", "charge", 10, None, None, 3, "declined", "card_declined", 1_000, "eur",
         "pi_1", None),
        (2_000, None, "cache_flush", *(None,) * 10),
    ]  # fmt: skip
    frame = events_frame(rows)
    back = [(round(r[0] * TICKS), *r[1:]) for r in frame.itertuples(index=False)]
    assert back[1][3] is pd.NA
    pd.testing.assert_frame_equal(events_frame(back), frame, check_exact=True)
