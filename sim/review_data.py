"""The threshold review's data: two sweeps run once at decision scale and saved, so that
notebook 04 and its explorer read them in a second instead of simulating for hours.

``python -m sim.review_data`` (``make review-data``) runs

- ``threshold_grid.parquet``: the ``threshold_grid`` scenario's own grid, threshold x amount x
  cooldown (36 points), on its population of regular users, 4% of whose cards fail;
- ``segments.parquet``: the same population with every card working, at 10, 40 and 120 requests
  a day (light, regular, heavy) x threshold x amount at the scenario's cooldown (36 points), so
  that running dry measures the settings and not the failing cards;

and writes the two sweep frames with ``review_data.json`` beside them: the size, the seed, the
backend, the scenario and the command that made them. The size is an option (``--users``,
``--days``; the default, 1,000 users for 30 days, is the decision scale) and readers take it
from the data, never from a constant. Finished points are kept in ``points/`` (see
:mod:`sim.sweeps`), so an interrupted run loses nothing and a rerun after a code change runs
only what changed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import review
from .cli import UsageError, make_out_folder, read_scenario, workers_option
from .scenario import Scenario, ScenarioError, load_scenario
from .sweeps import grid_points, sweep

#: Requests per day of each user segment -> its name in tables and controls.
SEGMENTS: Mapping[int, str] = {
    10: "light (10 requests/day)",
    40: "regular (40/day)",
    120: "heavy (120/day)",
}
#: The segment name of the ``threshold_grid`` population as the scenario has it (failing cards).
GRID_SEGMENT = "regular, 4% failing cards (40/day)"
#: The scenario key a segment sets.
RATE_KEY = "groups.regular.usage.requests_per_day"
#: Every card working: the segments' cards.
GOOD_CARDS: Mapping[str, Any] = {"groups.regular.cards": {"pm_card_visa": 1.0}}

SCENARIO = Path("scenarios/threshold_grid.toml")
FOLDER = Path("notebooks/data")
GRID_FILE, SEGMENTS_FILE, META_FILE = (
    "threshold_grid.parquet",
    "segments.parquet",
    "review_data.json",
)
#: Every run of the review uses these (the same events as any other, at the lowest cost).
BACKEND, GATEWAY = "memory", "direct"


def segment_scenario(scenario: Scenario) -> Scenario:
    """The segments' population: ``scenario`` with every card working."""
    return scenario.with_overrides(GOOD_CARDS)


def segment_grid(scenario: Scenario) -> dict[str, list[Any]]:
    """The segments' grid: each segment's request rate x the scenario's thresholds and amounts,
    at its own cooldown (kept as a column so both files have the same settings)."""
    return {
        RATE_KEY: list(SEGMENTS),
        "auto_topup.threshold": list(scenario.sweep["auto_topup.threshold"]),
        "auto_topup.amount": list(scenario.sweep["auto_topup.amount"]),
        "billing.cooldown_hours": [scenario.billing.cooldown_hours],
    }


def point_scenario(scenario: Scenario, segment: str, settings: Mapping[str, Any]) -> Scenario:
    """One point of either sweep as a scenario to run again: ``segment`` (:data:`GRID_SEGMENT`
    or one of :data:`SEGMENTS`) with the dotted ``settings`` applied."""
    if segment == GRID_SEGMENT:
        return scenario.grid_point(settings)
    rate = {name: rate for rate, name in SEGMENTS.items()}[segment]
    return segment_scenario(scenario).grid_point({RATE_KEY: rate, **settings})


def currency(scenario: Scenario) -> str:
    """The currency the scenario's users pay in (revenue is reported in it)."""
    (only,) = {group.settings.currency for group in scenario.groups}
    return only


def generate(
    scenario_path: Path,
    folder: Path,
    *,
    users: int,
    days: float,
    seed: int | None,
    workers: int,
    command: str,
) -> dict[str, Any]:
    """Run both sweeps at ``users`` x ``days`` and write them to ``folder`` with their sidecar;
    return the sidecar. Progress (a bar per sweep) goes to stderr."""
    scenario = load_scenario(scenario_path, users=users, days=days).seeded(seed)
    seed = scenario.seed
    points = folder / "points"
    meta: dict[str, Any] = {
        "users": users, "days": days, "seed": seed, "backend": BACKEND, "gateway": GATEWAY,
        "scenario": scenario_path.as_posix(), "currency": currency(scenario), "command": command,
        "files": {},
    }  # fmt: skip
    runs = {
        GRID_FILE: (scenario, dict(scenario.sweep)),
        SEGMENTS_FILE: (segment_scenario(scenario), segment_grid(scenario)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (base, grid) in runs.items():
        size = len(grid_points(grid))
        print(f"{name}: {size} points of {users:,} users x {days:g} days", file=sys.stderr)
        start = time.monotonic()
        frame = sweep(base, grid, seed=seed, backend=BACKEND, gateway=GATEWAY, workers=workers,
                      progress=True, points=points)  # fmt: skip
        frame.to_parquet(folder / name, index=False)
        print(f"{name}: done in {time.monotonic() - start:,.0f} s", file=sys.stderr)
        meta["files"][name] = {"points": len(frame), "grid": grid}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass(frozen=True)
class ReviewData:
    """The saved sweeps as review tables (:func:`sim.review.review_table`), each with a
    ``segment`` column, and the sidecar that says how they were made."""

    grid: pd.DataFrame
    segments: pd.DataFrame
    meta: Mapping[str, Any]

    @property
    def size(self) -> str:
        """Users x days per setting, as the data has it."""
        return review.sample_size(pd.concat([self.grid, self.segments]))

    def table(self) -> pd.DataFrame:
        """Both tables in one, the grid's population first: every setting of every segment."""
        return pd.concat([self.grid, self.segments], ignore_index=True)


def load(folder: Path) -> ReviewData:
    """Read what :func:`generate` wrote."""
    meta = json.loads((folder / META_FILE).read_text())
    grid = review.review_table(pd.read_parquet(folder / GRID_FILE), meta["currency"])
    grid.insert(0, "segment", GRID_SEGMENT)
    segments = review.review_table(pd.read_parquet(folder / SEGMENTS_FILE), meta["currency"])
    segments.insert(0, "segment", segments.pop("requests_per_day").map(SEGMENTS))
    return ReviewData(grid, segments, meta)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.review_data``: run both sweeps and save them (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m sim.review_data",
        description="Run the threshold review's sweeps and save them for notebook 04.",
    )
    parser.add_argument("--users", type=int, default=1000, help="users per point (1000)")
    parser.add_argument("--days", type=float, default=30, help="simulated days per point (30)")
    parser.add_argument("--seed", type=int, default=None, help="default: the scenario's")
    parser.add_argument(
        "--workers", type=workers_option, default=-1, help="processes (-1: one per core)"
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO, help=f"default: {SCENARIO}")
    parser.add_argument("--out", type=Path, default=FOLDER, help=f"default: {FOLDER}")
    args = parser.parse_args(argv)
    if args.users < 2 or args.days <= 0:
        parser.error("--users must be at least 2 (an interval needs two) and --days positive")
    command = shlex.join(["python", "-m", "sim.review_data", *argv])
    try:  # each mistake is one line and status 2, found before the first point runs
        read_scenario(args.scenario).seeded(args.seed)
        make_out_folder(args.out)
        meta = generate(args.scenario, args.out, users=args.users, days=args.days,
                        seed=args.seed, workers=args.workers, command=command)  # fmt: skip
    except (UsageError, ScenarioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(meta['files'])} and {META_FILE} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
