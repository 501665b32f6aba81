"""The command line: run and sweep print readable tables, write frames, explain their options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main

from .conftest import SCENARIOS

SMALL = ["--users", "10", "--days", "1", "--backend", "memory"]


def test_run_prints_the_summary_and_writes_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` prints one line per figure and writes Parquet and CSV on request."""
    code = main(["run", str(SCENARIOS / "baseline.toml"), *SMALL, "--out", str(tmp_path), "--csv"])
    out = capsys.readouterr().out
    assert code == 0
    figures = dict(line.split(maxsplit=1) for line in out.splitlines()[1:] if "  " in line)
    assert figures["scenario"].strip() == "baseline" and "dry_per_1000_users" in figures
    assert pd.read_parquet(tmp_path / "summary.parquet").loc[0, "users"] == 10
    assert (tmp_path / "events.csv").exists()


def test_seed_option_changes_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """--seed overrides the scenario's seed."""
    main(["run", str(SCENARIOS / "chaos.toml"), *SMALL, "--seed", "99"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines if line.startswith("seed ")] == [["seed", "99"]]


def test_bad_scenario_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file is reported on stderr with its key, and the exit status is 2."""
    path = tmp_path / "bad.toml"
    path.write_text("users = 0\n")
    assert main(["run", str(path)]) == 2
    assert "bad.toml: users: must be >= 1" in capsys.readouterr().err


def test_sweep_prints_one_row_per_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep` prints the grid columns with the figures, and writes sweep.parquet."""
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), "--users", "2", "--days", "0.25"]
    code = main([*args, "--backend", "memory", "--workers", "2", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split()[:3] == [
        "auto_topup.threshold", "auto_topup.amount", "billing.cooldown_hours"
    ]  # fmt: skip
    assert len(pd.read_parquet(tmp_path / "sweep.parquet")) == 36


def test_help_explains_every_option() -> None:
    """`python -m sim run --help` describes each option."""
    result = subprocess.run(
        [sys.executable, "-m", "sim", "run", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--seed", "--out", "--csv", "--backend", "--users", "--days"):
        assert option in result.stdout
    assert "REDIS_URL" in result.stdout
