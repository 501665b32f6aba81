"""The review's saved data (``sim.review_data``): both sweeps written with a sidecar that says
their size and the command, read back as review tables, kept point by point, and reproduced by
re-running one point (what the explorer's button does)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from sim import explorer, review_data
from sim.review_data import GRID_SEGMENT, SEGMENTS

from .conftest import SCENARIOS


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """threshold_grid with a 2 x 1 x 2 grid, saved at 3 users x 1 day: the scenario and the
    folder."""
    folder = tmp_path_factory.mktemp("review")
    text = (SCENARIOS / "threshold_grid.toml").read_text()
    text = re.sub(r"^\[sweep\].*", "", text, flags=re.S | re.M) + (
        '[sweep]\n"auto_topup.threshold" = [500, 5000]\n"auto_topup.amount" = [10000]\n'
        '"billing.cooldown_hours" = [0.5, 4]\n'
    )
    scenario = folder / "grid.toml"
    scenario.write_text(text)
    args = ["--users", "3", "--days", "1", "--workers", "1", "--scenario", str(scenario),
            "--out", str(folder / "data")]  # fmt: skip
    assert review_data.main(args) == 0
    return scenario, folder / "data"


def test_both_sweeps_are_saved_with_their_size_and_command(small: tuple[Path, Path]) -> None:
    """The grid (4 points) and the segments (3 rates x 2 thresholds x 1 amount) are written,
    and the sidecar says the size, the seed and the command that made them."""
    scenario, folder = small
    meta = json.loads((folder / "review_data.json").read_text())
    assert (meta["users"], meta["days"], meta["seed"], meta["currency"]) == (3, 1, 5, "eur")
    assert meta["command"] == (
        f"python -m sim.review_data --users 3 --days 1 --workers 1 --scenario {scenario} "
        f"--out {folder}"
    )
    assert {name: f["points"] for name, f in meta["files"].items()} == {
        "threshold_grid.parquet": 4, "segments.parquet": 6,
    }  # fmt: skip
    assert len(pd.read_parquet(folder / "segments.parquet")) == 6


def test_load_gives_review_tables_named_by_segment_at_the_datas_size(
    small: tuple[Path, Path],
) -> None:
    """Each row is named by its segment, every segment has the cooldown column, and the size
    comes from the data."""
    data = review_data.load(small[1])
    table = data.table()
    assert table["segment"].value_counts().to_dict() == {GRID_SEGMENT: 4} | dict.fromkeys(
        SEGMENTS.values(), 2
    )
    assert data.segments["cooldown_hours"].unique().tolist() == [1.0]
    assert data.size == "3 users x 1 days"


def test_a_second_run_reads_the_kept_points(small: tuple[Path, Path]) -> None:
    """The points folder holds every finished point; the same command again runs none (its
    sweeps start full) and writes the same frames."""
    scenario, folder = small
    before = pd.read_parquet(folder / "threshold_grid.parquet")
    assert len(list((folder / "points").glob("*.parquet"))) == 10
    review_data.main(["--users", "3", "--days", "1", "--workers", "1", "--scenario",
                      str(scenario), "--out", str(folder)])  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "threshold_grid.parquet"), before)
    assert len(list((folder / "points").glob("*.parquet"))) == 10


@pytest.mark.parametrize("segment", [GRID_SEGMENT, SEGMENTS[120]])
def test_rerunning_a_point_at_the_datas_size_gives_the_saved_figures(
    small: tuple[Path, Path], segment: str
) -> None:
    """The explorer's button at the data's size and seed reproduces the saved row, for the
    grid's population and for a segment; it reports every simulated day."""
    scenario, folder = small
    table = review_data.load(folder).table()
    saved = table[(table["segment"] == segment) & (table["threshold"] == 5000)].iloc[0]
    controls = explorer.Controls(segment, 5000, 10_000, saved["cooldown_hours"])
    days: list[float] = []
    fresh = explorer.rerun(scenario, controls, users=3, days=1, seed=5, on_day=days.append)
    pd.testing.assert_series_equal(
        fresh, saved.drop(["segment", "threshold", "amount", "cooldown_hours"]),
        check_names=False, check_dtype=False,
    )  # fmt: skip
    assert days == [1.0]


def test_too_few_users_for_an_interval_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """One user has no interval: the command says so and exits 2 before running anything."""
    with pytest.raises(SystemExit) as exit_:
        review_data.main(["--users", "1"])
    assert exit_.value.code == 2
    assert "--users must be at least 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--seed", "-3"], "threshold_grid.toml: seed: must be >= 0, got -3"),
        (["--scenario", "nowhere.toml"], "nowhere.toml: no such file; give a scenario file"),
        (["--out", "{file}"], "is a file; give a folder for the frames"),
    ],
)
def test_each_mistake_is_one_line_and_status_2_before_any_point_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """A negative seed, a scenario that is no file and an --out that is a file: one line and
    status 2, and no folder made (each was a traceback, the seed's after --out was created)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = tmp_path / "data"
    argv = ["--users", "2", "--days", "0.1", "--out", str(out), *args]
    argv = [str(a_file) if arg == "{file}" else arg for arg in argv]
    assert review_data.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and said in captured.err
    assert not out.exists()


def test_workers_0_is_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 0 is refused by the option's type, as `python -m sim sweep` refuses it."""
    with pytest.raises(SystemExit) as exit_:
        review_data.main(["--workers", "0"])
    assert exit_.value.code == 2
    assert "argument --workers: 0 runs nothing" in capsys.readouterr().err
