"""Sweeps: every grid point runs, in parallel with loky or on a dask cluster, into one frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim import grid_points, run, sweep, sweeps

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


def test_finished_points_are_kept_and_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a points folder each finished point is written as it completes; the same sweep run
    again reads them back (the same frame) and runs nothing; a changed scenario runs again only
    the points it changes."""
    scenario = shipped("threshold_grid", users=4, days=0.5)
    first = sweep(scenario, GRID, workers=1, backend="memory", points=tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == 4 and not list(tmp_path.glob("*.partial"))
    ran: list[object] = []
    real = sweeps._summary

    def counting(*args: Any) -> pd.DataFrame:
        ran.append(args[0])
        return real(*args)

    monkeypatch.setattr(sweeps, "_summary", counting)
    again = sweep(scenario, GRID, workers=1, backend="memory", points=tmp_path)
    pd.testing.assert_frame_equal(again, first)
    assert ran == []
    wider = {**GRID, "billing.cooldown_hours": [0.5, 8]}  # two points new, two the same
    sweep(scenario, wider, workers=1, backend="memory", points=tmp_path)
    assert len(ran) == 2 and len(list(tmp_path.glob("*.parquet"))) == 6
    sweep(scenario, GRID, seed=99, workers=1, backend="memory", points=tmp_path)
    assert len(ran) == 6  # another seed is another point


def test_points_start_longest_first_and_the_frame_keeps_the_grid_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The smaller the auto top-up amount, the more top-ups and the longer the point: those
    start first, so that no long point is handed out last; the frame is in the grid's order."""
    started: list[int] = []
    real = sweeps._indexed_summary

    def recording(index: int, *args: Any) -> tuple[int, pd.DataFrame]:
        started.append(index)
        return real(index, *args)

    monkeypatch.setattr(sweeps, "_indexed_summary", recording)
    grid = {"auto_topup.amount": [21000, 1000, 10000]}
    frame = sweep(shipped("threshold_grid", users=2, days=0.25), grid, workers=1)
    assert started == [1, 2, 0]
    assert list(frame["auto_topup.amount"]) == [21000, 1000, 10000]


def test_expected_work_counts_requests_and_top_ups_at_their_cost() -> None:
    """A point's expected work: its requests, and its expected top-ups (credits spent over the
    amount) at a top-up's cost in requests; a group without auto top-up makes none."""
    scenario = shipped("threshold_grid", users=100, days=10)
    [group] = scenario.groups
    requests = 100 * group.usage.requests_per_day * 10
    top_ups = requests * group.usage.cost.expected() / group.settings.amount
    expected = requests + top_ups * sweeps.TOPUP_COST_IN_REQUESTS
    assert sweeps.expected_work(scenario) == pytest.approx(expected)
    off = scenario.with_overrides({"auto_topup.enabled": False})
    assert sweeps.expected_work(off) == pytest.approx(requests)


def test_point_key_follows_scenario_seed_backend_and_gateway() -> None:
    """The key changes with the point's scenario, the seed, the backend and the gateway, and
    only with them."""
    scenario = shipped("threshold_grid", users=4, days=0.5)
    point = scenario.grid_point(grid_points(GRID)[0])
    key = sweeps.point_key(point, 1, "memory")
    assert key == sweeps.point_key(scenario.grid_point(grid_points(GRID)[0]), 1, "memory")
    others = {
        sweeps.point_key(scenario.grid_point(grid_points(GRID)[1]), 1, "memory"),
        sweeps.point_key(point, 2, "memory"),
        sweeps.point_key(point, 1, "fakeredis"),
        sweeps.point_key(point, 1, "memory", "stripe"),
    }
    assert key == sweeps.point_key(point, 1, "memory", "direct")  # the sweeps' default
    assert key not in others and len(others) == 4
