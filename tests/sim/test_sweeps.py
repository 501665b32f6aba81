"""Sweeps: every grid point runs, in parallel with loky or on a dask cluster, into one frame."""

from __future__ import annotations

import pandas as pd
import pytest

from sim import grid_points, run, sweep

from .conftest import SCENARIOS, shipped

GRID = {"auto_topup.threshold": [500, 5000], "billing.cooldown_hours": [0.5, 4]}


def test_grid_points_cover_every_combination() -> None:
    """The grid is the product of its values, the first key varying slowest."""
    assert grid_points(GRID) == [
        {"auto_topup.threshold": 500, "billing.cooldown_hours": 0.5},
        {"auto_topup.threshold": 500, "billing.cooldown_hours": 4},
        {"auto_topup.threshold": 5000, "billing.cooldown_hours": 0.5},
        {"auto_topup.threshold": 5000, "billing.cooldown_hours": 4},
    ]


def test_sweep_concatenates_summaries_with_grid_columns() -> None:
    """One summary row per point, prefixed by its grid values, equal to a plain run there."""
    scenario = shipped("threshold_grid", users=10)
    frame = sweep(scenario, GRID, workers=2, backend="memory")
    assert len(frame) == 4 and list(frame.columns[:2]) == list(GRID)
    alone = run(scenario.grid_point(grid_points(GRID)[3]), backend="memory").summary
    pd.testing.assert_frame_equal(
        frame.iloc[[3], 2:].reset_index(drop=True), alone, check_dtype=False
    )


def test_sweep_defaults_to_the_scenario_grid() -> None:
    """Without a grid, the scenario's [sweep] table is run (36 points for threshold_grid)."""
    scenario = shipped("threshold_grid", users=2, days=0.25)
    frame = sweep(scenario, workers=2, backend="memory")
    assert len(frame) == 36
    assert frame.groupby("auto_topup.amount")["topups"].sum().is_monotonic_decreasing


def test_sweep_without_a_grid_says_so() -> None:
    """A scenario with no [sweep] table needs a grid."""
    with pytest.raises(ValueError, match="no grid given"):
        sweep(shipped("baseline"), workers=1)


def test_sweep_runs_on_a_dask_cluster() -> None:
    """Given a scheduler address, the same sweep runs on dask.distributed with equal results."""
    distributed = pytest.importorskip("dask.distributed")
    scenario = shipped("threshold_grid", users=5)
    grid = {"auto_topup.threshold": [500, 2000]}
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = sweep(scenario, grid, backend="memory", scheduler=cluster.scheduler_address)
    local = sweep(scenario, grid, backend="memory", workers=1)
    pd.testing.assert_frame_equal(on_dask, local)


def test_threshold_grid_file_declares_its_sweep() -> None:
    """The shipped grid sweeps threshold x amount x cooldown."""
    grid = shipped("threshold_grid").sweep
    assert list(grid) == ["auto_topup.threshold", "auto_topup.amount", "billing.cooldown_hours"]
    assert (SCENARIOS / "threshold_grid.toml").exists()
