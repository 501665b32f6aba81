"""Per-group figures: ``Results.groups`` (a run's summary per group of users) and sweeps by
group, each checked against the run's own frames."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pandas as pd
import pytest

from sim import Results, run, sweep
from sim.cli import main
from sim.results import _SUMMARY_READS, summary_frame

from .conftest import SCENARIOS, shipped

ADDITIVE = (
    "users", "requests", "refused", "request_failures", "users_ran_dry", "topups",
    "failed_topups", "declines", "charge_calls", "credits_used", "credits_bought",
    "webhook_deliveries", "revenue_eur",
)  # fmt: skip


@pytest.fixture(scope="module")
def baseline() -> object:
    """The baseline's three groups, small."""
    return run(shipped("baseline", users=30, days=3), seed=1, backend="memory", gateway="direct")


def test_one_row_per_group_in_the_scenarios_order(baseline: object) -> None:
    """``groups`` has a row per group, named, with the summary's columns after ``group``."""
    groups = baseline.groups  # type: ignore[attr-defined]
    assert groups["group"].tolist() == ["light", "regular", "heavy"]
    assert list(groups.columns) == ["group", *baseline.summary.columns]  # type: ignore[attr-defined]


def test_group_counts_add_up_to_the_runs(baseline: object) -> None:
    """Every additive figure (counts, credits, money) of the groups sums to the run's."""
    groups, summary = baseline.groups, baseline.summary  # type: ignore[attr-defined]
    for column in ADDITIVE:
        assert groups[column].sum() == pytest.approx(summary[column].iloc[0]), column


def test_a_groups_figures_are_its_users_figures(baseline: object) -> None:
    """Hand count from the users frame: the heavy group's requests, top-ups and users who ran
    dry are the sums over its users; its rate per 1,000 users is its own."""
    users = baseline.users  # type: ignore[attr-defined]
    heavy_users = users[users["group"] == "heavy"]
    heavy = baseline.groups.set_index("group").loc["heavy"]  # type: ignore[attr-defined]
    assert heavy["users"] == len(heavy_users)
    assert heavy["requests"] == heavy_users["requests"].sum()
    assert heavy["topups"] == heavy_users["topups"].sum()
    dry = int((heavy_users["refused"] > 0).sum())
    assert heavy["dry_per_1000_users"] == pytest.approx(1000 * dry / len(heavy_users))


def test_a_groups_summary_reads_only_the_columns_it_is_given(baseline: object) -> None:
    """``groups_frame`` hands ``summary_frame`` each group's rows of ``_SUMMARY_READS`` alone:
    the summary of those columns is the summary of every column."""
    r = cast(Results, baseline)
    full = summary_frame(r.scenario, r.seed, r.events, r.users, payments=[])
    narrow = summary_frame(r.scenario, r.seed, r.events[list(_SUMMARY_READS)], r.users, [])
    pd.testing.assert_frame_equal(narrow, full, check_exact=True)


def test_a_sweep_by_group_has_a_run_wide_row_and_one_per_group() -> None:
    """``by_group``: per point, the ``all`` row (equal to the plain sweep's row) then each
    group's; without it, the frame has no ``group`` column."""
    scenario = shipped("baseline", users=20, days=1)
    grid = {"auto_topup.threshold": [500, 2000]}
    plain = sweep(scenario, grid, workers=1)
    grouped = sweep(scenario, grid, workers=1, by_group=True)
    assert "group" not in plain.columns
    assert grouped["group"].tolist() == ["all", "light", "regular", "heavy"] * 2
    whole = grouped[grouped["group"] == "all"].drop(columns="group").reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, plain)


def test_cli_sweep_by_group_prints_the_group_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--by-group`` adds the ``group`` column after the grid's: two points of the baseline
    with its three groups print 2 x 4 rows, and ``sweep.parquet`` holds them."""
    text = (SCENARIOS / "baseline.toml").read_text()
    path = tmp_path / "grid.toml"
    path.write_text(text + '\n[sweep]\n"auto_topup.threshold" = [500, 2000]\n')
    args = ["sweep", str(path), "--users", "6", "--days", "0.25", "--workers", "1"]
    assert main([*args, "--by-group", "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["auto_topup.threshold", "group"]
    assert [line.split()[1] for line in lines[1:9]] == ["all", "light", "regular", "heavy"] * 2
    assert len(pd.read_parquet(tmp_path / "out" / "sweep.parquet")) == 8


def test_a_group_without_users_has_a_row_without_rates() -> None:
    """Two users over the baseline's three groups: the empty group still has its row, with
    zero counts and no rate (NaN), not an error."""
    results = run(shipped("baseline", users=2, days=1), seed=1, backend="memory", gateway="direct")
    empty = results.groups[results.groups["users"] == 0]
    assert len(empty) == 1 and empty["requests"].iloc[0] == 0
    assert pd.isna(empty["topups_per_user_month"].iloc[0])
