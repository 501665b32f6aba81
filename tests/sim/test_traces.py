"""Usage traces: a group replays a request log request by request, a usage profile is fitted
to a trace, and bad traces are refused with the file, the column and the row."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim import ScenarioError, parse_scenario, run
from sim.cli import main
from sim.traces import fit_usage, load_trace

from .conftest import SCENARIOS

START = "2026-01-01T00:00:00Z"
EPOCH = 1_767_225_600.0  # START


def _scenario(tmp_path: Path, usage: dict[str, Any], users: int = 2, **group: Any) -> Any:
    raw = {
        "name": "trace", "users": users, "days": 1, "seed": 1, "start": START,
        "auto_topup": {"enabled": False},
        "groups": {"g": {"share": 1.0, "balance": 10_000, "usage": usage, **group}},
    }  # fmt: skip
    return parse_scenario(raw, str(tmp_path / "t.toml"))


def _write(tmp_path: Path, text: str, name: str = "trace.csv") -> str:
    (tmp_path / name).write_text(text)
    return name


def _requests(scenario: Any) -> list[tuple[float, str, int]]:
    events = run(scenario, seed=1, backend="memory", gateway="direct").events
    rows = events[events["kind"].isin(["request", "refused"])]
    return list(zip(rows["time"], rows["user"], rows["credits"], strict=True))


def test_a_hand_written_trace_is_replayed_request_by_request(tmp_path: Path) -> None:
    """Seconds and zoned times alike; users by sorted id (alice is u000001); a request before
    the start or after the end is left out; equal times are ordered by user."""
    name = _write(tmp_path, (
        "user,timestamp,credits\n"
        "bob,30,5\n"
        "alice,2026-01-01T00:00:30Z,7\n"
        "alice,90.5,11\n"
        "bob,2025-12-31T23:59:00Z,99\n"
        "alice,86400,99\n"
        "bob,2026-01-01T01:00:00+01:00,3\n"
    ))  # fmt: skip
    scenario = _scenario(tmp_path, {"arrivals": "trace", "trace": name})
    # 01:00+01:00 is midnight UTC: the start itself, kept (the run is [start, end)).
    assert _requests(scenario) == [
        (0.0, "u000002", 3), (30.0, "u000001", 7), (30.0, "u000002", 5),
        (90.5, "u000001", 11),
    ]  # fmt: skip


def test_more_users_than_the_trace_has_replay_its_users_in_turn(tmp_path: Path) -> None:
    """Three users on a two-user trace: the third replays the first again."""
    name = _write(tmp_path, "user,timestamp,credits\na,10,1\nb,20,2\n")
    scenario = _scenario(tmp_path, {"arrivals": "trace", "trace": name}, users=3)
    assert _requests(scenario) == [
        (10.0, "u000001", 1), (10.0, "u000003", 1), (20.0, "u000002", 2),
    ]  # fmt: skip


def test_the_shipped_trace_scenario_replays_its_whole_trace() -> None:
    """``trace_replay``: every request of the sample trace, once, in the run."""
    scenario = parse_scenario(
        tomllib.loads((SCENARIOS / "trace_replay.toml").read_text()),
        str(SCENARIOS / "trace_replay.toml"),
    )
    trace = pd.read_csv(SCENARIOS / "traces" / "sample_usage.csv")
    results = run(scenario, seed=1, backend="memory", gateway="direct")
    assert int(results.users["requests"].sum() + results.users["refused"].sum()) == len(trace)
    assert int(results.users["credits_used"].sum()) == int(trace["credits"].sum())


def test_a_fitted_profile_recovers_the_law_that_drew_the_trace(tmp_path: Path) -> None:
    """Requests drawn by the simulator itself (Poisson 200 a day, diurnal amplitude 0.5 peaking
    at 10:00, lognormal cost of median 40 and sigma 0.5) and written as a trace: the fit finds
    each parameter back within a few percent."""
    usage = {
        "requests_per_day": 200, "diurnal_amplitude": 0.5, "peak_hour": 10,
        "cost": {"dist": "lognormal", "median": 40, "sigma": 0.5},
    }  # fmt: skip
    raw = {
        "name": "drawn", "users": 50, "days": 4, "seed": 3, "auto_topup": {"enabled": False},
        "groups": {"g": {"share": 1.0, "balance": 10**9, "usage": usage}},
    }  # fmt: skip
    events = run(parse_scenario(raw, "t.toml"), seed=3, backend="memory", gateway="direct").events
    requests = events[events["kind"] == "request"]
    path = tmp_path / "drawn.csv"
    requests.rename(columns={"time": "timestamp"})[["user", "timestamp", "credits"]].to_csv(
        path, index=False
    )
    fitted = fit_usage(load_trace(path, EPOCH))
    assert fitted["requests_per_day"] == pytest.approx(200, rel=0.05)
    assert fitted["diurnal_amplitude"] == pytest.approx(0.5, abs=0.05)
    assert fitted["peak_hour"] == pytest.approx(10, abs=0.5)
    assert fitted["cost"]["median"] == pytest.approx(40, rel=0.05)
    assert fitted["cost"]["sigma"] == pytest.approx(0.5, rel=0.05)


def test_fit_trace_prints_a_usage_table_a_scenario_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m sim fit-trace``: a comment naming the trace, then a usage table that parses
    as a group's usage."""
    assert main(["fit-trace", str(SCENARIOS / "traces" / "sample_usage.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# fitted to ") and "24 users, 6,827 requests" in out
    table = tomllib.loads(out)["groups"]["traced"]["usage"]
    scenario = _scenario(tmp_path, table)
    assert scenario.groups[0].usage.arrivals == "poisson"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,time,credits\na,1,1\n", "timestamp: missing column"),
        ("user,timestamp,credits\na,1,1\na,2,0\n", "credits: row 3: 0 is not a whole number"),
        ("user,timestamp,credits\na,1,2.5\n", "credits: row 2: 2.5 is not a whole number"),
        ("user,timestamp,credits\na,yesterday,1\n", "timestamp: row 2: 'yesterday' is neither"),
        ("user,timestamp,credits\na,2026-01-01T00:00:00,1\n", "row 2: .* is neither seconds"),
        ("user,timestamp,credits\n", "trace: has no rows"),
    ],
)
def test_bad_traces_are_refused_naming_file_column_and_row(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each error names the trace file, the column and the first bad row (as a line number)."""
    name = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=message) as error:
        _scenario(tmp_path, {"arrivals": "trace", "trace": name})
    assert name in str(error.value)


def test_a_trace_group_takes_no_profile_keys_and_needs_its_file(tmp_path: Path) -> None:
    """``requests_per_day`` beside a trace is an unknown key; a missing file is named; rate and
    cost variation are refused for a replay."""
    name = _write(tmp_path, "user,timestamp,credits\na,1,1\n")
    with pytest.raises(ScenarioError, match="unknown key"):
        _scenario(tmp_path, {"arrivals": "trace", "trace": name, "requests_per_day": 3})
    with pytest.raises(ScenarioError, match=r"usage\.trace: no such file"):
        _scenario(tmp_path, {"arrivals": "trace", "trace": "missing.csv"})
    with pytest.raises(ScenarioError, match="not a replayed trace"):
        _scenario(
            tmp_path, {"arrivals": "trace", "trace": name},
            variation={"rate": {"dist": "fixed", "value": 2}},
        )  # fmt: skip


def test_fit_trace_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing trace, or a start without a zone: one line on stderr, status 2."""
    assert main(["fit-trace", str(tmp_path / "none.csv")]) == 2
    assert main(["fit-trace", str(SCENARIOS / "traces" / "sample_usage.csv"), "--start", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_a_folder_or_a_file_that_is_no_table_given_as_a_trace_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder is named as one (it was "no such file"); a text file the CSV reader cannot
    split gives the first line of the reader's reason (pandas ends it with a newline, which
    had made the error two lines)."""
    assert main(["fit-trace", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err == f"error: {tmp_path}: trace: is a directory; give a CSV or"
        " Parquet file\n"
    )
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("user,timestamp,credits\nu1,0,5\nu1,1,5,extra\n")
    assert main(["fit-trace", str(ragged)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{ragged}: trace: cannot be read: Error tokenizing" in err
